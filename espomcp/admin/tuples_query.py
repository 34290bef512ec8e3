"""Browsing relationship tuples through any FGA backend's ``read``, one bounded page at a time.

A filter (user, team, object type, object id, relation) becomes a list of backend reads; a page
walks them in order and its cursor ``"<read index>.<backend token>"`` resumes exactly where it
stopped. Reads OpenFGA cannot serve directly (an object type without a user) scan the store
with a fixed budget per page, so every request stays fast on large stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from espomcp.fga.errors import FgaError
from espomcp.fga.tuples import MAX_LENGTH, OBJECT_RE, RELATION_RE, USER_RE, TupleKey

SCAN_BUDGET = 2000    # tuples examined per page when the backend cannot filter for us
BACKEND_PAGE = 100    # OpenFGA's maximum read page size


class InputError(ValueError):
    """A form value is malformed; the message names the field and the expected shape."""


def check_object(value: str, field: str = "object") -> str:
    value = value.strip()
    if not value or len(value) > MAX_LENGTH or not OBJECT_RE.match(value):
        raise InputError(f"{field} must look like type:id (for example contact:64f1c2), "
                         f"not {value[:60]!r}")
    return value


def check_relation(value: str, field: str = "relation") -> str:
    value = value.strip()
    if not value or len(value) > 100 or not RELATION_RE.match(value):
        raise InputError(f"{field} must be a relation name such as owner or can_read")
    return value


def check_user(value: str, field: str = "user") -> str:
    value = value.strip()
    if not value or len(value) > MAX_LENGTH or not USER_RE.match(value):
        raise InputError(f"{field} must look like user:ID, team:ID#member or user:*, "
                         f"not {value[:60]!r}")
    return value


def check_type(value: str, types: list[str]) -> str:
    value = value.strip().lower()
    if value and value not in types:
        raise InputError(f"unknown object type {value!r}; the model has {', '.join(types)}")
    return value


@dataclass(frozen=True)
class TupleFilter:
    """What the Relationships page shows; every field already validated ('' = any)."""

    user: str = ""
    team: str = ""          # team id: its members and the records it is the team of
    object_type: str = ""
    object_id: str = ""
    relation: str = ""

    @property
    def key(self) -> str:
        return "|".join((self.user, self.team, self.object_type, self.object_id, self.relation))

    def reads(self, model: dict[str, Any]) -> list[dict[str, Any]]:
        """Backend read filters whose union is this filter (each may carry a ``scan`` type)."""
        rel = self.relation or None
        obj = f"{self.object_type}:{self.object_id}" if self.object_type and self.object_id else ""
        if self.team:
            team_obj = f"team:{self.team}"
            if self.user:
                return [{"user": self.user, "relation": rel, "object": team_obj}]
            reads = [{"user": None, "relation": rel, "object": team_obj}]
            for t in _types_with_user_type(model, "team"):
                if not self.object_type or t == self.object_type:
                    if obj:
                        reads.append({"user": team_obj, "relation": rel, "object": obj})
                    else:
                        reads.append({"user": team_obj, "relation": rel, "object": f"{t}:"})
                        reads.append({"user": team_obj + "#member", "relation": rel,
                                      "object": f"{t}:"})
            return reads
        if obj:
            return [{"user": self.user or None, "relation": rel, "object": obj}]
        if self.user:
            user_type = self.user.split(":", 1)[0]
            types = [self.object_type] if self.object_type else _types_with_user_type(
                model, user_type)
            return [{"user": self.user, "relation": rel, "object": f"{t}:"} for t in types]
        if self.object_type:
            return [{"scan": self.object_type, "relation": rel}]
        if rel:
            return [{"scan": "", "relation": rel}]
        return [{"user": None, "relation": None, "object": None}]


def _types_with_user_type(model: dict[str, Any], user_type: str) -> list[str]:
    """Object types with a relation that may hold ``user_type`` directly (or as a userset)."""
    out = []
    for td in model.get("type_definitions", []):
        relations = (td.get("metadata") or {}).get("relations") or {}
        if any(r.get("type") == user_type for meta in relations.values()
               for r in (meta or {}).get("directly_related_user_types") or []):
            out.append(td["type"])
    return out


def read_page(backend: Any, reads: list[dict[str, Any]], page_size: int,
              cursor: str = "") -> tuple[list[TupleKey], str]:
    """Up to ``page_size`` tuples of the union of ``reads`` from ``cursor``; next cursor or ''."""
    index, token = _parse_cursor(cursor, len(reads))
    rows: list[TupleKey] = []
    budget = SCAN_BUDGET
    while index < len(reads) and len(rows) < page_size:
        spec = reads[index]
        if "scan" in spec:
            page, token, used = _scan(backend, spec, page_size - len(rows), token, budget)
            budget -= used
        else:
            page, token = backend.read(user=spec["user"], relation=spec["relation"],
                                       object=spec["object"],
                                       page_size=min(BACKEND_PAGE, page_size - len(rows)),
                                       continuation_token=token or None)
        rows.extend(page)
        if not token:
            index, token = index + 1, ""
        elif "scan" in spec and budget <= 0:
            break
    if index >= len(reads):
        return rows, ""
    return rows, f"{index}.{token}"


def _scan(backend: Any, spec: dict[str, Any], wanted: int, cursor: str, budget: int
          ) -> tuple[list[TupleKey], str, int]:
    """Filter the unfiltered read client-side; stop at ``wanted`` rows or ``budget`` tuples.

    The cursor is ``"<skip>~<backend token>"``: the backend page to re-read and how many of
    its matches were already shown, so pages are exact and nothing is skipped or repeated."""
    prefix = f"{spec['scan']}:" if spec["scan"] else ""
    rel, user = spec.get("relation"), spec.get("user")
    skip_text, _, token = cursor.partition("~")
    skip = int(skip_text) if skip_text.isdigit() else 0
    out: list[TupleKey] = []
    used = 0
    while True:
        page, next_token = backend.read(page_size=BACKEND_PAGE, continuation_token=token or None)
        used += len(page)
        matches = [k for k in page if k.object.startswith(prefix)
                   and (not rel or k.relation == rel) and (not user or k.user == user)][skip:]
        room = wanted - len(out)
        if len(matches) > room:
            out.extend(matches[:room])
            return out, f"{skip + room}~{token}", used
        out.extend(matches)
        skip, token = 0, next_token
        if not token:
            return out, "", used
        if len(out) >= wanted or used >= budget:
            return out, f"0~{token}", used


def _parse_cursor(cursor: str, count: int) -> tuple[int, str]:
    if not cursor:
        return 0, ""
    head, _, token = cursor.partition(".")
    if not head.isdigit() or int(head) > count:
        raise InputError("the page link is stale or malformed; start from the first page")
    return int(head), token


def safe_read_page(backend: Any, flt: TupleFilter, page_size: int, cursor: str
                   ) -> tuple[list[TupleKey], str]:
    """``read_page`` for ``flt``; a backend refusing a type-only read falls back to a scan."""
    model = backend.model()
    reads = flt.reads(model)
    try:
        return read_page(backend, reads, page_size, cursor)
    except FgaError:
        if not flt.user or flt.object_id:
            raise
    scans = [{"scan": r["object"].rstrip(":"), "relation": r["relation"], "user": r["user"]}
             for r in reads]
    return read_page(backend, scans, page_size, cursor)
