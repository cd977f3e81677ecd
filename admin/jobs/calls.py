"""Finding the call a job was given, or saying clearly why it cannot be found."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from admin.jobs.errors import JobInputError
from admin.models import Call

_CALL_ID = re.compile(r"[0-9a-f]{32}")


def check_call_id(call_id: object) -> str:
    if not isinstance(call_id, str) or not _CALL_ID.fullmatch(call_id):
        raise JobInputError(
            f"call id {call_id!r} is not a call id: expected 32 lowercase hex digits (uuid4().hex)"
        )
    return call_id


def load_call(session: Session, call_id: object) -> Call:
    call = session.get(Call, check_call_id(call_id))
    if call is None:
        raise JobInputError(f"call {call_id} is not in the database")
    return call
