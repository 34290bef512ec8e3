"""EspoCRM's error classes as the fake raises them (reference §5, ``Core/Api/ErrorOutput.php``).

Each carries the HTTP status, the ``X-Status-Reason`` text (control characters replaced by
spaces, as EspoCRM does) and an optional JSON body; 401 has neither reason nor body.
"""

from __future__ import annotations

import re
from typing import Any


class EspoHttpError(Exception):
    status = 500
    reason_header = True

    def __init__(self, reason: str = "", body: Any = None) -> None:
        super().__init__(reason)
        self.reason = re.sub(r"[\x00-\x1f\x7f]", " ", reason)
        self.body = body

    def headers(self) -> dict[str, str]:
        return {"X-Status-Reason": self.reason} if self.reason and self.reason_header else {}


class BadRequest(EspoHttpError):
    status = 400


class Unauthorized(EspoHttpError):
    """401 with an empty body; ``challenge`` adds ``WWW-Authenticate: Basic realm=""``."""

    status = 401
    reason_header = False

    def __init__(self, challenge: bool = False) -> None:
        super().__init__()
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm=""'} if self.challenge else {}


class Forbidden(EspoHttpError):
    status = 403


class NotFound(EspoHttpError):
    status = 404


class Conflict(EspoHttpError):
    status = 409


class ServiceUnavailable(EspoHttpError):
    status = 503


class ValidationFailure(BadRequest):
    """400 field validation failure with EspoCRM's ``messageTranslation`` body."""

    def __init__(self, entity_type: str, field: str, kind: str) -> None:
        super().__init__(
            f"Field validation failure; entityType: {entity_type}, field: {field}, type: {kind}.",
            {"messageTranslation": {"label": "validationFailure", "scope": None,
                                    "data": {"field": field, "type": kind}}},
        )
        self.field = field
        self.kind = kind


class Duplicate(Conflict):
    """409 ``duplicate`` whose body is the array of duplicate records."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__("duplicate", records)


def controller_missing(name: str) -> NotFound:
    return NotFound(f"Controller '{name}' does not exist.")
