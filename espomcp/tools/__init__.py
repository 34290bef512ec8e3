"""The tool catalogue: declared once, registered according to configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from espomcp.tools import bulk, catalog, leads, records, related, search, whoami

if TYPE_CHECKING:
    from espomcp.services import Services

MODULES = [whoami, catalog, search, records, related, leads, bulk]


def register_tools(svc: Services) -> None:
    """Register every tool the configuration allows (read-only mode, disabled tools)."""
    settings = svc.settings
    for module in MODULES:
        for tool in module.tools(svc):
            if tool.name in settings.disabled_tools:
                continue
            if settings.read_only and not tool.annotations.read_only:
                continue
            svc.registry.add(tool)
