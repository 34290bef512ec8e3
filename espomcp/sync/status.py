"""Persisted sync status: last backfill / reconcile runs and webhook delivery counters.

Stored in ``<data_dir>/sync_status.sqlite3`` so the CLI (which runs backfill and reconcile) and
the server (which receives webhooks and shows /readyz and the admin console) see one picture.
``sync_status(settings) -> dict`` is the read side.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUN_KINDS = ("backfill", "reconcile")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (kind TEXT PRIMARY KEY, at REAL NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL, at REAL NOT NULL);
"""


@contextmanager
def connect_wal(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived autocommit connection in WAL mode (safe across worker processes)."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        yield db
    finally:
        db.close()


class SyncStatus:
    """Read and update the status file of one data directory (thread- and process-safe)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "sync_status.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect_wal(self.path)

    def record_run(self, kind: str, summary: dict[str, Any]) -> None:
        """Remember the outcome of a finished ``backfill`` or ``reconcile`` run."""
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO runs (kind, at, summary) VALUES (?, ?, ?)",
                       (kind, time.time(), json.dumps(summary, default=str)))

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (e.g. ``webhook.accepted``, ``webhook.rejected.forged``)."""
        with self._connect() as db:
            db.execute("INSERT INTO counters (name, n, at) VALUES (?, ?, ?) ON CONFLICT(name) "
                       "DO UPDATE SET n = n + excluded.n, at = excluded.at", (name, n, time.time()))

    def counters(self, prefix: str = "") -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT name, n FROM counters WHERE name LIKE ? ORDER BY name",
                              (prefix.replace("%", "") + "%",)).fetchall()
        return {name: int(n) for name, n in rows}

    def last_run(self, kind: str) -> dict[str, Any] | None:
        """``{"at": ISO-8601 UTC, "age_seconds", **summary}`` of the last run, or None."""
        with self._connect() as db:
            row = db.execute("SELECT at, summary FROM runs WHERE kind = ?", (kind,)).fetchone()
        if row is None:
            return None
        return {"at": _iso(row[0]), "age_seconds": round(time.time() - row[0], 1),
                **json.loads(row[1])}

    def webhooks(self) -> dict[str, Any]:
        counts = self.counters("webhook.")
        with self._connect() as db:
            last = db.execute("SELECT MAX(at) FROM counters WHERE name LIKE 'webhook.%'").fetchone()[0]
        rejected = {name.removeprefix("webhook.rejected."): n for name, n in counts.items()
                    if name.startswith("webhook.rejected.")}
        return {
            "accepted": counts.get("webhook.accepted", 0),
            "rejected": sum(rejected.values()),
            "rejected_by_reason": rejected,
            "items_applied": counts.get("webhook.items", 0),
            "last_delivery_at": _iso(last) if last else None,
        }


def sync_status(settings: Any, outbox: Any = None) -> dict[str, Any]:
    """Everything the admin console and /readyz show about sync, as plain JSON-able data."""
    from espomcp.sync.outbox import Outbox, OutboxError

    status = SyncStatus(Path(settings.data_dir))
    try:
        queue = (outbox or Outbox.from_settings(settings)).stats()
    except OutboxError as exc:
        queue = {"error": str(exc)}
    return {
        "last_backfill": status.last_run("backfill"),
        "last_reconcile": status.last_run("reconcile"),
        "webhooks": status.webhooks(),
        "outbox": queue,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
