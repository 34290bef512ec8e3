"""OpenFGA error codes and names (openfga/api errors.proto), shared by every FGA component."""

from __future__ import annotations

VALIDATION_ERROR = 2000
AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX = 2002
TYPE_NOT_FOUND = 2021
RELATION_NOT_FOUND = 2022
INVALID_TUPLE = 2027
WRITE_FAILED_DUE_TO_INVALID_INPUT = 2017
INVALID_AUTHORIZATION_MODEL = 2056
CANNOT_ALLOW_DUPLICATE_TUPLES_IN_ONE_REQUEST = 2004
EXCEEDED_ENTITY_LIMIT = 2025

NAMES = {
    VALIDATION_ERROR: "validation_error",
    AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX: "authorization_model_resolution_too_complex",
    TYPE_NOT_FOUND: "type_not_found",
    RELATION_NOT_FOUND: "relation_not_found",
    INVALID_TUPLE: "invalid_tuple",
    WRITE_FAILED_DUE_TO_INVALID_INPUT: "write_failed_due_to_invalid_input",
    INVALID_AUTHORIZATION_MODEL: "invalid_authorization_model",
    CANNOT_ALLOW_DUPLICATE_TUPLES_IN_ONE_REQUEST: "cannot_allow_duplicate_tuples_into_write_request",
    EXCEEDED_ENTITY_LIMIT: "exceeded_entity_limit",
}


class FgaError(Exception):
    """An OpenFGA-style error: numeric ``code``, wire ``name`` and a readable message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        return NAMES.get(self.code, "internal_error")

    def __repr__(self) -> str:
        return f"FgaError({self.code}, {self.message!r})"


def resolution_too_complex(limit: int) -> FgaError:
    """The error of a request whose resolution needs ``limit`` or more levels (OpenFGA 2002);
    ListObjects and ListUsers raise it with the message Check gives at its limit."""
    return FgaError(AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX,
                    f"resolution exceeded the depth limit of {limit}")


class FgaUnavailable(Exception):
    """The FGA backend could not answer (down, timeout, misconfigured): callers must deny."""
