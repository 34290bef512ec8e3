"""Tuple lifecycle of records changed by tools: what a change implies, written or queued.

The desired tuples come from the one mapping (``espomcp.sync.mapping``) and are applied with
the same store diff the webhooks use (``espomcp.sync.refresh.apply_state``). Writes go through
the outbox's ``TupleWriter``: a failed write is queued and retried, never dropped, and the
tool result says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.tuples import TupleKey
from espomcp.sync.mapping import diff, object_id, tuples_for_record
from espomcp.sync.outbox import WriteOutcome
from espomcp.sync.refresh import apply_state

if TYPE_CHECKING:
    from espomcp.mcp.registry import ToolContext


def sync_record(
    ctx: ToolContext,
    entity_type: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    owner_id: str | None = None,
) -> dict[str, Any]:
    """Make the FGA store hold what ``after`` (None = deleted) implies; report it.

    ``owner_id`` names the person who created the record through a tool (EspoCRM records
    the service account as creator, so the mapping cannot know the human).
    """
    record = after or before
    if record is None:
        return {"synced": True, "message": "no permission changes"}
    record_id = str(record["id"])
    desired = tuples_for_record(entity_type, after) if after else None
    if desired is not None and owner_id:
        desired.add(TupleKey(f"user:{owner_id}", "owner", object_id(entity_type, record_id)))
    svc = ctx.services
    try:
        outcome = apply_state(svc.fga, svc.outbox, entity_type, record_id, desired).outcome
    except (FgaUnavailable, FgaError):
        # The store cannot be read: queue the change implied by the two states instead.
        old = tuples_for_record(entity_type, before) if before else set()
        writes, deletes = diff(old, desired or set())
        outcome = svc.outbox.apply(svc.fga, writes, deletes)
    return report(ctx, outcome)


def report(ctx: ToolContext, outcome: WriteOutcome) -> dict[str, Any]:
    if outcome.applied:
        return {"synced": True, "message": outcome.message}
    ctx.audit["permissions"] = "queued" if outcome.queued else "rejected"
    return {
        "synced": False,
        "message": "The CRM change succeeded, but recording who may "
        f"access it is delayed: {outcome.message}. Until then the new access may not "
        "apply.",
    }
