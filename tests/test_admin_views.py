"""Admin console through the Flask test client: sign-in gate, sessions, CSRF, confirmations,
audit of changes, pagination (cursor and offset based), explained checks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from espomcp.fga.tuples import TupleKey
from tests.fixtures.admin import csrf_of


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr>\s*<td>\s*<code>([^<]+)</code>', html)


def test_pages_need_sign_in(admin_app: Flask) -> None:
    client = admin_app.test_client()
    for path in ("/admin/", "/admin/relationships", "/admin/check", "/admin/model",
                 "/admin/audit", "/admin/sync", "/admin/visibility"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/admin/login?next=/admin/")
    assert client.post("/admin/relationships/apply", data={}).status_code == 401


def test_admin_signs_in_with_a_hardened_session_cookie(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    response = admin_login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # public URL is http here
    page = client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Overview" in html and "admin@example.com" in html
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_non_admin_is_refused_and_gets_no_session(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    response = admin_login(client, "alice")
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "Not an administrator" in html and "alice@example.com" in html
    assert "espocrm:admin" in html
    assert client.get("/admin/").status_code == 302
    (event,) = admin_app.extensions["espomcp"].audit.recent(limit=5, tool="admin.sign_in")
    assert event["decision"] == "deny" and event["sub"] == "auth0|alice"


def test_callback_without_matching_login_is_rejected(admin_app: Flask) -> None:
    client = admin_app.test_client()
    response = client.get("/admin/callback?code=x&state=y")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Sign-in expired" in html
    # the usual cause in the demo: started at localhost, returned to the public URL's host
    assert admin_app.extensions["espomcp"].settings.public_url + "/admin" in html


def test_callback_with_a_wrong_state_fails(admin_app: Flask) -> None:
    client = admin_app.test_client()
    assert client.get("/admin/login").status_code == 302
    response = client.get("/admin/callback?code=x&state=forged")
    assert response.status_code == 400
    assert "does not belong to this browser session" in response.get_data(as_text=True)


def test_next_is_followed_only_inside_the_console(admin_app: Flask, admin_login: Any,
                                                 auth_server: Any) -> None:
    client = admin_app.test_client()
    start = client.get("/admin/login?next=//evil.example/x")
    assert start.status_code == 302
    response = admin_login(client)
    assert response.headers["Location"] == "/admin/"


def test_tampered_cookie_is_ignored(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    admin_login(client)
    value = client.get_cookie("espomcp_admin", path="/admin").value
    client.set_cookie("espomcp_admin", value[:-2] + "xx", path="/admin")
    assert client.get("/admin/").status_code == 302


def test_secure_cookie_on_https(auth_settings: Any) -> None:
    from espomcp import create_app

    app = create_app(auth_settings(public_url="https://crm-mcp.example.com",
                                   espocrm_api_key="unused"))
    app.extensions["espomcp"].extras["outbox"].stop_drainer()
    response = app.test_client().get("/admin/login")
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]
    assert "redirect_uri=https%3A%2F%2Fcrm-mcp.example.com%2Fadmin%2Fcallback" in \
        response.headers["Location"]


def test_logout_ends_the_session(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    admin_login(client)
    token = csrf_of(client)
    assert client.post("/admin/logout", data={}).status_code == 400  # CSRF protected too
    response = client.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("token", [None, "", "wrong"], ids=["missing", "empty", "wrong"])
def test_changes_without_the_csrf_token_are_refused(admin_app: Flask, admin_login: Any,
                                                    token: str | None) -> None:
    client = admin_app.test_client()
    admin_login(client)
    form = {"action": "add", "user": "user:alice", "relation": "owner", "object": "contact:c1"}
    if token is not None:
        form["csrf_token"] = token
    for path in ("/admin/relationships/confirm", "/admin/relationships/apply"):
        response = client.post(path, data=form)
        assert response.status_code == 400
        assert "Form expired" in response.get_data(as_text=True)
    backend = admin_app.extensions["espomcp"].fga
    assert backend.read(object="contact:c1")[0] == []


def test_add_and_remove_with_confirmation_are_audited(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    admin_login(client)
    csrf = csrf_of(client)
    svc = admin_app.extensions["espomcp"]
    form = {"csrf_token": csrf, "action": "add", "user": "user:alice", "relation": "owner",
            "object": "contact:c1"}
    confirm = client.post("/admin/relationships/confirm", data=form)
    assert confirm.status_code == 200
    assert "Add this relationship?" in confirm.get_data(as_text=True)
    assert svc.fga.read(object="contact:c1")[0] == []  # nothing written before confirming
    applied = client.post("/admin/relationships/apply", data=form)
    assert applied.status_code == 303
    assert svc.fga.check("user:alice", "can_read", "contact:c1")
    listing = client.get(applied.headers["Location"]).get_data(as_text=True)
    assert "Added user:alice owner contact:c1." in listing

    removed = client.post("/admin/relationships/apply", data={**form, "action": "remove"})
    assert removed.status_code == 303
    assert not svc.fga.check("user:alice", "can_read", "contact:c1")
    events = svc.audit.recent(limit=10, layer="admin")
    assert [e["tool"] for e in events] == ["admin.remove_tuple", "admin.add_tuple",
                                           "admin.sign_in"]
    assert events[0]["sub"] == "auth0|admin" and events[0]["decision"] == "allow"
    assert events[0]["tuple"] == {"user": "user:alice", "relation": "owner", "object": "contact:c1"}
    audit_page = client.get("/admin/audit?layer=admin").get_data(as_text=True)
    assert "admin.remove_tuple" in audit_page and "admin.add_tuple" in audit_page


def test_invalid_tuples_get_a_clear_400(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    admin_login(client)
    csrf = csrf_of(client)
    cases = [({"user": "user:alice", "relation": "owner", "object": "nocolon"}, "type:id"),
             ({"user": "user:alice", "relation": "owner", "object": "planet:x"}, "unknown object type"),
             ({"user": "user:alice", "relation": "can_read", "object": "contact:c1"}, ""),
             ({"user": "team:t1", "relation": "owner", "object": "contact:c1"}, "")]
    for fields, text in cases:
        response = client.post("/admin/relationships/apply",
                               data={"csrf_token": csrf, "action": "add", **fields})
        assert response.status_code == 400, fields
        assert text in response.get_data(as_text=True)
    assert client.post("/admin/relationships/confirm", data={"csrf_token": csrf,
                                                             "action": "explode"}).status_code == 400


def test_relationships_paginate_forward_and_back(admin_app: Flask, admin_login: Any) -> None:
    backend = admin_app.extensions["espomcp"].fga
    backend.write(writes=[TupleKey("user:alice", "collaborator", f"contact:c{i:03d}")
                          for i in range(120)])
    backend.write(writes=[TupleKey("user:bob", "owner", f"account:a{i:03d}") for i in range(30)])
    client = admin_app.test_client()
    admin_login(client)
    seen: list[str] = []
    for page, expected in ((1, 50), (2, 50), (3, 20)):
        html = client.get(f"/admin/relationships?user=user:alice&size=50&page={page}"
                          ).get_data(as_text=True)
        rows = rows_of(html)
        assert len(rows) == expected, page
        assert set(rows) == {"user:alice"}
        assert ('rel="next"' in html) == (page < 3)
        seen += re.findall(r"<code>(contact:c\d+)</code>", html)
    assert len(set(seen)) == 120
    again = client.get("/admin/relationships?user=user:alice&size=50&page=2").get_data(as_text=True)
    assert 'rel="prev"' in again and len(rows_of(again)) == 50

    # object type without a user: served by a bounded scan, still paginated
    html = client.get("/admin/relationships?type=account&size=20").get_data(as_text=True)
    assert len(rows_of(html)) == 20 and 'rel="next"' in html
    html = client.get("/admin/relationships?type=account&size=20&page=2").get_data(as_text=True)
    assert len(rows_of(html)) == 10 and 'rel="next"' not in html


def test_team_filter_shows_members_and_team_records(admin_app: Flask, admin_login: Any) -> None:
    backend = admin_app.extensions["espomcp"].fga
    backend.write(writes=[TupleKey("user:alice", "member", "team:sales"),
                          TupleKey("team:sales", "team", "contact:c1"),
                          TupleKey("team:support", "team", "contact:c2")])
    client = admin_app.test_client()
    admin_login(client)
    html = client.get("/admin/relationships?team=sales").get_data(as_text=True)
    assert "team:sales" in html and "contact:c1" in html and "contact:c2" not in html


def test_check_page_explains_the_path(admin_app: Flask, admin_login: Any) -> None:
    backend = admin_app.extensions["espomcp"].fga
    backend.write(writes=[TupleKey("user:alice", "member", "team:sales"),
                          TupleKey("team:sales", "team", "contact:c1")])
    client = admin_app.test_client()
    admin_login(client)
    html = client.get("/admin/check?user=user:alice&relation=can_read&object=contact:c1"
                      ).get_data(as_text=True)
    assert "Yes:" in html
    assert "user:alice → member of team:sales → team of contact:c1 → can_read" in html
    denied = client.get("/admin/check?user=user:carol&relation=can_read&object=contact:c1"
                        ).get_data(as_text=True)
    assert "No:" in denied and "no tuple makes user:carol member of team:sales" in denied
    bad = client.get("/admin/check?user=user:alice&relation=fly&object=contact:c1")
    assert bad.status_code == 400 and "has no relation" in bad.get_data(as_text=True)


def test_visibility_counts_and_pages(admin_app: Flask, admin_login: Any) -> None:
    backend = admin_app.extensions["espomcp"].fga
    backend.write(writes=[TupleKey("user:alice", "assignee", f"lead:l{i:02d}") for i in range(25)])
    client = admin_app.test_client()
    admin_login(client)
    html = client.get("/admin/visibility?user=user:alice&relation=can_read").get_data(as_text=True)
    assert re.search(r">lead</a></td>\s*<td class=\"num\">25<", html)
    page2 = client.get("/admin/visibility?user=user:alice&relation=can_read&type=lead&size=10"
                       "&page=3").get_data(as_text=True)
    assert len(re.findall(r"<li><a href=\"/admin/check", page2)) == 5
    # a console change shows at once (the short ListObjects cache is dropped on writes)
    client.post("/admin/relationships/apply", data={
        "csrf_token": csrf_of(client), "action": "add", "user": "user:alice",
        "relation": "owner", "object": "lead:new"})
    html = client.get("/admin/visibility?user=user:alice&relation=can_read").get_data(as_text=True)
    assert re.search(r">lead</a></td>\s*<td class=\"num\">26<", html)


def test_model_and_sync_pages_render(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    admin_login(client)
    model = client.get("/admin/model").get_data(as_text=True)
    assert "can_write or collaborator or member from team or can_write from parent" in model
    assert "type contact" in model
    sync = client.get("/admin/sync")
    assert sync.status_code == 200
    assert "Outbox" in sync.get_data(as_text=True)


def test_fga_outage_is_a_clear_503_and_changes_are_audited_as_errors(admin_app: Flask,
                                                                     admin_login: Any) -> None:
    from espomcp.fga.backend import BrokenBackend

    client = admin_app.test_client()
    admin_login(client)
    csrf = csrf_of(client)
    svc = admin_app.extensions["espomcp"]
    svc.fga = BrokenBackend("embedded", "store file unreadable")
    for path in ("/admin/relationships", "/admin/check?user=user:a&object=contact:c1",
                 "/admin/visibility?user=user:a", "/admin/model"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert "Authorization backend unavailable" in response.get_data(as_text=True)
    response = client.post("/admin/relationships/apply", data={
        "csrf_token": csrf, "action": "add", "user": "user:alice", "relation": "owner",
        "object": "contact:c1"})
    assert response.status_code == 503
    (event,) = svc.audit.recent(limit=1, layer="admin", decision="error")
    assert event["tool"] == "admin.add_tuple" and event["reason"] == "FGA backend unavailable"
    home = client.get("/admin/")
    assert home.status_code == 200 and "unavailable" in home.get_data(as_text=True)


def test_unreachable_issuer_is_a_clear_502(auth_settings: Any) -> None:
    from espomcp import create_app
    from fakes.server import free_port

    app = create_app(auth_settings(auth_issuer=f"http://127.0.0.1:{free_port()}/",
                                   espocrm_api_key="unused"))
    app.extensions["espomcp"].extras["outbox"].stop_drainer()
    response = app.test_client().get("/admin/login")
    assert response.status_code == 502
    assert "Sign-in service unavailable" in response.get_data(as_text=True)


def test_sessions_expire_and_ids_are_stored_hashed(tmp_path: Any) -> None:
    from espomcp.admin.sessions import SessionStore

    store = SessionStore(tmp_path / "s.sqlite3", "secret")
    live = store.create({"kind": "admin"}, ttl=60)
    dead = store.create({"kind": "admin"}, ttl=-1)
    assert store.load(live) == {"kind": "admin"} and store.load(dead) is None
    assert store.unsign(store.sign(live)) == live
    assert store.unsign(store.sign(live) + "x") is None
    assert SessionStore(tmp_path / "s.sqlite3", "other-secret").unsign(store.sign(live)) is None
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("s.sqlite3*"))
    assert b"admin" in raw and live.encode() not in raw


def test_model_page_shows_store_test_status(admin_app: Flask, admin_login: Any) -> None:
    client = admin_app.test_client()
    admin_login(client)
    html = client.get("/admin/model").get_data(as_text=True)
    match = re.search(r'id="store-tests">(\d+) / (\d+) passing', html)
    assert match and match.group(1) == match.group(2) and int(match.group(2)) > 0


@pytest.mark.parametrize(("extra", "message"), [
    ({"error": "access_denied", "error_description": "User cancelled"}, "refused: User cancelled"),
    ({"code": "abc", "iss": "http://evil.example/"}, "different issuer"),
    ({"code": "abc"}, "lacks the issuer"),
    ({"iss": "ISSUER"}, "no authorization code"),
    ({"code": "not-a-real-code", "iss": "ISSUER"}, "refused the code"),
], ids=["denied", "wrong-iss", "no-iss", "no-code", "bad-code"])
def test_bad_callbacks_fail_clearly(admin_app: Flask, auth_server: Any,
                                    extra: dict[str, str], message: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    client = admin_app.test_client()
    start = client.get("/admin/login")
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    query = {k: (auth_server.issuer if v == "ISSUER" else v) for k, v in extra.items()}
    response = client.get("/admin/callback", query_string={"state": state, **query})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_sync_page_degrades_to_not_available(admin_app: Flask, admin_login: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import espomcp.sync.status

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("status file unreadable")

    client = admin_app.test_client()
    admin_login(client)
    ok = client.get("/admin/sync").get_data(as_text=True)
    assert "Webhook deliveries" in ok and "Last backfill" in ok
    monkeypatch.setattr(espomcp.sync.status, "sync_status", broken)
    response = client.get("/admin/sync")
    assert response.status_code == 200
    assert "Not available: The sync status could not be read (OSError)." in \
        response.get_data(as_text=True)
