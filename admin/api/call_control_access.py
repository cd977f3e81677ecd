"""Who may command which call or supervisor, and the audit entry each command leaves.

Admins command every call and act for every supervisor. A supervisor commands only calls of
lines whose queue is one of theirs (settings `supervisors`, matched by username; a line with no
queue is in "default"), and acts only as themselves; a supervisor user with no entry there
commands nothing. Auditors command nothing.

Every command is audited, the refused ones too: actor, target, the command, and its outcome
(`done`, `forbidden`, `not_found`, `refused`, `unavailable`). Never its words: whisper text,
notes and numbers stay out of the audit log as out of the logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.api import audit_trail
from admin.api.auth import Principal
from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from admin.api.errors import ApiError, not_found
from admin.api.roles import Permission
from admin.models import Call, Escalation, Line
from escalation.service import DEFAULT_QUEUE


def control_plane(context: ApiContext) -> ControlPlane:
    if context.control is None:
        raise ApiError(503, "call control is not configured in this API process")
    return context.control


def record(
    session: Session,
    context: ApiContext,
    principal: Principal,
    *,
    action: str,
    target: str,
    outcome: str,
    details: Mapping[str, object] | None = None,
) -> None:
    """Appends the command's audit entry and commits it, whatever the answer will be."""
    audit_trail.record(
        session,
        context,
        principal,
        action=action,
        target=target,
        details={"outcome": outcome, **(details or {})},
    )
    session.commit()


def check_call(
    session: Session,
    context: ApiContext,
    principal: Principal,
    *,
    call_id: str,
    action: str,
    details: Mapping[str, object] | None = None,
) -> None:
    """Raises 403 or 404 (audited) unless `principal` may command the call."""
    target = f"call:{call_id}"
    if not principal.may(Permission.COMMAND_CALLS):
        _refuse(
            session,
            context,
            principal,
            action=action,
            target=target,
            details=details,
            message=_role_refusal(principal),
        )
    plane = control_plane(context)
    if principal.may(Permission.COMMAND_ALL_CALLS):
        return
    queue = _queue_of_call(session, call_id)
    if queue is None:
        record(
            session,
            context,
            principal,
            action=action,
            target=target,
            outcome="not_found",
            details=details,
        )
        raise not_found(f"call {call_id}")
    if queue not in plane.supervisors.get(principal.username, frozenset()):
        _refuse(
            session,
            context,
            principal,
            action=action,
            target=target,
            details=details,
            message=f"the call is in queue {queue!r}, not one of yours",
        )


def check_supervisor(
    session: Session,
    context: ApiContext,
    principal: Principal,
    *,
    supervisor: str,
    action: str,
    target: str,
    details: Mapping[str, object] | None = None,
    escalation_ref: str | None = None,
) -> None:
    """Raises 403 (audited) unless `principal` may act as `supervisor`; for a supervisor, on
    the escalation's queue where `escalation_ref` is stored already."""
    if not principal.may(Permission.COMMAND_CALLS):
        _refuse(
            session,
            context,
            principal,
            action=action,
            target=target,
            details=details,
            message=_role_refusal(principal),
        )
    plane = control_plane(context)
    if principal.may(Permission.COMMAND_ALL_CALLS):
        return
    if supervisor != principal.username or supervisor not in plane.supervisors:
        _refuse(
            session,
            context,
            principal,
            action=action,
            target=target,
            details=details,
            message="a supervisor acts only as themselves, a name in the settings' supervisors",
        )
    if escalation_ref is not None:
        queue = session.scalar(select(Escalation.queue).where(Escalation.ref == escalation_ref))
        if queue is not None and queue not in plane.supervisors[supervisor]:
            _refuse(
                session,
                context,
                principal,
                action=action,
                target=target,
                details=details,
                message=f"the escalation is in queue {queue!r}, not one of yours",
            )


def _queue_of_call(session: Session, call_id: str) -> str | None:
    """The queue of the call's line ("default" without one); None for a call not stored."""
    row = session.execute(
        select(Call.id, Line.queue)
        .outerjoin(Line, Call.line_id == Line.id)
        .where(Call.id == call_id)
    ).first()
    if row is None:
        return None
    return row.queue or DEFAULT_QUEUE


def _role_refusal(principal: Principal) -> str:
    return f"the {principal.role.value} role may not do this ({Permission.COMMAND_CALLS.value})"


def _refuse(
    session: Session,
    context: ApiContext,
    principal: Principal,
    *,
    action: str,
    target: str,
    details: Mapping[str, object] | None,
    message: str,
) -> NoReturn:
    record(
        session,
        context,
        principal,
        action=action,
        target=target,
        outcome="forbidden",
        details=details,
    )
    raise ApiError(403, message)
