"""Fine-grained enforcement for tools: per-record checks and search filtering (FGA layer 3).

Every decision fails closed: an FGA backend error denies, with a message saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.mcp.registry import ToolError

if TYPE_CHECKING:
    from espomcp.auth.identity import EspoUser
    from espomcp.mcp.registry import ToolContext

ORGANIZATION = "organization:main"
# Readable sets up to this size are pushed into the EspoCRM query as an ``id in`` filter
# (exact totals, full pages, one request); larger ones are over-fetched and filtered.
# Chosen by measurement (bench/README.md, `make bench`): pushdown beat over-fetch at every
# size measured (200 to 500 ids: 2 to 60 times faster), so the bound is the URL: EspoCRM
# lists are GET requests and each id costs ~26 bytes of request line once JSON-quoted and
# URL-encoded; 250 ids stay under the common 8 KB request-line limits (Apache 8,190 bytes,
# nginx 8 KB; gunicorn's default is only 4,094) with room for the user's own filters.
PUSHDOWN_LIMIT = 250
LIST_OBJECTS_CAP = 1000


def fga_type(entity_type: str) -> str:
    """FGA type name of an EspoCRM entity type (``Contact`` → ``contact``)."""
    return entity_type.lower()


def fga_object(entity_type: str, record_id: str) -> str:
    return f"{fga_type(entity_type)}:{record_id}"


def fga_user(user: EspoUser) -> str:
    return f"user:{user.id}"


UNAVAILABLE = ("The permission service is unavailable, so access is denied for safety. "
               "Try again shortly; if it persists, tell your administrator.")


@dataclass(frozen=True)
class ReadableSet:
    """What a user may read of one type: everything (admins), or a known set of ids."""

    everything: bool
    ids: frozenset[str] = frozenset()
    complete: bool = True  # False when ListObjects hit its cap (ids is a subset)


class Authorizer:
    """Answers FGA questions for the calling user of one tool call."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.backend = ctx.services.fga
        self.user = ctx.services.identity.require(ctx.principal)
        self.subject = fga_user(self.user)

    # --- single records ------------------------------------------------------------------
    def allowed(self, relation: str, entity_type: str, record_id: str) -> bool:
        try:
            return bool(self.backend.check(self.subject, relation, fga_object(entity_type,
                                                                            record_id)))
        except (FgaUnavailable, FgaError) as exc:
            self._deny("fga-unavailable", str(exc))
            raise ToolError(UNAVAILABLE) from exc

    def require(self, relation: str, entity_type: str, record_id: str) -> None:
        """Raise a ToolError that names the missing permission without revealing existence."""
        if not self.allowed(relation, entity_type, record_id):
            self._deny("fga", f"{relation} on {entity_type} {record_id}")
            verb = relation.removeprefix("can_")
            raise ToolError(
                f"Permission denied: you may not {verb} {entity_type} {record_id} "
                f"(missing permission '{relation}'; the record may also not exist).",
                {"permission": relation, "entity_type": entity_type, "id": record_id},
            )

    def check_many(self, relation: str, items: Sequence[tuple[str, str]]) -> list[bool]:
        """Batch-check ``relation`` on (entity_type, id) pairs, in order."""
        if not items:
            return []
        checks = [(self.subject, relation, fga_object(t, i)) for t, i in items]
        try:
            return [bool(x) for x in self.backend.batch_check(checks)]
        except (FgaUnavailable, FgaError) as exc:
            self._deny("fga-unavailable", str(exc))
            raise ToolError(UNAVAILABLE) from exc

    def filter_readable(self, entity_type: str, records: Iterable[dict]) -> list[dict]:
        records = list(records)
        flags = self.check_many("can_read", [(entity_type, r["id"]) for r in records])
        return [r for r, ok in zip(records, flags, strict=True) if ok]

    # --- search ----------------------------------------------------------------------------
    def is_admin(self) -> bool:
        try:
            return bool(self.backend.check(self.subject, "admin", ORGANIZATION))
        except (FgaUnavailable, FgaError) as exc:
            self._deny("fga-unavailable", str(exc))
            raise ToolError(UNAVAILABLE) from exc

    def readable(self, entity_type: str) -> ReadableSet:
        """Everything for organization admins; otherwise the ids ListObjects returns."""
        if self.is_admin():
            return ReadableSet(everything=True)
        try:
            objects = self.backend.list_objects(self.subject, "can_read", fga_type(entity_type))
        except (FgaUnavailable, FgaError) as exc:
            self._deny("fga-unavailable", str(exc))
            raise ToolError(UNAVAILABLE) from exc
        prefix = fga_type(entity_type) + ":"
        ids = frozenset(o[len(prefix):] for o in objects if o.startswith(prefix))
        return ReadableSet(everything=False, ids=ids, complete=len(objects) < LIST_OBJECTS_CAP)

    def _deny(self, layer: str, reason: str) -> None:
        self.ctx.audit.update(decision="deny", layer="fga", reason=reason[:300],
                              detail=layer)
