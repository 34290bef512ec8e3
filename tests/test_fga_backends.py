"""One behavioural suite for every FGA backend (embedded; openfga against the fake OpenFGA),
plus outages, misconfiguration, credentials and the scope-only ``off`` backend."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from espomcp.fga.backend import FgaBackend, build_backend, load_model
from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.openfga import OpenFgaBackend
from espomcp.fga.tuples import TupleKey
from espomcp.settings import Settings
from tests.fixtures.fga_backends import FakeOpenFgaServer

ORG = "organization:main"
PERSONAS = [
    ("user:admin", "admin", ORG),
    ("user:alice", "member", "team:sales"),
    ("user:bob", "manager", "team:sales"),
    ("user:carol", "member", "team:support"),
    (ORG, "organization", "account:acme"),
    ("user:alice", "assignee", "account:acme"),
    ("team:sales", "team", "account:acme"),
    (ORG, "organization", "contact:jane"),
    ("account:acme", "parent", "contact:jane"),
    (ORG, "organization", "case:c1"),
    ("user:carol", "assignee", "case:c1"),
    ("user:alice", "collaborator", "case:c1"),
]


@pytest.fixture
def seeded(fga_backend: FgaBackend) -> FgaBackend:
    fga_backend.write(PERSONAS)
    return fga_backend


# --- decisions ------------------------------------------------------------------------------
@pytest.mark.parametrize(("user", "relation", "obj", "expected"), [
    ("user:alice", "can_write", "account:acme", True),
    ("user:alice", "can_delete", "account:acme", False),
    ("user:bob", "can_delete", "account:acme", True),
    ("user:carol", "can_read", "account:acme", False),
    ("user:alice", "can_read", "contact:jane", True),
    ("user:alice", "can_write", "contact:jane", False),
    ("user:alice", "can_read", "case:c1", True),
    ("user:alice", "can_write", "case:c1", False),
    ("user:admin", "can_assign", "case:c1", True),
    ("user:admin", "admin", ORG, True),
    ("user:mallory", "can_read", "account:acme", False),
])
def test_check(seeded: FgaBackend, user: str, relation: str, obj: str, expected: bool) -> None:
    assert seeded.check(user, relation, obj) is expected


def test_batch_check_keeps_order_across_chunks(seeded: FgaBackend) -> None:
    checks = [("user:alice" if i % 2 else "user:carol", "can_read", "account:acme") for i in range(120)]
    assert seeded.batch_check(checks) == [bool(i % 2) for i in range(120)]
    assert seeded.batch_check([]) == []


def test_batch_check_denies_an_invalid_item_only(seeded: FgaBackend) -> None:
    answers = seeded.batch_check([("user:alice", "can_read", "account:acme"),
                                  ("user:alice", "no_such_relation", "account:acme"),
                                  ("user:bob", "can_delete", "account:acme")])
    assert answers == [True, False, True]


def test_list_objects(seeded: FgaBackend) -> None:
    assert sorted(seeded.list_objects("user:alice", "can_read", "case")) == ["case:c1"]
    assert sorted(seeded.list_objects("user:bob", "can_read", "contact")) == ["contact:jane"]
    assert seeded.list_objects("user:carol", "can_read", "account") == []
    assert sorted(seeded.list_objects("user:admin", "can_read", "account")) == ["account:acme"]


def test_list_users(seeded: FgaBackend) -> None:
    users = seeded.list_users("account:acme", "can_read", [("user", None)])
    assert sorted(users) == ["user:admin", "user:alice", "user:bob"]
    assert seeded.list_users("account:acme", "team", [("team", None)]) == ["team:sales"]


def test_expand_returns_one_level_of_the_tree(seeded: FgaBackend) -> None:
    tree = seeded.expand("assignee", "account:acme")
    assert tree["root"]["name"] == "account:acme#assignee"
    assert tree["root"]["leaf"]["users"]["users"] == ["user:alice"]
    union = seeded.expand("can_read", "account:acme")["root"]
    assert union["name"] == "account:acme#can_read"
    assert "union" in union


def test_invalid_tuple_is_an_fga_error_not_an_outage(fga_backend: FgaBackend) -> None:
    with pytest.raises(FgaError) as info:
        fga_backend.write([("user:alice", "no_such_relation", "account:acme")])
    assert info.value.code in (2022, 2027, 2000)
    with pytest.raises(FgaError):
        fga_backend.write([("team:sales", "assignee", "account:acme")])


# --- tuples ---------------------------------------------------------------------------------
def test_write_is_idempotent(fga_backend: FgaBackend) -> None:
    key = TupleKey("user:alice", "assignee", "lead:l1")
    fga_backend.write([key, key, {"user": "user:alice", "relation": "assignee", "object": "lead:l1"}])
    fga_backend.write([("user:alice", "assignee", "lead:l1")])
    assert fga_backend.check("user:alice", "can_write", "lead:l1")
    fga_backend.write(deletes=[key])
    fga_backend.write(deletes=[key, ("user:nobody", "owner", "lead:l1")])
    assert not fga_backend.check("user:alice", "can_write", "lead:l1")


def test_large_writes_are_chunked_and_read_pages_through(fga_backend: FgaBackend) -> None:
    keys = [TupleKey(f"user:u{i:03}", "collaborator", "task:big") for i in range(230)]
    fga_backend.write(keys)
    seen: list[TupleKey] = []
    token: str | None = None
    pages = 0
    while True:
        page, token = fga_backend.read(object="task:big", page_size=100, continuation_token=token)
        seen.extend(page)
        pages += 1
        assert len(page) <= 100
        if not token:
            break
    assert pages == 3
    assert {k.user for k in seen} == {k.user for k in keys}
    fga_backend.write(deletes=keys[:150], writes=[TupleKey("user:z", "owner", "task:big")])
    remaining, _ = fga_backend.read(object="task:big", page_size=100)
    assert len(remaining) == 81


def test_read_filters(seeded: FgaBackend) -> None:
    keys, token = seeded.read(relation="assignee", object="account:acme")
    assert [(k.user, k.relation, k.object) for k in keys] == [("user:alice", "assignee", "account:acme")]
    assert token == ""
    keys, _ = seeded.read(user="user:alice", object="case:")
    assert [(k.relation, k.object) for k in keys] == [("collaborator", "case:c1")]


def test_model_and_health(fga_backend: FgaBackend) -> None:
    assert fga_backend.model() == load_model()
    ok, detail = fga_backend.health()
    assert ok, detail
    assert fga_backend.name in ("embedded", "openfga")


# --- embedded specifics ---------------------------------------------------------------------
def test_embedded_store_survives_a_restart(fga_settings: Callable[..., Settings]) -> None:
    settings = fga_settings()
    build_backend(settings).write(PERSONAS)
    again = build_backend(settings)
    assert again.check("user:bob", "can_delete", "account:acme")
    assert "embedded" in again.health()[1]


def test_embedded_with_a_bad_model_denies(fga_settings: Callable[..., Settings], tmp_path: Path) -> None:
    bad = tmp_path / "model.json"
    bad.write_text(json.dumps({"schema_version": "1.1", "type_definitions": [
        {"type": "doc", "relations": {"viewer": {"computedUserset": {"relation": "nope"}}}}]}))
    backend = build_backend(fga_settings(fga_model_path=bad))
    with pytest.raises(FgaUnavailable, match="model"):
        backend.check("user:a", "viewer", "doc:1")
    assert backend.health()[0] is False
    missing = build_backend(fga_settings(fga_model_path=tmp_path / "absent.json"))
    with pytest.raises(FgaUnavailable, match="not found"):
        missing.list_objects("user:a", "viewer", "doc")


def test_load_model_prefers_the_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema_version": "1.1", "type_definitions": [{"type": "user"}]}))
    assert load_model(path)["type_definitions"] == [{"type": "user"}]
    path.write_text("not json")
    with pytest.raises(FgaError):
        load_model(path)


# --- openfga: outages, misconfiguration, credentials ----------------------------------------
def _openfga(fga_settings: Callable[..., Settings], fake: FakeOpenFgaServer, **extra: object) -> FgaBackend:
    store_id, model_id = fake.new_store()
    values = {"fga_backend": "openfga", "fga_api_url": fake.url, "fga_store_id": store_id,
              "fga_model_id": model_id}
    values.update(extra)
    return build_backend(fga_settings(**values))


def test_openfga_outage_denies_every_call(fga_settings: Callable[..., Settings],
                                          fake_openfga: FakeOpenFgaServer) -> None:
    backend = _openfga(fga_settings, fake_openfga)
    backend.write(PERSONAS)
    fake_openfga.fault("down")
    for call in (lambda: backend.check("user:alice", "can_read", "account:acme"),
                 lambda: backend.batch_check([("user:alice", "can_read", "account:acme")]),
                 lambda: backend.list_objects("user:alice", "can_read", "account"),
                 lambda: backend.write([("user:carol", "owner", "lead:x")]),
                 lambda: backend.read(object="account:acme"),
                 lambda: backend.expand("can_read", "account:acme")):
        with pytest.raises(FgaUnavailable, match="OpenFGA"):
            call()
    ok, detail = backend.health()
    assert not ok and "HTTP 503" in detail
    fake_openfga.fault("ok")
    assert backend.check("user:alice", "can_read", "account:acme")


def test_openfga_timeout_denies(fga_settings: Callable[..., Settings],
                                fake_openfga: FakeOpenFgaServer) -> None:
    backend = _openfga(fga_settings, fake_openfga, fga_timeout_seconds=0.3)
    fake_openfga.fault("slow", delay=1.5)
    with pytest.raises(FgaUnavailable, match="unreachable"):
        backend.check("user:alice", "can_read", "account:acme")
    fake_openfga.fault("ok")


def test_openfga_unreachable_denies(fga_settings: Callable[..., Settings]) -> None:
    from fakes.server import free_port

    backend = build_backend(fga_settings(fga_backend="openfga", fga_api_url=f"http://127.0.0.1:{free_port()}",
                                         fga_store_id="01HZZZZZZZZZZZZZZZZZZZZZZZ"))
    with pytest.raises(FgaUnavailable, match="unreachable"):
        backend.check("user:alice", "can_read", "account:acme")
    assert backend.health()[0] is False


@pytest.mark.parametrize(("overrides", "message"), [
    ({"fga_store_id": ""}, "ESPOMCP_FGA_STORE_ID is empty"),
    ({"fga_api_url": ""}, "ESPOMCP_FGA_API_URL is empty"),
    ({"fga_store_id": "not-a-ulid"}, "ulid"),
    ({"fga_model_id": "bad"}, "ulid"),
    ({"fga_client_id": "cid"}, "CLIENT_SECRET"),
], ids=["no-store", "no-url", "bad-store", "bad-model", "half-credentials"])
def test_openfga_misconfiguration_denies_with_a_clear_message(
        fga_settings: Callable[..., Settings], overrides: dict, message: str) -> None:
    base = fga_settings(fga_backend="openfga", fga_api_url="http://127.0.0.1:9",
                        fga_store_id="01HZZZZZZZZZZZZZZZZZZZZZZZ")
    backend = OpenFgaBackend.from_settings(base.model_copy(update=overrides))
    for call in (lambda: backend.check("user:a", "can_read", "account:x"),
                 lambda: backend.write([("user:a", "owner", "account:x")]), backend.model):
        with pytest.raises(FgaUnavailable, match=message):
            call()
    ok, detail = backend.health()
    assert not ok and message in detail


def test_openfga_unknown_store_is_unavailable(fga_settings: Callable[..., Settings],
                                              fake_openfga: FakeOpenFgaServer) -> None:
    backend = build_backend(fga_settings(fga_backend="openfga", fga_api_url=fake_openfga.url,
                                         fga_store_id="01HZZZZZZZZZZZZZZZZZZZZZZZ"))
    with pytest.raises(FgaUnavailable, match="not found"):
        backend.check("user:a", "can_read", "account:x")


def test_openfga_without_a_pinned_model_uses_the_latest(fga_settings: Callable[..., Settings],
                                                        fake_openfga: FakeOpenFgaServer) -> None:
    backend = _openfga(fga_settings, fake_openfga, fga_model_id="")
    backend.write(PERSONAS)
    assert backend.check("user:bob", "can_assign", "account:acme")
    assert backend.health() == (True, f"OpenFGA store {backend.store_id} (latest model) reachable")


def test_openfga_client_credentials(fga_settings: Callable[..., Settings],
                                    fake_openfga_auth: FakeOpenFgaServer) -> None:
    creds = {"fga_client_id": "fga-client", "fga_client_secret": "fga-secret",
             "fga_api_issuer": fake_openfga_auth.url, "fga_api_audience": "https://fga.example/"}
    backend = _openfga(fga_settings, fake_openfga_auth, **creds)
    backend.write(PERSONAS)
    assert backend.check("user:alice", "can_read", "contact:jane")
    assert backend.health()[0]
    assert fake_openfga_auth.state.token_requests == 1  # cached between calls


@pytest.mark.parametrize("creds", [
    {"fga_client_id": "fga-client", "fga_client_secret": "wrong", "fga_api_audience": "https://fga.example/"},
    {"fga_api_token": "wrong-token"},
    {},
], ids=["bad-secret", "bad-token", "no-credentials"])
def test_openfga_rejected_credentials_deny(fga_settings: Callable[..., Settings],
                                           fake_openfga_auth: FakeOpenFgaServer, creds: dict) -> None:
    if "fga_client_id" in creds:
        creds = {**creds, "fga_api_issuer": fake_openfga_auth.url}
    backend = _openfga(fga_settings, fake_openfga_auth, **creds)
    with pytest.raises(FgaUnavailable):
        backend.check("user:alice", "can_read", "account:acme")
    assert backend.health()[0] is False


def test_openfga_api_token(fga_settings: Callable[..., Settings],
                           fake_openfga_auth: FakeOpenFgaServer) -> None:
    backend = _openfga(fga_settings, fake_openfga_auth, fga_api_token="preshared-token")
    backend.write(PERSONAS)
    assert backend.check("user:bob", "can_write", "account:acme")


# --- off --------------------------------------------------------------------------------------
def test_off_backend_allows_everything_and_says_so(fga_settings: Callable[..., Settings],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="espomcp.fga"):
        backend = build_backend(fga_settings(fga_backend="off"))
    assert any(r.levelno == logging.WARNING and "FGA DISABLED" in r.getMessage() for r in caplog.records)
    assert backend.name == "off" and backend.enforcing is False
    assert backend.check("user:anyone", "can_delete", "account:x")
    assert backend.batch_check([("user:a", "can_read", "case:1")] * 3) == [True, True, True]
    assert backend.list_objects("user:a", "can_read", "lead") == ["lead:*"]
    backend.write([("user:a", "owner", "lead:1")])
    assert backend.read() == ([], "")
    assert backend.health() == (True, "FGA disabled (scope-only)")
    assert backend.model()["type_definitions"] == load_model()["type_definitions"]


CONDITIONAL = """model
  schema 1.1
type user
type doc
  relations
    define viewer: [user, user with before]
condition before(now: timestamp, until: timestamp) {
  now < until
}
"""


def backend_with_model(kind: str, dsl: str, fga_settings: Callable[..., Settings], tmp_path: Path,
                       request: pytest.FixtureRequest) -> tuple[FgaBackend, dict]:
    """A backend of ``kind`` (embedded, or the fake OpenFGA in a new store) on the model ``dsl``."""
    from espomcp.fga.dsl import parse_dsl

    model = parse_dsl(dsl)
    if kind == "embedded":
        path = tmp_path / "model.json"
        path.write_text(json.dumps(model))
        return build_backend(fga_settings(fga_model_path=path)), model
    fake: FakeOpenFgaServer = request.getfixturevalue("fake_openfga")
    store_id, _ = fake.new_store(model)
    return build_backend(fga_settings(fga_backend="openfga", fga_api_url=fake.url,
                                      fga_store_id=store_id)), model


@pytest.mark.parametrize("kind", ["embedded", "openfga"])
def test_conditions_and_context_round_trip(kind: str, fga_settings: Callable[..., Settings],
                                           tmp_path: Path, request: pytest.FixtureRequest) -> None:
    backend, model = backend_with_model(kind, CONDITIONAL, fga_settings, tmp_path, request)
    assert backend.model() == model
    backend.write([{"user": "user:ann", "relation": "viewer", "object": "doc:1",
                    "condition": {"name": "before", "context": {"until": "2030-01-01T00:00:00Z"}}}])
    assert backend.check("user:ann", "viewer", "doc:1", {"now": "2029-01-01T00:00:00Z"}) is True
    assert backend.check("user:ann", "viewer", "doc:1", {"now": "2031-01-01T00:00:00Z"}) is False
    with pytest.raises(FgaError):
        backend.check("user:ann", "viewer", "doc:1")  # missing parameter: an error, not a deny
    keys, _ = backend.read(object="doc:1")
    assert keys[0].condition is not None and keys[0].condition.context == {"until": "2030-01-01T00:00:00Z"}


def test_write_chunks_keep_small_writes_atomic() -> None:
    from espomcp.fga.backend import write_chunks

    w = [TupleKey(f"user:{i}", "owner", "lead:a") for i in range(60)]
    d = [TupleKey(f"user:{i}", "owner", "lead:b") for i in range(40)]
    assert list(write_chunks(w, d)) == [(w, d)]
    big = list(write_chunks(w * 2, d))
    assert big[0] == ([], d) and [len(c[0]) for c in big[1:]] == [100, 20]
    assert list(write_chunks([], [])) == []


@pytest.mark.parametrize("bad", [("user:a", "owner"), 42, {"user": "user:a"}, ["a", "b", 3]])
def test_malformed_tuples_are_rejected_before_any_request(fga_backend: FgaBackend, bad: object) -> None:
    with pytest.raises(FgaError) as info:
        fga_backend.write([bad])  # type: ignore[list-item]
    assert info.value.code == 2000


CHAIN = """model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
"""


@pytest.mark.parametrize("kind", ["embedded", "openfga"])
def test_too_deep_resolution_is_the_same_fga_error_for_every_query(
        kind: str, fga_settings: Callable[..., Settings], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """A chain past OpenFGA's depth limit of 25: Check, ListObjects and ListUsers all raise the
    same FgaError 2002 (an error the callers deny on, not an outage and not an empty answer)."""
    backend, _ = backend_with_model(kind, CHAIN, fga_settings, tmp_path, request)
    backend.write([("user:ann", "member", "group:g0")] +
                  [(f"group:g{i}#member", "member", f"group:g{i + 1}") for i in range(30)])
    assert backend.check("user:ann", "member", "group:g20") is True
    errors = []
    for call in (lambda: backend.check("user:ann", "member", "group:g30"),
                 lambda: backend.list_objects("user:ann", "member", "group"),
                 lambda: backend.list_users("group:g30", "member", [("user", None)])):
        with pytest.raises(FgaError) as info:
            call()
        errors.append((info.value.code, info.value.message))
    assert errors[0][0] == 2002 and errors[1] == errors[0] and errors[2] == errors[0]
