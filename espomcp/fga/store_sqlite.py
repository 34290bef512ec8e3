"""A persistent tuple store: SQLite (stdlib ``sqlite3``, WAL) as the durable copy, plus the index.

Tables: ``tuples`` (current state, keyed by object/relation/user) and ``changes`` (the change log,
``seq`` autoincrement; also the ReadChanges source). At open the index is loaded from ``tuples``
in one read transaction. A write runs in ``BEGIN IMMEDIATE`` (the database write lock): it first
replays changes committed by other processes, applies OpenFGA's write rules against that current
state, commits, and only then updates the index, so the index never holds uncommitted tuples.
Before every query ``index()`` compares ``PRAGMA data_version`` (changes when another connection
commits) and replays the newer change-log entries, so gunicorn workers sharing the file agree.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from espomcp.fga.errors import INVALID_TUPLE, FgaError
from espomcp.fga.store import (
    DELETE,
    WRITE,
    Index,
    StoredTuple,
    change_entry,
    check_page_size,
    now_rfc3339,
    parse_token,
)
from espomcp.fga.tuples import Condition, TupleKey
from espomcp.forks import current_pid

SCHEMA = """
CREATE TABLE IF NOT EXISTS tuples (
    object TEXT NOT NULL, relation TEXT NOT NULL, user TEXT NOT NULL,
    condition_name TEXT, condition_context TEXT, seq INTEGER NOT NULL, ts TEXT NOT NULL,
    PRIMARY KEY (object, relation, user)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, object TEXT NOT NULL, relation TEXT NOT NULL,
    user TEXT NOT NULL, condition_name TEXT, condition_context TEXT, operation TEXT NOT NULL,
    ts TEXT NOT NULL);
"""
_COLUMNS = "object, relation, user, condition_name, condition_context"


def _stored(row: Sequence[Any], seq: int, ts: str) -> StoredTuple:
    obj, rel, user, cond, ctx = row[:5]
    return StoredTuple(obj, rel, user, cond, json.loads(ctx) if ctx else None, seq, ts)


def _key(row: Sequence[Any]) -> TupleKey:
    obj, rel, user, cond, ctx = row[:5]
    return TupleKey(user, rel, obj, Condition(cond, json.loads(ctx) if ctx else None) if cond else None)


def _row(tk: TupleKey) -> tuple[str, str, str, str | None, str | None]:
    cond = tk.condition
    try:
        ctx = json.dumps(cond.context, sort_keys=True, allow_nan=False) if cond and cond.context else None
    except (TypeError, ValueError):
        raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: the condition context is not JSON") from None
    return (tk.object, tk.relation, tk.user, cond.name if cond else None, ctx)


class SqliteStore:
    """A tuple store persisted in one SQLite file, safe to share between processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._open()

    def _open(self) -> None:
        """Connect and load the index from the ``tuples`` table in one read transaction."""
        self._pid = current_pid()
        self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._version = self._data_version()
        self._conn.execute("BEGIN")
        try:
            rows = self._conn.execute(f"SELECT {_COLUMNS}, seq, ts FROM tuples ORDER BY seq").fetchall()
            self._seq = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        finally:
            self._conn.execute("COMMIT")
        self._index = Index(_stored(row, row[5], row[6]) for row in rows)

    def _check_process(self) -> None:
        """A connection must not cross a fork: a forked child reconnects and reloads."""
        if current_pid() != self._pid:
            self._open()

    def _data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _catch_up(self) -> None:
        """Replay change-log entries newer than the index (written by other connections)."""
        rows = self._conn.execute(f"SELECT {_COLUMNS}, seq, operation, ts FROM changes WHERE seq > ? "
                                  "ORDER BY seq", (self._seq,)).fetchall()
        for row in rows:
            if row[6] == WRITE:
                self._index.add(_stored(row, row[5], row[7]))
            else:
                self._index.remove(row[0], row[1], row[2])
            self._seq = row[5]

    def index(self) -> Index:
        self._check_process()
        version = self._data_version()
        if version != self._version:
            self._version = version
            self._catch_up()
        return self._index

    def write(self, writes: Sequence[TupleKey], deletes: Sequence[TupleKey], *,
              on_duplicate: str = "error", on_missing: str = "error") -> None:
        self._check_process()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._catch_up()
            add, remove = self._index.plan_write(writes, deletes, on_duplicate, on_missing)
            stamp = now_rfc3339()
            applied: list[tuple[str, TupleKey, int]] = []
            for tk in remove:
                conn.execute("DELETE FROM tuples WHERE object = ? AND relation = ? AND user = ?", tk.key)
                cur = conn.execute(f"INSERT INTO changes ({_COLUMNS}, operation, ts) VALUES (?,?,?,?,?,?,?)",
                                   (*_row(tk), DELETE, stamp))
                applied.append((DELETE, tk, cur.lastrowid or 0))
            for tk in add:
                cur = conn.execute(f"INSERT INTO changes ({_COLUMNS}, operation, ts) VALUES (?,?,?,?,?,?,?)",
                                   (*_row(tk), WRITE, stamp))
                conn.execute(f"INSERT INTO tuples ({_COLUMNS}, seq, ts) VALUES (?,?,?,?,?,?,?)",
                             (*_row(tk), cur.lastrowid, stamp))
                applied.append((WRITE, tk, cur.lastrowid or 0))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for operation, tk, seq in applied:
            if operation == WRITE:
                self._index.add(StoredTuple.from_key(tk, seq, stamp))
            else:
                self._index.remove(*tk.key)
            self._seq = max(self._seq, seq)

    def read_changes(self, type_name: str | None, page_size: int,
                     continuation_token: str | None) -> tuple[list[dict[str, Any]], str]:
        after = parse_token(continuation_token)
        check_page_size(page_size)
        self._check_process()
        sql = f"SELECT {_COLUMNS}, seq, operation, ts FROM changes WHERE seq > ?"
        args: list[Any] = [after]
        if type_name:
            sql += " AND substr(object, 1, ?) = ?"
            args += [len(type_name) + 1, type_name + ":"]
        rows = self._conn.execute(sql + " ORDER BY seq LIMIT ?", (*args, page_size)).fetchall()
        changes = [change_entry(_key(row), row[6], row[7]) for row in rows]
        last = rows[-1][5] if rows else after
        return changes, str(last) if last else ""

    def close(self) -> None:
        self._conn.close()
