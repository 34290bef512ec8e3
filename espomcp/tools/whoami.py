"""``whoami``: the caller's identity as the server sees it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from espomcp.mcp.registry import READ, Tool, ToolContext

if TYPE_CHECKING:
    from espomcp.services import Services

OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "sub": {"type": "string", "description": "Token subject"},
        "email": {"type": ["string", "null"]},
        "client_id": {"type": ["string", "null"]},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "espocrm_user": {
            "type": ["object", "null"],
            "description": "The EspoCRM user this identity maps to",
        },
        "fga_backend": {"type": "string"},
    },
    "required": ["sub", "scopes"],
}


def whoami(ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    principal = ctx.principal
    identity = ctx.services.identity
    espo_user = identity.describe(principal) if identity is not None else None
    return {
        "sub": principal.sub,
        "email": principal.email,
        "client_id": principal.client_id,
        "scopes": sorted(principal.scopes),
        "espocrm_user": espo_user,
        "fga_backend": ctx.services.settings.fga_backend,
    }


def tools(svc: Services) -> list[Tool]:
    return [
        Tool(
            name="whoami",
            title="Who am I",
            description="Show who you are signed in as: your identity, your OAuth scopes "
            "(what kinds of records you may read, write or delete) and the EspoCRM user "
            "your actions are performed as. Call this first if a permission error surprises "
            "you.",
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            output_schema=OUTPUT_SCHEMA,
            handler=whoami,
            annotations=READ,
        )
    ]
