"""Lines: the numbers a business publishes, and the agent, disclosure and queue behind them."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.api import audit_trail
from admin.api.deps import Context, DbSession, LinesManager, LinesReader
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail, conflict
from admin.api.path_rows import RowId, find_or_404
from admin.api.schemas import LineIn, LineOut, LinePatch
from admin.models import Disclosure, Line, LineNumber

router = APIRouter(prefix="/lines", tags=["lines"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[LineOut])
def list_lines(_principal: LinesReader, session: DbSession) -> list[LineOut]:
    return [_out(line) for line in session.scalars(select(Line).order_by(Line.name))]


@router.post("", response_model=LineOut, status_code=201)
def create_line(
    principal: LinesManager, context: Context, session: DbSession, body: LineIn
) -> LineOut:
    if session.scalar(select(Line.id).where(Line.name == body.name)) is not None:
        raise conflict(f"a line named {body.name!r} exists already")
    _check_disclosure(session, body.disclosure_id)
    numbers = _unique(body.numbers)
    _check_numbers_free(session, numbers, line_id=None)
    line = Line(
        name=body.name,
        agent_profile=body.agent_profile,
        disclosure_id=body.disclosure_id,
        queue=body.queue,
        numbers=[LineNumber(number=number) for number in numbers],
    )
    session.add(line)
    session.flush()
    audit_trail.record(
        session,
        context,
        principal,
        action="line.create",
        target=f"line:{line.id}",
        details=body.model_dump(),
    )
    session.commit()
    return _out(line)


@router.patch("/{line_id}", response_model=LineOut)
def update_line(
    principal: LinesManager, context: Context, session: DbSession, line_id: RowId, body: LinePatch
) -> LineOut:
    line = find_or_404(session, Line, line_id, what="line")
    changes = body.model_dump(exclude_unset=True)
    if "agent_profile" in changes and body.agent_profile is not None:
        line.agent_profile = body.agent_profile
    if "disclosure_id" in changes:
        _check_disclosure(session, body.disclosure_id)
        line.disclosure_id = body.disclosure_id
    if "queue" in changes:
        line.queue = body.queue
    if body.numbers is not None:
        _replace_numbers(session, line, _unique(body.numbers))
    session.flush()
    audit_trail.record(
        session, context, principal, action="line.update", target=f"line:{line.id}", details=changes
    )
    session.commit()
    return _out(line)


def _out(line: Line) -> LineOut:
    return LineOut(
        id=line.id,
        name=line.name,
        agent_profile=line.agent_profile,
        disclosure_id=line.disclosure_id,
        queue=line.queue,
        numbers=sorted(number.number for number in line.numbers),
        active=line.active,
        created_at=line.created_at,
    )


def _unique(numbers: list[str]) -> list[str]:
    return list(dict.fromkeys(numbers))


def _check_disclosure(session: Session, disclosure_id: int | None) -> None:
    if disclosure_id is not None and session.get(Disclosure, disclosure_id) is None:
        detail = ErrorDetail(
            loc=["body", "disclosure_id"], message="no such disclosure", type="value_error"
        )
        raise ApiError(422, "the request is not valid; see details", details=[detail])


def _check_numbers_free(session: Session, numbers: list[str], *, line_id: int | None) -> None:
    if not numbers:
        return
    query = select(LineNumber.number).where(LineNumber.number.in_(numbers))
    if line_id is not None:
        query = query.where(LineNumber.line_id != line_id)
    taken = session.scalars(query).all()
    if taken:
        raise conflict(f"numbers already on another line: {', '.join(sorted(taken))}")


def _replace_numbers(session: Session, line: Line, numbers: list[str]) -> None:
    """Keeps the rows of numbers that stay, so no number is deleted and inserted at once."""
    _check_numbers_free(session, numbers, line_id=line.id)
    wanted = set(numbers)
    line.numbers = [number for number in line.numbers if number.number in wanted]
    kept = {number.number for number in line.numbers}
    line.numbers.extend(LineNumber(number=number) for number in numbers if number not in kept)
