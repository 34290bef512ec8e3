"""The issuer's signing keys (RFC 7517 JWK Set), fetched over HTTP and cached by ``kid``.

Contract (mcp-authorization reference §4): keys are cached by ``kid``; an unknown ``kid``
triggers at most one refetch per cooldown (a flood of forged kids cannot hammer the issuer);
a failed fetch keeps the keys we already have (cached keys keep working while the issuer is
down) and new kids fail closed. Cached keys are also refreshed after ``max_age_seconds`` so a
revoked key disappears. Thread-safe; the cache is bounded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Protocol

import requests
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

log = logging.getLogger("espomcp.auth")

MAX_KEYS = 64
MAX_JWKS_BYTES = 256 * 1024


class KeyLookupError(Exception):
    """No usable key for a ``kid``; the message is safe to show to the client."""


class KeySource(Protocol):
    """Where verification keys come from (the swap point, like authlib's ``get_jwks``)."""

    def get_key(self, kid: str) -> Key: ...


class JwksKeySource:
    """Keys of one JWKS URL, cached by ``kid`` as joserfc key objects."""

    def __init__(self, url: str, *, cooldown_seconds: float = 30.0, max_age_seconds: float = 600.0,
                 timeout_seconds: float = 5.0, session: requests.Session | None = None) -> None:
        self.url = url
        self.cooldown_seconds = cooldown_seconds
        self.max_age_seconds = max_age_seconds
        self.timeout_seconds = timeout_seconds
        self._session = session or requests.Session()
        self._keys: dict[str, Key] = {}
        self._lock = threading.Lock()
        self._last_attempt: float | None = None
        self._last_success: float | None = None
        self.fetch_count = 0

    def get_key(self, kid: str) -> Key:
        """The verification key for ``kid``; raises ``KeyLookupError`` when there is none."""
        with self._lock:
            key = self._keys.get(kid)
            stale = (self._last_success is None
                     or time.monotonic() - self._last_success >= self.max_age_seconds)
            if key is not None and not stale:
                return key
            if self._may_fetch():
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise KeyLookupError(f"no signing key with kid {kid[:64]!r} is published by the issuer")
        return key

    def kids(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def _may_fetch(self) -> bool:
        now = time.monotonic()
        return self._last_attempt is None or now - self._last_attempt >= self.cooldown_seconds

    def _refresh(self) -> None:
        """Fetch the JWKS and replace the cache; on any failure keep the old keys."""
        self._last_attempt = time.monotonic()
        self.fetch_count += 1
        try:
            keys = self._fetch()
        except Exception as exc:  # whatever went wrong, keep the keys we have (fail closed)
            log.warning("JWKS fetch from %s failed (%s); keeping %d cached keys", self.url,
                        type(exc).__name__, len(self._keys))
            return
        self._keys = keys
        self._last_success = time.monotonic()

    def _fetch(self) -> dict[str, Key]:
        with self._session.get(self.url, timeout=self.timeout_seconds, stream=True,
                               headers={"Accept": "application/json"}) as response:
            response.raise_for_status()
            body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document: Any = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no keys array")
        keys: dict[str, Key] = {}
        for entry in document["keys"]:
            if len(keys) >= MAX_KEYS:
                break
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue  # never verify with encryption keys or shared secrets
            try:
                keys[entry["kid"]] = JWKRegistry.import_key(entry)
            except (JoseError, ValueError, TypeError):
                log.warning("JWKS entry %r could not be imported; skipped", entry["kid"][:64])
        if not keys:
            raise ValueError("JWKS document has no usable signing keys")
        return keys
