"""The one mapping from EspoCRM facts to relationship tuples (see ``fga/README.md``).

Every writer of relationship tuples (tools, webhooks, backfill, reconcile) derives them here, so
FGA follows the CRM whoever changes it. The relation names and user types below follow
``fga/model.fga`` exactly; ``tests/test_sync_mapping.py`` fails when the two drift.

Ids: ``<lower-cased entity type>:<EspoCRM id>``; people are ``user:<EspoCRM user id>``; the
single organization is ``organization:main``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from espomcp.fga.tuples import TupleKey

ORGANIZATION = "organization:main"

# Relations written on record objects, per type (a type absent here cannot be mapped).
_RECORD = frozenset({"organization", "owner", "assignee", "team", "collaborator"})
_RECORD_WITH_PARENT = _RECORD | {"parent"}
RECORD_RELATIONS: dict[str, frozenset[str]] = {
    "account": _RECORD,
    "lead": _RECORD,
    "contact": _RECORD_WITH_PARENT,
    "opportunity": _RECORD_WITH_PARENT,
    "case": _RECORD_WITH_PARENT,
    "meeting": _RECORD_WITH_PARENT,
    "call": _RECORD_WITH_PARENT,
    "task": _RECORD_WITH_PARENT,
    "note": frozenset({"organization", "owner", "team", "collaborator", "parent"}),
}

# Relations this package owns on every object type; anything else in the store (e.g. a grant
# written by hand) is never deleted by sync.
MANAGED_RELATIONS: dict[str, frozenset[str]] = {
    **RECORD_RELATIONS,
    "team": frozenset({"organization", "member", "manager"}),
    "user": frozenset({"organization"}),
    "organization": frozenset({"admin", "member"}),
}

# Where a record's parent comes from: link attributes (single id / id lists) to a fixed type,
# or the linkParent field (parentType + parentId) restricted to the types the model allows.
_ACCOUNT_PARENT = {"accountId": "account"}
PARENT_LINKS: dict[str, dict[str, str]] = {
    "contact": {"accountId": "account", "accountsIds": "account"},
    "opportunity": _ACCOUNT_PARENT,
    "case": _ACCOUNT_PARENT,
}
_ACTIVITY_PARENTS = frozenset({"account", "contact", "lead", "opportunity", "case"})
PARENT_TYPES: dict[str, frozenset[str]] = {
    "meeting": _ACTIVITY_PARENTS,
    "call": _ACTIVITY_PARENTS,
    "task": _ACTIVITY_PARENTS,
    "note": _ACTIVITY_PARENTS | {"meeting", "call", "task"},
}
# Attendees count as collaborators (README: Meeting/Call/Note ``usersIds``).
_ATTENDEE_TYPES = frozenset({"meeting", "call", "note"})

# Attributes each type's tuples depend on (``select`` for list calls; reference §6).
_COMMON = ("id", "createdById", "assignedUserId", "teamsIds")
_PARENT = ("parentType", "parentId")
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "account": _COMMON,
    "lead": _COMMON,
    "contact": (*_COMMON, "accountId", "accountsIds"),
    "opportunity": (*_COMMON, "accountId"),
    "case": (*_COMMON, "accountId", "collaboratorsIds"),
    "meeting": (*_COMMON, "usersIds", *_PARENT),
    "call": (*_COMMON, "usersIds", *_PARENT),
    "task": (*_COMMON, "collaboratorsIds", *_PARENT),
    "note": ("id", "createdById", "teamsIds", "usersIds", *_PARENT),
    "user": ("id", "type", "isActive", "teamsIds", "teamsColumns"),
    "team": ("id",),
}

ACTIVE_USER_TYPES = frozenset({"regular", "admin", "super-admin"})
ADMIN_USER_TYPES = frozenset({"admin", "super-admin"})
MANAGER_ROLE = "manager"

_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,99}$")


class MappingError(ValueError):
    """The record cannot be expressed as tuples (unknown type, missing or malformed id)."""


def object_id(entity_type: str, record_id: str) -> str:
    """``<lower-cased entity type>:<id>``; raises MappingError for a malformed type or id."""
    if not isinstance(entity_type, str) or not _TYPE.match(entity_type):
        raise MappingError(f"invalid entity type {entity_type!r}")
    if not _valid_id(record_id):
        raise MappingError(f"invalid {entity_type} id {record_id!r}")
    return f"{entity_type.lower()}:{record_id}"


def fga_type(entity_type: str) -> str:
    """The FGA type name of an EspoCRM entity type."""
    return entity_type.lower()


def is_mapped_type(entity_type: str) -> bool:
    """Whether tuples can be derived for ``entity_type`` (records, User, Team)."""
    return fga_type(entity_type) in MANAGED_RELATIONS and fga_type(entity_type) != "organization"


def attributes_for(entity_type: str) -> list[str]:
    """The attributes ``tuples_for_record`` reads for ``entity_type`` (for ``select``)."""
    return list(ATTRIBUTES.get(fga_type(entity_type), ("id",)))


def tuples_for_record(entity_type: str, record: Mapping[str, Any]) -> set[TupleKey]:
    """All tuples the current state of ``record`` implies (User and Team included).

    Referenced ids that are malformed, and parents of a type the model does not allow, are
    skipped: they cannot grant anything (fail closed). The record's own id must be valid.
    """
    kind = fga_type(entity_type)
    if kind == "user":
        return tuples_for_user(record)
    if kind == "team":
        return tuples_for_team(record)
    relations = RECORD_RELATIONS.get(kind)
    if relations is None:
        raise MappingError(f"entity type {entity_type!r} is not in the authorization model")
    obj = object_id(entity_type, record.get("id"))  # type: ignore[arg-type]
    out = {TupleKey(ORGANIZATION, "organization", obj)}
    for uid in _ids(record.get("createdById")):
        out.add(TupleKey(f"user:{uid}", "owner", obj))
    if "assignee" in relations:
        for uid in _ids(record.get("assignedUserId"), record.get("assignedUsersIds")):
            out.add(TupleKey(f"user:{uid}", "assignee", obj))
    for tid in _ids(record.get("teamsIds")):
        out.add(TupleKey(f"team:{tid}", "team", obj))
    collaborators = [record.get("collaboratorsIds")]
    if kind in _ATTENDEE_TYPES:
        collaborators.append(record.get("usersIds"))
    for uid in _ids(*collaborators):
        out.add(TupleKey(f"user:{uid}", "collaborator", obj))
    if "parent" in relations:
        out |= {TupleKey(parent, "parent", obj) for parent in _parents(kind, record)}
    return out


def tuples_for_user(user: Mapping[str, Any]) -> set[TupleKey]:
    """Organization membership, admin rights and team membership/management of one user.

    Only active regular and admin users are members of anything; inactive, portal, API and
    system users get no tuples. A team role of "Manager" (``teamsColumns[team].role``) makes
    the user the team's manager (in addition to member).
    """
    uid = user.get("id")
    subject = f"user:{uid}"
    object_id("User", uid)  # type: ignore[arg-type]
    if not _is_active(user):
        return set()
    out = {TupleKey(subject, "member", ORGANIZATION), TupleKey(ORGANIZATION, "organization", subject)}
    if user.get("isAdmin") is True or user.get("type") in ADMIN_USER_TYPES:
        out.add(TupleKey(subject, "admin", ORGANIZATION))
    columns = user.get("teamsColumns") if isinstance(user.get("teamsColumns"), Mapping) else {}
    for tid in _ids(user.get("teamsIds")):
        out.add(TupleKey(subject, "member", f"team:{tid}"))
        column = columns.get(tid)
        if isinstance(column, Mapping) and _is_manager_role(column.get("role")):
            out.add(TupleKey(subject, "manager", f"team:{tid}"))
    return out


def tuples_for_team(team: Mapping[str, Any],
                    members: Iterable[Mapping[str, Any]] | None = None) -> set[TupleKey]:
    """The team's organization tuple, plus membership when ``members`` (the team's ``users``
    link rows, carrying ``teamRole``) is given."""
    obj = object_id("Team", team.get("id"))  # type: ignore[arg-type]
    out = {TupleKey(ORGANIZATION, "organization", obj)}
    for member in members or ():
        uid = member.get("id")
        if not _valid_id(uid) or not _is_active(member):
            continue
        out.add(TupleKey(f"user:{uid}", "member", obj))
        if _is_manager_role(member.get("teamRole")):
            out.add(TupleKey(f"user:{uid}", "manager", obj))
    return out


def is_managed(key: TupleKey) -> bool:
    """Whether sync owns ``key`` (its relation is one this mapping writes on that type)."""
    kind = key.object.split(":", 1)[0]
    return key.relation in MANAGED_RELATIONS.get(kind, frozenset())


def diff(old: Iterable[TupleKey], new: Iterable[TupleKey]) -> tuple[list[TupleKey], list[TupleKey]]:
    """``(writes, deletes)`` turning ``old`` into ``new``, each sorted for stable batches."""
    old_set, new_set = set(old), set(new)
    return sort_keys(new_set - old_set), sort_keys(old_set - new_set)


def sort_keys(keys: Iterable[TupleKey]) -> list[TupleKey]:
    """Tuples in a stable order (object, relation, user)."""
    return sorted(keys, key=lambda k: (k.object, k.relation, k.user))


def _parents(kind: str, record: Mapping[str, Any]) -> set[str]:
    parents: set[str] = set()
    for attribute, parent_type in PARENT_LINKS.get(kind, {}).items():
        parents |= {f"{parent_type}:{pid}" for pid in _ids(record.get(attribute))}
    allowed = PARENT_TYPES.get(kind)
    parent_type, parent_id = record.get("parentType"), record.get("parentId")
    if allowed and isinstance(parent_type, str) and parent_type.lower() in allowed \
            and _valid_id(parent_id):
        parents.add(f"{parent_type.lower()}:{parent_id}")
    return parents


def _ids(*values: Any) -> list[str]:
    """Valid ids from single-id and id-list attributes (None and junk ignored)."""
    out: list[str] = []
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend(item for item in items if _valid_id(item))
    return out


def _valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.match(value)) and ".." not in value


def _is_active(user: Mapping[str, Any]) -> bool:
    return user.get("isActive", True) is not False and user.get("type", "regular") in ACTIVE_USER_TYPES


def _is_manager_role(role: object) -> bool:
    return isinstance(role, str) and role.strip().casefold() == MANAGER_ROLE
