"""/board over real sockets: a worker's fan-out outlet (a real Unix socket) -> the API's board
feed -> a real WebSocket client. Who gets in, what they are sent, and what a page may say."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from admin.api.app import create_app
from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from admin.dashboard.feed import WATCHER_QUEUE, BoardFeed
from escalation.commands import escalation_inbox_path
from telephony.delivery import WorkerInboxes
from telephony.events import CallEvent, CallEventKind
from telephony.fanout import FanoutOutlet
from tests.api_data import KEYS, Api, make_actor, serve

pytest_plugins = ["tests.db_support", "tests.api_support"]


class Board:
    """An API process with a live board, and a worker's outlet that feeds it."""

    def __init__(self, url: str, outlet: FanoutOutlet) -> None:
        self.url = url.replace("http://", "ws://") + "/board"
        self.outlet = outlet

    def emit(self, call_id: str, kind: CallEventKind, data: dict[str, Any]) -> CallEvent:
        event = CallEvent(call_id, kind, data)
        self.outlet.emit(event)
        return event


@pytest.fixture
def board(api: Api, tmp_path: Path) -> Iterator[Board]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    outlet = FanoutOutlet.unix(run_dir, 0)
    plane = ControlPlane(
        WorkerInboxes(1, run_dir),
        escalation_inbox_path(run_dir),
        supervisors={"supervisor": frozenset({"default"})},
        phones={"desk-1": "sip:desk-1@127.0.0.1:5060", "desk-2": "sip:desk-2@127.0.0.1:5060"},
        supervisor_phones={"supervisor": "desk-1"},
    )
    context = ApiContext(sessions=api.sessions, keys=KEYS, control=plane, live_source=run_dir)
    try:
        with serve(create_app(context)) as url:
            deadline = time.monotonic() + 10
            while outlet.subscribers == 0:  # the feed has found the worker's socket
                assert time.monotonic() < deadline, "the board feed never subscribed"
                time.sleep(0.02)
            yield Board(url, outlet)
    finally:
        outlet.close()


def _hello(board: Board, api: Api, role: str) -> tuple[Connection, dict[str, Any]]:
    ws = connect(board.url, open_timeout=5)
    ws.send(json.dumps({"type": "hello", "token": api.actors[role].token}))
    hello = _next(ws)
    assert hello["type"] == "hello", hello
    return ws, hello


def _next(ws: Connection, kind: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        message: dict[str, Any] = json.loads(
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        )
        if kind is None or message["type"] == kind:
            return message


def test_a_supervisor_sees_a_call_appear_grow_and_end(board: Board, api: Api) -> None:
    ws, hello = _hello(board, api, "supervisor")
    with ws:
        assert hello["queues"] == ["default"] and hello["phone"] == "desk-1"
        assert hello["may_command"] and not hello["commands_all"]
        assert _next(ws)["type"] == "board"
        call_id = uuid.uuid4().hex
        started = board.emit(
            call_id,
            CallEventKind.STARTED,
            {"from": "sip:+442079460958@carrier", "line": "main", "worker": 0},
        )
        card = _next(ws, "call")
        assert card["call"]["call_id"] == call_id
        assert card["call"]["caller"] == "+4*******0958"
        assert card["t_event"] == started.t_wall
        ws.send(json.dumps({"type": "watch", "call_id": call_id}))
        detail = _next(ws, "detail")
        assert detail["call"]["call_id"] == call_id and detail["transcript"] == []
        board.emit(call_id, CallEventKind.AGENT, {"event": "caller_transcript", "text": "Hi"})
        lines = _next(ws, "lines")
        assert [line["text"] for line in lines["lines"]] == ["Hi"]
        board.emit(call_id, CallEventKind.ENDED, {"reason": "caller_hangup"})
        assert _next(ws, "ended")["call_id"] == call_id
    assert "2079460958" not in json.dumps([card, detail, lines])


def test_an_auditor_watches_and_may_command_nothing(board: Board, api: Api) -> None:
    ws, hello = _hello(board, api, "auditor")
    with ws:
        assert (hello["role"], hello["may_command"], hello["phones"]) == ("auditor", False, [])
        assert _next(ws)["type"] == "board"


def test_an_admin_may_join_with_any_phone(board: Board, api: Api) -> None:
    ws, hello = _hello(board, api, "admin")
    with ws:
        assert hello["commands_all"] and hello["may_command"]
        assert (hello["phone"], hello["phones"]) == (None, ["desk-1", "desk-2"])
    ws, hello = _hello(board, api, "supervisor")
    with ws:
        assert (hello["phone"], hello["phones"]) == ("desk-1", [])  # their own phone only


def test_a_watcher_whose_user_is_deactivated_is_closed_out(
    board: Board, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from admin.dashboard import routes
    from admin.models import Role, User

    monkeypatch.setattr(routes, "RECHECK_S", 0.2)
    with api.sessions() as session:
        actor = make_actor(session, f"leaver-{uuid.uuid4().hex[:8]}", Role.SUPERVISOR)
        session.commit()
    ws = connect(board.url, open_timeout=5)
    ws.send(json.dumps({"type": "hello", "token": actor.token}))
    with ws:
        assert _next(ws, "board")["calls"] == []
        with api.sessions() as session:
            user = session.get(User, actor.user_id)
            assert user is not None
            user.active = False
            session.commit()
        error = _next(ws, "error")
        assert error["status"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize(
    "first",
    [
        None,  # says nothing: closed after the hello timeout (shortened below)
        "not json",
        json.dumps({"type": "hello"}),
        json.dumps({"type": "hello", "token": "forged.token.value"}),
        json.dumps({"type": "watch", "call_id": None}),
        json.dumps(["hello"]),
    ],
)
def test_a_page_that_does_not_log_in_is_closed_with_a_reason(
    board: Board, first: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from admin.dashboard import routes

    monkeypatch.setattr(routes, "HELLO_TIMEOUT_S", 0.5)
    with connect(board.url, open_timeout=5) as ws:
        if first is not None:
            ws.send(first)
        error = _next(ws)
        assert error["type"] == "error" and error["message"], error
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code in (4401, 1008)


def test_what_a_page_may_not_say_gets_an_error_and_changes_nothing(board: Board, api: Api) -> None:
    ws, _ = _hello(board, api, "supervisor")
    with ws:
        _next(ws, "board")
        for bad in [
            "{",
            json.dumps({"type": "hangup", "call_id": "a" * 32}),
            json.dumps({"type": "watch", "call_id": "../../etc/passwd"}),
            json.dumps({"type": "watch", "call_id": 5}),
            json.dumps({"type": "watch", "call_id": "a" * 5000}),
            "\x00" * 10,
        ]:
            ws.send(bad)
            assert _next(ws)["type"] == "error"
        ws.send(json.dumps({"type": "watch", "call_id": "f" * 32}))
        assert _next(ws) == {
            "type": "unknown",
            "call_id": "f" * 32,
            "t_event": pytest.approx(time.time(), abs=5),
        }


def test_without_a_live_source_the_board_says_it_is_not_running(api: Api) -> None:
    context = ApiContext(sessions=api.sessions, keys=KEYS)
    with serve(create_app(context)) as url, connect(url.replace("http", "ws") + "/board") as ws:
        error = _next(ws)
        assert error["status"] == 503 and "not running" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


def test_a_watcher_that_falls_behind_gets_the_board_again_and_holds_nobody_up() -> None:
    async def scenario() -> None:
        feed = BoardFeed(Path("/nonexistent"))
        slow, quick = feed.join("slow"), feed.join("quick")
        await quick.queue.get()  # the board on joining
        call_id = uuid.uuid4().hex
        await feed.handle(CallEvent(call_id, CallEventKind.STARTED, {"line": "main"}))
        feed.watch(slow, call_id)
        for n in range(WATCHER_QUEUE + 10):
            await feed.handle(
                CallEvent(
                    call_id, CallEventKind.AGENT, {"event": "caller_transcript", "text": f"{n}"}
                )
            )
            while not quick.queue.empty():
                quick.queue.get_nowait()
        assert slow.resyncs >= 1 and quick.resyncs == 0
        first = json.loads(slow.queue.get_nowait())
        assert first["type"] == "board" and first["calls"][0]["call_id"] == call_id
        detail = json.loads(slow.queue.get_nowait())
        assert detail["type"] == "detail" and len(detail["transcript"]) > 0

    asyncio.run(scenario())
