"""App-level behaviour: health and readiness, tool-set configuration, metrics, JSON errors."""

from __future__ import annotations

from espomcp import create_app


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
