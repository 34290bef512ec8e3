"""Streamable HTTP transport at ``/mcp``: stateless, JSON responses only.

Implements the HTTP rules common to both eras (mcp-protocol reference §2), the 2026-07-28
status mapping (§3.4) and the legacy rules (§4.2). Errors are converted here, in one place.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, request

from espomcp import jsontext
from espomcp.auth.bearer import BearerError
from espomcp.auth.scopes import BASIC_SCOPES
from espomcp.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_VERSION,
    JsonRpcError,
    classify,
    error_response,
    result_response,
)
from espomcp.mcp.protocol import (
    LEGACY_VERSIONS,
    META_VERSION,
    SUPPORTED_VERSIONS,
    check_modern_request,
    is_modern,
)
from espomcp.mcp.server import Call, McpServer
from espomcp.services import Services

bp = Blueprint("mcp", __name__)
log = logging.getLogger("espomcp.request")

MODERN_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    -32021: 400,
    UNSUPPORTED_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def services() -> Services:
    return current_app.extensions["espomcp"]


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> Response:
    return Response(jsontext.dumps(body), status=status, mimetype="application/json", headers=headers)


def rpc_error(code: int, message: str, status: int, request_id: Any = None,
              data: Any = None) -> Response:
    return json_response(error_response(request_id, JsonRpcError(code, message, data)), status)


def resource_metadata_url() -> str:
    return services().settings.public_url + "/.well-known/oauth-protected-resource/mcp"


def challenge_response(exc: BearerError, request_id: Any = None) -> Response:
    header = exc.challenge(resource_metadata_url(), BASIC_SCOPES)
    body = error_response(request_id, JsonRpcError(INVALID_REQUEST if exc.status_code == 400 else
                                             -32001, exc.description or "Unauthorized"))
    g.outcome = f"auth:{exc.error or 'missing'}"
    return json_response(body, exc.status_code, {"WWW-Authenticate": header})


def _allowed_origins(svc: Services) -> set[str]:
    cached = svc.extras.get("allowed_origins")
    if cached is None:
        public = urlsplit(svc.settings.public_url)
        cached = {f"{public.scheme}://{public.netloc}", *svc.settings.allowed_origins}
        svc.extras["allowed_origins"] = cached
    return cached


def origin_allowed(origin: str, svc: Services) -> bool:
    if origin in _allowed_origins(svc):
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost",
                                                                     "::1")


def host_allowed(host: str, svc: Services) -> bool:
    allowed = svc.extras.get("allowed_hosts")
    if allowed is None:
        public = urlsplit(svc.settings.public_url)
        allowed = {public.netloc.lower(), (public.hostname or "").lower(),
                   *(h.lower() for h in svc.settings.allowed_hosts)}
        svc.extras["allowed_hosts"] = allowed
    name = host.lower()
    if name in allowed:
        return True
    bare = name.rsplit(":", 1)[0] if not name.endswith("]") else name
    return bare in allowed or bare in LOOPBACK_HOSTS


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False


def _header_lists() -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return headers


_REQUEST_IDS = itertools.count(1)
_REQUEST_ID_PREFIX = os.urandom(6).hex()


def next_request_id() -> str:
    """A request id unique across workers and restarts (random per-process prefix plus a
    counter): it only correlates log and audit lines, so it need not be unguessable, and
    ``uuid4`` costs a system call per request."""
    return f"{_REQUEST_ID_PREFIX}{next(_REQUEST_IDS):010x}"


def read_capped(stream: Any, cap: int) -> bytes:
    """Up to ``cap`` bytes of a body of unknown length (streams may return short reads)."""
    parts: list[bytes] = []
    size = 0
    while size < cap:
        chunk = stream.read(cap - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


@bp.route("/mcp", methods=["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"])  # no auto-OPTIONS
def mcp_endpoint() -> Response:
    svc = services()
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    environ = req.environ  # single-valued headers straight from WSGI (no Headers object)
    g.mcp_method = None
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not origin_allowed(origin, svc):
        g.outcome = "forbidden-origin"
        return rpc_error(INVALID_REQUEST, "Origin not allowed", 403)
    if not host_allowed(req.host, svc):
        g.outcome = "forbidden-host"
        return rpc_error(INVALID_REQUEST, "Host not allowed", 421)  # §4.5: Misdirected
    if environ["REQUEST_METHOD"] != "POST":
        g.outcome = "method-not-allowed"
        response = rpc_error(INVALID_REQUEST, "Method not allowed: this server is stateless "
                             "and answers POST only", 405)
        response.headers["Allow"] = "POST"
        return response
    limit = svc.settings.max_body_bytes
    content_length = req.content_length
    if content_length is not None and content_length > limit:
        g.outcome = "too-large"
        return rpc_error(INVALID_REQUEST, f"Request body exceeds {limit} bytes", 413)
    if not _is_json(environ.get("CONTENT_TYPE"), req):
        g.outcome = "unsupported-media-type"
        return rpc_error(INVALID_REQUEST, "Content-Type must be application/json", 415)
    if not _accepts_json(environ.get("HTTP_ACCEPT")):
        g.outcome = "not-acceptable"
        return rpc_error(INVALID_REQUEST, "Accept must include application/json", 406)

    try:
        principal = svc.authenticator.authenticate(environ.get("HTTP_AUTHORIZATION"))
    except BearerError as exc:
        if exc.error and svc.audit is not None:  # a token was presented and refused
            svc.audit.record_auth_failure(exc.error, exc.description)
        return challenge_response(exc)
    g.principal = principal
    limiter = svc.extras.get("rate_limiter")
    if limiter is not None:
        retry_after = limiter.hit(principal.sub)
        if retry_after:
            g.outcome = "rate-limited"
            response = rpc_error(INVALID_REQUEST, "Too many requests; retry later", 429)
            response.headers["Retry-After"] = str(retry_after)
            return response

    # Chunked (no Content-Length): read one byte past the cap to refuse, not truncate.
    raw = read_capped(environ["wsgi.input"], limit + 1 if content_length is None
                      else content_length)
    if len(raw) > limit:
        g.outcome = "too-large"
        return rpc_error(INVALID_REQUEST, f"Request body exceeds {limit} bytes", 413)
    try:
        body = json.loads(raw.decode("utf-8"))  # RFC 8259 §8.1: UTF-8 only, strictly
    except (ValueError, RecursionError):
        g.outcome = "parse-error"
        return rpc_error(PARSE_ERROR, "Parse error: the body is not valid JSON", 400)
    if isinstance(body, list):
        g.outcome = "batch"
        return rpc_error(INVALID_REQUEST, "Batch requests are not supported", 400)
    kind = classify(body)
    if kind == "invalid":
        g.outcome = "invalid-request"
        return rpc_error(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 request", 400)

    header_version = environ.get("HTTP_MCP_PROTOCOL_VERSION")
    modern = is_modern(header_version)
    if kind == "response" and modern:  # §2/§3.1: no server→client requests to answer
        g.outcome = "invalid-request"
        return rpc_error(INVALID_REQUEST, "Invalid Request: a response object is not a "
                         "request in protocol 2026-07-28", 400)
    if kind in ("notification", "response"):
        if modern and header_version not in SUPPORTED_VERSIONS:
            return rpc_error(UNSUPPORTED_VERSION, "Unsupported protocol version", 400,
                             data={"supported": SUPPORTED_VERSIONS, "requested": header_version})
        g.outcome = "accepted"
        return Response(status=202)
    return handle_request(svc, body, header_version, modern, principal)


def _is_json(content_type: str | None, req: Any) -> bool:
    """Content-Type is application/json (parameters such as charset allowed)."""
    if content_type == "application/json":  # the common case, without parsing
        return True
    return (req.mimetype or "").lower() == "application/json"


def handle_request(svc: Services, body: dict[str, Any], header_version: str | None,
                   modern: bool, principal: Any) -> Response:
    request_id = body["id"]
    method: str = body["method"]
    params: dict[str, Any] = body.get("params") or {}
    g.mcp_method = method
    if method == "tools/call" and isinstance(params.get("name"), str):
        g.tool = params["name"][:128]
    # Only 2026-07-28 requests read the header ladder (Mcp-Method, Mcp-Name, Mcp-Param-*).
    headers = _header_lists() if modern else {}
    try:
        if modern:
            check_modern_request(headers, method, params)
        else:
            meta = params.get("_meta")
            if header_version is None and isinstance(meta, dict) and META_VERSION in meta:
                raise JsonRpcError(HEADER_MISMATCH, "MCP-Protocol-Version header is required "
                                   "when params._meta names a protocol version")
            if header_version is not None and header_version not in LEGACY_VERSIONS:
                return rpc_error(INVALID_REQUEST, f"Unsupported MCP-Protocol-Version "
                                 f"{header_version!r}", 400, request_id)
        server: McpServer = svc.extras["mcp_server"]
        result = server.dispatch(Call(method=method, params=params, modern=modern,
                                      principal=principal, headers=headers,
                                      request_id=next_request_id()))
    except BearerError as exc:
        return challenge_response(exc, request_id)
    except JsonRpcError as exc:
        g.outcome = f"rpc-error:{exc.code}"
        status = MODERN_STATUS.get(exc.code, 200) if modern else (
            400 if exc.code == HEADER_MISMATCH else 200)
        return json_response(error_response(request_id, exc), status)
    except Exception:
        log.exception("unhandled error in %s", method)
        g.outcome = "internal-error"
        return json_response(error_response(request_id, JsonRpcError(
            INTERNAL_ERROR, "Internal error")), 200)
    g.outcome = "error" if result.get("isError") else "ok"
    return json_response(result_response(request_id, result))


def init_app(app: Any, svc: Services) -> None:
    svc.extras["mcp_server"] = McpServer(svc)
    app.register_blueprint(bp)

