"""The EspoCRM REST client: one service account, typed errors, ids checked before any URL."""

from __future__ import annotations

from espomcp.espocrm.client import EspoClient, ListPage
from espomcp.espocrm.errors import (
    AccessDenied,
    Conflict,
    Duplicate,
    EspoError,
    InvalidInput,
    NotFound,
    ServiceAccountError,
    Unavailable,
    ValidationFailed,
)

__all__ = [
    "AccessDenied",
    "Conflict",
    "Duplicate",
    "EspoClient",
    "EspoError",
    "InvalidInput",
    "ListPage",
    "NotFound",
    "ServiceAccountError",
    "Unavailable",
    "ValidationFailed",
]
