"""Auth0's OAuth error responses: ``{"error": ..., "error_description": ...}`` with its statuses."""

from __future__ import annotations


class Auth0Error(Exception):
    """An OAuth error as Auth0 answers it (RFC 6749 §5.2 body)."""

    error = "server_error"
    status = 500

    def __init__(self, description: str, status: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        if status is not None:
            self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(Auth0Error):
    error = "invalid_request"
    status = 400


class InvalidClient(Auth0Error):
    error = "invalid_client"
    status = 401


class InvalidGrant(Auth0Error):
    # Auth0 answers invalid_grant with 403 (e.g. "Invalid authorization code").
    error = "invalid_grant"
    status = 403


class UnauthorizedClient(Auth0Error):
    error = "unauthorized_client"
    status = 403


class UnsupportedGrantType(Auth0Error):
    error = "unsupported_grant_type"
    status = 400


class UnsupportedResponseType(Auth0Error):
    error = "unsupported_response_type"
    status = 400


class AccessDenied(Auth0Error):
    error = "access_denied"
    status = 403


class InvalidToken(Auth0Error):
    error = "invalid_token"
    status = 401


class InvalidClientMetadata(Auth0Error):
    error = "invalid_client_metadata"
    status = 400


class ServiceUnavailable(Auth0Error):
    error = "temporarily_unavailable"
    status = 503
