"""The fake OpenFGA server: REST shapes and errors as OpenFGA answers them, ULID ids, auth,
fault knobs, the official SDK end to end, and ``python -m fakes.openfga``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from openfga_sdk.client import ClientConfiguration
from openfga_sdk.client.models import (
    ClientBatchCheckItem,
    ClientBatchCheckRequest,
    ClientCheckRequest,
    ClientListObjectsRequest,
    ClientTuple,
    ClientWriteRequest,
)
from openfga_sdk.client.models.expand_request import ClientExpandRequest
from openfga_sdk.client.models.list_users_request import ClientListUsersRequest
from openfga_sdk.client.models.read_changes_request import ClientReadChangesRequest
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.exceptions import NotFoundException, ValidationException
from openfga_sdk.models import (
    CreateStoreRequest,
    FgaObject,
    ReadRequestTupleKey,
    UserTypeFilter,
    WriteAuthorizationModelRequest,
)
from openfga_sdk.sync import OpenFgaClient

from fakes.server import free_port
from tests.fixtures.fga_backends import MODEL_PATH, FakeOpenFgaServer, fga_model_json

ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
TUPLES = [
    {"user": "user:alice", "relation": "member", "object": "team:sales"},
    {"user": "organization:main", "relation": "organization", "object": "account:acme"},
    {"user": "team:sales", "relation": "team", "object": "account:acme"},
    {"user": "user:bob", "relation": "assignee", "object": "account:acme"},
]


def _store(fake: FakeOpenFgaServer) -> tuple[str, str, str]:
    store_id, model_id = fake.new_store()
    return f"{fake.url}/stores/{store_id}", store_id, model_id


def _post(url: str, body: Any, status: int = 200) -> dict[str, Any]:
    response = requests.post(url, json=body, timeout=5)
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def _error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]


# --- REST shapes ----------------------------------------------------------------------------
def test_store_crud(fake_openfga: FakeOpenFgaServer) -> None:
    url = fake_openfga.url
    created = _post(f"{url}/stores", {"name": "one"}, 201)
    assert ULID_RE.match(created["id"]) and created["name"] == "one"
    assert created["created_at"].endswith("Z") and created["updated_at"]
    for name in ("two", "three"):
        _post(f"{url}/stores", {"name": name}, 201)
    first = requests.get(f"{url}/stores", params={"page_size": 2}, timeout=5).json()
    assert len(first["stores"]) == 2 and first["continuation_token"]
    rest = requests.get(f"{url}/stores", params={"page_size": 2,
                                                 "continuation_token": first["continuation_token"]},
                        timeout=5).json()
    assert len(rest["stores"]) == 1 and rest["continuation_token"] == ""
    assert requests.get(f"{url}/stores/{created['id']}", timeout=5).json() == created
    assert requests.delete(f"{url}/stores/{created['id']}", timeout=5).status_code == 204
    _error(requests.get(f"{url}/stores/{created['id']}", timeout=5), 404, "store_id_not_found")
    _error(requests.post(f"{url}/stores", json={"name": ""}, timeout=5), 400, "validation_error")


def test_authorization_models(fake_openfga: FakeOpenFgaServer) -> None:
    base, _, first_id = _store(fake_openfga)
    second = _post(f"{base}/authorization-models", fga_model_json(), 201)["authorization_model_id"]
    assert ULID_RE.match(second) and second != first_id
    listed = requests.get(f"{base}/authorization-models", timeout=5).json()
    assert [m["id"] for m in listed["authorization_models"]] == [second, first_id]
    latest = requests.get(f"{base}/authorization-models", params={"page_size": 1}, timeout=5).json()
    assert latest["authorization_models"][0]["id"] == second and latest["continuation_token"]
    one = requests.get(f"{base}/authorization-models/{first_id}", timeout=5).json()["authorization_model"]
    assert one["id"] == first_id and one["schema_version"] == "1.1"
    assert one["type_definitions"] == fga_model_json()["type_definitions"]
    _error(requests.get(f"{base}/authorization-models/01HZZZZZZZZZZZZZZZZZZZZZZZ", timeout=5),
           400, "authorization_model_not_found")
    bad = {"schema_version": "1.1", "type_definitions": [
        {"type": "doc", "relations": {"viewer": {"computedUserset": {"relation": "missing"}}}}]}
    _error(requests.post(f"{base}/authorization-models", json=bad, timeout=5), 400,
           "invalid_authorization_model")


def test_write_read_and_changes(fake_openfga: FakeOpenFgaServer) -> None:
    base, _, model_id = _store(fake_openfga)
    body = {"writes": {"tuple_keys": TUPLES}, "authorization_model_id": model_id}
    assert _post(f"{base}/write", body) == {}
    dup = requests.post(f"{base}/write", json={"writes": {"tuple_keys": TUPLES[:1]}}, timeout=5)
    assert dup.status_code == 400 and dup.json()["code"]
    _post(f"{base}/write", {"writes": {"tuple_keys": TUPLES[:1], "on_duplicate": "ignore"},
                            "deletes": {"tuple_keys": [TUPLES[3], TUPLES[3] | {"user": "user:x"}],
                                        "on_missing": "ignore"}})
    read = _post(f"{base}/read", {"tuple_key": {"object": "account:acme"}, "page_size": 1})
    assert len(read["tuples"]) == 1 and read["continuation_token"]
    assert set(read["tuples"][0]) == {"key", "timestamp"} and read["tuples"][0]["timestamp"].endswith("Z")
    everything = _post(f"{base}/read", {})
    assert len(everything["tuples"]) == 3 and everything["continuation_token"] == ""
    changes = requests.get(f"{base}/changes", params={"type": "account"}, timeout=5).json()
    ops = [(c["operation"], c["tuple_key"]["user"]) for c in changes["changes"]]
    assert ("TUPLE_OPERATION_DELETE", "user:bob") in ops and ("TUPLE_OPERATION_WRITE", "team:sales") in ops
    future = requests.get(f"{base}/changes", params={"start_time": "2999-01-01T00:00:00Z"}, timeout=5)
    assert future.json()["changes"] == []
    past = requests.get(f"{base}/changes", params={"start_time": "2000-01-01T00:00:00Z"}, timeout=5)
    assert len(past.json()["changes"]) == len(ops) + 1  # the user:alice team write too
    _error(requests.get(f"{base}/changes", params={"start_time": "yesterday"}, timeout=5), 400,
           "invalid_start_time")
    many = [{"user": f"user:u{i}", "relation": "owner", "object": "lead:l"} for i in range(101)]
    _error(requests.post(f"{base}/write", json={"writes": {"tuple_keys": many}}, timeout=5), 400,
           "exceeded_entity_limit")
    _error(requests.post(f"{base}/write", json={}, timeout=5), 400, "validation_error")


def test_write_rejects_tuples_the_model_forbids(fake_openfga: FakeOpenFgaServer) -> None:
    base, _, _ = _store(fake_openfga)
    response = requests.post(f"{base}/write", json={"writes": {"tuple_keys": [
        {"user": "user:a", "relation": "nope", "object": "account:acme"}]}}, timeout=5)
    assert response.status_code == 400
    assert response.json()["code"] in ("relation_not_found", "invalid_tuple", "validation_error")


def test_check_batch_list_and_expand(fake_openfga: FakeOpenFgaServer) -> None:
    base, _, _ = _store(fake_openfga)
    _post(f"{base}/write", {"writes": {"tuple_keys": TUPLES}})
    key = {"user": "user:alice", "relation": "can_read", "object": "account:acme"}
    assert _post(f"{base}/check", {"tuple_key": key}) == {"allowed": True, "resolution": ""}
    contextual = {"tuple_keys": [{"user": "user:carol", "relation": "member", "object": "team:sales"}]}
    assert _post(f"{base}/check", {"tuple_key": key | {"user": "user:carol"},
                                   "contextual_tuples": contextual})["allowed"] is True
    assert _post(f"{base}/check", {"tuple_key": key | {"user": "user:carol"}})["allowed"] is False
    _error(requests.post(f"{base}/check", json={}, timeout=5), 400, "validation_error")
    _error(requests.post(f"{base}/check", data="garbage", timeout=5), 400, "validation_error")

    result = _post(f"{base}/batch-check", {"checks": [
        {"tuple_key": key, "correlation_id": "a"},
        {"tuple_key": key | {"user": "user:carol"}, "correlation_id": "b"},
        {"tuple_key": key | {"relation": "nope"}, "correlation_id": "c"}]})["result"]
    assert result["a"] == {"allowed": True} and result["b"] == {"allowed": False}
    assert set(result["c"]["error"]) == {"input_error", "message"}
    _error(requests.post(f"{base}/batch-check", json={"checks": [
        {"tuple_key": key, "correlation_id": "x"}, {"tuple_key": key, "correlation_id": "x"}]},
        timeout=5), 400, "validation_error")
    _error(requests.post(f"{base}/batch-check", json={"checks": [
        {"tuple_key": key, "correlation_id": "bad id!"}]}, timeout=5), 400, "validation_error")

    listed = _post(f"{base}/list-objects", {"user": "user:alice", "relation": "can_read", "type": "account"})
    assert listed == {"objects": ["account:acme"]}
    streamed = requests.post(f"{base}/streamed-list-objects", json={
        "user": "user:alice", "relation": "can_read", "type": "account"}, timeout=5)
    assert streamed.text.strip() == '{"result": {"object": "account:acme"}}'
    users = _post(f"{base}/list-users", {"object": {"type": "account", "id": "acme"},
                                         "relation": "can_read", "user_filters": [{"type": "user"}]})
    assert sorted(u["object"]["id"] for u in users["users"]) == ["alice", "bob"]
    teams = _post(f"{base}/list-users", {"object": {"type": "account", "id": "acme"}, "relation": "can_read",
                                         "user_filters": [{"type": "team", "relation": "member"}]})
    assert teams["users"] == [{"userset": {"type": "team", "id": "sales", "relation": "member"}}]
    tree = _post(f"{base}/expand", {"tuple_key": {"relation": "assignee", "object": "account:acme"}})
    assert tree["tree"]["root"] == {"name": "account:acme#assignee",
                                    "leaf": {"users": {"users": ["user:bob"]}}}


CHAIN_MODEL = """model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
"""
TOO_COMPLEX = {"code": "authorization_model_resolution_too_complex",
               "message": "Authorization Model resolution required too many rewrite rules to be resolved. "
                          "Check your authorization model for infinite recursion or too much nesting"}


def test_too_deep_resolution_answers_like_openfga(fake_openfga: FakeOpenFgaServer) -> None:
    """Check, ListObjects and ListUsers past the depth limit: 400 with OpenFGA's code and message."""
    from espomcp.fga.dsl import parse_dsl

    store_id, _ = fake_openfga.new_store(parse_dsl(CHAIN_MODEL))
    base = f"{fake_openfga.url}/stores/{store_id}"
    keys = [{"user": "user:ann", "relation": "member", "object": "group:g0"}] + [
        {"user": f"group:g{i}#member", "relation": "member", "object": f"group:g{i + 1}"} for i in range(30)]
    _post(f"{base}/write", {"writes": {"tuple_keys": keys}})
    requests_ = [("check", {"tuple_key": {"user": "user:ann", "relation": "member", "object": "group:g30"}}),
                 ("list-objects", {"user": "user:ann", "relation": "member", "type": "group"}),
                 ("list-users", {"object": {"type": "group", "id": "g30"}, "relation": "member",
                                 "user_filters": [{"type": "user"}]})]
    for path, body in requests_:
        assert _post(f"{base}/{path}", body, 400) == TOO_COMPLEX, path
    assert _post(f"{base}/check", {"tuple_key": {"user": "user:ann", "relation": "member",
                                                 "object": "group:g20"}})["allowed"] is True


def test_assertions_and_unknown_endpoints(fake_openfga: FakeOpenFgaServer) -> None:
    base, _, model_id = _store(fake_openfga)
    assertions = [{"tuple_key": {"user": "user:a", "relation": "can_read", "object": "account:x"},
                   "expectation": False}]
    assert requests.put(f"{base}/assertions/{model_id}", json={"assertions": assertions},
                        timeout=5).status_code == 204
    assert requests.get(f"{base}/assertions/{model_id}", timeout=5).json()["assertions"] == assertions
    _error(requests.get(f"{fake_openfga.url}/nope", timeout=5), 404, "undefined_endpoint")
    _error(requests.post(f"{base}/list-users", json={"object": {"type": "account", "id": "a"},
                                                     "relation": "can_read", "user_filters": []},
                         timeout=5), 400, "validation_error")


# --- knobs and auth -------------------------------------------------------------------------
def test_fault_modes_and_reset(fake_openfga: FakeOpenFgaServer) -> None:
    base, _, _ = _store(fake_openfga)
    fake_openfga.fault("down")
    _error(requests.post(f"{base}/check", json={}, timeout=5), 503, "unavailable")
    fake_openfga.fault("slow", delay=0.3)
    started = time.monotonic()
    requests.get(base, timeout=5).raise_for_status()
    assert time.monotonic() - started >= 0.3
    _error(requests.post(f"{fake_openfga.url}/_fake/fault", json={"mode": "sideways"}, timeout=5), 400,
           "validation_error")
    requests.post(f"{fake_openfga.url}/_fake/reset", timeout=5).raise_for_status()
    _error(requests.get(base, timeout=5), 404, "store_id_not_found")
    assert fake_openfga.state.fault.mode == "ok"


def test_bearer_authentication(fake_openfga_auth: FakeOpenFgaServer) -> None:
    url = fake_openfga_auth.url
    _error(requests.get(f"{url}/stores", timeout=5), 401, "auth_failed_invalid_bearer_token")
    _error(requests.get(f"{url}/stores", headers={"Authorization": "Bearer forged"}, timeout=5), 401,
           "auth_failed_invalid_bearer_token")
    denied = requests.post(f"{url}/oauth/token", data={"grant_type": "client_credentials",
                                                       "client_id": "fga-client", "client_secret": "no"},
                           timeout=5)
    assert denied.status_code == 401 and denied.json()["error"] == "access_denied"
    granted = requests.post(f"{url}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": "fga-client", "client_secret": "fga-secret",
        "audience": "https://fga.example/"}, timeout=5).json()
    assert granted["token_type"] == "Bearer" and granted["expires_in"] > 0
    auth = {"Authorization": f"Bearer {granted['access_token']}"}
    assert requests.get(f"{url}/stores", headers=auth, timeout=5).status_code == 200
    assert requests.get(f"{url}/stores", headers={"Authorization": "Bearer preshared-token"},
                        timeout=5).status_code == 200


# --- the official SDK end to end ------------------------------------------------------------
def test_sdk_end_to_end(fake_openfga_auth: FakeOpenFgaServer) -> None:
    url = fake_openfga_auth.url
    credentials = Credentials(method="client_credentials", configuration=CredentialConfiguration(
        api_issuer=url, api_audience="https://fga.example/", client_id="fga-client",
        client_secret="fga-secret"))
    with OpenFgaClient(ClientConfiguration(api_url=url, credentials=credentials)) as fga:
        store = fga.create_store(CreateStoreRequest(name="sdk"))
        assert ULID_RE.match(store.id)
        fga.set_store_id(store.id)
        model = fga_model_json()
        model_id = fga.write_authorization_model(WriteAuthorizationModelRequest(
            schema_version="1.1", type_definitions=model["type_definitions"],
            conditions=model.get("conditions"))).authorization_model_id
        fga.set_authorization_model_id(model_id)
        assert fga.read_latest_authorization_model().authorization_model.id == model_id
        fga.write(ClientWriteRequest(writes=[ClientTuple(**t) for t in TUPLES]))
        assert fga.check(ClientCheckRequest(user="user:alice", relation="can_read",
                                            object="account:acme")).allowed is True
        batch = fga.batch_check(ClientBatchCheckRequest(checks=[
            ClientBatchCheckItem(user="user:alice", relation="can_write", object="account:acme"),
            ClientBatchCheckItem(user="user:bob", relation="can_write", object="account:acme")]))
        assert sorted(r.allowed for r in batch.result) == [False, True]
        assert fga.list_objects(ClientListObjectsRequest(
            user="user:bob", relation="can_write", type="account")).objects == ["account:acme"]
        streamed = [r.object for r in fga.streamed_list_objects(ClientListObjectsRequest(
            user="user:alice", relation="can_read", type="account"))]
        assert streamed == ["account:acme"]
        users = fga.list_users(ClientListUsersRequest(
            object=FgaObject(type="account", id="acme"), relation="can_write",
            user_filters=[UserTypeFilter(type="user")])).users
        assert [u.object.id for u in users] == ["bob"]
        page = fga.read(ReadRequestTupleKey(object="account:acme"), {"page_size": 2})
        assert len(page.tuples) == 2 and page.continuation_token
        changes = fga.read_changes(ClientReadChangesRequest(type="team"))
        assert [c.tuple_key.user for c in changes.changes] == ["user:alice"]
        tree = fga.expand(ClientExpandRequest(relation="can_read", object="account:acme")).tree
        assert tree.root.name == "account:acme#can_read" and tree.root.union is not None
        with pytest.raises(ValidationException):
            fga.write(ClientWriteRequest(writes=[ClientTuple(user="user:a", relation="nope",
                                                             object="account:acme")]))
        fga.set_store_id("01HZZZZZZZZZZZZZZZZZZZZZZZ")
        with pytest.raises(NotFoundException):
            fga.check(ClientCheckRequest(user="user:a", relation="can_read", object="account:acme"))


def test_runs_as_a_module_on_a_port() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakes.openfga", "--port", str(port),
                             "--model", str(MODEL_PATH)], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        store_line = proc.stdout.readline().strip()
        model_line = proc.stdout.readline().strip()
        store_id = store_line.removeprefix("ESPOMCP_FGA_STORE_ID=")
        assert ULID_RE.match(store_id) and ULID_RE.match(model_line.removeprefix("ESPOMCP_FGA_MODEL_ID="))
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/stores/{store_id}", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "fake OpenFGA did not start"
                time.sleep(0.1)
        assert response.json()["name"] == "espomcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
