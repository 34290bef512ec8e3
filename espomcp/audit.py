"""The audit log: one JSON line per decision in ``data_dir/audit.jsonl``.

Each line says who (``sub``, the mapped EspoCRM ``user_id`` when known, ``client_id``), what
(``tool``, ``entity_type``, ``record_id``), the ``decision`` (allow/deny/error), the ``layer``
that decided (auth, scope, fga, crm, validation, tool, server, admin), a ``reason``,
``duration_ms`` and ``ts``; the who-fields are always present (null if unknown), event fields
only when known. Tokens and secrets are never written: only whitelisted principal fields are
read and secret-looking event keys are dropped.

Appends are atomic across threads and processes: one ``write`` of one line on an ``O_APPEND``
descriptor kept open (the kernel appends each write whole on local filesystems). The file
rotates once to ``audit.jsonl.1`` past ``max_bytes``, under ``flock``; other processes notice
the new file within a second (until then their lines land in ``.1``, never lost).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from espomcp import jsontext
from espomcp.timestamps import iso_millis

if TYPE_CHECKING:
    from espomcp.auth.principal import Principal
    from espomcp.settings import Settings

log = logging.getLogger("espomcp.audit")

DECISIONS = ("allow", "deny", "error")
LAYERS = ("auth", "scope", "fga", "crm", "validation", "tool", "server", "admin")
SECRET_WORDS = ("token", "secret", "password", "authorization", "api_key", "apikey", "cookie")
MAX_TEXT = 500
BLOCK = 64 * 1024
ROTATE_CHECK_BYTES = 64 * 1024  # compare the size with max_bytes after this much
REOPEN_CHECK_SECONDS = 1.0

UserIdLookup = Callable[["Principal"], "str | None"]


class AuditLog:
    """Append-only JSON-lines audit trail with a tail reader and decision counters."""

    def __init__(self, path: Path, *, user_id_of: UserIdLookup | None = None,
                 max_bytes: int = 50 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.user_id_of = user_id_of
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._fd: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._inode = 0
        self._checked = 0.0  # monotonic time the path's inode was last compared
        self._unchecked_bytes = 0  # written since the size was last compared to max_bytes

    @classmethod
    def from_settings(cls, settings: Settings, user_id_of: UserIdLookup | None = None
                      ) -> AuditLog:
        return cls(settings.data_dir / "audit.jsonl", user_id_of=user_id_of)

    # --- writing -----------------------------------------------------------------------
    def record(self, principal: Principal | None, event: dict[str, Any]) -> dict[str, Any]:
        """Append one event for ``principal`` (None = unauthenticated); returns the line."""
        line = self.build(principal, event)
        decision = line.get("decision") if line.get("decision") in DECISIONS else "other"
        layer = line.get("layer") if line.get("layer") in LAYERS else "other"
        with self._lock:
            self._counts[(str(decision), str(layer))] += 1
            try:
                self._append(jsontext.dumps(line) + b"\n")
            except OSError:
                log.exception("could not write the audit log at %s", self.path)
        return line

    def record_auth_failure(self, error: str | None, description: str) -> None:
        """A presented token was rejected at the HTTP layer (before any tool ran)."""
        self.record(None, {"decision": "deny", "layer": "auth",
                           "reason": f"{error}: {description}" if error else description})

    def build(self, principal: Principal | None, event: dict[str, Any]) -> dict[str, Any]:
        line: dict[str, Any] = {"ts": iso_millis(time.time()), "sub": None, "user_id": None,
                                "client_id": None}  # who: always present, null if unknown
        if principal is not None:
            line.update(sub=principal.sub, client_id=principal.client_id,
                        email=principal.email)
            if self.user_id_of is not None:
                try:
                    line["user_id"] = self.user_id_of(principal)
                except Exception:  # a lookup problem must never lose the audit line
                    line["user_id"] = None
        for name, value in event.items():
            if name in line or value is None or _is_secret(name):
                continue
            line[name] = _clean(value)
        if "decision" in line:
            line.setdefault("layer", "tool")  # the dispatcher leaves it out on success
        return line

    def _append(self, data: bytes) -> None:
        """Write one encoded line (caller holds ``self._lock``)."""
        os.write(self._descriptor(), data)
        self._unchecked_bytes += len(data)
        if self.max_bytes and self._unchecked_bytes >= min(ROTATE_CHECK_BYTES, self.max_bytes):
            self._unchecked_bytes = 0
            self._rotate_if_full()

    def _descriptor(self) -> int:
        """The open append descriptor, reopened when another process rotated the file."""
        now = time.monotonic()
        if self._fd is not None and now - self._checked < REOPEN_CHECK_SECONDS:
            return self._fd
        self._checked = now
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = -1
        if self._fd is None or current != self._inode:
            self._reopen()
        return self._fd  # type: ignore[return-value]

    def _reopen(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # closes the previous descriptor
            self._finalizer = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._inode = os.fstat(self._fd).st_ino
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    def _rotate_if_full(self) -> None:
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # Another process may have rotated already: only the current file is rotated.
            if (os.fstat(fd).st_size >= self.max_bytes
                    and os.stat(self.path).st_ino == os.fstat(fd).st_ino):
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        if not self.path.exists() or os.stat(self.path).st_ino != self._inode:
            self._reopen()
            self._checked = time.monotonic()

    # --- reading -----------------------------------------------------------------------
    def recent(self, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
        """Newest first, at most ``limit`` events matching every filter.

        Filters compare a field for equality; ``user`` matches the sub, the EspoCRM user id
        or the email (substring, case-insensitive). Reads the file backwards block by block.
        """
        wanted = {k: str(v) for k, v in filters.items() if v not in (None, "")}
        found: list[dict[str, Any]] = []
        for path in (self.path, self.path.with_name(self.path.name + ".1")):
            for raw in _lines_backwards(path):
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and _matches(event, wanted):
                    found.append(event)
                    if len(found) >= limit:
                        return found
        return found

    def counts(self) -> dict[tuple[str, str], int]:
        """Decisions recorded by this process, keyed by (decision, layer)."""
        with self._lock:
            return dict(self._counts)


def _matches(event: dict[str, Any], wanted: dict[str, str]) -> bool:
    for key, value in wanted.items():
        if key == "user":
            needle = value.lower()
            haystack = [str(event.get(k) or "").lower() for k in ("sub", "user_id", "email")]
            if not any(needle in item for item in haystack):
                return False
        elif str(event.get(key)) != value:
            return False
    return True


def _lines_backwards(path: Path) -> Iterator[bytes]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        rest = b""
        while position > 0:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines.pop(0)
            for line in reversed(lines):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest


_SECRET_NAMES: dict[str, bool] = {}


def _is_secret(name: str) -> bool:
    """Whether an event key looks like it holds a secret (remembered: events reuse a few keys)."""
    found = _SECRET_NAMES.get(name)
    if found is None:
        found = any(word in name.lower() for word in SECRET_WORDS)
        if len(_SECRET_NAMES) < 1024:
            _SECRET_NAMES[name] = found
    return found


def _clean(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(item) for item in list(value)[:50]]
    if isinstance(value, dict):
        return {str(k)[:100]: _clean(v) for k, v in list(value.items())[:50]
                if not _is_secret(str(k))}
    return _clean(str(value))
