"""The admin API: FastAPI over the storage layer, with people's tokens, systems' keys and roles.

`create_app` builds it; `admin.api.server` serves it (`parley api`). docs/api.md describes it.
"""

from admin.api.app import create_app, create_app_from_settings

__all__ = ["create_app", "create_app_from_settings"]
