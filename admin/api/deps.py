"""What routes receive by injection: the context, a session, and the authorized caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from admin.api import auth
from admin.api.auth import Principal
from admin.api.context import ApiContext
from admin.api.roles import Permission

bearer_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.context)


Context = Annotated[ApiContext, Depends(get_context)]


def get_session(context: Context) -> Iterator[Session]:
    """One session per request: routes commit what they change; anything else rolls back."""
    with context.sessions() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def get_principal(
    context: Context,
    session: DbSession,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    return auth.authenticate(session, keys=context.keys, bearer=bearer, api_key=api_key)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    """A dependency that lets through only roles holding `permission` (admin.api.roles)."""

    def dependency(principal: CurrentPrincipal) -> Principal:
        return auth.require(principal, permission)

    return dependency


CallReader = Annotated[Principal, Depends(require(Permission.READ_CALLS))]
MetricsReader = Annotated[Principal, Depends(require(Permission.READ_METRICS))]
LinesReader = Annotated[Principal, Depends(require(Permission.READ_LINES))]
LinesManager = Annotated[Principal, Depends(require(Permission.MANAGE_LINES))]
DisclosuresReader = Annotated[Principal, Depends(require(Permission.READ_DISCLOSURES))]
DisclosuresManager = Annotated[Principal, Depends(require(Permission.MANAGE_DISCLOSURES))]
UsersManager = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
ApiKeysManager = Annotated[Principal, Depends(require(Permission.MANAGE_API_KEYS))]
AuditReader = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]
HoldsManager = Annotated[Principal, Depends(require(Permission.PLACE_HOLDS))]
CallerEraser = Annotated[Principal, Depends(require(Permission.ERASE_CALLERS))]
