"""OAuth scopes: ``espocrm:<area>:read|write|delete`` per CRM area, plus ``espocrm:admin``."""

from __future__ import annotations

from typing import Literal

Action = Literal["read", "write", "delete"]

AREA_BY_ENTITY = {
    "Contact": "contacts",
    "Account": "accounts",
    "Lead": "leads",
    "Opportunity": "opportunities",
    "Case": "cases",
    "Meeting": "meetings",
    "Call": "calls",
    "Task": "tasks",
    "Note": "notes",
    "User": "users",
    "Team": "teams",
}
AREAS = tuple(AREA_BY_ENTITY.values())
ACTIONS: tuple[Action, ...] = ("read", "write", "delete")
ADMIN_SCOPE = "espocrm:admin"

ALL_SCOPES = (*tuple(f"espocrm:{area}:{action}" for area in AREAS for action in ACTIONS), ADMIN_SCOPE)
READ_SCOPES = frozenset(f"espocrm:{area}:read" for area in AREAS)
# The minimal set a client asks for first (RFC 9728 scopes_supported, 401 challenges);
# writes and deletes come by step-up.
BASIC_SCOPES = tuple(sorted(READ_SCOPES))

DESCRIPTIONS = {
    **{f"espocrm:{area}:read": f"Read {area} in EspoCRM" for area in AREAS},
    **{f"espocrm:{area}:write": f"Create and edit {area} in EspoCRM" for area in AREAS},
    **{f"espocrm:{area}:delete": f"Delete {area} in EspoCRM" for area in AREAS},
    ADMIN_SCOPE: "Administer espomcp permissions (admin console, relationship changes)",
}


def scope_for(entity_type: str, action: Action) -> str:
    """The scope needed to ``action`` records of ``entity_type`` (unknown types need admin)."""
    area = AREA_BY_ENTITY.get(entity_type)
    return f"espocrm:{area}:{action}" if area else ADMIN_SCOPE
