"""The admin API: FastAPI over the storage layer, with people's tokens, systems' keys and roles.

`create_app` builds it; `admin.api.server` serves it (`parley api`). docs/api.md describes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admin.api.app import create_app, create_app_from_settings

__all__ = ["create_app", "create_app_from_settings"]


def __getattr__(name: str) -> Any:
    # The app (FastAPI and every route: a second to import) only when it is asked for, so the
    # command line's other commands, which import admin.api.commands, start at once.
    if name in __all__:
        from admin.api import app

        return getattr(app, name)
    raise AttributeError(f"module 'admin.api' has no attribute {name!r}")
