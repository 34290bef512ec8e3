"""Token attacks against /mcp: every bad token is a 401 ``invalid_token`` before any CRM call."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from espomcp import create_app
from espomcp.auth.bearer import BearerError
from espomcp.auth.jwks import JwksKeySource, KeyLookupError
from espomcp.auth.jwt_access_token import JwtAccessTokenValidator, TokenPolicy
from espomcp.auth.resource_server import ResourceServer
from espomcp.settings import Settings
from fakes.auth0 import FakeAuth0
from fakes.auth0.models import load_key

AUDIENCE = "http://127.0.0.1:8000/mcp"
PRM = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


class CrmSpy:
    """Stands in for the EspoCRM client: any use at all is recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def _call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"CRM called: {name}")

        return _call


class CountingKeys:
    """Wraps the app's key source to prove which tokens never reached a key lookup."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lookups = 0

    def get_key(self, kid: str) -> Any:
        self.lookups += 1
        return self.inner.get_key(kid)


@pytest.fixture(scope="module")
def auth_server() -> Iterator[FakeAuth0]:
    """One tenant for the module (overrides the plugin's); reset before every test."""
    server = FakeAuth0().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_tenant(auth_server: FakeAuth0) -> None:
    auth_server.reset()


@pytest.fixture(scope="module")
def shared_app(auth_server: FakeAuth0, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """Stateless attack tests share one app (building one costs most of a test's time)."""
    settings = Settings(_env_file=None, auth_issuer=auth_server.url,  # type: ignore[call-arg]
                        data_dir=tmp_path_factory.mktemp("jwt"), rate_limit_per_minute=0)
    app = create_app(settings)
    validator = app.extensions["espomcp"].authenticator.validator
    validator.keys = CountingKeys(validator.keys)
    return app


@pytest.fixture
def app(shared_app: Flask) -> Flask:
    svc = shared_app.extensions["espomcp"]
    svc.crm = CrmSpy()
    svc.authenticator.validator.keys.lookups = 0
    return shared_app


@pytest.fixture
def fresh_app(auth_settings: Callable[..., Settings]) -> Flask:
    """An app with a cold JWKS cache, for tests about fetching and rotation."""
    app = create_app(auth_settings())
    app.extensions["espomcp"].crm = CrmSpy()
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def fresh_client(fresh_app: Flask) -> FlaskClient:
    return fresh_app.test_client()


def call(client: FlaskClient, authorization: str | None, url: str = "/mcp") -> Any:
    headers = {"Accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return client.post(url, json=LIST, headers=headers)


def challenge(response: Any) -> dict[str, str]:
    """Parse ``WWW-Authenticate: Bearer k="v", ...`` into a dict (values are quoted)."""
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    params: dict[str, str] = {}
    for part in header[len("Bearer "):].split('", '):
        key, _, value = part.partition("=")
        params[key] = value.strip('"')
    return params


def assert_invalid_token(response: Any, app: Flask, fragment: str = "") -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    params = challenge(response)
    assert params["error"] == "invalid_token"
    assert params["resource_metadata"] == PRM
    assert "espocrm:contacts:read" in params["scope"].split()
    assert fragment in params["error_description"]
    assert app.extensions["espomcp"].crm.calls == []


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong-audience", {"aud": "https://other-api.example.com/"}, "audience"),
    ("audience-list-without-us", {"aud": ["https://a.example/", "https://b.example/"]},
     "audience"),
    ("issuer-without-trailing-slash", {"iss": "ISSUER_NO_SLASH"}, "issuer"),
    ("foreign-issuer", {"iss": "https://evil.example.com/"}, "issuer"),
    ("expired-beyond-leeway", {"ttl": -120}, "expired"),
    ("alg-none", {"alg": "none"}, "algorithm"),
    ("hs256-with-public-key", {"alg": "HS256"}, "algorithm"),
    ("unknown-kid", {"kid": "kid-nobody-published"}, "kid"),
    ("unpublished-second-key", {"kid": "demo-2026-b"}, "kid"),
    ("missing-sub", {"drop": ["sub"]}, "sub"),
    ("empty-sub", {"sub": ""}, "sub"),
    ("missing-exp", {"drop": ["exp"]}, "exp"),
    ("string-exp", {"exp": "tomorrow"}, "exp"),
    ("crit-header", {"header": {"crit": ["exp"]}}, "crit"),
    ("missing-kid", {"kid": ""}, "kid"),
    ("wrong-typ", {"header": {"typ": "id+jwt"}}, "type"),
]


@pytest.mark.parametrize(("overrides", "fragment"), [(o, f) for _, o, f in ATTACKS],
                         ids=[name for name, _, _ in ATTACKS])
def test_token_attack_is_rejected(app: Flask, client: FlaskClient, auth_server: FakeAuth0,
                                  overrides: dict[str, Any], fragment: str) -> None:
    overrides = dict(overrides)
    if overrides.get("iss") == "ISSUER_NO_SLASH":
        overrides["iss"] = auth_server.url.rstrip("/")
    if overrides.get("kid") == "":
        overrides["header"] = {"kid": None}
        del overrides["kid"]
    token = auth_server.backend.mint("alice", **overrides)
    assert_invalid_token(call(client, f"Bearer {token}"), app, fragment)
    if fragment in ("algorithm", "crit", "type") or "header" in overrides:
        assert app.extensions["espomcp"].authenticator.validator.keys.lookups == 0


@pytest.mark.parametrize("token", ["2YotnFZFEjr1zCsicMWpAA", "a.b.c", "x" * 20000,
                                   "e30.e30.e30.e30.e30"],
                         ids=["opaque", "garbage-three-parts", "huge", "jwe-shaped"])
def test_non_jwt_tokens_are_rejected(app: Flask, client: FlaskClient, token: str) -> None:
    assert_invalid_token(call(client, f"Bearer {token}"), app)


def test_opaque_token_description_names_the_audience(app: Flask, client: FlaskClient) -> None:
    response = call(client, "Bearer 2YotnFZFEjr1zCsicMWpAA")
    assert_invalid_token(response, app, "opaque")
    assert AUDIENCE in challenge(response)["error_description"]


def test_tampered_payload_fails_signature(app: Flask, client: FlaskClient,
                                          mint_token: Callable[..., str]) -> None:
    header, _, signature = mint_token("alice").split(".")
    forged = b64({"iss": "x", "sub": "auth0|admin", "aud": AUDIENCE, "exp": 2**40,
                  "scope": "espocrm:admin"})
    assert_invalid_token(call(client, f"Bearer {header}.{forged}.{signature}"), app, "signature")


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6ZGVtbw==", "Token abc"],
                         ids=["no-header", "basic", "other-scheme"])
def test_missing_credentials_get_a_plain_challenge(app: Flask, client: FlaskClient,
                                                   authorization: str | None) -> None:
    response = call(client, authorization)
    assert response.status_code == 401
    params = challenge(response)
    assert "error" not in params
    assert params["resource_metadata"] == PRM
    assert "espocrm:contacts:read" in params["scope"].split()
    assert app.extensions["espomcp"].crm.calls == []


@pytest.mark.parametrize("authorization", ["Bearer ", "Bearer a b"], ids=["empty", "two-tokens"])
def test_malformed_bearer_header_is_invalid_request(app: Flask, client: FlaskClient,
                                                    authorization: str) -> None:
    response = call(client, authorization)
    assert response.status_code in (400, 401)
    params = challenge(response)
    assert params.get("error") in (None, "invalid_request")
    assert app.extensions["espomcp"].crm.calls == []


def test_token_in_query_string_is_ignored(app: Flask, client: FlaskClient,
                                          mint_token: Callable[..., str]) -> None:
    response = call(client, None, url=f"/mcp?access_token={mint_token('alice')}")
    assert response.status_code == 401
    assert "error" not in challenge(response)


def test_valid_token_is_accepted_with_scopes_from_all_claims(
        app: Flask, client: FlaskClient, auth_server: FakeAuth0) -> None:
    token = auth_server.backend.mint("alice", ["espocrm:contacts:read"],
                                     scp=["espocrm:leads:read"],
                                     permissions=["espocrm:tasks:read"],
                                     aud=[AUDIENCE, auth_server.url + "userinfo"])
    principal = app.extensions["espomcp"].authenticator.authenticate(f"Bearer {token}")
    assert principal.sub == "auth0|alice"
    assert principal.email == "alice@example.com"
    assert principal.client_id == "demo-client"
    assert principal.scopes == {"espocrm:contacts:read", "espocrm:leads:read",
                                "espocrm:tasks:read"}
    assert call(client, f"Bearer {token}").status_code == 200


def test_expiry_and_leeway_follow_the_clock(fresh_app: Flask, fresh_client: FlaskClient,
                                            mint_token: Callable[..., str]) -> None:
    app, client = fresh_app, fresh_client
    start = time.time()
    with freeze_time(_at(start)) as clock:
        token = mint_token("alice", ttl=60)
        assert call(client, f"Bearer {token}").status_code == 200
        clock.move_to(_at(start + 60 + 29))  # inside the 30 s leeway
        assert call(client, f"Bearer {token}").status_code == 200
        clock.move_to(_at(start + 60 + 31))
        assert_invalid_token(call(client, f"Bearer {token}"), app, "expired")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_tokens_follow_the_clock(fresh_app: Flask, fresh_client: FlaskClient,
                                               mint_token: Callable[..., str],
                                               claim: str) -> None:
    app, client = fresh_app, fresh_client
    start = int(time.time())
    with freeze_time(_at(start)) as clock:
        token = mint_token("alice", **{claim: start + 120})
        assert_invalid_token(call(client, f"Bearer {token}"), app, claim)
        clock.move_to(_at(start + 95))  # within leeway of the claimed time
        assert call(client, f"Bearer {token}").status_code == 200


def test_rotation_works_without_restart(fresh_app: Flask, fresh_client: FlaskClient,
                                        auth_server: FakeAuth0) -> None:
    app, client = fresh_app, fresh_client
    start = time.time()
    backend = auth_server.backend
    with freeze_time(_at(start)) as clock:
        old = backend.mint("alice")
        assert call(client, f"Bearer {old}").status_code == 200
        backend.rotate()
        clock.move_to(_at(start + 31))  # past the refetch cooldown
        new = backend.mint("alice")
        assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == \
            "demo-2026-b"
        assert call(client, f"Bearer {new}").status_code == 200
        assert call(client, f"Bearer {old}").status_code == 200
        backend.retire("demo-2026-a")
        clock.move_to(_at(start + 31 + 601))  # cached keys age out; the retired one goes
        assert call(client, f"Bearer {new}").status_code == 200
        assert_invalid_token(call(client, f"Bearer {backend.mint('alice', kid='demo-2026-a')}"),
                             app, "kid")


def test_unknown_kid_flood_refetches_once_per_cooldown(fresh_app: Flask, fresh_client: FlaskClient,
                                                       auth_server: FakeAuth0) -> None:
    app, client = fresh_app, fresh_client
    start = time.time()
    backend = auth_server.backend
    with freeze_time(_at(start)) as clock:
        assert call(client, f"Bearer {backend.mint('alice')}").status_code == 200
        assert len(backend.requests_to("jwks")) == 1
        clock.move_to(_at(start + 31))
        for n in range(25):
            assert_invalid_token(call(client, f"Bearer {backend.mint('alice', kid=f'forged-{n}')}"),
                                 app, "kid")
        assert len(backend.requests_to("jwks")) == 2
        clock.move_to(_at(start + 62))
        assert_invalid_token(call(client, f"Bearer {backend.mint('alice', kid='forged-x')}"), app)
        assert len(backend.requests_to("jwks")) == 3


def test_jwks_down_keeps_cached_keys_and_fails_closed_for_new_ones(
        fresh_app: Flask, fresh_client: FlaskClient, auth_server: FakeAuth0) -> None:
    app, client = fresh_app, fresh_client
    start = time.time()
    backend = auth_server.backend
    with freeze_time(_at(start)) as clock:
        assert call(client, f"Bearer {backend.mint('alice')}").status_code == 200
        backend.jwks_down = True
        clock.move_to(_at(start + 700))  # stale cache, refetch fails: old keys stay
        assert call(client, f"Bearer {backend.mint('alice')}").status_code == 200
        backend.rotate()
        clock.move_to(_at(start + 740))
        assert_invalid_token(call(client, f"Bearer {backend.mint('alice')}"), app, "kid")
        backend.jwks_down = False
        clock.move_to(_at(start + 780))
        assert call(client, f"Bearer {backend.mint('alice')}").status_code == 200


def test_first_jwks_fetch_failing_fails_closed(fresh_app: Flask, fresh_client: FlaskClient,
                                               auth_server: FakeAuth0) -> None:
    app, client = fresh_app, fresh_client
    auth_server.backend.jwks_down = True
    assert_invalid_token(call(client, f"Bearer {auth_server.backend.mint('alice')}"), app, "kid")


def test_symmetric_algorithms_cannot_be_configured(auth_settings: Callable[..., Settings]
                                                   ) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        auth_settings(auth_algorithms="HS256")


@pytest.mark.parametrize("body", [b"not json", b'{"keys": "nope"}', b'{"keys": []}',
                                  b'{"keys": [{"kid": "k", "kty": "oct", "k": "c2VjcmV0"}]}',
                                  b'{"keys": [' + b'{"kid": "x"},' * 20000 + b'{}]}'],
                         ids=["garbage", "keys-not-list", "empty", "symmetric-only", "oversized"])
def test_bad_jwks_documents_fail_closed(serve: Callable[[Any], Any], body: bytes) -> None:
    def jwks_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    server = serve(jwks_app)
    keys = JwksKeySource(server.url + "/jwks.json", cooldown_seconds=0)
    with pytest.raises(KeyLookupError):
        keys.get_key("k")
    assert keys.fetch_count == 1 and keys.kids() == []


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class StaticKeys:
    """The first demo key, without any network."""

    def get_key(self, kid: str) -> Any:
        if kid != "demo-2026-a":
            raise KeyLookupError("unknown kid")
        return load_key(kid)


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@hypothesis_settings(max_examples=300, deadline=None)
@given(header=st.one_of(st.binary(max_size=60).map(_segment),
                        st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku"]),
                                        st.one_of(st.none(), st.integers(), st.text(max_size=8),
                                                  st.just("RS256"), st.just("demo-2026-a"),
                                                  st.lists(st.text(max_size=3), max_size=2)))
                        .map(lambda h: b64(h))),
       payload=st.one_of(st.binary(max_size=60).map(_segment),
                         st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                         max_size=4).map(lambda c: b64(c))),
       signature=st.text(alphabet="AZaz09-_=+/.", max_size=40))
def test_arbitrary_tokens_only_ever_raise_bearer_errors(header: str, payload: str,
                                                        signature: str) -> None:
    policy = TokenPolicy(issuer="http://127.0.0.1:1/", audience=AUDIENCE)
    server = ResourceServer(JwtAccessTokenValidator(policy, StaticKeys()))
    with pytest.raises(BearerError) as info:
        server.authenticate(f"Bearer {header}.{payload}.{signature}")
    assert info.value.error in ("invalid_token", "invalid_request")
