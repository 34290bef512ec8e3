"""Bearer-token usage and error responses (RFC 6750 §2.1, §3)."""

from __future__ import annotations

from collections.abc import Iterable


class BearerError(Exception):
    """An authentication or authorization failure answered with a ``WWW-Authenticate`` challenge.

    ``error`` is None for a request that carried no usable credentials (RFC 6750 §3.1: no error
    code then), ``invalid_token`` (401), ``insufficient_scope`` (403) or ``invalid_request`` (400).
    """

    status_by_error = {None: 401, "invalid_token": 401, "insufficient_scope": 403,
                       "invalid_request": 400}

    def __init__(self, error: str | None, description: str = "",
                 scope: Iterable[str] | None = None) -> None:
        super().__init__(description or error or "authentication required")
        self.error = error
        self.description = description
        self.scope = sorted(set(scope)) if scope is not None else None
        self.status_code = self.status_by_error[error]

    def challenge(self, resource_metadata: str, default_scope: Iterable[str] = ()) -> str:
        """Build the ``WWW-Authenticate`` value; every parameter quoted, separated by ``, ``."""
        params: list[tuple[str, str]] = []
        if self.error:
            params.append(("error", self.error))
        if self.description:
            params.append(("error_description", self.description))
        scope = self.scope if self.scope is not None else sorted(default_scope)
        if scope:
            params.append(("scope", " ".join(scope)))
        params.append(("resource_metadata", resource_metadata))
        return "Bearer " + ", ".join(f'{k}="{_quote(v)}"' for k, v in params)


def _quote(value: str) -> str:
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else " " for ch in value)
    return cleaned.replace("\\", "\\\\").replace('"', '\\"')


def token_from_header(value: str | None) -> str:
    """Extract the token from ``Authorization: Bearer <token>`` (RFC 6750 §2.1)."""
    if not value:
        raise BearerError(None, "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise BearerError(None, "")
    token = token.strip()
    if not token:
        raise BearerError("invalid_request", "the Bearer credentials are empty")
    if " " in token or "," in token:
        raise BearerError("invalid_request", "the Authorization header holds more than one token")
    return token
