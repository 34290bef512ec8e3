"""Server-side admin-console sessions: SQLite rows keyed by a random id, sent as a signed cookie.

The cookie carries only the session id, signed with ``settings.session_secret`` (or a random
per-process key); the row holds the signed-in admin (subject, email, scopes, expiry), the CSRF
token and in-flight login state (PKCE verifier, OAuth ``state``). No access token is stored.
Rows are keyed by the SHA-256 of the id, so a copy of the database does not yield live cookies.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

COOKIE_NAME = "espomcp_admin"
LOGIN_TTL = 600           # seconds an unfinished sign-in may take
MAX_SESSION_TTL = 12 * 3600


class SessionStore:
    """Create, load, save and delete sessions; thread-safe; expired rows are purged lazily."""

    def __init__(self, path: Path | str | None, secret: str) -> None:
        self._path = Path(path) if path else None
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._signer = URLSafeSerializer(secret, salt="espomcp-admin-session")

    @property
    def _conn(self) -> sqlite3.Connection:
        """The connection, opened on first use in each process (safe across a pre-fork)."""
        if self._db is None or self._pid != os.getpid():
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self._path or ":memory:"), check_same_thread=False,
                                 isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL" if self._path else "PRAGMA journal_mode=MEMORY")
            db.execute("CREATE TABLE IF NOT EXISTS admin_sessions (id TEXT PRIMARY KEY, "
                       "data TEXT NOT NULL, expires REAL NOT NULL)")
            self._db, self._pid = db, os.getpid()
        return self._db

    # --- cookie values ------------------------------------------------------------------
    def sign(self, session_id: str) -> str:
        return self._signer.dumps(session_id)

    def unsign(self, cookie: str | None) -> str | None:
        """The session id inside a cookie value, or None when absent or tampered with."""
        if not cookie:
            return None
        try:
            value = self._signer.loads(cookie)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    # --- rows ---------------------------------------------------------------------------
    def create(self, data: dict[str, Any], ttl: float) -> str:
        """Store ``data`` under a fresh random id (never reuses one: no session fixation).

        Expired rows are purged here too: sign-ins start unauthenticated, so abandoned ones
        would otherwise pile up for as long as nobody loads them."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (time.time(),))
        self.save(session_id, data, ttl)
        return session_id

    def save(self, session_id: str, data: dict[str, Any], ttl: float) -> None:
        expires = time.time() + min(ttl, MAX_SESSION_TTL)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO admin_sessions VALUES (?, ?, ?)",
                             (_digest(session_id), json.dumps(data), expires))

    def update(self, session_id: str, data: dict[str, Any]) -> None:
        """Replace the data, keeping the expiry."""
        with self._lock:
            self._conn.execute("UPDATE admin_sessions SET data = ? WHERE id = ?",
                             (json.dumps(data), _digest(session_id)))

    def load(self, session_id: str | None) -> dict[str, Any] | None:
        if not session_id:
            return None
        now = time.time()
        with self._lock:
            row = self._conn.execute("SELECT data, expires FROM admin_sessions WHERE id = ?",
                                   (_digest(session_id),)).fetchone()
            if row is None:
                return None
            if row[1] <= now:
                self._conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (now,))
                return None
        return json.loads(row[0])

    def delete(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._conn.execute("DELETE FROM admin_sessions WHERE id = ?", (_digest(session_id),))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
