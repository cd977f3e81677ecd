"""The live queues, supervisors' presence, and a supervisor taking or turning down a call.

Answered by the running escalation service through its inbox (escalation.control), never from
the database: 503 when the service does not answer. Who may act for which supervisor, and the
audit entry of each: admin.api.call_control_access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from admin.api import call_control_access as access
from admin.api.auth import Principal
from admin.api.control_plane import ESCALATION_DOWN
from admin.api.deps import Context, CurrentPrincipal, DbSession, require
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from admin.api.roles import Permission
from admin.api.routes.escalations import EscalationRef
from admin.api.schemas import OfferIn, OfferOut, PresenceIn, PresenceOut, QueuesOut
from escalation.commands import Accept, Decline, EscalationCommand, Presence, Snapshot
from telephony.commands import Reply
from telephony.inbox import InboxError

router = APIRouter(
    tags=["supervision"],
    responses={
        **ERROR_RESPONSES,
        404: {"model": ErrorBody, "description": "no such supervisor or waiting call"},
        409: {"model": ErrorBody, "description": "it cannot be done now; the message says why"},
    },
)

QueuesReader = Annotated[Principal, Depends(require(Permission.READ_QUEUES))]
SupervisorName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
_STATUS = {"not_found": 404, "conflict": 409}


@router.get("/queues", response_model=QueuesOut)
def queues(principal: QueuesReader, context: Context) -> QueuesOut:
    """Each queue with its waiting calls (position, wait, expected wait), and each supervisor
    with their state and call: live from the escalation service."""
    reply = _ask(context, Snapshot(actor=principal.actor))
    if not reply.ok:
        raise ApiError(503, reply.error or ESCALATION_DOWN)
    return QueuesOut.model_validate(reply.data)


@router.put("/supervisors/{name}/presence", response_model=PresenceOut)
def set_presence(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    name: SupervisorName,
    body: PresenceIn,
) -> PresenceOut:
    """Available, away or wrap_up. A supervisor sets only their own; an admin anyone's."""
    action, target = "supervisor.presence", f"supervisor:{name}"
    details = {"command": "presence", "state": body.state.value}
    access.check_supervisor(
        session,
        context,
        principal,
        supervisor=name,
        action=action,
        target=target,
        details=details,
    )
    command = Presence(actor=principal.actor, supervisor=name, state=body.state)
    _carry_out(session, context, principal, command, action=action, target=target, details=details)
    return PresenceOut(supervisor=name, state=body.state)


@router.post("/escalations/{ref}/accept", response_model=OfferOut)
def accept(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    ref: EscalationRef,
    body: OfferIn | None = None,
) -> OfferOut:
    """The supervisor takes this waiting call: their phone rings into it now."""
    supervisor = _supervisor(principal, body)
    action, target = "escalation.accept", f"escalation:{ref}"
    details = {"command": "accept", "supervisor": supervisor}
    access.check_supervisor(
        session,
        context,
        principal,
        supervisor=supervisor,
        action=action,
        target=target,
        details=details,
        escalation_ref=ref,
    )
    command = Accept(actor=principal.actor, supervisor=supervisor, escalation_id=ref)
    reply = _carry_out(
        session, context, principal, command, action=action, target=target, details=details
    )
    return OfferOut.model_validate(reply.data)


@router.post("/escalations/{ref}/decline", response_model=OfferOut)
def decline(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    ref: EscalationRef,
    body: OfferIn | None = None,
) -> OfferOut:
    """The supervisor turns down this call ringing their phone: it stops, they rest a few
    seconds, and the next supervisor is offered it."""
    supervisor = _supervisor(principal, body)
    action, target = "escalation.decline", f"escalation:{ref}"
    details = {"command": "decline", "supervisor": supervisor}
    access.check_supervisor(
        session,
        context,
        principal,
        supervisor=supervisor,
        action=action,
        target=target,
        details=details,
        escalation_ref=ref,
    )
    command = Decline(actor=principal.actor, supervisor=supervisor, escalation_id=ref)
    reply = _carry_out(
        session, context, principal, command, action=action, target=target, details=details
    )
    return OfferOut.model_validate(reply.data)


def _supervisor(principal: Principal, body: OfferIn | None) -> str:
    """Who takes the call: the body's supervisor, else the caller themselves."""
    named = body.supervisor if body is not None else None
    return named or principal.username


def _ask(context: Context, command: EscalationCommand) -> Reply:
    try:
        return access.control_plane(context).to_escalation(command)
    except InboxError:
        raise ApiError(503, ESCALATION_DOWN, headers={"Retry-After": "5"}) from None


def _carry_out(
    session: DbSession,
    context: Context,
    principal: Principal,
    command: EscalationCommand,
    *,
    action: str,
    target: str,
    details: Mapping[str, object],
) -> Reply:
    """Sends the command, audits its outcome, and raises the error it maps to."""
    try:
        reply = _ask(context, command)
    except ApiError:
        access.record(
            session,
            context,
            principal,
            action=action,
            target=target,
            outcome="unavailable",
            details=details,
        )
        raise
    code = None if reply.ok else str(reply.data.get("code", "refused"))
    access.record(
        session,
        context,
        principal,
        action=action,
        target=target,
        outcome="done" if code is None else ("not_found" if code == "not_found" else "refused"),
        details={**details, "command_id": command.command_id},
    )
    if code is not None:
        raise ApiError(_STATUS.get(code, 409), reply.error or "the escalation service refused")
    return reply
