"""The wired services a request may use, built once per app by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from espomcp.auth.principal import Principal
    from espomcp.mcp.registry import ToolRegistry
    from espomcp.settings import Settings


class Authenticator(Protocol):
    """Turns the Authorization header into a Principal or raises ``BearerError``."""

    def authenticate(self, authorization: str | None) -> Principal: ...


class ReadinessCheck(Protocol):
    """A dependency /readyz asks: returns (ok, detail)."""

    def __call__(self) -> tuple[bool, str]: ...


@dataclass
class Services:
    """Everything a blueprint or tool handler needs; swapped by configuration, not by code."""

    settings: Settings
    registry: ToolRegistry
    authenticator: Authenticator
    crm: Any = None
    fga: Any = None
    identity: Any = None
    audit: Any = None
    outbox: Any = None
    metrics: Any = None
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
