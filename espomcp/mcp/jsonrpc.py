"""JSON-RPC 2.0 envelopes and the error codes MCP uses (JSON-RPC 2.0 §5, MCP 2026-07-28 §errors)."""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022

RequestId = str | int | None


class JsonRpcError(Exception):
    """A protocol-level error; becomes a JSON-RPC error object (never a tool result)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def error_response(request_id: RequestId, error: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_dict()}


def result_response(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def valid_id(value: object) -> bool:
    """JSON-RPC ids are strings or integers (MCP forbids null ids on requests)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def classify(body: object) -> str:
    """Return 'request', 'notification', 'response' or 'invalid' for a parsed JSON body."""
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        return "invalid"
    if "method" in body:
        if not isinstance(body["method"], str) or not body["method"]:
            return "invalid"
        if "params" in body and not isinstance(body["params"], dict):
            return "invalid"
        if "id" not in body:
            return "notification"
        return "request" if valid_id(body["id"]) else "invalid"
    if "id" in body and ("result" in body or "error" in body):
        return "response"
    return "invalid"
