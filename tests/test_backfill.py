"""Backfill: every implied tuple written in batches, idempotent, resumable, summarised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from espomcp.fga.tuples import TupleKey
from espomcp.sync.backfill import Backfill, Checkpoint, sync_entity_types
from espomcp.sync.mapping import tuples_for_record, tuples_for_team
from espomcp.sync.outbox import Outbox, TupleWriter
from tests.sync_doubles import DictClient, MemoryBackend

TYPES = ["Account", "Contact", "Lead", "Opportunity", "Case", "Meeting", "Call", "Task", "User",
         "Team"]


def _crm(contacts: int = 120) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    users = [{"id": "alice", "type": "regular", "teamsIds": ["sales"]},
             {"id": "bob", "type": "regular", "teamsIds": ["sales"],
              "teamsColumns": {"sales": {"role": "Manager"}}},
             {"id": "admin", "type": "admin"},
             {"id": "gone", "type": "regular", "isActive": False, "teamsIds": ["sales"]}]
    records = {
        "User": users,
        "Team": [{"id": "sales"}, {"id": "support"}],
        "Account": [{"id": "acme", "assignedUserId": "alice", "teamsIds": ["sales"],
                     "createdById": "alice"}],
        "Contact": [{"id": f"c{i:03d}", "assignedUserId": "alice", "teamsIds": ["sales"],
                     "accountId": "acme"} for i in range(contacts)],
        "Task": [{"id": "t1", "assignedUserId": "bob", "parentType": "Account", "parentId": "acme",
                  "collaboratorsIds": ["alice"]}],
    }
    members = {"sales": [{"id": "alice", "teamRole": None}, {"id": "bob", "teamRole": "Manager"}]}
    return records, members


def _expected(records: dict[str, list[dict]], members: dict[str, list[dict]]) -> set[TupleKey]:
    out: set[TupleKey] = set()
    for entity_type, rows in records.items():
        for row in rows:
            out |= (tuples_for_team(row, members.get(row["id"], [])) if entity_type == "Team"
                    else tuples_for_record(entity_type, row))
    return out


def _backfill(client: Any, backend: Any, tmp_path: Path, **kwargs: Any) -> Backfill:
    writer = TupleWriter(Outbox(tmp_path / "outbox.sqlite3"))
    return Backfill(client, backend, writer, tmp_path, entity_types=TYPES, **kwargs)


def test_users_and_teams_go_first_and_unknown_types_are_skipped() -> None:
    assert sync_entity_types(["Contact", "Invoice", "Team", "User"]) == ["User", "Team", "Contact"]


def test_backfill_writes_everything_in_batches_and_is_idempotent(tmp_path: Path) -> None:
    records, members = _crm()
    backend = MemoryBackend()
    summary = _backfill(DictClient(records, members), backend, tmp_path).run()
    assert summary.complete and summary.message == "backfill complete"
    assert backend.tuples == _expected(records, members)
    assert TupleKey("user:admin", "admin", "organization:main") in backend.tuples
    assert TupleKey("user:bob", "manager", "team:sales") in backend.tuples
    assert not any(k.user == "user:gone" for k in backend.tuples)
    assert all(len(w) + len(d) <= 100 for w, d in backend.calls)
    assert max(len(w) for w, _ in backend.calls) == 100
    assert summary.records == sum(len(rows) for rows in records.values())
    assert summary.tuples >= len(backend.tuples) and summary.queued == summary.rejected == 0
    data = summary.to_dict()
    assert data["per_type"]["Contact"] == {"records": 120, "tuples": 120 * 4}
    assert data["tuples_per_second"] > 0 and data["seconds"] >= 0
    json.dumps(data)
    assert not Checkpoint(tmp_path).path.exists()
    before = set(backend.tuples)
    again = _backfill(DictClient(records, members), backend, tmp_path).run()
    assert again.complete and backend.tuples == before and not again.resumed


def test_interrupted_backfill_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    records, members = _crm(contacts=400)
    backend = MemoryBackend()
    client = DictClient(records, members, fail_at=4 + 2 + 1 + 250)  # inside the contacts
    first = _backfill(client, backend, tmp_path).run()
    assert not first.complete and "EspoCRM" in first.message and "resume" in first.message
    state = Checkpoint(tmp_path).load()
    assert state is not None and state["done"] == ["User", "Team", "Account"]
    assert state["current"] == "Contact" and 0 < state["offset"] <= 250
    client.offsets.clear()
    second = _backfill(client, backend, tmp_path).run()
    assert second.complete and second.resumed
    assert client.offsets[0][0] == "Contact" and client.offsets[0][1] == max(0, state["offset"] - 100)
    assert ("User", 0) not in client.offsets  # finished types are not visited again
    assert backend.tuples == _expected(records, members)
    fresh = _backfill(DictClient(records, members), backend, tmp_path).run(fresh=True)
    assert fresh.complete and fresh.records == sum(len(rows) for rows in records.values())


def test_fga_outage_stops_with_the_batch_queued(tmp_path: Path) -> None:
    records, members = _crm()
    backend = MemoryBackend()
    backend.down = True
    backfill = _backfill(DictClient(records, members), backend, tmp_path)
    summary = backfill.run()
    assert not summary.complete and summary.queued > 0 and "FGA unavailable" in summary.message
    assert backfill.writer.outbox.depth() == summary.queued
    backend.down = False
    backfill.writer.outbox.drain(backend)
    resumed = _backfill(DictClient(records, members), backend, tmp_path).run()
    assert resumed.complete and backend.tuples == _expected(records, members)
