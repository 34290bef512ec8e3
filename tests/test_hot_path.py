"""The hot-path optimisations the profile led to (bench/README.md) keep their contracts:
remembered tokens are still checked on every call and the memory stays bounded; the text
content of a tool result is the structured content as one-line JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from freezegun import freeze_time

from espomcp.auth import jwt_access_token
from espomcp.auth.jwks import JwksKeySource
from espomcp.auth.jwt_access_token import InvalidToken, JwtAccessTokenValidator, TokenPolicy
from espomcp.mcp.server import tool_result

AUDIENCE = "http://127.0.0.1:8000/mcp"


class CountingKeys:
    """The tenant's JWKS, counting lookups (one per full signature check)."""

    def __init__(self, url: str) -> None:
        self.inner = JwksKeySource(url)
        self.lookups = 0

    def get_key(self, kid: str) -> Any:
        self.lookups += 1
        return self.inner.get_key(kid)


@pytest.fixture
def validator(auth_server: Any) -> tuple[JwtAccessTokenValidator, CountingKeys]:
    keys = CountingKeys(auth_server.url + ".well-known/jwks.json")
    policy = TokenPolicy(issuer=auth_server.issuer, audience=AUDIENCE, leeway_seconds=0)
    return JwtAccessTokenValidator(policy, keys), keys


def test_a_remembered_token_skips_the_signature_but_not_the_claims(validator, mint_token):
    check, keys = validator
    with freeze_time("2026-11-26 08:00:00") as clock:
        token = mint_token("alice", ttl=10)
        first = check.validate(token)
        assert check.validate(token) == first and keys.lookups == 1  # remembered
        first["sub"] = "tampered"  # callers get copies
        assert check.validate(token)["sub"] == "auth0|alice"
        clock.tick(11)
        with pytest.raises(InvalidToken, match="expired"):
            check.validate(token)  # exp is checked on every call, remembered or not
        assert keys.lookups == 1


def test_remembering_expires_and_is_bounded(validator, mint_token, monkeypatch):
    check, keys = validator
    monkeypatch.setattr(jwt_access_token, "VERIFIED_MAX", 5)
    with freeze_time("2026-11-26 08:00:00") as clock:
        tokens = [mint_token("alice", jti=str(n)) for n in range(12)]
        for token in tokens:
            check.validate(token)
        assert check.verified_count() == 5 and keys.lookups == 12
        check.validate(tokens[-1])
        assert keys.lookups == 12
        clock.tick(jwt_access_token.VERIFIED_TTL_SECONDS + 1)
        check.validate(tokens[-1])  # verified again after the TTL (a withdrawn key would fail)
        assert keys.lookups == 13


def test_a_bad_signature_is_never_remembered(validator, mint_token):
    check, keys = validator
    head, body, signature = mint_token("alice").split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            check.validate(forged)
    assert check.verified_count() == 0 and keys.lookups == 2


def test_tool_result_text_is_the_structured_content_on_one_line():
    structured = {"record": {"id": "66a0c1d2e3f4a5b6c", "name": "Zoë", "tags": ["a", "b"],
                             "amount": 12.5, "nested": {"x": None}}}
    result = tool_result(structured)
    text = result["content"][0]["text"]
    assert "\n" not in text and "Zoë" in text
    assert json.loads(text) == structured == result["structuredContent"]
    assert result["isError"] is False


def test_a_warm_tool_call_makes_exactly_one_espocrm_request(embedded_world):
    """No redundant upstream calls: the identity is cached, FGA is local, one CRM read."""
    world = embedded_world
    alice = world.user_id("alice")
    contact = next(i for i, r in world.crm.state.table("Contact").items()
                   if r.get("assignedUserId") == alice)
    world.ok("alice", "whoami")  # identity cached
    for tool, args, path in [
            ("get_record", {"entity_type": "Contact", "id": contact}, f"/Contact/{contact}"),
            ("search_records", {"entity_type": "Lead", "limit": 5}, "/Lead")]:
        with world.crm.state.lock:
            world.crm.state.request_log.clear()
        world.ok("alice", tool, args)
        sent = [r["path"] for r in world.crm.api_requests("")]
        assert sent == [path], sent
