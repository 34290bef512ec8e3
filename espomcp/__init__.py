"""espomcp: a multi-user MCP server for EspoCRM with OAuth scopes and fine-grained authorization."""

from __future__ import annotations

__version__ = "0.1.0"

from espomcp.factory import create_app

__all__ = ["__version__", "create_app"]
