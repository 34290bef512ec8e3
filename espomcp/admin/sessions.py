"""Server-side admin-console sessions: SQLite rows keyed by a random id, sent as a signed cookie.

The cookie carries only the session id, signed with ``settings.session_secret`` (or a random
per-process key); the row holds the signed-in admin (subject, email, scopes, expiry), the CSRF
token and in-flight login state (PKCE verifier, OAuth ``state``). No access token is stored.
Rows are keyed by the SHA-256 of the id, so a copy of the database does not yield live cookies.
"""

from __future__ import annotations

import hashlib
import json
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
        self._path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._db.execute("CREATE TABLE IF NOT EXISTS admin_sessions (id TEXT PRIMARY KEY, "
                         "data TEXT NOT NULL, expires REAL NOT NULL)")
        self._lock = threading.Lock()
        self._signer = URLSafeSerializer(secret, salt="espomcp-admin-session")

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
        """Store ``data`` under a fresh random id (never reuses one: no session fixation)."""
        session_id = secrets.token_urlsafe(32)
        self.save(session_id, data, ttl)
        return session_id

    def save(self, session_id: str, data: dict[str, Any], ttl: float) -> None:
        expires = time.time() + min(ttl, MAX_SESSION_TTL)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO admin_sessions VALUES (?, ?, ?)",
                             (_digest(session_id), json.dumps(data), expires))

    def update(self, session_id: str, data: dict[str, Any]) -> None:
        """Replace the data, keeping the expiry."""
        with self._lock:
            self._db.execute("UPDATE admin_sessions SET data = ? WHERE id = ?",
                             (json.dumps(data), _digest(session_id)))

    def load(self, session_id: str | None) -> dict[str, Any] | None:
        if not session_id:
            return None
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT data, expires FROM admin_sessions WHERE id = ?",
                                   (_digest(session_id),)).fetchone()
            if row is None:
                return None
            if row[1] <= now:
                self._db.execute("DELETE FROM admin_sessions WHERE expires <= ?", (now,))
                return None
        return json.loads(row[0])

    def delete(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._db.execute("DELETE FROM admin_sessions WHERE id = ?", (_digest(session_id),))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
