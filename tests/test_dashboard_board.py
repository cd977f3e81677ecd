"""The live board's fold (admin.dashboard.board): call events in, cards and transcripts out."""

from __future__ import annotations

import itertools
from typing import Any

from admin.dashboard.board import TRANSCRIPT_KEPT, Board
from telephony.events import CallEvent, CallEventKind

CALL = "a" * 32
OTHER = "b" * 32
_clock = itertools.count(1_000)


def _event(kind: CallEventKind, data: dict[str, Any], call_id: str = CALL) -> CallEvent:
    t = next(_clock)
    return CallEvent(call_id, kind, data, t_mono_ns=t * 10**9, t_wall=float(t))


def _agent(event: str, call_id: str = CALL, **data: Any) -> CallEvent:
    return _event(CallEventKind.AGENT, {"event": event, **data}, call_id)


def _started(board: Board, call_id: str = CALL, worker: object = 0, **data: Any) -> None:
    board.apply(
        _event(
            CallEventKind.STARTED,
            {"from": "<sip:+15551234567@carrier>", "to": "100", "line": "main", "worker": worker,
             **data},
            call_id,
        )
    )  # fmt: skip


def _card(board: Board, call_id: str = CALL) -> dict[str, Any]:
    detail = board.detail(call_id)
    assert detail is not None
    card: dict[str, Any] = detail["call"]
    return card


def _transcript(board: Board) -> list[dict[str, Any]]:
    detail = board.detail(CALL)
    assert detail is not None
    lines: list[dict[str, Any]] = detail["transcript"]
    return lines


def test_a_started_call_is_a_card_with_the_caller_masked_and_the_lines_queue() -> None:
    board = Board(queue_of_line=lambda line: {"main": "billing"}.get(line or ""))
    [change] = board.apply(
        _event(
            CallEventKind.STARTED,
            {"from": '"Bob" <sip:+15551234567@carrier>', "line": "main", "worker": 0},
        )
    )
    assert change.card is not None
    assert change.card["caller"] == "+1******4567"
    assert (change.card["line"], change.card["queue"], change.card["state"]) == (
        "main",
        "billing",
        "answering",
    )
    assert "5551234" not in str(board.cards())
    board.apply(_event(CallEventKind.ANSWERED, {"codec": "PCMU"}))
    board.apply(_event(CallEventKind.PHASE, {"phase": "with_agent", "agent": "attached"}))
    assert _card(board)["state"] == "ai"
    assert [card["call_id"] for card in board.cards()] == [CALL]
    for uri, shown in [
        ("<sip:parley-dial@127.0.0.1>", "parley-dial"),
        ('"+15551234567" <sip:anonymous@invalid>', "anonymous"),  # never the display name
        ("sip:12345678901234567890@h", "1***************7890"),  # as the API masks it
        ("", "anonymous"),
    ]:
        board.apply(_event(CallEventKind.STARTED, {"from": uri}, OTHER))
        assert _card(board, OTHER)["caller"] == shown, uri


def test_the_transcript_shows_both_sides_and_marks_what_the_caller_cut_short() -> None:
    board = Board()
    _started(board)
    board.apply(_agent("caller_transcript", text="where is my order", final=False))
    [change] = board.apply(_agent("caller_transcript", text="Where is my order?"))
    assert [line["text"] for line in change.lines] == ["Where is my order?"]
    board.apply(_agent("agent_transcript", utterance_id="u1", text="It ships today."))
    [flush] = board.apply(
        _event(CallEventKind.PLAYOUT_FLUSHED, {"utterance_id": "u1", "played_ms": 640})
    )
    assert [(line["id"], line["cut"], line["heard_ms"]) for line in flush.lines] == [
        ("u1", True, 640)
    ]
    # A flush that comes before the transcript (the usual order after a barge-in)…
    board.apply(_event(CallEventKind.PLAYOUT_FLUSHED, {"utterance_id": "u2", "played_ms": 300}))
    board.apply(
        _agent("agent_transcript", utterance_id="u2", text="Your refund is", heard_text="Your")
    )
    # …and one the agent carried on after (a back-channel): not cut after all.
    board.apply(_agent("agent_transcript", utterance_id="u3", text="Anything else?"))
    board.apply(_event(CallEventKind.PLAYOUT_FLUSHED, {"utterance_id": "u3", "played_ms": 100}))
    [resumed] = board.apply(_agent("backchannel_ignored", item_id="u3"))
    assert [(line["id"], line["cut"]) for line in resumed.lines] == [("u3", False)]
    shown = [(s["speaker"], s["text"], s["cut"], s["heard_text"]) for s in _transcript(board)]
    assert shown == [
        ("caller", "Where is my order?", False, None),
        ("agent", "It ships today.", True, None),
        ("agent", "Your refund is", True, "Your"),
        ("agent", "Anything else?", False, None),
    ]
    card = _card(board)
    assert (card["last_speaker"], card["last_text"]) == ("agent", "Anything else?")


def test_voice_to_voice_is_the_last_turns_engine_share() -> None:
    board = Board()
    _started(board)
    board.apply(_agent("end_of_turn", endpointing_ms=300, responder_ms=50, first_audio_ms=210))
    assert _card(board)["latency_ms"] == 560
    board.apply(_agent("end_of_turn", endpointing_ms=300, responder_ms=None, first_audio_ms=2))
    assert _card(board)["latency_ms"] == 560  # an incomplete turn changes nothing


def test_an_escalation_moves_the_card_through_queued_ringing_and_supervisor() -> None:
    board = Board(queue_of_line=lambda line: "default")
    _started(board)
    ref = "c" * 32

    def step(event: str, to: str, **data: Any) -> dict[str, Any]:
        board.apply(
            _event(
                CallEventKind.ESCALATION,
                {"escalation_id": ref, "event": event, "to": to, **data},
            )
        )
        return _card(board)

    assert step("request", "requested", reason="dtmf_zero")["state"] == "queued"
    board.apply(_event(CallEventKind.PHASE, {"phase": "queued", "agent": "detached"}))
    card = step("enqueue", "queued", queue="billing")
    assert (card["state"], card["queue"]) == ("queued", "billing")
    card = step("offer", "offered", supervisor="alice", summary={"text": "Wants a refund."})
    assert card["state"] == "ringing"
    assert card["escalation"]["summary"] == "Wants a refund."
    step("connect", "connected")
    # The supervisor is on the call, being briefed, the caller still on hold: no mode yet.
    board.apply(_event(CallEventKind.PHASE, {"phase": "queued", "supervisor": True}))
    card = _card(board)
    assert (card["state"], card["mode"], card["supervisor_on"]) == ("supervisor", None, True)
    board.apply(
        _event(CallEventKind.PHASE, {"phase": "with_human", "mode": "takeover", "supervisor": True})
    )
    card = _card(board)
    assert (card["state"], card["mode"], card["supervisor"]) == ("supervisor", "takeover", "alice")
    assert card["escalation"]["reason"] == "dtmf_zero"
    detail = board.detail(CALL)
    assert detail is not None
    assert [item["kind"] for item in detail["timeline"]].count("escalation") == 4


def test_frustration_rises_with_the_callers_words_as_the_trigger_detector_scores_them() -> None:
    board = Board()
    _started(board)
    board.apply(_agent("caller_transcript", text="I want to check my order"))
    assert _card(board)["frustration"] == 0
    board.apply(_agent("caller_transcript", text="This is ridiculous"))
    one = _card(board)["frustration"]
    board.apply(_agent("caller_transcript", text="You're not listening, this is useless"))
    assert 0 < one < _card(board)["frustration"]
    assert _card(board)["frustration"] >= 1  # where the trigger would fire


def test_a_call_that_ends_leaves_the_board_but_its_detail_stays_for_an_open_page() -> None:
    board = Board()
    _started(board)
    _started(board, OTHER, worker=1)
    [change] = board.apply(_event(CallEventKind.ENDED, {"reason": "caller_hangup"}))
    assert change.ended and change.card is not None and change.card["state"] == "ended"
    assert [card["call_id"] for card in board.cards()] == [OTHER]
    assert _card(board)["end_reason"] == "caller_hangup"
    # Late events of an ended call change nothing.
    assert board.apply(_agent("caller_transcript", text="hello?")) == []


def test_a_worker_reset_ends_only_that_workers_calls() -> None:
    board = Board()
    _started(board, CALL, worker=0)
    _started(board, OTHER, worker=1)
    changes = board.apply(
        CallEvent("d" * 32, CallEventKind.WORKER_RESET, {"worker": 1, "host": "h"})
    )
    assert [(c.call_id, c.ended) for c in changes] == [(OTHER, True)]
    assert [card["call_id"] for card in board.cards()] == [CALL]
    assert _card(board, OTHER)["end_reason"] == "worker_lost"


def test_hostile_data_is_cleaned_masked_and_cut_and_never_breaks_the_board() -> None:
    board = Board()
    _started(board, worker="zero", sip_call_id="x" * 10_000)  # a worker that is not a number
    assert _card(board)["worker"] is None
    hostile = "\u202eevil\x00" + "A" * 10_000
    board.apply(_agent("caller_transcript", text=f"my card is 4111 1111 1111 1111 {hostile}"))
    board.apply(_event(CallEventKind.DTMF, {"digit": "7"}))
    board.apply(_event(CallEventKind.ESCALATION, {"escalation_id": 5, "to": ["x"]}))
    board.apply(
        _event(
            CallEventKind.ESCALATION,
            {"escalation_id": "e" * 32, "to": "offered", "summary": "not an object"},
        )
    )
    board.apply(_event(CallEventKind.PHASE, {"phase": 3, "mode": {"x": 1}}))
    board.apply(_event(CallEventKind.PLAYOUT_FLUSHED, {"utterance_id": None, "played_ms": "x"}))
    board.apply(_agent("caller_transcript", text=None))
    board.apply(_agent("end_of_turn", endpointing_ms="fast"))
    [line] = _transcript(board)
    assert "4111 1111 1111 1111" not in line["text"] and "1111" in line["text"]
    assert "\x00" not in line["text"] and "\u202e" not in line["text"]
    assert len(line["text"]) <= 600
    detail = board.detail(CALL)
    assert detail is not None
    assert "7" not in next(item["text"] for item in detail["timeline"] if item["kind"] == "dtmf")
    assert _card(board)["escalation"]["summary"] is None


def test_a_long_call_keeps_its_latest_lines() -> None:
    board = Board()
    _started(board)
    for n in range(TRANSCRIPT_KEPT + 50):
        board.apply(_agent("caller_transcript", text=f"line {n}"))
    lines = _transcript(board)
    assert len(lines) == TRANSCRIPT_KEPT and lines[-1]["text"] == f"line {TRANSCRIPT_KEPT + 49}"


def test_a_browser_leg_names_its_supervisor_while_it_rings_and_once_joined() -> None:
    board = Board()
    _started(board)
    sup = CallEventKind.SUPERVISOR
    board.apply(_event(sup, {"event": "ringing", "browser": "alice"}))
    card = _card(board)
    assert (card["browser"], card["browser_joined"], card["supervisor"]) == (
        "alice",
        False,
        "alice",
    )
    board.apply(_event(sup, {"event": "answered", "browser": "alice"}))
    board.apply(_event(sup, {"event": "briefing"}))  # names no leg: still alice's browser
    board.apply(_event(CallEventKind.PHASE, {"phase": "with_human", "supervisor": True}))
    card = _card(board)
    assert (card["browser_joined"], card["state"], card["supervisor"]) == (
        True,
        "supervisor",
        "alice",
    )
    board.apply(
        _event(sup, {"event": "ended", "status": 200, "by": "supervisor", "browser": "alice"})
    )
    card = _card(board)
    assert (card["browser"], card["browser_joined"]) == (None, False)
    timeline = board.detail(CALL)["timeline"]  # type: ignore[index]
    assert [item["text"] for item in timeline if item["kind"] == "supervisor"] == [
        "alice's browser: ringing",
        "alice's browser: answered",
        "alice's browser: briefing",
        "alice's browser: ended",
    ]
    # A phone rung afterwards is a phone again, not the browser.
    board.apply(_event(sup, {"event": "ringing"}))
    assert _card(board)["browser"] is None
