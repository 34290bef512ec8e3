"""JWT access-token validation in the style of RFC 9068, for Auth0-issued tokens.

Pure: takes a token string, returns the verified claims or raises ``InvalidToken`` whose
message is safe to send in ``error_description`` (mcp-authorization reference §4).
Order matters: the header is checked (alg allow-list, ``kid``, ``crit``) *before* any key
lookup, so ``none``/``HS*`` tokens and forged kids never reach the JWKS cache or network.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from joserfc import jws
from joserfc.errors import JoseError

from espomcp.auth.jwks import KeyLookupError, KeySource

T = TypeVar("T")

# Symmetric and unsigned algorithms are never acceptable for a resource server that only
# holds the issuer's public keys (algorithm-confusion attacks).
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
MAX_TOKEN_LENGTH = 16 * 1024
# Verified tokens are remembered (by SHA-256) so a client's repeated calls skip the signature
# check; the claims (exp, nbf, iss, aud …) are still checked on every call. A signing key the
# issuer withdraws stops working for remembered tokens after at most VERIFIED_TTL_SECONDS.
VERIFIED_TTL_SECONDS = 60.0
VERIFIED_MAX = 512
OPAQUE_HINT = (
    "the access token is not a signed JWT; it looks like an opaque token, which Auth0 issues "
    "when the authorization request names no API. Request a token with resource (or "
    "audience) = {aud}"
)


class InvalidToken(Exception):
    """The token must be rejected (401 ``invalid_token``); ``str(exc)`` is client-safe."""


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid token looks like for this resource server."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: int = 30


def _b64decode(segment: str) -> bytes:
    padded = segment + "=" * (-len(segment) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def read_header(token: str) -> dict[str, Any]:
    """Decode the unverified JOSE header of a compact JWS, or raise ``InvalidToken``."""
    parts = token.split(".")
    if len(parts) != 3:
        kind = "a JWE (encrypted) token" if len(parts) == 5 else "not a JWT"
        raise InvalidToken(f"the access token is {kind}")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidToken("the access token is not a JWT (unreadable header)") from exc
    if not isinstance(header, dict):
        raise InvalidToken("the access token is not a JWT (header is not an object)")
    return header


def scopes_from_claims(claims: dict[str, Any]) -> frozenset[str]:
    """Granted scopes: ``scope`` (space-separated), ``scp`` (list or string) and ``permissions`` combined."""
    granted: set[str] = set()
    for name in ("scope", "scp", "permissions"):
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str) and item)
    return frozenset(granted)


class JwtAccessTokenValidator:
    """Verifies signature and claims of one issuer's access tokens for one audience."""

    def __init__(self, policy: TokenPolicy, keys: KeySource) -> None:
        bad = FORBIDDEN_ALGORITHMS.intersection(policy.algorithms)
        if bad:
            raise ValueError(f"refusing to accept algorithms {sorted(bad)}")
        self.policy = policy
        self.keys = keys
        self._registry = jws.JWSRegistry(algorithms=list(policy.algorithms))
        # sha256(token) -> [expires (monotonic), claims, {derive function: derived value}]
        self._verified: OrderedDict[bytes, list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def validate(self, token: str) -> dict[str, Any]:
        """Return the verified claims of ``token`` or raise ``InvalidToken``."""
        return dict(self._entry(token)[1])

    def validate_as(self, token: str, derive: Callable[[dict[str, Any]], T]) -> T:
        """``derive(claims)`` for a valid ``token``, computed once per verified token.

        The claims are checked again on every call (expiry), exactly as ``validate`` does;
        only the derived value (say, the caller's ``Principal``) is remembered with them.
        """
        entry = self._entry(token)
        derived = entry[2]
        if derive not in derived:
            derived[derive] = derive(dict(entry[1]))
        return derived[derive]  # type: ignore[no-any-return]

    def _entry(self, token: str) -> list[Any]:
        """The cache entry ``[expires, claims, derived]`` of a valid token (verified if new)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("the access token is too long")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        entry = self._remembered(digest)
        if entry is not None:
            self._check_claims(entry[1])
            return entry
        claims = self._verify(token)
        return self._remember(digest, claims)

    def verified_count(self) -> int:
        """How many verified tokens are remembered (bounded by VERIFIED_MAX)."""
        with self._lock:
            return len(self._verified)

    def _remembered(self, digest: bytes) -> list[Any] | None:
        with self._lock:
            entry = self._verified.get(digest)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._verified[digest]
                return None
            self._verified.move_to_end(digest)
            return entry

    def _remember(self, digest: bytes, claims: dict[str, Any]) -> list[Any]:
        entry = [time.monotonic() + VERIFIED_TTL_SECONDS, claims, {}]
        with self._lock:
            self._verified[digest] = entry
            while len(self._verified) > VERIFIED_MAX:
                self._verified.popitem(last=False)
        return entry

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = read_header(token)
        except InvalidToken as exc:
            raise InvalidToken(OPAQUE_HINT.format(aud=self.policy.audience)) from exc
        self._check_header(header)
        try:
            key = self.keys.get_key(header["kid"])
        except KeyLookupError as exc:
            raise InvalidToken(str(exc)) from exc
        try:
            verified = jws.deserialize_compact(token, key, algorithms=[header["alg"]],
                                               registry=self._registry)
        except JoseError as exc:
            raise InvalidToken("the access token signature is invalid") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidToken("the access token is malformed") from exc
        try:
            claims = json.loads(verified.payload or b"")
        except ValueError as exc:
            raise InvalidToken("the access token payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("the access token payload is not a JSON object")
        self._check_claims(claims)
        return claims

    def _check_header(self, header: dict[str, Any]) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.policy.algorithms:
            shown = alg if isinstance(alg, str) else "missing"
            raise InvalidToken(f"signing algorithm {shown[:20]!r} is not accepted; expected one "
                               f"of {', '.join(self.policy.algorithms)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the access token header has no kid")
        if "crit" in header:
            # RFC 7515 §4.1.11: extensions we do not understand MUST make the JWS invalid.
            raise InvalidToken("the access token header has critical extensions (crit)")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str)
                                or typ.lower() not in ("jwt", "at+jwt", "application/at+jwt")):
            raise InvalidToken("the access token type is not a JWT access token")

    def _check_claims(self, claims: dict[str, Any]) -> None:
        policy = self.policy
        now = time.time()
        leeway = policy.leeway_seconds
        if claims.get("iss") != policy.issuer:
            raise InvalidToken(f"the token issuer is not {policy.issuer}")
        aud = claims.get("aud")
        audiences: Iterable[Any] = [aud] if isinstance(aud, str) else (
            aud if isinstance(aud, list) else [])
        if policy.audience not in audiences:
            raise InvalidToken(f"the token audience does not include {policy.audience}; request "
                               f"a token with resource (or audience) = {policy.audience}")
        exp = claims.get("exp")
        if not _is_number(exp):
            raise InvalidToken("the token has no valid exp claim")
        if exp <= now - leeway:
            raise InvalidToken("the token has expired")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + leeway):
            raise InvalidToken("the token is not valid yet (nbf)")
        iat = claims.get("iat")
        if iat is not None and (not _is_number(iat) or iat > now + leeway):
            raise InvalidToken("the token was issued in the future (iat)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("the token has no subject (sub)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
