"""App-level behaviour: health and readiness, tool-set configuration, metrics, JSON errors."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from espomcp import create_app
from espomcp.fga.tuples import TupleKey
from espomcp.health import public_detail


def test_healthz(mcp_client):
    response = mcp_client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_readyz_reports_each_dependency(mcp_client, espocrm_server):
    response = mcp_client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body["checks"]) >= {"espocrm", "fga", "outbox"}
    espocrm_server.fault("down")
    try:
        response = mcp_client.get("/readyz")
    finally:
        espocrm_server.fault("off")
    assert response.status_code == 503
    assert response.get_json()["checks"]["espocrm"]["ok"] is False


def test_readyz_does_not_identify_the_service_account(mcp_app, mcp_client):
    # /readyz is public: it says EspoCRM accepts the credentials, not whose they are.
    account = mcp_app.extensions["espomcp"].crm.app_user()["user"]
    body = mcp_client.get("/readyz").get_json()
    assert body["checks"]["espocrm"]["ok"] is True
    detail = body["checks"]["espocrm"]["detail"]
    assert account["userName"] not in detail  # "espomcp" may be part of the data dir's path
    for value in (account["id"], account["name"]):
        assert value not in str(body)


def test_readyz_shows_fga_off_loudly(make_settings):
    app = create_app(make_settings(fga_backend="off"))
    body = app.test_client().get("/readyz").get_json()
    assert "disabled" in body["checks"]["fga"]["detail"].lower()


# What a public /readyz may say about a dependency: ok, or a short generic reason.
PUBLIC_DETAIL = re.compile(r"ok|FGA disabled \(scope-only\)|depth \d+|unreachable|timeout|HTTP \d{3}"
                           r"|unavailable|check failed")


def _public(body: dict[str, Any], *hidden: str) -> None:
    text = json.dumps(body)
    for value in hidden:
        assert value not in text, f"/readyz shows {value!r}: {text}"
    for name, check in body["checks"].items():
        assert PUBLIC_DETAIL.fullmatch(check["detail"]), (name, check)


def test_readyz_does_not_show_the_embedded_store(mcp_app, mcp_client):
    svc = mcp_app.extensions["espomcp"]
    body = mcp_client.get("/readyz").get_json()
    assert body["checks"]["fga"] == {"ok": True, "detail": "ok"}
    _public(body, svc.fga.location, str(svc.settings.data_dir), "tuples", "sqlite")


@pytest.mark.parametrize("fault", ["ok", "down"])
def test_readyz_does_not_show_the_openfga_server_or_store(make_settings, fake_openfga, fault, caplog):
    store_id, model_id = fake_openfga.new_store()
    app = create_app(make_settings(fga_backend="openfga", fga_api_url=fake_openfga.url,
                                   fga_store_id=store_id, fga_model_id=model_id))
    fake_openfga.fault(fault)
    try:
        with caplog.at_level(logging.INFO, logger="espomcp.health"):
            response = app.test_client().get("/readyz")
    finally:
        fake_openfga.fault("ok")
    body = response.get_json()
    _public(body, fake_openfga.url, "127.0.0.1", store_id, model_id, "OpenFGA")
    if fault == "ok":
        assert response.status_code == 200 and body["checks"]["fga"] == {"ok": True, "detail": "ok"}
    else:  # the reason stays short; the server log keeps what the probe saw
        assert response.status_code == 503
        assert body["checks"]["fga"] == {"ok": False, "detail": "HTTP 503"}
        assert any("fga" in r.getMessage() and "HTTP 503" in r.getMessage() and "OpenFGA" in r.getMessage()
                   for r in caplog.records if r.name == "espomcp.health")


def test_readyz_failure_reasons_are_generic(mcp_app, mcp_client, espocrm_server):
    espocrm_server.fault("down")
    try:
        body = mcp_client.get("/readyz").get_json()
    finally:
        espocrm_server.fault("off")
    assert body["checks"]["espocrm"] == {"ok": False, "detail": "HTTP 503"}
    outbox = mcp_app.extensions["espomcp"].extras["outbox"]
    outbox.stop_drainer()  # keep the queued change queued
    outbox.enqueue([TupleKey("user:u1", "owner", "contact:c1", None)],
                   error="FgaUnavailable: OpenFGA unreachable at http://10.1.2.3:8080 (store 01HSTORE)")
    body = mcp_client.get("/readyz").get_json()
    assert body["checks"]["outbox"] == {"ok": True, "detail": "depth 1"}
    _public(body, "10.1.2.3", "01HSTORE", "FgaUnavailable")


def test_a_probe_that_raises_is_reported_without_its_message(mcp_app, mcp_client, caplog):
    def broken() -> tuple[bool, str]:
        raise RuntimeError("cannot open /srv/espomcp/store.db")
    mcp_app.extensions["espomcp"].readiness["fga"] = broken
    with caplog.at_level(logging.INFO, logger="espomcp.health"):
        for _ in range(3):
            body = mcp_client.get("/readyz").get_json()
    assert body["checks"]["fga"] == {"ok": False, "detail": "check failed"}
    _public(body, "/srv", "RuntimeError")
    logged = [r.getMessage() for r in caplog.records if r.name == "espomcp.health"]
    assert len(logged) == 1 and "/srv/espomcp/store.db" in logged[0]  # once per change, in full


@pytest.mark.parametrize(("ok", "detail", "public"), [
    (True, "embedded FGA store (/var/lib/espomcp/fga.sqlite3), 12 tuples", "ok"),
    (True, "FGA disabled (scope-only)", "FGA disabled (scope-only)"),
    (True, "depth 3, oldest 20 s, last error: FgaUnavailable: http://fga:8080 down", "depth 3"),
    (False, "depth 1200, oldest 600 s, last error: x", "depth 1200"),
    (False, "EspoCRM did not answer within 10 s; try again later.", "timeout"),
    (False, "OpenFGA unreachable during read model (ReadTimeoutError)", "timeout"),
    (False, "OpenFGA check not attempted: the request's time limit was reached", "timeout"),
    (False, "OpenFGA unreachable during read model (MaxRetryError)", "unreachable"),
    (False, "EspoCRM is unreachable (connection failed); try again later.", "unreachable"),
    (False, "EspoCRM rejected this server's service-account credentials (HTTP 401). …", "HTTP 401"),
    (False, "OpenFGA store 01HXYZ has no authorization model", "unavailable"),
    (False, "embedded FGA store failed: unable to open /srv/fga.sqlite3", "unavailable"),
])
def test_public_detail_keeps_only_a_generic_reason(ok: bool, detail: str, public: str) -> None:
    assert public_detail(ok, detail) == public


def test_read_only_mode_registers_only_read_tools(make_settings):
    app = create_app(make_settings(read_only=True))
    registry = app.extensions["espomcp"].registry
    assert "search_records" in registry.names() and "whoami" in registry.names()
    assert all(tool.annotations.read_only for tool in registry)


def test_disabled_tools_are_gone(make_settings):
    app = create_app(make_settings(disabled_tools=["delete_record", "bulk_delete_records"]))
    names = app.extensions["espomcp"].registry.names()
    assert "delete_record" not in names and "bulk_delete_records" not in names
    assert "update_record" in names


def test_every_tool_declares_hints_and_schemas(mcp_app):
    for tool in mcp_app.extensions["espomcp"].registry:
        definition = tool.definition()
        assert definition["inputSchema"]["type"] == "object"
        assert definition["outputSchema"]["type"] == "object"
        assert set(definition["annotations"]) >= {"readOnlyHint", "destructiveHint",
                                                  "idempotentHint", "openWorldHint"}
        assert len(definition["description"]) > 40


def test_metrics_count_requests_and_decisions(mcp_client, alice_token):
    mcp_client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                  "params": {"name": "whoami", "arguments": {}}},
                    headers={"Authorization": f"Bearer {alice_token}"})
    text = mcp_client.get("/metrics").get_data(as_text=True)
    assert 'espomcp_http_requests_total{path="/mcp",status="200"}' in text
    assert 'espomcp_decisions_total{decision="allow",layer="tool"}' in text
    assert "espomcp_outbox_depth" in text


def test_unknown_path_is_json_404(mcp_client):
    response = mcp_client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"] == "Not Found"
