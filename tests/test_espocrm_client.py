"""The EspoCRM client against the fake EspoCRM: auth, list params, paging, errors, retries,
id hygiene and secrecy of credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import pytest

from espomcp.espocrm import (
    AccessDenied,
    Conflict,
    Duplicate,
    EspoClient,
    EspoError,
    InvalidInput,
    ListPage,
    NotFound,
    ServiceAccountError,
    Unavailable,
    ValidationFailed,
)
from espomcp.espocrm.hmac_auth import hmac_header, resource_path
from espomcp.espocrm.ids import validate_entity_type, validate_id
from espomcp.settings import DEFAULT_ENTITY_TYPES
from fakes.server import free_port

SECRETS = ("demo-api-key", "demo-secret")


def search_params_of(entry: dict[str, Any]) -> dict[str, Any]:
    return json.loads(parse_qs(entry["query"])["searchParams"][0])


def reference_hmac(api_key: str, secret: str, method: str, path: str) -> str:
    mac = hmac.new(secret.encode(), f"{method.upper()} {path}".encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(f"{api_key}:{mac}".encode()).decode()


# --- authentication ---------------------------------------------------------------------
@pytest.mark.parametrize("mode, user", [("apikey", "espomcp"), ("hmac", "espomcp-hmac")])
def test_both_auth_modes_succeed(espocrm_server, mode, user):
    client = espocrm_server.client(espocrm_auth=mode)
    ok, detail = client.ping()
    assert ok, detail
    assert client.get_record("Lead", client.list_records("Lead", max_size=1).list[0]["id"])
    assert {r["user"] for r in espocrm_server.requests()} == {user}


@pytest.mark.parametrize("overrides", [
    {"espocrm_api_key": "wrong-key"},
    {"espocrm_auth": "hmac", "espocrm_secret_key": "wrong-secret"},
    {"espocrm_auth": "hmac", "espocrm_api_key": "wrong-key"},
], ids=["apikey", "hmac-secret", "hmac-key"])
def test_wrong_credentials_are_a_service_account_error(espocrm_server, overrides):
    client = espocrm_server.client(**overrides)
    with pytest.raises(ServiceAccountError) as info:
        client.list_records("Lead")
    assert "not something you did" in info.value.message
    assert "operator" in info.value.message
    assert espocrm_server.requests()[-1]["status"] == 401
    ok, detail = client.ping()
    assert not ok and "credentials" in detail
    for secret in (*SECRETS, "wrong-key", "wrong-secret"):
        assert secret not in str(info.value) and secret not in repr(info.value)


def test_hmac_header_matches_the_reference_algorithm():
    assert hmac_header("k", "s", "get", "/Lead/abc") == reference_hmac("k", "s", "GET", "/Lead/abc")
    decoded = base64.b64decode(hmac_header("key:with", "s", "GET", "/Lead")).decode()
    assert decoded.startswith("key:with:") and len(decoded.rsplit(":", 1)[1]) == 64


def test_hmac_signs_the_sent_path_without_query_or_base_path():
    assert resource_path("http://h/api/v1/Lead?searchParams=%7B%7D", "") == "/Lead"
    assert resource_path("http://h/crm/api/v1/Lead/a%20b", "/crm") == "/Lead/a%20b"


def test_hmac_requests_with_query_strings_and_bodies_are_accepted(espocrm_server):
    client = espocrm_server.client(espocrm_auth="hmac")
    page = client.list_records("Contact", text_filter="J", max_size=3)
    created = client.create_record("Lead", {"lastName": "Signed", "emailAddress": "s@x.org"})
    client.update_record("Lead", created["id"], {"status": "In Process"})
    client.delete_record("Lead", created["id"])
    assert page.list
    assert [r["status"] for r in espocrm_server.requests()] == [200] * 4


def test_repr_and_logs_never_show_credentials(espocrm_server, caplog):
    caplog.set_level(logging.DEBUG)
    client = espocrm_server.client(espocrm_auth="hmac")
    espocrm_server.fault("down", count=1)
    client.list_records("Lead")
    text = repr(client) + repr(client._session.auth) + caplog.text
    assert not any(s in text for s in SECRETS)


# --- list parameters are really applied -------------------------------------------------
def _all(rows, pred):
    return bool(rows) and all(pred(r) for r in rows)


LIST_CASES = [
    ("where-equals", "Lead", {"where": [{"type": "equals", "attribute": "status", "value": "New"}]},
     lambda r: r["status"] == "New"),
    ("where-in", "Case", {"where": [{"type": "in", "field": "status", "value": ["Closed", "Pending"]}]},
     lambda r: r["status"] in ("Closed", "Pending")),
    ("where-or", "Opportunity", {"where": [{"type": "or", "value": [
        {"type": "equals", "attribute": "stage", "value": "Closed Won"},
        {"type": "greaterThan", "attribute": "amount", "value": 200000}]}]},
     lambda r: r["stage"] == "Closed Won" or r["amount"] > 200000),
    ("text-filter", "Contact", {"text_filter": "Ja"},
     lambda r: any((r.get(a) or "").lower().startswith("ja")
                   for a in ("name", "firstName", "lastName", "emailAddress"))),
    ("primary-filter", "Lead", {"primary_filter": "actual"},
     lambda r: r["status"] not in ("Converted", "Recycled", "Dead")),
    ("select", "Account", {"select": ["name"]}, lambda r: set(r) == {"id", "name"}),
]


@pytest.mark.parametrize("entity_type, kwargs, pred", [c[1:] for c in LIST_CASES],
                         ids=[c[0] for c in LIST_CASES])
def test_list_filters_are_applied(espocrm_client, entity_type, kwargs, pred):
    everything = espocrm_client.list_records(entity_type, max_size=200)
    page = espocrm_client.list_records(entity_type, max_size=200, **kwargs)
    assert _all(page.list, pred)
    if "select" not in kwargs:
        assert 0 < page.total < everything.total


def test_bool_filter_only_my(espocrm_server, espocrm_client):
    api_user = espocrm_client.app_user()["user"]["id"]
    mine = espocrm_client.create_record("Task", {"name": "Mine", "assignedUserId": api_user})
    page = espocrm_client.list_records("Task", bool_filters=["onlyMy"])
    assert [r["id"] for r in page.list] == [mine["id"]]


def test_order_offset_and_max_size(espocrm_client):
    asc = espocrm_client.list_records("Account", order_by="name", order="asc", max_size=10)
    desc = espocrm_client.list_records("Account", order_by="name", order="desc", max_size=10)
    names = [r["name"] for r in asc.list]
    assert len(asc.list) == 10 and names == sorted(names, key=str.casefold)
    assert [r["name"] for r in desc.list] == sorted([r["name"] for r in desc.list],
                                                    key=str.casefold, reverse=True)
    second = espocrm_client.list_records("Account", order_by="name", order="asc", offset=5,
                                         max_size=5)
    assert [r["id"] for r in second.list] == [r["id"] for r in asc.list[5:]]


def test_list_params_travel_as_search_params_json(espocrm_server, espocrm_client):
    espocrm_client.list_records("Lead", where=[{"type": "isNotNull", "attribute": "source"}],
                                order_by="createdAt", order="DESC", max_size=7)
    sent = search_params_of(espocrm_server.requests("/Lead")[-1])
    assert sent == {"offset": 0, "maxSize": 7, "orderBy": "createdAt", "order": "desc",
                    "where": [{"type": "isNotNull", "attribute": "source"}]}


def test_paging_above_200_goes_through_iter_records(espocrm_server, espocrm_client):
    state = espocrm_server.state
    for i in range(80):
        state.create("Contact", {"lastName": f"Bulk{i}"}, espocrm_server.user_id("alice"))
    with pytest.raises(InvalidInput, match="200"):
        espocrm_client.list_records("Contact", max_size=201)
    assert espocrm_server.requests() == []
    ids = [r["id"] for r in espocrm_client.iter_records("Contact", order_by="createdAt")]
    assert len(ids) == len(set(ids)) == 230
    sizes = [search_params_of(r)["maxSize"] for r in espocrm_server.requests("/Contact")]
    assert sizes == [200, 200]
    assert list(espocrm_client.iter_records("Contact", page_size=100, text_filter="Bulk7"))


def test_iter_records_stops_if_offset_is_ignored(espocrm_client, monkeypatch):
    rows = [{"id": f"{i:017x}"} for i in range(2)]
    monkeypatch.setattr(espocrm_client, "_list", lambda path, filters: ListPage(-1, rows))
    with pytest.raises(Unavailable, match="same page"):
        list(espocrm_client.iter_records("Lead", page_size=2))


# --- records and other operations -----------------------------------------------------
def test_record_round_trip(espocrm_client):
    created = espocrm_client.create_record("Opportunity", {
        "name": "Big deal", "amount": 5000, "closeDate": "2027-01-31"})
    assert created["stage"] == "Prospecting" and created["probability"] == 10
    got = espocrm_client.get_record("Opportunity", created["id"], select=["name", "amount"])
    assert got == {"id": created["id"], "name": "Big deal", "amount": 5000}
    updated = espocrm_client.update_record("Opportunity", created["id"], {"stage": "Proposal"})
    assert updated["stage"] == "Proposal"
    notes = espocrm_client.stream("Opportunity", created["id"])
    assert [n["type"] for n in notes.list] == ["Update", "Create"]
    espocrm_client.delete_record("Opportunity", created["id"])
    with pytest.raises(NotFound):
        espocrm_client.get_record("Opportunity", created["id"])


def test_link_unlink_and_related(espocrm_client):
    opp = espocrm_client.list_records("Opportunity", max_size=1).list[0]
    contact = espocrm_client.list_records("Contact", max_size=1).list[0]
    espocrm_client.link("Opportunity", opp["id"], "contacts", [contact["id"]])
    related = espocrm_client.list_related("Opportunity", opp["id"], "contacts", max_size=50)
    assert contact["id"] in [r["id"] for r in related.list]
    back = espocrm_client.list_related("Contact", contact["id"], "opportunities")
    assert opp["id"] in [r["id"] for r in back.list]
    espocrm_client.unlink("Opportunity", opp["id"], "contacts", [contact["id"]])
    related = espocrm_client.list_related("Opportunity", opp["id"], "contacts", max_size=50)
    assert contact["id"] not in [r["id"] for r in related.list]
    with pytest.raises(NotFound):
        espocrm_client.list_related("Opportunity", opp["id"], "nonsense")


def test_search_notes_convert_and_mass_actions(espocrm_client):
    found = espocrm_client.global_search("Acme", max_size=5)
    assert found.list and all(r["_scope"] in ("Account", "Contact", "Lead", "Opportunity")
                              for r in found.list)
    lead = espocrm_client.create_record("Lead", {"firstName": "Lee", "lastName": "Convert"})
    note = espocrm_client.post_note("Lead", lead["id"], "Called, interested.")
    assert note["type"] == "Post" and note["parentId"] == lead["id"]
    converted = espocrm_client.convert_lead(lead["id"], {
        "Account": {"name": "Convert Ltd"}, "Contact": {"firstName": "Lee", "lastName": "Convert"}})
    assert converted["status"] == "Converted" and converted["createdAccountId"]
    contact = espocrm_client.get_record("Contact", converted["createdContactId"])
    assert contact["accountId"] == converted["createdAccountId"]
    ids = [r["id"] for r in espocrm_client.list_records("Lead", max_size=3).list]
    assert espocrm_client.mass_update("Lead", ids, {"status": "Dead"})["count"] == 3
    assert all(espocrm_client.get_record("Lead", i)["status"] == "Dead" for i in ids)
    assert espocrm_client.mass_delete("Lead", ids)["count"] == 3


def test_metadata_app_user_and_webhooks(espocrm_client):
    assert "Converted" in espocrm_client.metadata("entityDefs.Lead.fields.status")["options"]
    assert espocrm_client.metadata()["entityDefs"]["Contact"]["fields"]["lastName"]["required"]
    assert espocrm_client.app_user()["user"]["type"] == "api"
    hook = espocrm_client.create_webhook("Contact.update", "http://127.0.0.1:9/hook")
    assert len(hook["secretKey"]) == 32
    assert [h["id"] for h in espocrm_client.list_webhooks()] == [hook["id"]]
    espocrm_client.delete_webhook(hook["id"])
    assert espocrm_client.list_webhooks() == []


# --- error mapping ----------------------------------------------------------------------
def test_validation_failure_names_field_and_type(espocrm_client):
    with pytest.raises(ValidationFailed) as info:
        espocrm_client.create_record("Opportunity", {"name": "No amount", "closeDate": "2027-01-01"})
    assert (info.value.field, info.value.type) == ("amount", "required")
    with pytest.raises(ValidationFailed) as info:
        espocrm_client.create_record("Case", {"name": "x", "priority": "Whenever"})
    assert (info.value.field, info.value.type) == ("priority", "valid")
    assert "priority" in info.value.message


def test_other_bad_requests_carry_espocrm_reason(espocrm_client):
    with pytest.raises(ValidationFailed, match="Not existing attribute 'nope' in where"):
        espocrm_client.list_records("Lead", where=[{"type": "equals", "attribute": "nope",
                                                    "value": 1}])
    with pytest.raises(ValidationFailed, match="No primary filter 'bogus'"):
        espocrm_client.list_records("Lead", primary_filter="bogus")


def test_duplicate_lists_the_existing_records(espocrm_client):
    existing = espocrm_client.list_records("Account", max_size=1).list[0]
    with pytest.raises(Duplicate) as info:
        espocrm_client.create_record("Account", {"name": existing["name"]})
    assert existing["id"] in [r["id"] for r in info.value.records]
    assert existing["name"] in info.value.message
    again = espocrm_client.create_record("Account", {"name": existing["name"]},
                                         skip_duplicate_check=True)
    assert again["id"] != existing["id"]


@pytest.mark.parametrize("status, reason, error", [
    (403, "No read access.", AccessDenied),
    (404, "", NotFound),
    (409, "modified", Conflict),
    (409, "locked", Conflict),
    (500, "Error", Unavailable),
    (418, "", Unavailable),
])
def test_status_mapping(espocrm_server, espocrm_client, status, reason, error):
    espocrm_server.fault("status", status=status, reason=reason)
    with pytest.raises(error) as info:
        espocrm_client.list_records("Lead")
    assert isinstance(info.value, EspoError) and info.value.message
    if reason and status < 500:
        assert reason in info.value.message


def test_access_denied_from_espocrm(espocrm_server, espocrm_client):
    with pytest.raises(AccessDenied, match="Not supported event"):
        espocrm_client.create_webhook("Lead.explode", "http://127.0.0.1:9/x")
    lead = espocrm_client.list_records("Lead", max_size=1).list[0]
    espocrm_server.fake.hide("Lead", lead["id"])
    with pytest.raises(AccessDenied, match="No read access"):
        espocrm_client.get_record("Lead", lead["id"])
    espocrm_server.fake.deny("Case", "create")
    with pytest.raises(AccessDenied, match="No create access"):
        espocrm_client.create_record("Case", {"name": "x"})


def test_garbage_timeout_and_connection_errors_are_unavailable(espocrm_server):
    client = espocrm_server.client(espocrm_retries=0, espocrm_timeout_seconds=0.3)
    espocrm_server.fault("garbage", count=1)
    with pytest.raises(Unavailable, match="unreadable"):
        client.list_records("Lead")
    espocrm_server.fault("slow", delay=1.0, count=1)
    with pytest.raises(Unavailable, match="did not answer"):
        client.list_records("Lead")
    closed = EspoClient(f"http://127.0.0.1:{free_port()}", api_key="demo-api-key",
                        entity_types=["Lead"], retries=0)
    with pytest.raises(Unavailable, match="unreachable"):
        closed.list_records("Lead")
    assert closed.ping()[0] is False


# --- retries ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [502, 503, 504])
def test_get_is_retried_on_gateway_errors(espocrm_server, espocrm_client, status):
    espocrm_server.fault("status", status=status, count=2)
    assert espocrm_client.list_records("Lead", max_size=1).list
    assert [r["status"] for r in espocrm_server.requests()] == [status, status, 200]


def test_get_gives_up_after_the_configured_retries(espocrm_server):
    client = espocrm_server.client(espocrm_retries=1)
    espocrm_server.fault("down")
    with pytest.raises(Unavailable, match="503"):
        client.list_records("Lead")
    assert len(espocrm_server.requests()) == 2


def test_put_and_delete_are_retried(espocrm_server, espocrm_client):
    lead = espocrm_client.create_record("Lead", {"lastName": "Retry"})
    espocrm_server.fault("down", count=1)
    assert espocrm_client.update_record("Lead", lead["id"], {"title": "CTO"})["title"] == "CTO"
    espocrm_server.fault("down", count=1)
    espocrm_client.delete_record("Lead", lead["id"])
    methods = [(r["method"], r["status"]) for r in espocrm_server.requests()]
    assert methods == [("POST", 200), ("PUT", 503), ("PUT", 200), ("DELETE", 503), ("DELETE", 200)]


def test_post_is_never_retried(espocrm_server, espocrm_client):
    before = len(espocrm_server.state.records["Lead"])
    espocrm_server.fault("down", count=1)
    with pytest.raises(Unavailable):
        espocrm_client.create_record("Lead", {"lastName": "Once"})
    assert [r["method"] for r in espocrm_server.requests()] == ["POST"]
    assert len(espocrm_server.state.records["Lead"]) == before


# --- hostile input never reaches EspoCRM -------------------------------------------------
HOSTILE_IDS = ["../User/1", "abc?x=1", "a/b", "%2F", "abc%2Fdef", "a#b", "..", " 66a0c1d2e3f4a5b6c",
               "66a0c1d2e3f4a5b6c\n", "a\x00b", "x" * 40, "", None, 17, ["a"], "ÄÖÜ",
               "66a0c1d2e3f4a5b6c/stream"]


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=repr)
def test_hostile_ids_never_reach_the_server(espocrm_server, espocrm_client, bad):
    calls = [
        lambda: espocrm_client.get_record("Lead", bad),
        lambda: espocrm_client.update_record("Lead", bad, {"title": "x"}),
        lambda: espocrm_client.delete_record("Lead", bad),
        lambda: espocrm_client.list_related("Lead", bad, "tasks"),
        lambda: espocrm_client.link("Opportunity", "66a0c1d2e3f4a5b6c", "contacts", [bad]),
        lambda: espocrm_client.stream("Lead", bad),
        lambda: espocrm_client.post_note("Lead", bad, "hi"),
        lambda: espocrm_client.convert_lead(bad, {"Contact": {"lastName": "x"}}),
        lambda: espocrm_client.mass_delete("Lead", [bad]),
        lambda: espocrm_client.delete_webhook(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidInput, match="Invalid record id"):
            call()
    assert espocrm_server.requests() == []


@pytest.mark.parametrize("bad", ["Lead/../User", "lead", "Webhook", "Foo", "", "Lead?x=1", None,
                                 "Note", "Lead%2F"], ids=repr)
def test_unknown_entity_types_never_reach_the_server(espocrm_server, espocrm_client, bad):
    with pytest.raises(InvalidInput, match="entity type"):
        espocrm_client.list_records(bad)
    with pytest.raises(InvalidInput):
        espocrm_client.create_record(bad, {"name": "x"})
    assert espocrm_server.requests() == []


@pytest.mark.parametrize("kwargs", [
    {"where": [{"type": "subQueryIn", "attribute": "id", "value": []}]},
    {"where": [{"type": "bogus", "attribute": "status", "value": "x"}]},
    {"where": [{"type": "equals", "attribute": "status"}]},
    {"where": [{"type": "equals", "attribute": "status", "value": "x", "extra": 1}]},
    {"where": [{"type": "in", "attribute": "status", "value": "New"}]},
    {"where": [{"type": "isNull", "attribute": "status", "value": "x"}]},
    {"where": [{"type": "equals", "attribute": "a;drop", "value": "x"}]},
    {"where": [{"type": "linkedWith", "attribute": "teams", "value": ["../x"]}]},
    {"where": [{"type": "and", "value": []}]},
    {"where": {"type": "equals"}},
    {"order": "sideways"},
    {"order_by": "name desc"},
    {"select": ["name,id"]},
    {"primary_filter": "a b"},
    {"offset": -1},
    {"max_size": 0},
    {"max_size": True},
], ids=lambda kw: json.dumps(kw)[:40])
def test_bad_list_params_are_refused_before_sending(espocrm_server, espocrm_client, kwargs):
    with pytest.raises(InvalidInput):
        espocrm_client.list_records("Lead", **kwargs)
    assert espocrm_server.requests() == []


def test_bad_link_and_metadata_names_are_refused(espocrm_server, espocrm_client):
    good = "66a0c1d2e3f4a5b6c"
    for call in (lambda: espocrm_client.list_related("Lead", good, "../User"),
                 lambda: espocrm_client.link("Lead", good, "tasks?x", [good]),
                 lambda: espocrm_client.metadata("entityDefs/../x"),
                 lambda: espocrm_client.global_search(""),
                 lambda: espocrm_client.convert_lead(good, {"User": {}}),
                 lambda: espocrm_client.create_webhook("Lead.create", "file:///etc/passwd")):
        with pytest.raises(InvalidInput):
            call()
    assert espocrm_server.requests() == []


def test_id_validation_accepts_espocrm_shapes():
    for good in ("66a0c1d2e3f4a5b6c", "0f8fad5b-d9cb-469f-a165-70867728950e", "system", "1"):
        assert validate_id(good) == good
    assert validate_entity_type("Lead", DEFAULT_ENTITY_TYPES) == "Lead"
    with pytest.raises(InvalidInput, match="Did you mean 'Lead'"):
        validate_entity_type("lead", DEFAULT_ENTITY_TYPES)


def test_client_errors_never_contain_credentials(espocrm_server):
    client = espocrm_server.client(espocrm_auth="hmac")
    errors: list[EspoError] = []
    for mode, kwargs in (("garbage", {}), ("down", {}), ("status", {"status": 403})):
        espocrm_server.fault(mode, **kwargs)
        with pytest.raises(EspoError) as info:
            client.list_records("Lead")
        errors.append(info.value)
    espocrm_server.fault("off")
    bad = espocrm_server.client(espocrm_auth="hmac", espocrm_secret_key="s3cr3t-value")
    with pytest.raises(EspoError) as info:
        bad.get_record("Lead", "66a0c1d2e3f4a5b6c")
    errors.append(info.value)
    for error in errors:
        text = f"{error} {error!r} {error.message} {error.__cause__!r}"
        assert not any(s in text for s in (*SECRETS, "s3cr3t-value"))


def test_factory_wires_the_client_and_readiness(espocrm_server):
    from espomcp.factory import create_app

    class _NoAuth:
        def authenticate(self, authorization):
            raise AssertionError("not used")

    app = create_app(espocrm_server.settings(), authenticator=_NoAuth())
    svc = app.extensions["espomcp"]
    assert isinstance(svc.crm, EspoClient)
    assert svc.readiness["espocrm"]() == (True, "ok")
