"""Reconcile: deliberate drift is found per type and fixed; owners of live records are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from espomcp.fga.tuples import TupleKey
from espomcp.sync.backfill import Backfill
from espomcp.sync.outbox import Outbox, TupleWriter
from espomcp.sync.reconcile import reconcile, synced_kinds
from tests.sync_doubles import DictClient, MemoryBackend

TYPES = ["Account", "Contact", "User", "Team"]
RECORDS = {
    "User": [{"id": "alice", "teamsIds": ["sales"]}, {"id": "adm", "type": "admin"}],
    "Team": [{"id": "sales"}],
    "Account": [{"id": "acme", "assignedUserId": "alice", "teamsIds": ["sales"]}],
    "Contact": [{"id": "c1", "assignedUserId": "alice", "accountId": "acme"}],
}
MEMBERS = {"sales": [{"id": "alice", "teamRole": None}]}


def _synced(tmp_path: Path) -> tuple[DictClient, MemoryBackend, TupleWriter]:
    client, backend = DictClient(RECORDS, MEMBERS), MemoryBackend()
    writer = TupleWriter(Outbox(tmp_path / "outbox.sqlite3"))
    assert Backfill(client, backend, writer, tmp_path, entity_types=TYPES).run().complete
    return client, backend, writer


def test_in_sync_after_backfill(tmp_path: Path) -> None:
    client, backend, writer = _synced(tmp_path)
    report = reconcile(client, backend, writer, TYPES)
    assert report.in_sync and report.message == "in sync"
    assert report.records == 5 and report.expected == report.held == len(backend.tuples)


def test_drift_is_reported_per_type_and_fixed(tmp_path: Path) -> None:
    client, backend, writer = _synced(tmp_path)
    lost = TupleKey("user:alice", "assignee", "contact:c1")
    backend.tuples.discard(lost)
    backend.tuples.discard(TupleKey("user:adm", "admin", "organization:main"))
    intruder = TupleKey("user:mallory", "assignee", "account:acme")
    orphan = TupleKey("organization:main", "organization", "contact:deleted")
    backend.tuples |= {intruder, orphan}
    foreign = TupleKey("user:x", "viewer", "account:acme")  # not ours: never touched
    note = TupleKey("user:x", "owner", "note:n1")  # type not synced: never touched
    backend.tuples |= {foreign, note}
    report = reconcile(client, backend, writer, TYPES)
    assert not report.in_sync and not report.fixed
    assert set(report.missing) == {lost, TupleKey("user:adm", "admin", "organization:main")}
    assert set(report.stale) == {intruder, orphan}
    data = report.to_dict()
    assert data["per_type"] == {"account": {"missing": 0, "stale": 1},
                                "contact": {"missing": 1, "stale": 1},
                                "organization": {"missing": 1, "stale": 0}}
    assert data["missing"] == 2 and str(lost) in data["missing_sample"]
    assert lost not in backend.tuples  # reporting changes nothing
    fixed = reconcile(client, backend, writer, TYPES, fix=True)
    assert fixed.fixed and lost in backend.tuples and intruder not in backend.tuples
    assert {foreign, note} <= backend.tuples
    assert reconcile(client, backend, writer, TYPES).in_sync


def test_owner_of_a_live_record_is_not_stale(tmp_path: Path) -> None:
    client, backend, writer = _synced(tmp_path)
    human = TupleKey("user:alice", "owner", "account:acme")  # recorded by a tool
    gone = TupleKey("user:alice", "owner", "account:deleted")
    backend.tuples |= {human, gone}
    report = reconcile(client, backend, writer, TYPES, fix=True)
    assert report.stale == [gone] and human in backend.tuples and gone not in backend.tuples


def test_fix_with_fga_down_queues(tmp_path: Path) -> None:
    client, backend, writer = _synced(tmp_path)
    backend.tuples.discard(TupleKey("user:alice", "assignee", "contact:c1"))
    real_write = backend.write

    def down(*args: object, **kwargs: object) -> None:
        backend.down = True
        try:
            real_write(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            backend.down = False

    backend.write = down  # type: ignore[method-assign]
    report = reconcile(client, backend, writer, TYPES, fix=True)
    assert not report.fixed and report.queued == 1 and writer.outbox.depth() == 1


def test_synced_kinds() -> None:
    assert synced_kinds(["Contact", "User"]) == {"contact", "user", "organization"}
    assert synced_kinds(["Contact"]) == {"contact"}


def test_reconcile_against_each_real_backend(tmp_path: Path, fga_backend: Any) -> None:
    records = {**RECORDS, "Contact": [{"id": f"c{i:03d}", "assignedUserId": "alice",
                                       "accountId": "acme"} for i in range(130)]}
    client = DictClient(records, MEMBERS)
    writer = TupleWriter(Outbox(tmp_path / "outbox.sqlite3"))
    assert Backfill(client, fga_backend, writer, tmp_path, entity_types=TYPES).run().complete
    report = reconcile(client, fga_backend, writer, TYPES)
    assert report.in_sync and report.held == 400  # four read pages
    lost = TupleKey("user:alice", "assignee", "contact:c077")
    stale = TupleKey("user:alice", "assignee", "contact:c999")
    fga_backend.write([stale], [lost])
    report = reconcile(client, fga_backend, writer, TYPES, fix=True)
    assert report.missing == [lost] and report.stale == [stale] and report.fixed
    assert fga_backend.check("user:alice", "can_write", "contact:c077")
    assert reconcile(client, fga_backend, writer, TYPES).in_sync
