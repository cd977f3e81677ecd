"""/live over a real WebSocket client: events arrive as they are stored, masked; only
supervisors and admins get in, and a refusal is an HTTP error in the one shape."""

from __future__ import annotations

import json
import uuid

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from admin.call_events import store_events
from telephony.events import CallEvent, CallEventKind
from tests.api_data import Api

pytest_plugins = ["tests.db_support", "tests.api_support"]


def _ws_url(api: Api, query: str = "") -> str:
    return api.url.replace("http://", "ws://") + "/live" + query


def _store(api: Api, events: list[CallEvent]) -> None:
    with api.sessions() as session:
        store_events(session, events)
        session.commit()


def _receive(ws: Connection, count: int) -> list[dict[str, object]]:
    return [json.loads(ws.recv(timeout=5)) for _ in range(count)]


def test_a_supervisor_sees_events_as_they_are_stored(api: Api) -> None:
    call_id = uuid.uuid4().hex
    headers = api.actors["supervisor"].bearer()
    with connect(_ws_url(api), additional_headers=headers, open_timeout=5) as ws:
        started = CallEvent(
            call_id, CallEventKind.STARTED, {"from": "sip:+442079460958@carrier", "line": "main"}
        )
        _store(api, [started])
        ended = CallEvent(call_id, CallEventKind.ENDED, {"reason": "caller_hangup"})
        _store(api, [ended, started])  # a replayed event is not sent twice
        messages = _receive(ws, 2)
    assert [m["type"] for m in messages] == ["event", "event"]
    events = [m["event"] for m in messages]
    assert [e["event_id"] for e in events] == [started.event_id, ended.event_id]  # type: ignore[index]
    assert events[0]["data"] == {"from": "sip:+4*******0958@carrier", "line": "main"}  # type: ignore[index]
    assert "2079460958" not in json.dumps(messages)


def test_events_stored_before_joining_are_not_replayed(api: Api) -> None:
    old = CallEvent(uuid.uuid4().hex, CallEventKind.STARTED, {})
    _store(api, [old])
    with connect(_ws_url(api), additional_headers=api.actors["admin"].bearer()) as ws:
        new = CallEvent(uuid.uuid4().hex, CallEventKind.STARTED, {})
        _store(api, [new])
        (message,) = _receive(ws, 1)
    assert message["event"]["event_id"] == new.event_id  # type: ignore[index]


def test_browsers_pass_the_token_in_the_query_and_systems_a_key(api: Api) -> None:
    token = api.actors["admin"].token
    with connect(_ws_url(api, f"?token={token}")) as ws:
        event = CallEvent(uuid.uuid4().hex, CallEventKind.ANSWERED, {"codec": "G722"})
        _store(api, [event])
        assert _receive(ws, 1)[0]["event"]["event_id"] == event.event_id  # type: ignore[index]
    with connect(_ws_url(api), additional_headers={"X-API-Key": api.actors["supervisor"].api_key}):
        pass


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("anonymous", 401, "not_authenticated"),
        ("auditor", 403, "forbidden"),
        ("forged", 401, "not_authenticated"),
    ],
)
def test_others_are_refused_at_the_handshake(api: Api, who: str, status: int, code: str) -> None:
    headers = {
        "anonymous": {},
        "auditor": api.actors["auditor"].bearer(),
        "forged": {"Authorization": "Bearer x.y.z"},
    }[who]
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws_url(api), additional_headers=headers, open_timeout=5)
    response = refused.value.response
    assert response.status_code == status
    assert json.loads(response.body or b"{}")["error"]["code"] == code
