"""Security review at the HTTP edge: what a caller can make the server keep or expose."""

from __future__ import annotations


def _methods_labelled(app) -> set[str]:
    metrics = app.extensions["espomcp"].metrics
    return {sample.labels["mcp_method"] for family in metrics.latency.collect()
            for sample in family.samples if "mcp_method" in sample.labels}


def test_latency_metric_labels_stay_bounded_under_made_up_methods(mcp_app, mcp_client,
                                                                  alice_token):
    headers = {"Authorization": f"Bearer {alice_token}"}
    for i in range(30):
        response = mcp_client.post("/mcp", json={"jsonrpc": "2.0", "id": i,
                                                 "method": f"probe/{i}-" + "x" * 500},
                                   headers=headers)
        assert response.get_json()["error"]["code"] == -32601
    mcp_client.post("/mcp", json={"jsonrpc": "2.0", "id": 99, "method": "tools/list"},
                    headers=headers)
    labels = _methods_labelled(mcp_app)
    assert "tools/list" in labels
    assert not any(label.startswith("probe/") for label in labels)
    assert len(labels) <= 4


def test_abandoned_sign_ins_do_not_pile_up_in_the_session_store(tmp_path, monkeypatch):
    # GET /admin/login is unauthenticated and creates a row each time; rows of sign-ins that
    # are never finished must go once expired, even if nobody ever loads them again.
    import time

    from espomcp.admin import sessions

    store = sessions.SessionStore(tmp_path / "s.sqlite3", "secret")
    now = time.time()
    monkeypatch.setattr(sessions.time, "time", lambda: now)
    for _ in range(200):
        store.create({"kind": "login"}, sessions.LOGIN_TTL)
    monkeypatch.setattr(sessions.time, "time", lambda: now + sessions.LOGIN_TTL + 1)
    live = store.create({"kind": "login"}, sessions.LOGIN_TTL)
    rows = store._conn.execute("SELECT COUNT(*) FROM admin_sessions").fetchone()[0]
    assert rows == 1 and store.load(live) == {"kind": "login"}


def test_a_configured_type_without_a_scope_area_needs_the_admin_scope(make_settings, mint_token):
    # scope_for: types outside the scope areas need espocrm:admin; a configured custom type
    # must not fall through to "no scope needed".
    from espomcp import create_app
    from espomcp.settings import DEFAULT_ENTITY_TYPES

    app = create_app(make_settings(fga_backend="off",
                                   entity_types=[*DEFAULT_ENTITY_TYPES, "Document"]))
    app.extensions["espomcp"].extras["outbox"].stop_drainer()
    token = mint_token("alice", ["espocrm:contacts:read"],
                       audience=app.extensions["espomcp"].settings.audience)
    for name, arguments in (("search_records", {"entity_type": "Document"}),
                            ("create_record", {"entity_type": "Document", "data": {"name": "x"}})):
        response = app.test_client().post(
            "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}},
            headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403, (name, response.get_json())
        assert 'scope="espocrm:admin"' in response.headers["WWW-Authenticate"]


def test_a_scope_rule_that_fails_on_valid_arguments_denies(mcp_app, mint_token):
    # The dispatcher maps a scope-rule exception to "no scope needed" so that argument
    # validation can report malformed input; for valid input that must not mean "allowed".
    from espomcp.mcp.registry import READ, Tool

    ran: list[dict] = []

    def broken_rule(arguments: dict) -> frozenset[str]:
        raise KeyError("a bug in the rule")

    mcp_app.extensions["espomcp"].registry.add(Tool(
        name="probe_tool", title="Probe", description="A tool whose scope rule is broken.",
        input_schema={"type": "object", "properties": {"x": {"type": "string"}},
                      "additionalProperties": False},
        handler=lambda ctx, args: ran.append(args) or {}, annotations=READ,
        required_scopes=broken_rule))
    token = mint_token("alice", ["espocrm:contacts:read"],
                       audience=mcp_app.extensions["espomcp"].settings.audience)
    response = mcp_app.test_client().post(
        "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "probe_tool", "arguments": {"x": "y"}}},
        headers={"Authorization": f"Bearer {token}"})
    assert not ran
    assert response.status_code == 403 or response.get_json()["result"]["isError"] is True
