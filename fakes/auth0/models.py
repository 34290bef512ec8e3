"""State and behaviour of the fake Auth0 tenant: users, clients, codes, refresh tokens, keys.

Mirrors what espomcp relies on from Auth0 (mcp-authorization reference §5, §6): issuer with a
trailing slash, RS256 access tokens with ``kid``, ``aud`` = the API (plus ``/userinfo`` when
``openid`` is asked), ``scope`` and ``permissions``, PKCE S256, refresh-token rotation, DCR.
Requested scopes are intersected with the user's allowed scopes. Test knobs: ``mint`` with
overrides, key rotation, a JWKS-down switch, and request logs to assert on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import RSAKey

from espomcp.auth.scopes import ALL_SCOPES
from fakes.auth0.exceptions import (
    AccessDenied,
    InvalidClient,
    InvalidClientMetadata,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    UnauthorizedClient,
)

KEYS_DIR = Path(__file__).with_name("keys")
KEY_IDS = ("demo-2026-a", "demo-2026-b")
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_AUDIENCE = "http://127.0.0.1:8000/mcp"
CODE_TTL = 300

_SALES_AREAS = ("contacts", "accounts", "leads", "opportunities", "meetings", "calls", "tasks",
                "notes")
_SUPPORT_RW = ("cases", "tasks", "calls", "meetings", "notes")


def _rw(areas: Iterable[str], actions: Iterable[str] = ("read", "write")) -> set[str]:
    return {f"espocrm:{area}:{action}" for area in areas for action in actions}


DIRECTORY_READ = {"espocrm:users:read", "espocrm:teams:read"}
DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice": {"name": "Alice Sales", "role": "sales rep",
              "scopes": _rw(_SALES_AREAS) | DIRECTORY_READ},
    "bob": {"name": "Bob Manager", "role": "sales manager",
            "scopes": _rw(_SALES_AREAS, ("read", "write", "delete")) | DIRECTORY_READ},
    "carol": {"name": "Carol Support", "role": "support rep",
              "scopes": _rw(_SUPPORT_RW) | {"espocrm:contacts:read", "espocrm:accounts:read"}
              | DIRECTORY_READ},
    "admin": {"name": "Admin User", "role": "administrator", "scopes": set(ALL_SCOPES)},
}


def load_key(kid: str) -> RSAKey:
    """One of the checked-in demo signing keys (private JWK)."""
    data = json.loads((KEYS_DIR / f"{kid}.json").read_text())
    return RSAKey.import_key(data)


def public_pem(kid: str) -> bytes:
    return (KEYS_DIR / f"{kid}.pub.pem").read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class User:
    username: str
    name: str
    email: str
    scopes: set[str]
    password: str

    @property
    def sub(self) -> str:
        return f"auth0|{self.username}"


@dataclass
class Client:
    client_id: str
    redirect_uris: list[str]
    client_secret: str | None = None
    client_name: str = ""
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code",
                                                             "refresh_token"])
    scopes: set[str] = field(default_factory=set)  # client-credentials grants
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def auth_method(self) -> str:
        return "client_secret_post" if self.client_secret else "none"


@dataclass
class Grant:
    """What a code or refresh token stands for."""

    client_id: str
    username: str
    scopes: list[str]
    audience: str | None
    redirect_uri: str = ""
    code_challenge: str = ""
    nonce: str | None = None
    expires_at: float = 0.0


class Auth0Backend:
    """The tenant. All methods are thread-safe; ``reset()`` restores the demo state."""

    def __init__(self, issuer: str = "http://127.0.0.1:8100/", password: str = "demo",
                 default_audience: str | None = None) -> None:
        self.password = password
        self.issuer = issuer
        self.default_audience = default_audience
        self._lock = threading.RLock()
        self.reset()

    # --- state ---------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.users = {name: User(name, info["name"], f"{name}@example.com",
                                     set(info["scopes"]), self.password)
                          for name, info in DEMO_USERS.items()}
            self.clients: dict[str, Client] = {
                "demo-cli": Client("demo-cli", [], client_secret="demo-secret",
                                   client_name="Demo machine client",
                                   grant_types=["client_credentials"],
                                   scopes={s for s in ALL_SCOPES if s.endswith(":read")}),
                # the admin console (settings.admin_client_id); tests add their own redirect URI
                "espomcp-admin": Client("espomcp-admin", ["http://127.0.0.1:8000/admin/callback"],
                                        client_name="espomcp admin console"),
            }
            self.codes: dict[str, Grant] = {}
            self.refresh_tokens: dict[str, Grant] = {}
            self.keys = {kid: load_key(kid) for kid in KEY_IDS}
            self.published = [KEY_IDS[0]]
            self.signing_kid = KEY_IDS[0]
            self.jwks_down = False
            self.access_token_ttl = 3600
            self.auto_login: str | None = None
            self.serve_oauth_metadata = True
            self.log: list[tuple[str, dict[str, Any]]] = []

    def record(self, endpoint: str, params: dict[str, Any]) -> None:
        safe = {k: v for k, v in params.items()
                if k not in ("password", "client_secret", "code_verifier")}
        with self._lock:
            self.log.append((endpoint, safe))

    def requests_to(self, endpoint: str) -> list[dict[str, Any]]:
        with self._lock:
            return [params for name, params in self.log if name == endpoint]

    # --- keys ----------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [self.keys[kid].as_dict(private=False) for kid in self.published]}

    def rotate(self) -> str:
        """Publish the second demo key next to the first and sign with it from now on."""
        with self._lock:
            new = next(kid for kid in KEY_IDS if kid != self.signing_kid)
            if new not in self.published:
                self.published.append(new)
            self.signing_kid = new
            return new

    def retire(self, kid: str) -> None:
        with self._lock:
            self.published = [k for k in self.published if k != kid]

    # --- metadata ------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": base + "authorize",
            "token_endpoint": base + "oauth/token",
            "registration_endpoint": base + "oidc/register",
            "jwks_uri": base + ".well-known/jwks.json",
            "userinfo_endpoint": base + "userinfo",
            "revocation_endpoint": base + "oauth/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post",
                                                      "client_secret_basic"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": [*OIDC_SCOPES, *ALL_SCOPES],
            "authorization_response_iss_parameter_supported": True,
        }

    # --- clients -------------------------------------------------------------------
    def register_client(self, body: dict[str, Any]) -> dict[str, Any]:
        """Dynamic client registration (RFC 7591), as Auth0's ``/oidc/register``."""
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            raise InvalidClientMetadata("redirect_uris is required (a non-empty list of URLs)")
        method = body.get("token_endpoint_auth_method", "none")
        if method not in ("none", "client_secret_post", "client_secret_basic"):
            raise InvalidClientMetadata(f"unsupported token_endpoint_auth_method {method!r}")
        client = Client(client_id=secrets.token_urlsafe(16), redirect_uris=list(uris),
                        client_secret=secrets.token_urlsafe(32) if method != "none" else None,
                        client_name=str(body.get("client_name", "")),
                        grant_types=list(body.get("grant_types") or ["authorization_code"]),
                        metadata=dict(body))
        with self._lock:
            self.clients[client.client_id] = client
        answer = {**body, "client_id": client.client_id, "token_endpoint_auth_method": method,
                  "client_id_issued_at": int(time.time())}
        if client.client_secret:
            answer.update(client_secret=client.client_secret, client_secret_expires_at=0)
        return answer

    def client(self, client_id: str | None, secret: str | None = None,
               require_secret: bool = False) -> Client:
        client = self.clients.get(client_id or "")
        if client is None:
            raise InvalidClient("Unknown client.")
        if client.client_secret and not hmac.compare_digest(client.client_secret, secret or ""):
            raise InvalidClient("Client authentication failed.")
        if require_secret and not client.client_secret:
            raise UnauthorizedClient("This grant needs a confidential client.")
        return client

    # --- users and grants ------------------------------------------------------------
    def login(self, username: str, password: str) -> User:
        user = self.users.get(username.strip().lower())
        if user is None or not hmac.compare_digest(user.password, password):
            raise AccessDenied("Wrong email or password.")
        return user

    def grant_scopes(self, user: User, requested: str | None) -> list[str]:
        wanted = (requested or "").split()
        return [s for s in dict.fromkeys(wanted) if s in OIDC_SCOPES or s in user.scopes]

    def issue_code(self, client: Client, user: User, params: dict[str, str]) -> str:
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method", "plain") != "S256" or not challenge:
            raise InvalidRequest("PKCE with code_challenge_method=S256 is required.")
        code = secrets.token_urlsafe(24)
        grant = Grant(client.client_id, user.username,
                      self.grant_scopes(user, params.get("scope")),
                      params.get("audience") or params.get("resource") or self.default_audience,
                      redirect_uri=params.get("redirect_uri", ""), code_challenge=challenge,
                      nonce=params.get("nonce"), expires_at=time.time() + CODE_TTL)
        with self._lock:
            self.codes[code] = grant
        return code

    def exchange_code(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires_at < time.time():
            raise InvalidGrant("Invalid authorization code")
        if grant.client_id != client.client_id:
            raise InvalidGrant("The authorization code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise InvalidGrant("redirect_uri does not match the authorization request")
        if not compare_s256_code_challenge(form.get("code_verifier", ""), grant.code_challenge):
            raise InvalidGrant("Failed to verify code verifier")
        resource = form.get("audience") or form.get("resource")
        if resource and grant.audience and resource != grant.audience:
            raise InvalidGrant("resource does not match the authorization request")
        return self.token_response(client, self.users[grant.username], grant)

    def refresh(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        """Refresh-token grant with rotation: the used token stops working."""
        with self._lock:
            grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if grant is None or grant.client_id != client.client_id:
            raise InvalidGrant("Unknown or invalid refresh token.")
        wanted = form.get("scope")
        if wanted:
            narrowed = [s for s in wanted.split() if s in grant.scopes]
            grant = Grant(grant.client_id, grant.username, narrowed, grant.audience)
        return self.token_response(client, self.users[grant.username], grant)

    def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: revoke a refresh token of this client (unknown tokens are ignored)."""
        with self._lock:
            grant = self.refresh_tokens.get(token)
            if grant is not None and grant.client_id == client.client_id:
                del self.refresh_tokens[token]

    def client_credentials(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        audience = form.get("audience") or form.get("resource") or self.default_audience
        if not audience:
            raise InvalidRequest("No audience parameter was provided, and no default "
                                 "audience has been configured")
        wanted = form.get("scope")
        scopes = sorted(client.scopes if not wanted else set(wanted.split()) & client.scopes)
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": f"{client.client_id}@clients", "aud": audience,
                  "iat": now, "exp": now + self.access_token_ttl, "azp": client.client_id,
                  "scope": " ".join(scopes), "gty": "client-credentials",
                  "permissions": scopes}
        return {"access_token": self.sign(claims), "token_type": "Bearer",
                "expires_in": self.access_token_ttl, "scope": " ".join(scopes)}

    def token_response(self, client: Client, user: User, grant: Grant) -> dict[str, Any]:
        scopes = grant.scopes
        if grant.audience:
            access_token = self.mint(user.username, scopes, ttl=self.access_token_ttl,
                                     aud=self._audience_claim(grant.audience, scopes),
                                     azp=client.client_id)
        else:  # Auth0 issues opaque tokens when no API is named
            access_token = self.opaque_token()
        answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer",
                                  "expires_in": self.access_token_ttl,
                                  "scope": " ".join(scopes)}
        if "offline_access" in scopes:
            refresh_token = secrets.token_urlsafe(32)
            with self._lock:
                self.refresh_tokens[refresh_token] = Grant(client.client_id, user.username,
                                                           list(scopes), grant.audience)
            answer["refresh_token"] = refresh_token
        if "openid" in scopes:
            now = int(time.time())
            id_claims = {"iss": self.issuer, "sub": user.sub, "aud": client.client_id,
                         "iat": now, "exp": now + 36000, "email": user.email,
                         "name": user.name, "nickname": user.username}
            if grant.nonce:
                id_claims["nonce"] = grant.nonce
            answer["id_token"] = self.sign(id_claims)
        return answer

    def _audience_claim(self, audience: str, scopes: list[str]) -> str | list[str]:
        return [audience, self.issuer + "userinfo"] if "openid" in scopes else audience

    def userinfo(self, user_sub: str) -> dict[str, Any]:
        user = next((u for u in self.users.values() if u.sub == user_sub), None)
        if user is None:
            raise InvalidToken("Unknown user.")
        return {"sub": user.sub, "name": user.name, "nickname": user.username,
                "email": user.email, "email_verified": True}

    # --- tokens --------------------------------------------------------------------
    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        with self._lock:
            kid = self.signing_kid
            key = self.keys[kid]
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": kid, **(header or {})}, claims,
                          key)

    def mint(self, user: str, scopes: Iterable[str] | None = None, *, ttl: int = 3600,
             alg: str = "RS256", kid: str | None = None, drop: Iterable[str] = (),
             header: dict[str, Any] | None = None, now: float | None = None,
             **claims: Any) -> str:
        """An Auth0-shaped access token for ``user`` (default: all the user's scopes).

        Knobs for attack tests: any claim override (``aud``, ``iss``, ``sub``, ``nbf``, ``iat``
        …), ``ttl`` (negative = already expired), ``drop`` (claims to leave out), ``kid``
        (e.g. an unpublished one), ``header`` extras (e.g. ``crit``), and ``alg``: ``RS256``,
        ``none`` (unsigned) or ``HS256`` (signed with the public key PEM as the HMAC secret).
        """
        account = self.users[user]
        granted = sorted(account.scopes if scopes is None else scopes)
        issued = int(time.time() if now is None else now)
        body: dict[str, Any] = {
            "iss": self.issuer, "sub": account.sub,
            "aud": self.default_audience or DEFAULT_AUDIENCE,
            "iat": issued, "exp": issued + ttl, "azp": "demo-client",
            "scope": " ".join(granted),
            "permissions": [s for s in granted if s not in OIDC_SCOPES],
            "email": account.email,
        }
        body.update(claims)
        for name in drop:
            body.pop(name, None)
        with self._lock:
            kid = kid or self.signing_kid
        head = {"alg": alg, "typ": "JWT", "kid": kid, **(header or {})}
        signing_input = (_b64(json.dumps(head).encode()) + "." + _b64(json.dumps(body).encode()))
        if alg == "RS256":  # signed by hand so that odd headers (crit, typ) can be minted
            key = (self.keys.get(kid) or self.keys[self.signing_kid]).get_op_key("sign")
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            return signing_input + "." + _b64(signature)
        if alg == "none":
            return signing_input + "."
        if alg == "HS256":
            secret = public_pem(self.signing_kid)
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            return signing_input + "." + _b64(mac)
        raise ValueError(f"mint supports RS256, none and HS256, not {alg}")

    @staticmethod
    def opaque_token() -> str:
        """What Auth0 hands out when no API is named: not a JWT at all."""
        return secrets.token_urlsafe(32)

    def verify(self, token: str) -> dict[str, Any]:
        """Verify one of our own access tokens (``/userinfo``); raise ``ValueError``."""
        try:
            header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
            key = self.keys[header["kid"]]
            claims = jwt.decode(token, key, algorithms=["RS256"]).claims
        except Exception as exc:  # any failure means: not our token
            raise ValueError("invalid token") from exc
        if claims.get("exp", 0) < time.time() or claims.get("iss") != self.issuer:
            raise ValueError("invalid token")
        return claims
