"""Tuple lifecycle of records changed by tools: what a change implies, written or queued.

The tuples come from the one mapping in ``espomcp.sync.mapping``; writes go through the
outbox's ``TupleWriter`` so a failed write is retried, never dropped, and the tool result says
what happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from espomcp.authz import fga_object
from espomcp.fga.tuples import TupleKey
from espomcp.sync.mapping import diff, tuples_for_record

if TYPE_CHECKING:
    from espomcp.mcp.registry import ToolContext


def sync_record(ctx: ToolContext, entity_type: str, before: dict[str, Any] | None,
                after: dict[str, Any] | None, *, owner_id: str | None = None) -> dict[str, Any]:
    """Write the tuple difference between two states of a record; report it for the result.

    ``owner_id`` names the person who created the record through a tool (EspoCRM records
    the service account as creator, so the mapping cannot know the human).
    """
    old = tuples_for_record(entity_type, before) if before else set()
    new = tuples_for_record(entity_type, after) if after else set()
    if after and owner_id:
        new.add(TupleKey(f"user:{owner_id}", "owner", fga_object(entity_type, after["id"])))
    if before and after and owner_id is None:
        # keep an owner recorded earlier (by a tool or the backfill)
        new |= {t for t in _stored_owners(ctx, entity_type, after["id"])}
    writes, deletes = diff(old, new)
    return apply(ctx, writes, deletes)


def apply(ctx: ToolContext, writes: set[TupleKey] | list[TupleKey],
          deletes: set[TupleKey] | list[TupleKey]) -> dict[str, Any]:
    """Apply tuple changes now, or queue them durably; return ``{synced, message}``."""
    if not writes and not deletes:
        return {"synced": True, "message": "no permission changes"}
    writer = ctx.services.outbox
    outcome = writer.apply(ctx.services.fga, sorted(writes, key=str), sorted(deletes, key=str))
    if outcome.applied:
        return {"synced": True, "message": f"{len(writes)} access rule(s) written, "
                f"{len(deletes)} removed"}
    ctx.audit["permissions"] = "queued"
    return {"synced": False, "message": "The CRM change succeeded, but recording who may "
            f"access it is delayed ({outcome.message}); {outcome.queued} change(s) are queued "
            "and will be retried automatically. Until then the new access may not apply."}


def _stored_owners(ctx: ToolContext, entity_type: str, record_id: str) -> set[TupleKey]:
    try:
        tuples, _ = ctx.services.fga.read(relation="owner",
                                          object=fga_object(entity_type, record_id))
    except Exception:  # reading is best effort: the owner is then re-derived by reconcile
        return set()
    return {TupleKey(t.user, t.relation, t.object) for t in tuples}
