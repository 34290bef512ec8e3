"""Mapping a token's subject to the EspoCRM user the server acts for.

Rule: when ``settings.identity_claim`` is set and present in the token, its value is an
EspoCRM user id or ``userName``; otherwise the token's ``email`` is looked up among EspoCRM
users. Only active ``regular``/``admin`` users map; an email shared by several active users or
explicitly unverified (``email_verified: false``) maps to nobody. Results are cached with a TTL
in a bounded LRU (failures for a shorter time; an unreachable CRM is never cached).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from espomcp.espocrm.errors import EspoError, InvalidInput, NotFound, ServiceAccountError, Unavailable
from espomcp.mcp.registry import ToolError

if TYPE_CHECKING:
    from espomcp.auth.principal import Principal
    from espomcp.services import Services

USER_FIELDS = ["id", "userName", "name", "emailAddress", "type", "isActive", "defaultTeamId",
               "teamsIds"]
MAPPABLE_TYPES = ("regular", "admin", "super-admin")
ADMIN_TYPES = ("admin", "super-admin")
_ID_SHAPE = re.compile(r"[0-9a-f]{17}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_USER_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,100}")
UNAVAILABLE = ("EspoCRM unavailable: your EspoCRM user could not be looked up, so nothing was "
               "done. Try again shortly.")


@dataclass(frozen=True)
class EspoUser:
    """The EspoCRM user a caller acts as."""

    id: str
    user_name: str
    name: str
    email: str | None
    default_team_id: str | None
    team_ids: tuple[str, ...]
    is_admin: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["team_ids"] = list(self.team_ids)
        return data


class NotMapped(Exception):
    """No EspoCRM user for this identity; ``str(exc)`` explains why (safe to show)."""


class IdentityMapper:
    """Resolves principals to ``EspoUser``s through ``services.crm`` (read lazily)."""

    def __init__(self, services: Services, *, ttl_seconds: float = 300.0,
                 negative_ttl_seconds: float = 30.0, max_entries: int = 2048) -> None:
        self.services = services
        self.ttl_seconds = ttl_seconds
        self.negative_ttl_seconds = negative_ttl_seconds
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], tuple[float, EspoUser | str]] = OrderedDict()
        self._lock = threading.Lock()

    # --- public contract -------------------------------------------------------------
    def resolve(self, principal: Principal) -> EspoUser | None:
        """The mapped user, or None when unmapped; ``ToolError`` when EspoCRM is unreachable."""
        try:
            return self._lookup(principal)
        except NotMapped:
            return None

    def require(self, principal: Principal) -> EspoUser:
        """The mapped user, or ``ToolError`` saying clearly why there is none."""
        try:
            return self._lookup(principal)
        except NotMapped as exc:
            raise ToolError(f"Your sign-in ({principal.sub}) is not mapped to an EspoCRM user: "
                            f"{exc}. Ask an administrator to link your account (same email "
                            "address in EspoCRM, or the configured identity claim).") from None

    def describe(self, principal: Principal) -> dict[str, Any] | None:
        """For ``whoami``: the user as a dict, or ``{"mapped": False, "reason": ...}``."""
        try:
            user = self._lookup(principal)
        except NotMapped as exc:
            return {"mapped": False, "reason": str(exc)}
        except ToolError as exc:
            return {"mapped": False, "reason": exc.message}
        return {"mapped": True, **user.to_dict()}

    def cached_user_id(self, principal: Principal) -> str | None:
        """The mapped user id if it is cached (never calls EspoCRM; for the audit log)."""
        entry = self._cache_get(self._key(principal))
        return entry.id if isinstance(entry, EspoUser) else None

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    # --- lookup ----------------------------------------------------------------------
    def _key(self, principal: Principal) -> tuple[str, str]:
        claim = self.services.settings.identity_claim
        value = principal.claims.get(claim) if claim else None
        return principal.sub, str(value) if value is not None else (principal.email or "")

    def _lookup(self, principal: Principal) -> EspoUser:
        key = self._key(principal)
        cached = self._cache_get(key)
        if isinstance(cached, EspoUser):
            return cached
        if isinstance(cached, str):
            raise NotMapped(cached)
        try:
            user = self._find(principal)
        except NotMapped as exc:
            self._cache_put(key, str(exc), self.negative_ttl_seconds)
            raise
        except (Unavailable, ServiceAccountError) as exc:
            raise ToolError(UNAVAILABLE) from exc
        except EspoError as exc:
            raise ToolError(f"EspoCRM unavailable for the user lookup: {exc.message}") from exc
        self._cache_put(key, user, self.ttl_seconds)
        return user

    def _find(self, principal: Principal) -> EspoUser:
        crm = self.services.crm
        if crm is None:
            raise ToolError(UNAVAILABLE)
        if "User" not in self.services.settings.entity_types:
            raise ToolError("Users cannot be mapped to EspoCRM users because User is not in "
                            "ESPOMCP_ENTITY_TYPES; an operator must add it.")
        claim = self.services.settings.identity_claim
        value = principal.claims.get(claim) if claim else None
        if isinstance(value, str) and value.strip():
            return self._by_claim(crm, claim, value.strip())
        email = principal.email
        if not email:
            raise NotMapped("the token carries no email address"
                            + (f" and no {claim!r} claim" if claim else ""))
        if principal.claims.get("email_verified") is False:
            raise NotMapped(f"the email address {email} is not verified")
        rows = crm.list_records("User", where=[{"type": "equals", "attribute": "emailAddress",
                                                "value": email}],
                                select=USER_FIELDS, max_size=5).list
        rows = [r for r in rows if r.get("isActive", True) and r.get("type", "regular")
                in MAPPABLE_TYPES]
        if not rows:
            raise NotMapped(f"no active EspoCRM user has the email address {email}")
        if len(rows) > 1:
            raise NotMapped(f"several EspoCRM users share the email address {email}")
        return self._details(crm, rows[0]["id"])

    def _by_claim(self, crm: Any, claim: str, value: str) -> EspoUser:
        if _ID_SHAPE.fullmatch(value):
            try:
                return self._details(crm, value)
            except NotMapped:
                pass  # a userName may look like an id; try it as a name too
        if not _USER_NAME.fullmatch(value):
            raise NotMapped(f"the {claim!r} claim is neither an EspoCRM user id nor a userName")
        rows = crm.list_records("User", where=[{"type": "equals", "attribute": "userName",
                                                "value": value}],
                                select=["id"], max_size=2).list
        if not rows:
            raise NotMapped(f"no EspoCRM user has the id or userName {value!r} "
                            f"(from the {claim!r} claim)")
        return self._details(crm, rows[0]["id"])

    def _details(self, crm: Any, user_id: str) -> EspoUser:
        try:
            record = crm.get_record("User", user_id)
        except (NotFound, InvalidInput):
            raise NotMapped(f"no EspoCRM user has the id {user_id!r}") from None
        if not record.get("isActive", True):
            raise NotMapped(f"the EspoCRM user {record.get('userName')!r} is inactive")
        kind = record.get("type", "regular")
        if kind not in MAPPABLE_TYPES:
            raise NotMapped(f"the EspoCRM user {record.get('userName')!r} is a {kind} user, "
                            "which cannot act for people")
        teams = record.get("teamsIds") or []
        return EspoUser(
            id=str(record["id"]),
            user_name=str(record.get("userName") or ""),
            name=str(record.get("name") or record.get("userName") or ""),
            email=record.get("emailAddress") or None,
            default_team_id=record.get("defaultTeamId") or None,
            team_ids=tuple(str(t) for t in teams if isinstance(t, str)),
            is_admin=kind in ADMIN_TYPES,
        )

    # --- cache -----------------------------------------------------------------------
    def _cache_get(self, key: tuple[str, str]) -> EspoUser | str | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= time.monotonic():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return value

    def _cache_put(self, key: tuple[str, str], value: EspoUser | str, ttl: float) -> None:
        with self._lock:
            self._cache[key] = (time.monotonic() + ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
