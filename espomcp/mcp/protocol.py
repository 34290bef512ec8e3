"""Protocol revisions and the 2026-07-28 request-metadata ladder (mcp-protocol reference §1, §3.3)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from espomcp.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    UNSUPPORTED_VERSION,
    JsonRpcError,
)

MODERN_VERSION = "2026-07-28"
MODERN_VERSIONS = (MODERN_VERSION,)
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LEGACY_HEADER_VALUES = frozenset((*LEGACY_VERSIONS, "2024-11-05"))
LATEST_LEGACY = LEGACY_VERSIONS[0]
SUPPORTED_VERSIONS = [*MODERN_VERSIONS, *LEGACY_VERSIONS]

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

_B64_VALUE = re.compile(r"^=\?base64\?([A-Za-z0-9+/=]*)\?=$")
_INTEGRAL = re.compile(r"^-?[0-9]+(\.0+)?$")


def is_modern(header_value: str | None) -> bool:
    """The era is chosen by MCP-Protocol-Version: absent or a handshake version = legacy."""
    return header_value is not None and header_value not in LEGACY_HEADER_VALUES


def decode_header_value(raw: str) -> str:
    """Decode the ``=?base64?…?=`` form; reject malformed or non-canonical base64."""
    match = _B64_VALUE.match(raw)
    if not match:
        return raw
    encoded = match.group(1)
    try:
        decoded = base64.b64decode(encoded, validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise JsonRpcError(HEADER_MISMATCH, "Malformed base64 header value") from exc
    if base64.b64encode(decoded).decode("ascii") != encoded:
        raise JsonRpcError(HEADER_MISMATCH, "Non-canonical base64 header value")
    return text


def _single(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name.lower(), [])
    if len(values) > 1:
        raise JsonRpcError(HEADER_MISMATCH, f"Header {name} appears more than once")
    return values[0] if values else None


def check_modern_request(
    headers: Mapping[str, list[str]], method: str, params: Mapping[str, Any]
) -> str:
    """Run §3.3 steps 1-3 for a modern request; return the requested protocol version."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise JsonRpcError(INVALID_PARAMS, "params._meta is required in protocol 2026-07-28")
    version = meta.get(META_VERSION)
    if not isinstance(version, str) or not isinstance(meta.get(META_CAPABILITIES), dict):
        raise JsonRpcError(
            INVALID_PARAMS,
            f"params._meta must carry {META_VERSION} and {META_CAPABILITIES}",
        )
    header_version = _single(headers, "MCP-Protocol-Version")
    if header_version != version:
        raise JsonRpcError(HEADER_MISMATCH, "MCP-Protocol-Version does not match params._meta")
    header_method = _single(headers, "Mcp-Method")
    if header_method is None or decode_header_value(header_method) != method:
        raise JsonRpcError(HEADER_MISMATCH, "Mcp-Method header missing or not equal to method")
    if method in ("tools/call", "prompts/get", "resources/read"):
        expected = params.get("uri" if method == "resources/read" else "name")
        header_name = _single(headers, "Mcp-Name")
        if header_name is None or decode_header_value(header_name) != expected:
            raise JsonRpcError(HEADER_MISMATCH, "Mcp-Name header missing or not equal to params")
    if version not in MODERN_VERSIONS:
        raise JsonRpcError(
            UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            {"supported": SUPPORTED_VERSIONS, "requested": version},
        )
    return version


def check_param_headers(
    headers: Mapping[str, list[str]], input_schema: Mapping[str, Any], arguments: Mapping[str, Any]
) -> None:
    """§3.3 step 4: arguments marked ``x-mcp-header`` must be mirrored in Mcp-Param-* headers."""
    for arg, schema in (input_schema.get("properties") or {}).items():
        header = schema.get("x-mcp-header") if isinstance(schema, dict) else None
        if not header:
            continue
        raw = _single(headers, f"Mcp-Param-{header}")
        value = arguments.get(arg)
        if value is None:  # absent or null: no header; one would route on a value never sent
            if raw is not None:
                raise JsonRpcError(HEADER_MISMATCH, f"Mcp-Param-{header} names an absent argument")
            continue
        if raw is None:
            raise JsonRpcError(HEADER_MISMATCH, f"Mcp-Param-{header} header is missing")
        text = decode_header_value(raw)
        if isinstance(value, bool):  # clients render booleans as JSON does: true / false
            same = text == ("true" if value else "false")
        elif isinstance(value, int):  # integers compare numerically: "42.0" == 42
            same = _INTEGRAL.match(text) is not None and int(text.split(".", 1)[0]) == value
        else:
            same = text == str(value)
        if not same:
            raise JsonRpcError(HEADER_MISMATCH, f"Mcp-Param-{header} does not match the argument")


def negotiate_legacy(requested: object) -> str:
    """Echo a supported legacy version, else answer with the latest one (§4.1)."""
    if isinstance(requested, str) and requested in LEGACY_VERSIONS:
        return requested
    return LATEST_LEGACY
