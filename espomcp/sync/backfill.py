"""Bulk backfill: derive every tuple EspoCRM implies and write it to the FGA store.

Pages through users, teams (with their members and roles) and every allowed record type with
the EspoCRM client, maps each record with ``espomcp.sync.mapping`` and writes the tuples in
batches of 100 through ``TupleWriter``. Idempotent (the backend ignores duplicates) and
resumable: after every batch ``<data_dir>/backfill_checkpoint.json`` records the finished types
and the offset of the first record of the current type not yet fully written; a run that stops
(Ctrl-C, FGA outage) continues there. Backfill only adds; stale tuples are ``reconcile``'s job.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from espomcp.espocrm.errors import EspoError
from espomcp.sync.mapping import (
    MappingError,
    attributes_for,
    is_mapped_type,
    tuples_for_record,
    tuples_for_team,
)
from espomcp.sync.outbox import TupleWriter

log = logging.getLogger("espomcp.sync.backfill")

BATCH_SIZE = 100
# Users and teams first: record access resolves through memberships.
FIRST = ("User", "Team")
RESUME_OVERLAP = 100  # re-read this many records on resume, in case some were deleted meanwhile


def sync_entity_types(entity_types: list[str]) -> list[str]:
    """The allowed types the mapping can express, users and teams first."""
    mapped = [t for t in entity_types if is_mapped_type(t)]
    return [t for t in FIRST if t in mapped] + [t for t in mapped if t not in FIRST]


def iter_team_members(client: Any, team_id: str, page_size: int = 200) -> Iterator[dict]:
    """All users of a team (rows carry ``teamRole``), paged through the ``users`` link."""
    offset = 0
    while True:
        page = client.list_related("Team", team_id, "users", offset=offset, max_size=page_size)
        yield from page.list
        offset += len(page.list)
        if len(page.list) < page_size or (page.total >= 0 and offset >= page.total):
            return


def iter_state(client: Any, entity_type: str, *, offset: int = 0,
               page_size: int = 200) -> Iterator[tuple[dict, Callable[[], set]]]:
    """``(record, tuples())`` for every record of ``entity_type`` from ``offset`` on, in a
    stable order (oldest first). ``tuples()`` may call EspoCRM again (team members)."""
    order = {} if entity_type == "Team" else {"order_by": "createdAt", "order": "asc"}
    select = None if entity_type in FIRST else attributes_for(entity_type)
    for record in client.iter_records(entity_type, page_size=page_size, offset=offset,
                                      select=select, **order):
        if entity_type == "Team":
            yield record, (lambda r=record: tuples_for_team(r, iter_team_members(client, r["id"])))
        else:
            yield record, (lambda r=record: tuples_for_record(entity_type, r))


class Checkpoint:
    """The resume point of an interrupted backfill, as JSON in the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "backfill_checkpoint.json"

    def load(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and isinstance(state.get("done"), list) else None

    def save(self, done: list[str], current: str | None, offset: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"done": done, "current": current, "offset": offset,
                                   "saved_at": time.time()}), encoding="utf-8")
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class BackfillSummary:
    """What a backfill did; ``complete`` is False when it stopped early (then resumable)."""

    records: int = 0
    tuples: int = 0
    queued: int = 0
    rejected: int = 0
    skipped: int = 0
    seconds: float = 0.0
    resumed: bool = False
    complete: bool = False
    message: str = ""
    per_type: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def tuples_per_second(self) -> float:
        return round(self.tuples / self.seconds, 1) if self.seconds > 0 else float(self.tuples)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["tuples_per_second"] = self.tuples_per_second
        return out


class FgaDown(Exception):
    """The FGA backend stopped taking writes; the backfill stops at a checkpoint."""


class Backfill:
    """One backfill run over ``entity_types`` (see module docstring)."""

    def __init__(self, client: Any, backend: Any, writer: TupleWriter, data_dir: Path, *,
                 entity_types: list[str], batch_size: int = BATCH_SIZE, page_size: int = 200,
                 progress: Any = None) -> None:
        self.client = client
        self.backend = backend
        self.writer = writer
        self.checkpoint = Checkpoint(data_dir)
        self.types = sync_entity_types(entity_types)
        self.batch_size = batch_size
        self.page_size = page_size
        self.progress = progress  # a tqdm-like bar (update, set_postfix) or None
        self.summary = BackfillSummary()
        self._buffer: list[tuple[Any, int]] = []  # (tuple, index of its record in the type)
        self._started = time.perf_counter()

    def run(self, *, fresh: bool = False) -> BackfillSummary:
        """Backfill everything not done yet (``fresh`` ignores a saved checkpoint)."""
        started = self._started = time.perf_counter()
        state = None if fresh else self.checkpoint.load()
        done = list(state["done"]) if state else []
        self.summary.resumed = bool(state)
        try:
            for entity_type in self.types:
                if entity_type in done:
                    continue
                offset = 0
                if state and state.get("current") == entity_type:
                    offset = max(0, int(state.get("offset") or 0) - RESUME_OVERLAP)
                self._run_type(entity_type, done, offset)
                done.append(entity_type)
                self.checkpoint.save(done, None, 0)
            self.checkpoint.clear()
            self.summary.complete = True
            self.summary.message = "backfill complete"
        except FgaDown as exc:
            self.summary.message = f"stopped: {exc}; run again to resume"
        except EspoError as exc:
            self.summary.message = f"stopped: EspoCRM: {exc.message}; run again to resume"
        except KeyboardInterrupt:
            self.summary.message = "interrupted; run again to resume"
        finally:
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _run_type(self, entity_type: str, done: list[str], offset: int) -> None:
        stats = self.summary.per_type.setdefault(entity_type, {"records": 0, "tuples": 0})
        index = offset
        self._buffer = []
        for _record, tuples in iter_state(self.client, entity_type, offset=offset,
                                         page_size=self.page_size):
            try:
                keys = tuples()
            except MappingError as exc:
                log.warning("backfill: skipping %s: %s", entity_type, exc)
                self.summary.skipped += 1
                keys = set()
            self._buffer.extend((key, index) for key in sorted(keys, key=lambda k: k.key))
            index += 1
            stats["records"] += 1
            self.summary.records += 1
            if self.progress is not None:
                self.progress.update(1)
            while len(self._buffer) >= self.batch_size:
                self._flush(entity_type, done, stats, self.batch_size, index)
        while self._buffer:
            self._flush(entity_type, done, stats, self.batch_size, index)

    def _flush(self, entity_type: str, done: list[str], stats: dict[str, int], size: int,
               next_index: int) -> None:
        batch, self._buffer = self._buffer[:size], self._buffer[size:]
        outcome = self.writer.apply(self.backend, [key for key, _ in batch], [])
        stats["tuples"] += len(batch)
        self.summary.tuples += len(batch)
        self.summary.queued += outcome.queued
        self.summary.rejected += outcome.rejected
        # Records before the first one still buffered are fully written (or queued).
        resume_at = self._buffer[0][1] if self._buffer else next_index
        self.checkpoint.save(done, entity_type, resume_at)
        if self.progress is not None:
            rate = self.summary.tuples / max(time.perf_counter() - self._started, 1e-6)
            self.progress.set_postfix(tuples=self.summary.tuples, tuples_per_s=f"{rate:.0f}")
        if outcome.queued:
            raise FgaDown(outcome.message)


def count_records(client: Any, entity_types: list[str]) -> int | None:
    """Total records to visit (for the progress bar); None when EspoCRM does not say."""
    total = 0
    for entity_type in sync_entity_types(entity_types):
        page = client.list_records(entity_type, max_size=1, select=["id"])
        if page.total < 0:
            return None
        total += page.total
    return total
