"""The admin console as an OAuth 2.1 client: authorization code + PKCE (RFC 6749 §4.1, RFC 7636).

Discovers the issuer's metadata (RFC 8414, then OpenID discovery), sends the browser to the
authorization endpoint with ``resource`` and ``audience`` = the MCP URL (RFC 8707; Auth0's
name for it) and exchanges the code for an access token, which the caller validates with the
same authenticator the MCP endpoint uses. Errors are ``OAuthError`` with a readable message.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge

METADATA_TTL = 300.0


class OAuthError(Exception):
    """Sign-in failed; ``message`` is safe to show (no tokens, no upstream bodies)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LoginRequest:
    """Where to send the browser, and what the callback must check and send back."""

    url: str
    state: str
    verifier: str


class AdminOAuthClient:
    """A public OAuth client (no secret) for ``client_id`` at ``issuer``."""

    def __init__(self, issuer: str, client_id: str, redirect_uri: str, resource: str,
                 scope: str, timeout: float = 10.0) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.resource = resource
        self.scope = scope
        self.timeout = timeout
        self._metadata: dict[str, Any] | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        """The authorization server's metadata (cached); its ``issuer`` must match exactly."""
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._fetched < METADATA_TTL:
                return self._metadata
        base = self.issuer.rstrip("/")
        for suffix in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            try:
                response = requests.get(base + suffix, timeout=self.timeout)
            except requests.RequestException as exc:
                raise OAuthError(f"the sign-in service at {self.issuer} is unreachable "
                                 f"({type(exc).__name__})") from exc
            if response.status_code != 200:
                continue
            try:
                data = response.json()
            except ValueError:
                continue
            if not isinstance(data, dict) or data.get("issuer") != self.issuer:
                raise OAuthError("the sign-in service's metadata names a different issuer")
            for key in ("authorization_endpoint", "token_endpoint"):
                if not isinstance(data.get(key), str):
                    raise OAuthError(f"the sign-in service's metadata lacks {key}")
            with self._lock:
                self._metadata, self._fetched = data, time.monotonic()
            return data
        raise OAuthError(f"the sign-in service at {self.issuer} publishes no OAuth metadata")

    def begin(self) -> LoginRequest:
        """A fresh ``state`` and PKCE verifier, and the authorization URL carrying them."""
        meta = self.metadata()
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": state,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            "resource": self.resource,
            "audience": self.resource,
        }
        endpoint = meta["authorization_endpoint"]
        separator = "&" if "?" in endpoint else "?"
        return LoginRequest(endpoint + separator + urlencode(query), state, verifier)

    def check_callback(self, args: dict[str, str], expected_state: str) -> str:
        """The authorization code from the callback query, after the RFC 6749 §4.1.2 and
        RFC 9207 checks (``state`` matches; ``iss``, when sent or promised, is the issuer)."""
        if args.get("error"):
            description = args.get("error_description") or args["error"]
            raise OAuthError(f"the sign-in service refused: {description[:200]}")
        state = args.get("state", "")
        if not expected_state or not secrets.compare_digest(state, expected_state):
            raise OAuthError("the sign-in response does not belong to this browser session; "
                             "start again")
        iss = args.get("iss")
        if iss is not None and iss != self.issuer:
            raise OAuthError("the sign-in response came from a different issuer")
        if iss is None and self.metadata().get("authorization_response_iss_parameter_supported"):
            raise OAuthError("the sign-in response lacks the issuer (iss) parameter")
        code = args.get("code", "")
        if not code:
            raise OAuthError("the sign-in response carries no authorization code")
        return code

    def exchange(self, code: str, verifier: str) -> str:
        """Redeem ``code`` at the token endpoint; return the access token."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
            "resource": self.resource,
        }
        try:
            response = requests.post(self.metadata()["token_endpoint"], data=form,
                                     headers={"Accept": "application/json"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise OAuthError(f"the token endpoint is unreachable ({type(exc).__name__})") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise OAuthError(f"the token endpoint refused the code ({error or response.status_code})")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OAuthError("the token endpoint answered without an access token")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise OAuthError("the token endpoint issued a token that is not a Bearer token")
        return token
