"""Make the FGA store match EspoCRM for one object: read both sides, write the difference.

Used by the webhook receiver (and usable by anything that learns "record X changed"): the
current record is re-read from EspoCRM, so partial, duplicated or out-of-order notifications
all end in the right state. Only relations the mapping owns are touched. ``owner`` tuples are
kept while the record exists: ``createdById`` never changes in EspoCRM, and tools record the
human creator as owner where EspoCRM only knows the service account.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from espomcp.espocrm.errors import AccessDenied, NotFound
from espomcp.fga.tuples import TupleKey
from espomcp.sync.backfill import iter_team_members
from espomcp.sync.mapping import (
    ORGANIZATION,
    diff,
    fga_type,
    is_managed,
    object_id,
    tuples_for_record,
    tuples_for_team,
)
from espomcp.sync.outbox import TupleWriter, WriteOutcome

STICKY_RELATIONS = frozenset({"owner"})
READ_PAGE = 100


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh changed: ``gone`` = the object no longer exists in EspoCRM."""

    object: str
    writes: int
    deletes: int
    gone: bool
    outcome: WriteOutcome


def read_all(backend: Any, *, user: str | None = None, relation: str | None = None,
             object: str | None = None) -> Iterator[TupleKey]:
    """Every stored tuple matching the filter, following continuation tokens."""
    token: str | None = None
    while True:
        page, token = backend.read(user=user, relation=relation, object=object,
                                   page_size=READ_PAGE, continuation_token=token)
        yield from page
        if not token:
            return


def held_for(backend: Any, entity_type: str, record_id: str) -> set[TupleKey]:
    """The managed tuples the store holds for one object (for a user: also its memberships)."""
    obj = object_id(entity_type, record_id)
    held = set(read_all(backend, object=obj))
    if fga_type(entity_type) == "user":
        held |= set(read_all(backend, user=obj, object=ORGANIZATION))
        held |= set(read_all(backend, user=obj, object="team:"))
    return {key for key in held if is_managed(key)}


def desired_for(client: Any, entity_type: str, record_id: str) -> set[TupleKey] | None:
    """The tuples EspoCRM's current state implies; None when the record does not exist or
    the service account may not read it."""
    try:
        if fga_type(entity_type) == "team":
            team = client.get_record("Team", record_id)
            return tuples_for_team(team, iter_team_members(client, record_id))
        # the full record, exactly as tools see it (they map the same way)
        record = client.get_record(entity_type, record_id)
    except (NotFound, AccessDenied):
        # Gone, or hidden from the service account (then no tool can reach it either):
        # fail closed and grant nothing.
        return None
    return tuples_for_record(entity_type, {**record, "id": record_id})


def refresh(client: Any, backend: Any, writer: TupleWriter, entity_type: str,
            record_id: str) -> RefreshResult:
    """Re-read ``entity_type`` ``record_id`` from EspoCRM and rewrite its tuples."""
    return apply_state(backend, writer, entity_type, record_id,
                       desired_for(client, entity_type, record_id))


def remove(backend: Any, writer: TupleWriter, entity_type: str, record_id: str) -> RefreshResult:
    """The record was deleted: remove every managed tuple of it."""
    return apply_state(backend, writer, entity_type, record_id, None)


def apply_state(backend: Any, writer: TupleWriter, entity_type: str, record_id: str,
                desired: set[TupleKey] | None) -> RefreshResult:
    """Diff ``desired`` (None = deleted) against the store and apply it through ``writer``."""
    held = held_for(backend, entity_type, record_id)
    writes, deletes = diff(held, desired or set())
    if desired is not None:
        deletes = [key for key in deletes if key.relation not in STICKY_RELATIONS]
    outcome = writer.apply(backend, writes, deletes)
    return RefreshResult(object_id(entity_type, record_id), len(writes), len(deletes),
                         desired is None, outcome)
