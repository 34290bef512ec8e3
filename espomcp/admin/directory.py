"""Human names for FGA subjects and objects, and FGA users from what an admin types.

FGA knows users as ``user:<EspoCRM user id>``; admins think "alice". ``Directory`` asks EspoCRM
(through the service account's client) for names, one batched ``in`` query per entity type and
page, cached briefly. Names are decoration only: when EspoCRM is down or absent the raw ids are
shown and name lookups report a clear error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from espomcp.admin.tuples_query import InputError, check_user

log = logging.getLogger("espomcp.admin")
CACHE_TTL = 60.0
CACHE_MAX = 5000
NAME_FIELDS = {"User": ("userName", "name"), "Team": ("name",)}


class Directory:
    """Looks names up through ``crm`` (an ``EspoClient`` or None) for ``entity_types``."""

    def __init__(self, crm: Any, entity_types: Iterable[str]) -> None:
        self.crm = crm
        self.by_fga_type = {t.lower(): t for t in entity_types}
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    # --- input --------------------------------------------------------------------------
    def resolve_user(self, text: str, field: str = "user") -> str:
        """An FGA user string from ``user:ID``, ``team:ID#member``, ``type:*``, a bare EspoCRM
        user id, a userName (``alice``) or an email (``alice@example.com``)."""
        text = text.strip()
        if ":" in text:
            return check_user(text, field)
        if not text:
            raise InputError(f"{field} is empty")
        attribute = "emailAddress" if "@" in text else "userName"
        found = self._find_user(attribute, text)
        if found:
            return f"user:{found}"
        if attribute == "userName" and text.isalnum() and len(text) >= 8:
            return check_user(f"user:{text}", field)  # a bare EspoCRM id
        raise InputError(f"no EspoCRM user is called {text!r}; type user:<EspoCRM id> instead")

    def resolve_team(self, text: str) -> str:
        """A team id from ``team:ID``, an id, or a team name (``Sales``) known to EspoCRM."""
        text = text.strip().removeprefix("team:")
        if self.crm is not None and "team" in self.by_fga_type and text:
            try:
                page = self.crm.list_records(
                    "Team", where=[{"type": "equals", "attribute": "name", "value": text}],
                    select=["id", "name"], max_size=2)
            except Exception as exc:  # fall back to reading the text as an id
                log.warning("team lookup failed: %s", type(exc).__name__)
            else:
                if len(page.list) == 1:
                    return str(page.list[0]["id"])
        if not text or len(text) > 100 or any(c in text for c in ":#* "):
            raise InputError("team must be a team name or id (or team:ID)")
        return text

    def _find_user(self, attribute: str, value: str) -> str | None:
        if self.crm is None or "user" not in self.by_fga_type:
            return None
        try:
            page = self.crm.list_records(
                "User", where=[{"type": "equals", "attribute": attribute, "value": value}],
                select=["id", "userName", "name"], max_size=2)
        except Exception as exc:  # names are optional: EspoCRM down must not break the console
            log.warning("user lookup failed: %s", type(exc).__name__)
            raise InputError(f"cannot look up {value!r} in EspoCRM right now; "
                             "type user:<EspoCRM id> instead") from exc
        rows = page.list
        if len(rows) == 1:
            self._remember(f"user:{rows[0]['id']}", _name("User", rows[0]))
            return str(rows[0]["id"])
        return None

    # --- output -------------------------------------------------------------------------
    def labels(self, values: Iterable[str]) -> dict[str, str]:
        """``{fga string: readable name}`` for those whose record could be found."""
        wanted: dict[str, set[str]] = {}
        out: dict[str, str] = {}
        now = time.monotonic()
        for value in values:
            obj = value.split("#", 1)[0]
            fga_type, _, ident = obj.partition(":")
            if not ident or ident == "*" or fga_type not in self.by_fga_type:
                continue
            with self._lock:
                hit = self._cache.get(obj)
            if hit and now - hit[0] < CACHE_TTL:
                if hit[1]:
                    out[obj] = hit[1]
            else:
                wanted.setdefault(self.by_fga_type[fga_type], set()).add(ident)
        for entity_type, ids in wanted.items():
            for obj, name in self._fetch(entity_type, sorted(ids)).items():
                if name:
                    out[obj] = name
        return out

    def _fetch(self, entity_type: str, ids: list[str]) -> dict[str, str]:
        if self.crm is None:
            return {}
        fields = NAME_FIELDS.get(entity_type, ("name",))
        found: dict[str, str] = {}
        try:
            for start in range(0, len(ids), 100):
                chunk = ids[start:start + 100]
                page = self.crm.list_records(
                    entity_type, where=[{"type": "in", "attribute": "id", "value": chunk}],
                    select=["id", *fields], max_size=len(chunk))
                for row in page.list:
                    found[f"{entity_type.lower()}:{row['id']}"] = _name(entity_type, row)
        except Exception as exc:  # decoration only; the raw ids stay visible
            log.warning("name lookup for %s failed: %s", entity_type, type(exc).__name__)
        # misses are cached too, so an unreachable EspoCRM is asked at most once a minute
        for ident in ids:
            obj = f"{entity_type.lower()}:{ident}"
            self._remember(obj, found.get(obj, ""))
        return found

    def _remember(self, obj: str, name: str) -> None:
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[obj] = (time.monotonic(), name)


def _name(entity_type: str, row: dict[str, Any]) -> str:
    fields = NAME_FIELDS.get(entity_type, ("name",))
    return str(next((row[f] for f in fields if row.get(f)), ""))
