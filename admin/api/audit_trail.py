"""The audit entry every change made through the API appends, in the change's transaction."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from admin import audit
from admin.api.auth import Principal
from admin.api.context import ApiContext


def record(
    session: Session,
    context: ApiContext,
    principal: Principal,
    *,
    action: str,
    target: str,
    details: Mapping[str, object] | None = None,
) -> None:
    audit.append(
        session,
        key=context.keys.audit_hmac,
        actor=principal.actor,
        action=action,
        target=target,
        details={"via": principal.via, **(details or {})},
    )
