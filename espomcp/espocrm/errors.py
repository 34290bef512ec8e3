"""Typed EspoCRM failures (reference §5, ``Core/Api/ErrorOutput.php``).

Every error carries a readable ``.message`` meant for the person (or model) behind a tool
call: EspoCRM's own reason where it is safe to show, never credentials, URLs with secrets or
stack traces. ``error_from_response`` is the one place HTTP responses become exceptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REASON_MAX = 200


class EspoError(Exception):
    """Base class: ``message`` is safe to show; ``status`` is the HTTP status (None if none)."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidInput(EspoError):
    """A bad entity type, id or parameter, refused before any request was sent."""


class ValidationFailed(EspoError):
    """400: EspoCRM refused a field value (``field``, ``type`` e.g. ``required``, ``valid``)."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None, type: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.type = type


class ServiceAccountError(EspoError):
    """401: the server's own EspoCRM credentials were refused; an operator must fix them."""

    status = 401


class AccessDenied(EspoError):
    """403: EspoCRM's ACL (of the service account) refused the operation."""

    status = 403


class NotFound(EspoError):
    """404: the record, link or entity type does not exist."""

    status = 404


class Duplicate(EspoError):
    """409 ``duplicate``: similar records exist; ``records`` lists them (id, name, ...)."""

    status = 409

    def __init__(self, message: str, records: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.records = records


class Conflict(EspoError):
    """409 other than duplicates, e.g. ``modified`` (stale version)."""

    status = 409


class Unavailable(EspoError):
    """EspoCRM could not be used: 5xx, timeout, connection failure or an unreadable answer."""


SERVICE_ACCOUNT_MESSAGE = (
    "EspoCRM rejected this server's service-account credentials (HTTP 401). This is a server "
    "configuration problem, not something you did: an operator must fix ESPOMCP_ESPOCRM_API_KEY "
    "/ ESPOMCP_ESPOCRM_SECRET_KEY / ESPOMCP_ESPOCRM_AUTH."
)


def clean_reason(value: str | None) -> str:
    """``X-Status-Reason`` made safe to show: control characters removed, length capped."""
    if not value:
        return ""
    text = _CONTROL.sub(" ", value).strip().rstrip(".")  # messages add their own full stop
    return text[:_REASON_MAX]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> EspoError:
    """Map a non-2xx EspoCRM response to the matching ``EspoError`` subclass."""
    reason = clean_reason(headers.get("X-Status-Reason"))
    data = _json(body)
    if status == 400:
        translation = data.get("messageTranslation") if isinstance(data, dict) else None
        details = translation.get("data") if isinstance(translation, dict) else None
        if isinstance(details, dict) and details.get("field"):
            field, kind = str(details["field"]), str(details.get("type") or "valid")
            return ValidationFailed(_validation_message(field, kind), field=field, type=kind)
        return ValidationFailed(f"EspoCRM refused the request: {reason or 'bad request'}.")
    if status == 401:
        return ServiceAccountError(SERVICE_ACCOUNT_MESSAGE)
    if status == 403:
        return AccessDenied(f"EspoCRM denied access: {reason or 'forbidden'}.")
    if status == 404:
        return NotFound(f"Not found in EspoCRM{': ' + reason if reason else ''}.")
    if status == 409:
        if reason == "duplicate" or isinstance(data, list):
            records = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
            names = ", ".join(f"{r.get('name') or '?'} ({r.get('id')})" for r in records[:5])
            return Duplicate(f"A similar record already exists: {names or 'unknown'}. Pass "
                             "skip_duplicate_check to create it anyway.", records)
        if reason == "modified":
            return Conflict("The record was modified by someone else meanwhile; reload it and retry.")
        return Conflict(f"EspoCRM reported a conflict: {reason or 'conflict'}.")
    if status >= 500:
        return Unavailable(f"EspoCRM is unavailable (HTTP {status}); try again later.",
                           status=status)
    return Unavailable(f"EspoCRM answered with unexpected HTTP {status}.", status=status)


def _validation_message(field: str, kind: str) -> str:
    hints = {
        "required": f"Field '{field}' is required.",
        "valid": f"Field '{field}' has an invalid value.",
        "maxLength": f"Field '{field}' is too long.",
        "pattern": f"Field '{field}' does not match the expected format.",
        "min": f"Field '{field}' is below the allowed minimum.",
        "max": f"Field '{field}' is above the allowed maximum.",
    }
    return hints.get(kind, f"Field '{field}' failed validation ({clean_reason(kind)}).")
