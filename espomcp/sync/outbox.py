"""Durable outbox for tuple changes the FGA backend could not take right now.

Contract: a change handed to ``TupleWriter.apply`` either lands in the backend or is stored in
``<data_dir>/outbox.sqlite3`` (SQLite, WAL) and retried with exponential backoff until it does;
nothing is dropped silently and nothing is lost across restarts. Only the newest pending change
per tuple key (user, relation, object) is kept: a later write/delete supersedes an earlier one,
so draining in order reproduces the final intent. Changes the backend rejects as invalid
(``FgaError``, e.g. a tuple the model forbids) can never land; they are moved to a dead-letter
table and counted, never retried forever.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.tuples import TupleKey

log = logging.getLogger("espomcp.sync.outbox")

MAX_KEYS_PER_WRITE = 100  # OpenFGA: at most 100 tuple keys per write request
# Failures that mean "try again later"; FgaError means "this change can never land".
TRANSIENT = (FgaUnavailable, TimeoutError, ConnectionError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('write', 'delete')),
    user TEXT NOT NULL, relation TEXT NOT NULL, object TEXT NOT NULL,
    condition TEXT,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ops_key ON ops (user, relation, object);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY, op TEXT NOT NULL, user TEXT NOT NULL, relation TEXT NOT NULL,
    object TEXT NOT NULL, condition TEXT, created_at REAL NOT NULL, failed_at REAL NOT NULL,
    error TEXT NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox itself could not store a change (disk full, unreadable file)."""


@dataclass(frozen=True)
class PendingOp:
    """One queued change: ``op`` is "write" or "delete"."""

    seq: int
    op: str
    key: TupleKey
    attempts: int
    next_attempt_at: float
    last_error: str


@dataclass(frozen=True)
class DrainResult:
    """What one ``drain`` call did: ``failed`` = stopped on an unavailable backend."""

    applied: int
    dead: int
    remaining: int
    failed: bool
    message: str


@dataclass(frozen=True)
class WriteOutcome:
    """Result of ``TupleWriter.apply``: ``applied`` = everything is in the backend now;
    ``queued`` = changes stored for retry; ``message`` says what happened in words;
    ``rejected`` = changes the backend refused as invalid (never retried)."""

    applied: bool
    queued: int
    message: str
    rejected: int = 0


class Outbox:
    """Queue of tuple changes in one SQLite file, safe across threads and processes."""

    def __init__(self, path: Path, *, base_delay: float = 1.0, max_delay: float = 60.0) -> None:
        self.path = Path(path)
        self.base_delay = base_delay
        self.max_delay = max_delay
        # Held while changes travel to the backend, so the drainer and direct writers never
        # interleave two versions of the same tuple (``exclusive()`` adds the cross-process
        # file lock for gunicorn workers and the CLI sharing the file).
        self.lock = threading.RLock()
        self._drainer: _Drainer | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @classmethod
    def from_settings(cls, settings: Any) -> Outbox:
        return cls(Path(settings.data_dir) / "outbox.sqlite3")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Only one writer of tuples at a time: this thread, and this process (``flock``)."""
        with self.lock:
            try:
                handle = open(self.path.with_suffix(".lock"), "a+b")  # noqa: SIM115
            except OSError as exc:
                raise OutboxError(f"cannot lock the outbox {self.path}: {exc}") from exc
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
            finally:
                handle.close()  # releases the flock

    def in_backoff(self) -> bool:
        """True while the oldest pending change failed recently and waits for its retry:
        the backend is known to be down, so new changes queue behind it without a try."""
        with self._connect() as db:
            row = db.execute("SELECT attempts, next_attempt_at FROM ops ORDER BY seq LIMIT 1"
                             ).fetchone()
        return row is not None and row[0] > 0 and row[1] > time.time()

    # --- storage ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc
        finally:
            db.close()

    def enqueue(self, writes: Iterable[TupleKey] = (), deletes: Iterable[TupleKey] = (), *,
                error: str = "") -> int:
        """Store changes for retry (superseding pending changes of the same keys); returns
        how many were stored. Raises OutboxError if they could not be stored."""
        rows = [("write", key) for key in writes] + [("delete", key) for key in deletes]
        if not rows:
            return 0
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for op, key in rows:
                db.execute("DELETE FROM ops WHERE user=? AND relation=? AND object=?",
                           (key.user, key.relation, key.object))
                db.execute(
                    "INSERT INTO ops (op, user, relation, object, condition, created_at, "
                    "attempts, next_attempt_at, last_error) VALUES (?,?,?,?,?,?,0,?,?)",
                    (op, key.user, key.relation, key.object, _condition_json(key), now,
                     now + self.base_delay, error[:500]))
            db.execute("COMMIT")
        if self._drainer is not None:
            self._drainer.wake()
        return len(rows)

    def discard(self, keys: Iterable[TupleKey]) -> int:
        """Forget pending changes of ``keys`` (a newer change of them just landed)."""
        keys = list(keys)
        if not keys:
            return 0
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            removed = 0
            for key in keys:
                removed += db.execute("DELETE FROM ops WHERE user=? AND relation=? AND object=?",
                                      (key.user, key.relation, key.object)).rowcount
            db.execute("COMMIT")
        return removed

    def depth(self) -> int:
        """Number of changes waiting to land."""
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM ops").fetchone()[0])

    def dead_count(self) -> int:
        """Number of changes the backend rejected as invalid (kept for inspection)."""
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM dead").fetchone()[0])

    def pending(self, limit: int = 100) -> list[PendingOp]:
        """The oldest ``limit`` pending changes, in order."""
        with self._connect() as db:
            rows = db.execute("SELECT seq, op, user, relation, object, condition, attempts, "
                              "next_attempt_at, last_error FROM ops ORDER BY seq LIMIT ?",
                              (limit,)).fetchall()
        return [PendingOp(row[0], row[1], _key(row[2], row[3], row[4], row[5]), row[6], row[7],
                          row[8]) for row in rows]

    def stats(self) -> dict[str, Any]:
        """Depth, dead letters, age of the oldest change and its last error (for status pages)."""
        with self._connect() as db:
            depth, oldest = db.execute("SELECT COUNT(*), MIN(created_at) FROM ops").fetchone()
            head = db.execute("SELECT attempts, last_error, next_attempt_at FROM ops "
                              "ORDER BY seq LIMIT 1").fetchone()
            dead = db.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        return {
            "depth": int(depth),
            "dead": int(dead),
            "oldest_age_seconds": round(time.time() - oldest, 1) if oldest else 0.0,
            "attempts": head[0] if head else 0,
            "last_error": head[1] if head else "",
            "next_attempt_in_seconds": round(max(0.0, head[2] - time.time()), 1) if head else 0.0,
        }

    # --- draining --------------------------------------------------------------------------
    def drain(self, backend: Any, limit: int = 1000) -> DrainResult:
        """Apply up to ``limit`` pending changes in order, in requests of at most 100 keys.

        Stops at the first transient failure (the failed changes get their attempt count and
        next retry time bumped); changes rejected as invalid go to the dead-letter table.
        """
        applied = dead = 0
        with self.exclusive():
            ops = self.pending(limit)
            for start in range(0, len(ops), MAX_KEYS_PER_WRITE):
                chunk = ops[start:start + MAX_KEYS_PER_WRITE]
                try:
                    _write(backend, chunk)
                except TRANSIENT as exc:
                    self._failed(chunk, _describe(exc))
                    return DrainResult(applied, dead, self.depth(), True, _describe(exc))
                except FgaError:
                    ok, bad, transient = self._one_by_one(backend, chunk)
                    applied, dead = applied + ok, dead + bad
                    if transient:
                        return DrainResult(applied, dead, self.depth(), True, transient)
                    continue
                self._done(chunk)
                applied += len(chunk)
        remaining = self.depth()
        return DrainResult(applied, dead, remaining, False,
                           f"applied {applied}, {remaining} pending, {dead} rejected")

    def _one_by_one(self, backend: Any, chunk: Sequence[PendingOp]) -> tuple[int, int, str]:
        applied = dead = 0
        for op in chunk:
            try:
                _write(backend, [op])
            except TRANSIENT as exc:
                self._failed([op], _describe(exc))
                return applied, dead, _describe(exc)
            except FgaError as exc:
                log.error("outbox: FGA rejected %s %s: %s", op.op, _show(op.key), exc.message)
                self._bury(op, exc.message)
                dead += 1
                continue
            self._done([op])
            applied += 1
        return applied, dead, ""

    def _done(self, ops: Sequence[PendingOp]) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM ops WHERE seq=?", [(op.seq,) for op in ops])
            db.execute("COMMIT")

    def _failed(self, ops: Sequence[PendingOp], error: str) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for op in ops:
                delay = min(self.max_delay, self.base_delay * 2 ** min(op.attempts, 30))
                db.execute("UPDATE ops SET attempts=attempts+1, next_attempt_at=?, last_error=? "
                           "WHERE seq=?", (now + delay, error[:500], op.seq))
            db.execute("COMMIT")

    def _bury(self, op: PendingOp, error: str) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO dead (seq, op, user, relation, object, condition, "
                       "created_at, failed_at, error) SELECT seq, op, user, relation, object, "
                       "condition, created_at, ?, ? FROM ops WHERE seq=?",
                       (time.time(), error[:500], op.seq))
            db.execute("DELETE FROM ops WHERE seq=?", (op.seq,))
            db.execute("COMMIT")

    def next_attempt_delay(self) -> float | None:
        """Seconds until the oldest change is due (0 = now); None when the queue is empty."""
        with self._connect() as db:
            row = db.execute("SELECT next_attempt_at FROM ops ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else max(0.0, row[0] - time.time())

    # --- background drainer ------------------------------------------------------------------
    def start_drainer(self, backend: Any, *, idle_interval: float = 30.0) -> None:
        """Start the background thread retrying pending changes (idempotent). It sleeps until
        a change is queued in this process, or ``idle_interval`` passes (to notice changes
        queued by other processes sharing the file)."""
        if self._drainer is None or not self._drainer.is_alive():
            self._drainer = _Drainer(self, backend, idle_interval)
            self._drainer.start()

    def stop_drainer(self, timeout: float = 5.0) -> None:
        """Stop the background thread (pending changes stay stored)."""
        if self._drainer is not None:
            self._drainer.stop(timeout)
            self._drainer = None


class _Drainer(threading.Thread):
    """Waits until the head of the queue is due, drains, backs off on failure."""

    def __init__(self, outbox: Outbox, backend: Any, idle_interval: float) -> None:
        super().__init__(name="espomcp-outbox-drainer", daemon=True)
        self.outbox = outbox
        self.backend = backend
        self.idle_interval = idle_interval
        self._stop_event = threading.Event()
        self._wake_event = threading.Event()

    def wake(self) -> None:
        self._wake_event.set()

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        self._wake_event.set()
        self.join(timeout)

    def run(self) -> None:
        warned = False
        while not self._stop_event.is_set():
            try:
                delay = self.outbox.next_attempt_delay()
                warned = False
            except OutboxError as exc:
                if not self.outbox.path.parent.is_dir():
                    return  # the data directory is gone: nothing left to drain
                if not warned:
                    log.warning("outbox drainer: %s", exc)
                    warned = True
                delay = None
            if delay is None:
                self._wake_event.wait(self.idle_interval)
                self._wake_event.clear()
                continue
            if delay > 0:
                self._stop_event.wait(delay)
                continue
            try:
                result = self.outbox.drain(self.backend)
            except Exception:  # the drainer must outlive any single failure
                log.exception("outbox drainer failed; retrying later")
                self._stop_event.wait(self.idle_interval)
                continue
            if result.applied or result.dead:
                log.info("outbox drained: %s", result.message)


class TupleWriter:
    """The one way tools, webhooks and sync change tuples: try the backend, queue on failure."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def apply(self, backend: Any, writes: Iterable[TupleKey] = (),
              deletes: Iterable[TupleKey] = ()) -> WriteOutcome:
        """Write ``writes`` and delete ``deletes`` (idempotently), 100 keys per request.

        On an unavailable backend the not-yet-applied changes are queued (``queued`` > 0);
        changes the backend rejects as invalid are reported in ``message`` and not queued.
        A key both written and deleted is a caller bug (ValueError).
        """
        writes, deletes = list(dict.fromkeys(writes)), list(dict.fromkeys(deletes))
        clash = {_plain(k) for k in writes} & {_plain(k) for k in deletes}
        if clash:
            raise ValueError(f"tuple both written and deleted: {sorted(clash)[0]}")
        ops = [("write", key) for key in writes] + [("delete", key) for key in deletes]
        if not ops:
            return WriteOutcome(True, 0, "nothing to change")
        rejected: list[str] = []
        with self.outbox.exclusive():
            if self.outbox.in_backoff():
                return self._queue(ops, 0, FgaUnavailable("still retrying earlier changes"), [])
            pos = 0
            while pos < len(ops):
                chunk = ops[pos:pos + MAX_KEYS_PER_WRITE]
                try:
                    _write_pairs(backend, chunk)
                except TRANSIENT as exc:
                    return self._queue(ops, pos, exc, rejected)
                except FgaError:
                    # Retry key by key so one invalid tuple does not block the others.
                    for index, pair in enumerate(chunk):
                        try:
                            _write_pairs(backend, [pair])
                        except TRANSIENT as exc:
                            return self._queue(ops, pos + index, exc, rejected)
                        except FgaError as exc:
                            rejected.append(f"{pair[0]} {_show(pair[1])}: {exc.message}")
                pos += len(chunk)
            self.outbox.discard(k for _, k in ops)
        if rejected:
            log.error("FGA rejected %d tuple change(s): %s", len(rejected), "; ".join(rejected[:5]))
            return WriteOutcome(False, 0, f"FGA rejected {len(rejected)} of {len(ops)} change(s): "
                                + "; ".join(rejected[:3]), len(rejected))
        return WriteOutcome(True, 0, f"applied {len(writes)} write(s), {len(deletes)} delete(s)")

    def _queue(self, ops: list[tuple[str, TupleKey]], pos: int, exc: BaseException,
               rejected: list[str]) -> WriteOutcome:
        """Store ``ops[pos:]`` for retry; ``ops[:pos]`` landed (or were rejected)."""
        rest = ops[pos:]
        queued = self.outbox.enqueue([k for op, k in rest if op == "write"],
                                     [k for op, k in rest if op == "delete"], error=_describe(exc))
        self.outbox.discard(k for _, k in ops[:pos])
        log.warning("FGA unavailable (%s); %d tuple change(s) queued", _describe(exc), queued)
        message = (f"FGA unavailable ({_describe(exc)}); {queued} change(s) queued and retried "
                   "automatically")
        if rejected:
            message += f"; {len(rejected)} rejected: " + "; ".join(rejected[:3])
        return WriteOutcome(False, queued, message, len(rejected))


def _write(backend: Any, ops: Sequence[PendingOp]) -> None:
    _write_pairs(backend, [(op.op, op.key) for op in ops])


def _write_pairs(backend: Any, pairs: Sequence[tuple[str, TupleKey]]) -> None:
    backend.write([k for op, k in pairs if op == "write"], [k for op, k in pairs if op == "delete"])


def _plain(key: TupleKey) -> str:
    return f"{key.object}#{key.relation}@{key.user}"


def _show(key: TupleKey) -> str:
    return _plain(key)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _condition_json(key: TupleKey) -> str | None:
    condition = key.to_dict().get("condition")
    return json.dumps(condition) if condition else None


def _key(user: str, relation: str, obj: str, condition: str | None) -> TupleKey:
    data: dict[str, Any] = {"user": user, "relation": relation, "object": obj}
    if condition:
        data["condition"] = json.loads(condition)
    return TupleKey.from_dict(data)
