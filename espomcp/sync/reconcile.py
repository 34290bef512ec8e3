"""Reconcile: compare what EspoCRM implies with what the FGA store holds, optionally fix it.

The store is read first and EspoCRM second, so a change landing in between shows up as drift
towards EspoCRM's newer state (fixing then agrees with the webhook that delivers it) rather
than reverting it. Only relations the mapping owns, on types being synced, are compared:
``missing`` = implied but not stored, ``stale`` = stored but no longer implied. ``owner``
tuples of records that still exist are never stale (see ``refresh``: tools record the human
creator there).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from espomcp.fga.tuples import TupleKey
from espomcp.sync.backfill import iter_state, sync_entity_types
from espomcp.sync.mapping import MappingError, fga_type, is_managed, sort_keys
from espomcp.sync.outbox import TupleWriter
from espomcp.sync.refresh import STICKY_RELATIONS, read_all

log = logging.getLogger("espomcp.sync.reconcile")
SAMPLES = 5


@dataclass
class ReconcileReport:
    """Drift found (and fixed, with ``fix``); ``per_type`` counts by object type."""

    records: int = 0
    expected: int = 0
    held: int = 0
    missing: list[TupleKey] = field(default_factory=list)
    stale: list[TupleKey] = field(default_factory=list)
    fixed: bool = False
    queued: int = 0
    rejected: int = 0
    seconds: float = 0.0
    message: str = ""

    @property
    def in_sync(self) -> bool:
        return not self.missing and not self.stale

    def per_type(self) -> dict[str, dict[str, int]]:
        missing = Counter(k.object.split(":", 1)[0] for k in self.missing)
        stale = Counter(k.object.split(":", 1)[0] for k in self.stale)
        return {kind: {"missing": missing[kind], "stale": stale[kind]}
                for kind in sorted(set(missing) | set(stale))}

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync, "records": self.records, "expected": self.expected,
            "held": self.held, "missing": len(self.missing), "stale": len(self.stale),
            "fixed": self.fixed, "queued": self.queued, "rejected": self.rejected,
            "seconds": round(self.seconds, 3), "per_type": self.per_type(),
            "missing_sample": [str(k) for k in self.missing[:SAMPLES]],
            "stale_sample": [str(k) for k in self.stale[:SAMPLES]],
            "message": self.message,
        }


def synced_kinds(entity_types: list[str]) -> set[str]:
    """FGA object types whose managed tuples reconcile owns."""
    kinds = {fga_type(t) for t in sync_entity_types(entity_types)}
    if "user" in kinds:
        kinds.add("organization")  # organization:main#admin/member come from users
    return kinds


def held_state(backend: Any, kinds: set[str]) -> set[TupleKey]:
    """Managed tuples in the store on objects of ``kinds`` (the whole store is paged)."""
    return {key for key in read_all(backend)
            if key.object.split(":", 1)[0] in kinds and is_managed(key)}


def expected_state(client: Any, entity_types: list[str]) -> tuple[set[TupleKey], set[str], int]:
    """(tuples EspoCRM implies, objects that exist, records visited)."""
    expected: set[TupleKey] = set()
    objects: set[str] = set()
    records = 0
    for entity_type in sync_entity_types(entity_types):
        for record, tuples in iter_state(client, entity_type):
            records += 1
            try:
                keys = tuples()
            except MappingError as exc:
                log.warning("reconcile: skipping %s: %s", entity_type, exc)
                continue
            objects.add(f"{fga_type(entity_type)}:{record.get('id')}")
            expected |= keys
    return expected, objects, records


def reconcile(client: Any, backend: Any, writer: TupleWriter, entity_types: list[str], *,
              fix: bool = False) -> ReconcileReport:
    """Find (and with ``fix`` repair) drift between EspoCRM and the FGA store."""
    started = time.perf_counter()
    report = ReconcileReport()
    held = held_state(backend, synced_kinds(entity_types))
    expected, objects, report.records = expected_state(client, entity_types)
    report.expected, report.held = len(expected), len(held)
    report.missing = sort_keys(expected - held)
    report.stale = sort_keys(k for k in held - expected
                             if not (k.relation in STICKY_RELATIONS and k.object in objects))
    if fix and not report.in_sync:
        outcome = writer.apply(backend, report.missing, report.stale)
        report.fixed = outcome.applied
        report.queued, report.rejected = outcome.queued, outcome.rejected
        report.message = outcome.message
    else:
        report.message = "in sync" if report.in_sync else \
            f"{len(report.missing)} missing, {len(report.stale)} stale"
    report.seconds = time.perf_counter() - started
    return report
