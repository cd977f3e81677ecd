"""Rows a route's path names by id: the id's type, and the row or the API's 404."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Path
from sqlalchemy.orm import Session

from admin.api.errors import not_found

Row = TypeVar("Row")

# Bounded to what an INTEGER key holds: a larger id is refused before the database sees it.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def find_or_404(session: Session, model: type[Row], row_id: int, *, what: str) -> Row:
    """The `model` row with `row_id`; a 404 saying "`what` `row_id` not found" if there is none."""
    row = session.get(model, row_id)
    if row is None:
        raise not_found(f"{what} {row_id}")
    return row
