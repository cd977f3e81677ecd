"""Who may do what: the one table of the API's permissions by role.

Every route names one permission (admin.api.deps.require); a role either has it or gets 403.
Supervisors read calls through a scope instead of a permission: they see live and escalated
calls only (admin.api.call_queries.visible_to), and any other call is "not found" to them.
They command calls through a scope too: only calls of lines whose queue is one of theirs, and
only as themselves (admin.api.call_control_access).
"""

from __future__ import annotations

import enum

from admin.models import Role


class Permission(enum.StrEnum):
    READ_CALLS = "read_calls"  # list and detail; supervisors within their scope
    READ_ALL_CALLS = "read_all_calls"  # no scope: finished calls that never escalated too
    READ_METRICS = "read_metrics"
    READ_LINES = "read_lines"
    MANAGE_LINES = "manage_lines"
    READ_DISCLOSURES = "read_disclosures"
    MANAGE_DISCLOSURES = "manage_disclosures"
    MANAGE_USERS = "manage_users"  # list, create, change role, deactivate
    MANAGE_API_KEYS = "manage_api_keys"  # list, issue, revoke
    READ_AUDIT = "read_audit"  # list and verify the chain
    WATCH_LIVE = "watch_live"  # the /live event stream
    WATCH_BOARD = "watch_board"  # the dashboard's live board and call views (read only)
    COMMAND_CALLS = "command_calls"  # hold, mode, whisper...; supervisors in their queues
    COMMAND_ALL_CALLS = "command_all_calls"  # no scope: every call, for every supervisor
    READ_QUEUES = "read_queues"  # the live queues and supervisors (GET /queues)
    PLACE_HOLDS = "place_holds"  # place, release and list legal holds (legal, auditors)
    ERASE_CALLERS = "erase_callers"  # GDPR erasure of a caller, and its receipts


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SUPERVISOR: frozenset(
        {
            Permission.READ_CALLS,
            Permission.READ_METRICS,
            Permission.READ_LINES,
            Permission.WATCH_LIVE,
            Permission.WATCH_BOARD,
            Permission.COMMAND_CALLS,
            Permission.READ_QUEUES,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Permission.READ_CALLS,
            Permission.READ_ALL_CALLS,
            Permission.READ_METRICS,
            Permission.READ_LINES,
            Permission.READ_DISCLOSURES,
            Permission.READ_AUDIT,
            Permission.READ_QUEUES,
            Permission.WATCH_BOARD,
            Permission.PLACE_HOLDS,  # an auditor (legal) places and releases holds
        }
    ),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]
