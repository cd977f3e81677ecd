"""Commanding a live call: hold, unhold, hang up, transfer, supervisor modes, whisper, hand
back, ring a supervisor's phone in, dismiss them.

Each command goes to the media worker holding the call (telephony.delivery), which answers
with the call's phase, mode and agent now. 404: no worker holds the call; 409: the call
cannot take it now (the reason says why); 503: a worker that may hold it does not answer.
Who may command which call, and the audit entry of each: admin.api.call_control_access.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder

from admin.api import call_control_access as access
from admin.api.auth import Principal
from admin.api.deps import Context, CurrentPrincipal, DbSession
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorBody, ErrorDetail
from admin.api.routes.calls import CallId
from admin.api.schemas import (
    CallCommandOut,
    HandBackIn,
    ModeIn,
    SuperviseIn,
    TransferIn,
    WhisperIn,
)
from telephony import commands
from telephony.commands import Command, CommandError
from telephony.delivery import Outcome

router = APIRouter(
    prefix="/calls",
    tags=["call control"],
    responses={
        **ERROR_RESPONSES,
        404: {"model": ErrorBody, "description": "no media worker holds the call"},
        409: {"model": ErrorBody, "description": "it cannot be done now; the message says why"},
    },
)

Build = Callable[[str], Command]  # the command, given the actor

_STATUS = {Outcome.REFUSED: 409, Outcome.NOT_HELD: 404, Outcome.UNREACHABLE: 503}
_OUTCOME = {
    Outcome.DONE: "done",
    Outcome.REFUSED: "refused",
    Outcome.NOT_HELD: "not_found",
    Outcome.UNREACHABLE: "unavailable",
}


@router.post("/{call_id}/hold", response_model=CallCommandOut)
def hold(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId
) -> CallCommandOut:
    """The agent steps out; the caller hears hold audio."""
    return _run(
        principal,
        context,
        session,
        call_id,
        name="hold",
        build=lambda actor: commands.Hold(call_id=call_id, actor=actor),
    )


@router.post("/{call_id}/unhold", response_model=CallCommandOut)
def unhold(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId
) -> CallCommandOut:
    """Back to the agent."""
    return _run(
        principal,
        context,
        session,
        call_id,
        name="unhold",
        build=lambda actor: commands.Unhold(call_id=call_id, actor=actor),
    )


@router.post("/{call_id}/recording/pause", response_model=CallCommandOut)
def pause_recording(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId
) -> CallCommandOut:
    """A PCI pause, while a card number is given: the recording becomes silence and nothing
    the caller or the agent says is stored until it resumes. The interval is recorded."""
    return _run(
        principal,
        context,
        session,
        call_id,
        name="pause_recording",
        build=lambda actor: commands.PauseRecording(call_id=call_id, actor=actor),
    )


@router.post("/{call_id}/recording/resume", response_model=CallCommandOut)
def resume_recording(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId
) -> CallCommandOut:
    """Ends a PCI pause: recording and transcript go on."""
    return _run(
        principal,
        context,
        session,
        call_id,
        name="resume_recording",
        build=lambda actor: commands.ResumeRecording(call_id=call_id, actor=actor),
    )


@router.post("/{call_id}/hangup", response_model=CallCommandOut)
def hangup(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId
) -> CallCommandOut:
    """Ends the call; its end reason is `command:operator`."""

    def build(actor: str) -> Command:
        return commands.Hangup(call_id=call_id, actor=actor, reason="operator")

    return _run(principal, context, session, call_id, name="hangup", build=build)


@router.post("/{call_id}/transfer", response_model=CallCommandOut)
def transfer(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    call_id: CallId,
    body: TransferIn,
) -> CallCommandOut:
    """Transfers the caller (SIP REFER) to `target`, a sip: or sips: URI."""

    def build(actor: str) -> Command:
        return commands.Transfer(call_id=call_id, actor=actor, target=body.target)

    return _run(principal, context, session, call_id, name="transfer", build=build)


@router.post("/{call_id}/mode", response_model=CallCommandOut)
def mode(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId, body: ModeIn
) -> CallCommandOut:
    """The supervisor on the call: monitor, whisper, barge or takeover."""

    def build(actor: str) -> Command:
        return commands.SetMode(call_id=call_id, actor=actor, mode=body.mode)

    details = {"mode": body.mode.value}
    return _run(principal, context, session, call_id, name="mode", build=build, details=details)


@router.post("/{call_id}/whisper", response_model=CallCommandOut)
def whisper(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    call_id: CallId,
    body: WhisperIn,
) -> CallCommandOut:
    """Coaches the agent; the caller hears nothing. The text is never logged nor audited."""

    def build(actor: str) -> Command:
        return commands.Whisper(call_id=call_id, actor=actor, text=body.text)

    return _run(principal, context, session, call_id, name="whisper", build=build)


@router.post("/{call_id}/hand-back", response_model=CallCommandOut)
def hand_back(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    call_id: CallId,
    body: HandBackIn | None = None,
) -> CallCommandOut:
    """Gives the call back to the agent, with an optional note (not logged nor audited)."""
    note = body.note if body is not None else None

    def build(actor: str) -> Command:
        return commands.ReattachAgent(call_id=call_id, actor=actor, note=note)

    return _run(principal, context, session, call_id, name="hand_back", build=build)


@router.post("/{call_id}/supervise", response_model=CallCommandOut)
def supervise(
    principal: CurrentPrincipal,
    context: Context,
    session: DbSession,
    call_id: CallId,
    body: SuperviseIn,
) -> CallCommandOut:
    """Rings a supervisor's phone (a name from `sip.phones`) into the call, or, with phone
    `browser`, the caller's own dashboard tab (its audio joins at /calls/{id}/audio)."""

    def build(actor: str) -> Command:
        uri: str | None
        if body.phone == commands.BROWSER_PHONE:
            try:
                uri = commands.browser_uri(principal.username)
            except ValueError as error:
                raise CommandError(str(error), field="phone") from None
        else:
            uri = access.control_plane(context).phones.get(body.phone)
        if uri is None:
            raise CommandError(
                f"no phone named {body.phone!r} in sip.phones (or {commands.BROWSER_PHONE!r}, "
                "your dashboard tab)",
                field="phone",
            )
        return commands.AttachLeg(call_id=call_id, actor=actor, uri=uri)

    details = {"phone": body.phone}
    return _run(
        principal, context, session, call_id, name="supervise", build=build, details=details
    )


@router.post("/{call_id}/dismiss", response_model=CallCommandOut)
def dismiss(
    principal: CurrentPrincipal, context: Context, session: DbSession, call_id: CallId
) -> CallCommandOut:
    """Takes the supervisor off the call, back to the agent."""
    return _run(
        principal,
        context,
        session,
        call_id,
        name="dismiss",
        build=lambda actor: commands.DetachLeg(call_id=call_id, actor=actor),
    )


def _run(
    principal: Principal,
    context: Context,
    session: DbSession,
    call_id: str,
    *,
    name: str,
    build: Build,
    details: Mapping[str, object] | None = None,
) -> CallCommandOut:
    action = f"call.{name}"
    shown = {"command": name, **(details or {})}
    access.check_call(session, context, principal, call_id=call_id, action=action, details=shown)
    try:
        command = build(principal.actor)
        commands.encode(command)  # a malformed URI is refused here, with its field
    except CommandError as error:
        raise _invalid(error.field or "body", str(error)) from None
    delivery = access.control_plane(context).to_worker(command)
    access.record(
        session,
        context,
        principal,
        action=action,
        target=f"call:{call_id}",
        outcome=_OUTCOME[delivery.outcome],
        details={**shown, "command_id": command.command_id},
    )
    reply = delivery.reply
    if delivery.outcome is not Outcome.DONE:
        raise ApiError(_STATUS[delivery.outcome], reply.error or "the command failed")
    return CallCommandOut(command_id=command.command_id, **jsonable_encoder(reply.data))


def _invalid(field: str, message: str) -> ApiError:
    detail = ErrorDetail(loc=["body", field], message=message, type="value_error")
    return ApiError(422, "the request is not valid; see details", details=[detail])
