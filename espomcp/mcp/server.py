"""The MCP method table: a pure dispatcher from a JSON-RPC request to a result or an error.

Transport concerns (HTTP status, headers, eras) live in ``transport.py``; this module only
knows methods, tools and results.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from espomcp import __version__, jsontext
from espomcp.auth.bearer import BearerError
from espomcp.auth.scopes import ADMIN_SCOPE, AREA_BY_ENTITY
from espomcp.deadline import within
from espomcp.mcp.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, JsonRpcError
from espomcp.mcp.protocol import (
    META_SERVER_INFO,
    SUPPORTED_VERSIONS,
    check_param_headers,
    negotiate_legacy,
)
from espomcp.mcp.registry import Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from espomcp.auth.principal import Principal
    from espomcp.services import Services

log = logging.getLogger("espomcp.mcp")

SERVER_NAME = "espomcp"
INSTRUCTIONS = (
    "Tools for working with an EspoCRM instance on behalf of the signed-in user. "
    "Start with list_entity_types and describe_entity to learn fields, then search_records "
    "and get_record. Every record carries its id; use ids, not names, in later calls. "
    "You only see records the user may read; a permission error names the missing permission."
)
CAPABILITIES = {"tools": {"listChanged": False}}


@dataclass
class Call:
    """One JSON-RPC request as the dispatcher sees it."""

    method: str
    params: dict[str, Any]
    modern: bool
    principal: Principal
    headers: Mapping[str, list[str]]
    request_id: str = ""


Method = Callable[["McpServer", Call], dict[str, Any]]


class McpServer:
    """Dispatches MCP methods for both protocol eras."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.server_info = {"name": SERVER_NAME, "title": "EspoCRM MCP", "version": __version__}

    # --- dispatch ---------------------------------------------------------------------
    def dispatch(self, call: Call) -> dict[str, Any]:
        table = MODERN_METHODS if call.modern else LEGACY_METHODS
        method = table.get(call.method)
        if method is None:
            raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {call.method}")
        result = method(self, call)
        if call.modern:
            result["resultType"] = "complete"
            meta = result.setdefault("_meta", {})
            meta[META_SERVER_INFO] = {"name": SERVER_NAME, "version": __version__}
        return result

    # --- methods ----------------------------------------------------------------------
    def initialize(self, call: Call) -> dict[str, Any]:
        return {
            "protocolVersion": negotiate_legacy(call.params.get("protocolVersion")),
            "capabilities": CAPABILITIES,
            "serverInfo": self.server_info,
            "instructions": INSTRUCTIONS,
        }

    def discover(self, call: Call) -> dict[str, Any]:
        return {
            "supportedVersions": SUPPORTED_VERSIONS,
            "capabilities": CAPABILITIES,
            "serverInfo": self.server_info,
            "instructions": INSTRUCTIONS,
            "ttlMs": 0,
            "cacheScope": "private",
        }

    def ping(self, call: Call) -> dict[str, Any]:
        return {}

    def visible_tools(self, principal: Principal) -> list[Tool]:
        tools = list(self.services.registry)
        if self.services.settings.list_all_tools:
            return tools
        return [t for t in tools if not t.visible_with or t.visible_with & principal.scopes]

    def list_tools(self, call: Call) -> dict[str, Any]:
        cursor = call.params.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise JsonRpcError(INVALID_PARAMS, "cursor must be a string")
        try:
            page, next_cursor = self.services.registry.page(
                self.visible_tools(call.principal), cursor
            )
        except ValueError as exc:
            raise JsonRpcError(INVALID_PARAMS, "Invalid cursor") from exc
        result: dict[str, Any] = {"tools": [t.definition() for t in page]}
        if next_cursor:
            result["nextCursor"] = next_cursor
        if call.modern:
            result["ttlMs"] = 0
            result["cacheScope"] = "private"
        return result

    def resolve_tool(self, params: Mapping[str, Any]) -> tuple[Tool, dict[str, Any]]:
        """Find the tool and its arguments, or raise the spec's -32602."""
        name = params.get("name")
        if not isinstance(name, str):
            raise JsonRpcError(INVALID_PARAMS, "params.name must be a string")
        tool = self.services.registry.get(name)
        if tool is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown tool: {name[:100]}")
        arguments = params.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise JsonRpcError(INVALID_PARAMS, "params.arguments must be an object")
        return tool, arguments

    def required_scopes(self, tool: Tool, arguments: dict[str, Any]) -> frozenset[str]:
        try:
            needed = tool.required_scopes(arguments)
        except (TypeError, ValueError, KeyError, AttributeError):
            # Malformed arguments: validation reports them (ToolError). Valid ones mean the
            # rule itself is broken, which must never read as "no scope needed".
            self.services.registry.validate_arguments(tool, arguments)
            log.exception("scope rule of %s failed on valid arguments; requiring %s",
                          tool.name, ADMIN_SCOPE)
            return frozenset({ADMIN_SCOPE})
        entity_type = arguments.get("entity_type")
        if isinstance(entity_type, str) and entity_type not in AREA_BY_ENTITY \
                and entity_type in tool.entity_types():
            # A configured type without a scope area needs the admin scope (scope_for);
            # it must never fall through to "no scope needed".
            needed = needed | {ADMIN_SCOPE}
        return needed

    def call_tool(self, call: Call) -> dict[str, Any]:
        tool, arguments = self.resolve_tool(call.params)
        if call.modern:
            check_param_headers(call.headers, tool.input_schema, arguments)
        ctx = ToolContext(principal=call.principal, services=self.services,
                          request_id=call.request_id)
        ctx.audit.update(tool=tool.name, entity_type=arguments.get("entity_type"),
                         record_id=arguments.get("id"))
        started = time.perf_counter()
        try:
            needed = self.required_scopes(tool, arguments)
            missing = call.principal.missing_scopes(needed)
            if missing:
                ctx.audit.update(decision="deny", layer="scope", missing=sorted(missing))
                # Step-up (mcp-authorization §3): challenge with granted-still-needed + new.
                raise BearerError(
                    "insufficient_scope",
                    f"{' '.join(sorted(missing))} required for {tool.name}",
                    scope=needed,
                )
            self.services.registry.validate_arguments(tool, arguments)
            with within(self.services.settings.request_timeout_seconds):
                structured = tool.handler(ctx, arguments)
            ctx.audit.setdefault("decision", "allow")
        except ToolError as exc:
            ctx.audit.setdefault("decision", "error")
            ctx.audit.setdefault("layer", "tool")
            ctx.audit.setdefault("reason", exc.message)
            return tool_error_result(exc)
        except BearerError:
            raise
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("tool %s failed (incident %s)", tool.name, incident)
            ctx.audit.update(decision="error", layer="server", incident=incident)
            return tool_error_result(ToolError(
                f"{tool.name} failed because of an internal server error "
                f"(incident {incident}); the operator can find details in the server log."
            ))
        finally:
            ctx.audit["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
            self._audit(call, ctx)
        return tool_result(structured)

    def _audit(self, call: Call, ctx: ToolContext) -> None:
        metrics = self.services.metrics
        if metrics is not None:
            decision = ctx.audit.get("decision", "error")
            metrics.child(metrics.decisions, decision, ctx.audit.get("layer", "tool")).inc()
            metrics.child(metrics.tool_calls, ctx.audit.get("tool", "?"), decision).inc()
        audit = self.services.audit
        if audit is not None:
            audit.record(call.principal, ctx.audit)


def tool_result(structured: dict[str, Any]) -> dict[str, Any]:
    """A successful result: structured content plus the same data as JSON text.

    Compact, on one line: as readable as an indented dump for a model, with fewer tokens, and
    encoding it (``indent`` forces json's pure-Python encoder) was the largest CPU cost of a
    tool call after the EspoCRM request itself (bench/README.md).
    """
    text = jsontext.dumps_text(structured)
    return {"content": [{"type": "text", "text": text}], "structuredContent": structured,
            "isError": False}


def tool_error_result(error: ToolError) -> dict[str, Any]:
    text = error.message
    if error.data:
        text += "\n" + jsontext.dumps_text(error.data)
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    return result


MODERN_METHODS: dict[str, Method] = {
    "server/discover": McpServer.discover,
    "tools/list": McpServer.list_tools,
    "tools/call": McpServer.call_tool,
}
LEGACY_METHODS: dict[str, Method] = {
    "initialize": McpServer.initialize,
    "ping": McpServer.ping,
    "tools/list": McpServer.list_tools,
    "tools/call": McpServer.call_tool,
}
