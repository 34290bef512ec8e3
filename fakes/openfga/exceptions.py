"""Errors of the fake OpenFGA server, with the real service's codes and HTTP statuses."""

from __future__ import annotations

from espomcp.fga.errors import AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX, FgaError

#: errors OpenFGA answers with a fixed message whatever the engine's wording
#: (openfga pkg/server/errors: AuthorizationModelResolutionTooComplex)
FIXED_MESSAGES = {
    AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX:
        "Authorization Model resolution required too many rewrite rules to be resolved. "
        "Check your authorization model for infinite recursion or too much nesting",
}


class OpenFgaError(Exception):
    """An OpenFGA error answer: ``{"code": ..., "message": ...}`` with ``status``."""

    status = 400
    code = "validation_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ValidationError(OpenFgaError):
    status, code = 400, "validation_error"


class AuthorizationModelNotFound(OpenFgaError):
    status, code = 400, "authorization_model_not_found"


class LatestAuthorizationModelNotFound(OpenFgaError):
    status, code = 400, "latest_authorization_model_not_found"


class InvalidContinuationToken(OpenFgaError):
    status, code = 400, "invalid_continuation_token"


class InvalidBearerToken(OpenFgaError):
    status, code = 401, "auth_failed_invalid_bearer_token"


class StoreNotFound(OpenFgaError):
    status, code = 404, "store_id_not_found"


class UndefinedEndpoint(OpenFgaError):
    status, code = 404, "undefined_endpoint"


class Unavailable(OpenFgaError):
    status, code = 503, "unavailable"


class InternalError(OpenFgaError):
    status, code = 500, "internal_error"


def from_engine(exc: FgaError) -> OpenFgaError:
    """The wire error for an engine FgaError: 2xxx → 400 with its name, 4xxx → 500 (a resolution
    past the depth limit, from Check, ListObjects or ListUsers, with OpenFGA's own message)."""
    if exc.code >= 4000:
        return InternalError(exc.message)
    name = exc.name
    return ValidationError(FIXED_MESSAGES.get(exc.code, exc.message),
                           code="validation_error" if name == "internal_error" else name)
