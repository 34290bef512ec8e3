"""The OAuth 2.1 resource server: ``Authorization`` header in, ``Principal`` out.

Validates on every request (no session substitutes for a token); failures become
``BearerError`` challenges in the transport (RFC 6750 §3). The client's token is never kept,
logged or forwarded upstream.
"""

from __future__ import annotations

import logging
from typing import Any

from espomcp.auth.bearer import BearerError, token_from_header
from espomcp.auth.jwks import JwksKeySource
from espomcp.auth.jwt_access_token import (
    InvalidToken,
    JwtAccessTokenValidator,
    TokenPolicy,
    scopes_from_claims,
)
from espomcp.auth.principal import Principal
from espomcp.settings import Settings

log = logging.getLogger("espomcp.auth")

# Claims copied onto the Principal (for identity mapping and audit); never the raw token.
KEPT_CLAIMS = ("iss", "sub", "aud", "azp", "client_id", "gty", "email", "email_verified",
               "name", "nickname", "exp", "iat", "jti")


class ResourceServer:
    """Authenticates bearer JWTs with a ``JwtAccessTokenValidator``."""

    def __init__(self, validator: JwtAccessTokenValidator, identity_claim: str = "") -> None:
        self.validator = validator
        self.identity_claim = identity_claim

    def authenticate(self, authorization: str | None) -> Principal:
        """Return the caller or raise ``BearerError`` (no error code when no token was sent)."""
        token = token_from_header(authorization)
        try:
            # The Principal is built once per verified token; the claims are checked each call.
            return self.validator.validate_as(token, self.principal_from_claims)
        except InvalidToken as exc:
            log.info("token rejected: %s", exc)
            raise BearerError("invalid_token", str(exc)) from None

    def principal_from_claims(self, claims: dict[str, Any]) -> Principal:
        kept = {name: claims[name] for name in KEPT_CLAIMS if name in claims}
        for name, value in claims.items():
            # Auth0 custom claims are namespaced URLs, e.g. https://example.com/email.
            if name.startswith(("http://", "https://")) and isinstance(value, (str, int, bool)):
                kept[name] = value
        if self.identity_claim and self.identity_claim in claims:
            kept[self.identity_claim] = claims[self.identity_claim]
        client_id = claims.get("azp") or claims.get("client_id")
        return Principal(
            sub=claims["sub"],
            scopes=scopes_from_claims(claims),
            email=_email(claims),
            client_id=client_id if isinstance(client_id, str) else None,
            claims=kept,
        )


def _email(claims: dict[str, Any]) -> str | None:
    value = claims.get("email")
    if not isinstance(value, str):
        value = next((v for k, v in claims.items()
                      if k.startswith(("http://", "https://")) and k.endswith("/email")
                      and isinstance(v, str)), None)
    return value.strip().lower() if isinstance(value, str) and "@" in value else None


def build_authenticator(settings: Settings) -> ResourceServer:
    """The resource server for ``settings``: issuer, audience, algorithms, JWKS cache."""
    keys = JwksKeySource(settings.jwks_url, cooldown_seconds=settings.jwks_refresh_cooldown_seconds)
    policy = TokenPolicy(issuer=settings.auth_issuer, audience=settings.audience,
                         algorithms=tuple(settings.auth_algorithms),
                         leeway_seconds=settings.auth_leeway_seconds)
    return ResourceServer(JwtAccessTokenValidator(policy, keys), settings.identity_claim)
