"""Call control and supervision over HTTP on a real server and PostgreSQL: the role matrix,
the error mapping and the audit entries, with the media worker's and the escalation service's
inboxes served by real Unix-socket inboxes in this process that answer with canned replies."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from admin.models import AuditEntry
from escalation.commands import CODEC, Accept, Decline, Presence, Snapshot, escalation_inbox_path
from telephony import commands
from telephony.commands import Reply
from telephony.delivery import WorkerInboxes
from telephony.inbox import UnixInbox, inbox_path
from tests.api_data import Api, new_call_id

pytest_plugins = ["tests.db_support", "tests.api_support"]

WAITING = "ab" * 16  # the escalation the canned service lets a supervisor accept
SNAPSHOT = {
    "queues": [
        {
            "name": "general",
            "waiting": 1,
            "calls": [
                {
                    "call_id": "cd" * 16,
                    "escalation_id": WAITING,
                    "reason": "caller_request",
                    "waited_s": 12.5,
                    "position": 1,
                    "expected_wait_s": None,
                    "offered_to": None,
                }
            ],
            "service_level": None,
        }
    ],
    "supervisors": [
        {
            "name": "supervisor",
            "state": "available",
            "queues": ["general"],
            "call_id": None,
            "offered_call_id": None,
        }
    ],
}


class Inboxes:
    """A media worker's inbox holding one call, and the escalation service's, on a loop in a
    thread; both record what they were sent."""

    def __init__(self, run_dir: Path, call_id: str) -> None:
        self.run_dir = run_dir
        self.call_id = call_id
        self.seen: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.worker = UnixInbox(inbox_path(run_dir, 0))
        self.escalation = UnixInbox(escalation_inbox_path(run_dir), codec=CODEC)

    def __enter__(self) -> Inboxes:
        self.thread.start()
        self._run(self.worker.start(self._call))
        self._run(self.escalation.start(self._service))
        return self

    def __exit__(self, *_exc: object) -> None:
        self._run(self.worker.close())
        self._run(self.escalation.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def _run(self, work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=5)

    async def _call(self, command: commands.Command) -> Reply:
        self.seen.append(command)
        if command.call_id != self.call_id:
            return Reply.failure(
                command.command_id, f"media worker 0 holds no live call {command.call_id}"
            )
        if isinstance(command, commands.Unhold):
            return Reply.failure(
                command.command_id, "cannot unhold a call that is with_agent (only when on_hold)"
            )
        return Reply.success(
            command.command_id, {"phase": "on_hold", "mode": None, "agent": "detached"}
        )

    async def _service(self, command: Any) -> Reply:
        self.seen.append(command)
        match command:
            case Snapshot():
                return Reply.success(command.command_id, SNAPSHOT)
            case Presence():
                return Reply.success(command.command_id, {"supervisor": command.supervisor})
            case Accept(escalation_id=ref) if ref == WAITING:
                data = {
                    "call_id": "cd" * 16,
                    "escalation_id": ref,
                    "supervisor": command.supervisor,
                }
                return Reply.success(command.command_id, data)
            case Accept():
                return Reply(
                    command.command_id, False, "no call waits for a person", {"code": "not_found"}
                )
            case Decline():
                return Reply(
                    command.command_id, False, "that call is not ringing", {"code": "conflict"}
                )
        return Reply.failure(command.command_id, "unexpected")


@pytest.fixture(scope="module")
def inboxes(api: Api) -> Iterator[Inboxes]:
    run_dir = Path(tempfile.mkdtemp(prefix="parley-cc-", dir="/tmp"))  # short: socket paths
    try:
        with Inboxes(run_dir, api.fixture.live) as served:
            yield served
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def control(api: Api, inboxes: Inboxes) -> Iterator[ControlPlane]:
    """The shared API with a control plane on the canned inboxes; the supervisor user serves
    'general', the queue of the seeded line."""
    plane = ControlPlane(
        workers=WorkerInboxes(1, inboxes.run_dir),
        escalation=escalation_inbox_path(inboxes.run_dir),
        supervisors={"supervisor": frozenset({"general"}), "alice": frozenset({"general"})},
        phones={"desk": "sip:desk@127.0.0.1:5060"},
    )
    before: ApiContext = api.app.state.context
    api.app.state.context = dataclasses.replace(before, control=plane)
    yield plane
    api.app.state.context = before


def _with(api: Api, **changes: Any) -> None:
    context: ApiContext = api.app.state.context
    assert context.control is not None
    api.app.state.context = dataclasses.replace(
        context, control=dataclasses.replace(context.control, **changes)
    )


def _last_audit(api: Api) -> AuditEntry:
    with api.sessions() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        session.expunge(entry)
        return entry


@pytest.mark.parametrize(
    ("role", "queues", "status"),
    [
        ("admin", None, 200),
        ("supervisor", {"general"}, 200),
        ("supervisor", {"billing"}, 403),
        ("supervisor", None, 403),  # a supervisor user with no supervisor entry
        ("auditor", None, 403),
    ],
)
def test_who_may_hold_a_call(
    api: Api,
    client: httpx.Client,
    *,
    control: ControlPlane,
    role: str,
    queues: set[str] | None,
    status: int,
) -> None:
    if role == "supervisor":
        _with(api, supervisors={} if queues is None else {"supervisor": frozenset(queues)})
    call = api.fixture.live
    response = client.post(f"/calls/{call}/hold", headers=api.actors[role].bearer())
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["phase"] == "on_hold"
    else:
        assert response.json()["error"]["code"] == "forbidden"
    entry = _last_audit(api)
    outcome = "done" if status == 200 else "forbidden"
    assert (entry.actor, entry.action, entry.target) == (
        f"user:{role}",
        "call.hold",
        f"call:{call}",
    )
    assert (entry.details["outcome"], entry.details["command"]) == (outcome, "hold")


def test_whisper_text_and_notes_stay_out_of_the_audit(
    api: Api, client: httpx.Client, control: ControlPlane, inboxes: Inboxes
) -> None:
    headers = api.actors["supervisor"].bearer()
    call = api.fixture.live
    response = client.post(
        f"/calls/{call}/whisper", json={"text": "Offer the refund"}, headers=headers
    )
    assert response.status_code == 200
    assert isinstance(inboxes.seen[-1], commands.Whisper)
    assert inboxes.seen[-1].actor == "user:supervisor"
    entry = _last_audit(api)
    assert entry.action == "call.whisper" and "refund" not in str(entry.details)
    back = client.post(
        f"/calls/{call}/hand-back", json={"note": "Refund approved"}, headers=headers
    )
    assert back.status_code == 200 and "refund" not in str(_last_audit(api).details).lower()
    mode = client.post(f"/calls/{call}/mode", json={"mode": "takeover"}, headers=headers)
    assert mode.status_code == 200 and _last_audit(api).details["mode"] == "takeover"


def test_errors_map_to_statuses(
    api: Api, client: httpx.Client, control: ControlPlane, inboxes: Inboxes
) -> None:
    admin = api.actors["admin"].bearer()
    call = api.fixture.live
    refused = client.post(f"/calls/{call}/unhold", headers=admin)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "conflict")
    assert "cannot unhold" in refused.json()["error"]["message"]
    assert _last_audit(api).details["outcome"] == "refused"
    unknown = client.post(f"/calls/{new_call_id()}/hangup", headers=admin)
    assert unknown.status_code == 404 and _last_audit(api).details["outcome"] == "not_found"
    _with(api, workers=WorkerInboxes(2, inboxes.run_dir))  # worker 1 has no inbox
    down = client.post(f"/calls/{new_call_id()}/hangup", headers=admin)
    assert (down.status_code, down.json()["error"]["code"]) == (503, "unavailable")
    assert _last_audit(api).details["outcome"] == "unavailable"
    held = client.post(f"/calls/{call}/dismiss", headers=admin)
    assert held.status_code == 200  # the worker that holds it answers; the other is skipped


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("mode", {"mode": "sideways"}, "mode"),
        ("mode", {}, "mode"),
        ("transfer", {"target": "http://example.com"}, "target"),
        ("whisper", {"text": "   "}, "text"),
        ("supervise", {"phone": "nobody"}, "phone"),
        ("supervise", {"phone": "sip:evil@example.com"}, "phone"),
        ("hold", None, None),
    ],
)
def test_bad_requests_are_422_in_the_error_shape(
    api: Api,
    client: httpx.Client,
    *,
    control: ControlPlane,
    path: str,
    body: dict[str, str] | None,
    field: str | None,
) -> None:
    call = api.fixture.live if field else "not-a-call-id"
    response = client.post(f"/calls/{call}/{path}", json=body, headers=api.actors["admin"].bearer())
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    if field:
        assert error["details"][0]["loc"][-1] == field


def test_supervise_rings_a_configured_phone(
    api: Api, client: httpx.Client, control: ControlPlane, inboxes: Inboxes
) -> None:
    response = client.post(
        f"/calls/{api.fixture.live}/supervise",
        json={"phone": "desk"},
        headers=api.actors["admin"].bearer(),
    )
    assert response.status_code == 200
    sent = inboxes.seen[-1]
    assert isinstance(sent, commands.AttachLeg) and sent.uri == "sip:desk@127.0.0.1:5060"


@pytest.mark.parametrize("role", ["admin", "supervisor", "auditor"])
def test_queues_live_from_the_service(
    api: Api, client: httpx.Client, control: ControlPlane, role: str
) -> None:
    response = client.get("/queues", headers=api.actors[role].bearer())
    assert response.status_code == 200
    body = response.json()
    assert body["queues"][0]["calls"][0]["escalation_id"] == WAITING
    assert body["supervisors"][0]["state"] == "available"


def test_queues_are_503_when_the_service_is_down(
    api: Api, client: httpx.Client, control: ControlPlane, inboxes: Inboxes
) -> None:
    _with(api, escalation=inboxes.run_dir / "gone.cmd.sock")
    response = client.get("/queues", headers=api.actors["admin"].bearer())
    assert (response.status_code, response.json()["error"]["code"]) == (503, "unavailable")
    assert "escalation service" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("role", "name", "status"),
    [
        ("supervisor", "supervisor", 200),
        ("supervisor", "alice", 403),  # only their own
        ("admin", "alice", 200),
        ("auditor", "supervisor", 403),
    ],
)
def test_who_may_set_presence(
    api: Api, client: httpx.Client, *, control: ControlPlane, role: str, name: str, status: int
) -> None:
    response = client.put(
        f"/supervisors/{name}/presence", json={"state": "away"}, headers=api.actors[role].bearer()
    )
    assert response.status_code == status, response.text
    entry = _last_audit(api)
    assert (entry.action, entry.target) == ("supervisor.presence", f"supervisor:{name}")
    assert entry.details["outcome"] == ("done" if status == 200 else "forbidden")


def test_presence_refuses_a_state_it_does_not_know(
    api: Api, client: httpx.Client, control: ControlPlane
) -> None:
    response = client.put(
        "/supervisors/supervisor/presence",
        json={"state": "busy"},
        headers=api.actors["admin"].bearer(),
    )
    assert response.status_code == 422


def test_accept_and_decline(
    api: Api, client: httpx.Client, control: ControlPlane, inboxes: Inboxes
) -> None:
    supervisor = api.actors["supervisor"].bearer()
    accepted = client.post(f"/escalations/{WAITING}/accept", headers=supervisor)
    assert accepted.status_code == 200
    assert accepted.json()["supervisor"] == "supervisor"
    assert _last_audit(api).details["outcome"] == "done"
    gone = client.post(f"/escalations/{'ef' * 16}/accept", headers=supervisor)
    assert gone.status_code == 404
    declined = client.post(f"/escalations/{WAITING}/decline", headers=supervisor)
    assert (declined.status_code, declined.json()["error"]["code"]) == (409, "conflict")
    for_alice = client.post(
        f"/escalations/{WAITING}/accept", json={"supervisor": "alice"}, headers=supervisor
    )
    assert for_alice.status_code == 403
    by_admin = client.post(
        f"/escalations/{WAITING}/accept",
        json={"supervisor": "alice"},
        headers=api.actors["admin"].bearer(),
    )
    assert by_admin.status_code == 200 and by_admin.json()["supervisor"] == "alice"


def test_accept_refuses_an_escalation_of_another_queue(
    api: Api, client: httpx.Client, control: ControlPlane
) -> None:
    from tests.api_data import ESCALATION_REFS

    # The seeded callback escalation is in 'billing'; the supervisor serves 'general'.
    response = client.post(
        f"/escalations/{ESCALATION_REFS[1]}/accept", headers=api.actors["supervisor"].bearer()
    )
    assert response.status_code == 403
