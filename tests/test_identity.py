"""Token subject → EspoCRM user: by email or by a configured claim, cached, failing clearly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from espomcp.auth.identity import EspoUser, IdentityMapper
from espomcp.auth.principal import Principal
from espomcp.espocrm.client import ListPage
from espomcp.espocrm.errors import NotFound, Unavailable
from espomcp.mcp.registry import ToolError, ToolRegistry
from espomcp.services import Services
from espomcp.settings import Settings

ALICE = "66a0c1d2e3f4a5b60"
ADMIN = "66a0c1d2e3f4a5b61"
SALES = "77a0c1d2e3f4a5b60"
CLAIM = "https://espomcp.example.com/espo_user"

USERS = [
    {"id": ALICE, "userName": "alice", "name": "Alice Sales", "emailAddress": "alice@example.com",
     "type": "regular", "isActive": True, "defaultTeamId": SALES, "teamsIds": [SALES]},
    {"id": ADMIN, "userName": "admin", "name": "Admin", "emailAddress": "admin@example.com",
     "type": "admin", "isActive": True, "defaultTeamId": None, "teamsIds": []},
    {"id": "66a0c1d2e3f4a5b62", "userName": "dave", "name": "Dave Gone",
     "emailAddress": "dave@example.com", "type": "regular", "isActive": False, "teamsIds": []},
    {"id": "66a0c1d2e3f4a5b63", "userName": "robot", "name": "API robot",
     "emailAddress": "robot@example.com", "type": "api", "isActive": True, "teamsIds": []},
    {"id": "66a0c1d2e3f4a5b64", "userName": "twin1", "name": "Twin 1",
     "emailAddress": "twins@example.com", "type": "regular", "isActive": True, "teamsIds": []},
    {"id": "66a0c1d2e3f4a5b65", "userName": "twin2", "name": "Twin 2",
     "emailAddress": "twins@example.com", "type": "regular", "isActive": True, "teamsIds": []},
]


class FakeCrm:
    """The two EspoClient calls identity mapping uses, over an in-memory user table."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.down = False

    def list_records(self, entity_type: str, *, where: list[dict[str, Any]],
                     select: list[str] | None = None, max_size: int = 20) -> ListPage:
        self.calls.append(("list", where))
        if self.down:
            raise Unavailable("EspoCRM is unavailable (HTTP 503); try again later.")
        assert entity_type == "User"
        (item,) = where
        assert item["type"] == "equals"
        rows = [u for u in USERS if u.get(item["attribute"]) == item["value"]][:max_size]
        return ListPage(total=len(rows), list=[dict(r) for r in rows])

    def get_record(self, entity_type: str, record_id: str) -> dict[str, Any]:
        self.calls.append(("get", record_id))
        if self.down:
            raise Unavailable("EspoCRM is unavailable (HTTP 503); try again later.")
        for user in USERS:
            if user["id"] == record_id:
                return dict(user)
        raise NotFound("Not found in EspoCRM.")


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


def mapper(crm: FakeCrm | None, **settings: Any) -> IdentityMapper:
    svc = Services(settings=Settings(_env_file=None, **settings),  # type: ignore[call-arg]
                   registry=ToolRegistry(), authenticator=None, crm=crm)  # type: ignore[arg-type]
    return IdentityMapper(svc)


def who(name: str, email: str | None = None, **claims: Any) -> Principal:
    return Principal(sub=f"auth0|{name}", email=email if email is not None
                     else f"{name}@example.com", claims=claims)


def test_maps_by_email_with_teams(crm: FakeCrm) -> None:
    user = mapper(crm).require(who("alice"))
    assert user == EspoUser(id=ALICE, user_name="alice", name="Alice Sales",
                            email="alice@example.com", default_team_id=SALES,
                            team_ids=(SALES,), is_admin=False)
    assert crm.calls[0] == ("list", [{"type": "equals", "attribute": "emailAddress",
                                      "value": "alice@example.com"}])
    assert mapper(crm).require(who("admin")).is_admin is True


def test_results_are_cached_with_a_ttl(crm: FakeCrm) -> None:
    identity = mapper(crm)
    start = datetime.now(UTC)
    with freeze_time(start) as clock:
        identity.require(who("alice"))
        calls = len(crm.calls)
        identity.require(who("alice"))
        assert identity.cached_user_id(who("alice")) == ALICE
        assert len(crm.calls) == calls
        clock.move_to(start + timedelta(seconds=301))
        assert identity.cached_user_id(who("alice")) is None
        identity.require(who("alice"))
        assert len(crm.calls) == 2 * calls


def test_cache_is_bounded(crm: FakeCrm) -> None:
    identity = mapper(crm)
    identity.max_entries = 2
    for name in ("alice", "admin", "nobody", "alice"):
        identity.resolve(who(name))
    assert len(identity._cache) == 2


@pytest.mark.parametrize(("principal", "reason"), [
    (who("zed"), "no active EspoCRM user has the email address zed@example.com"),
    (who("dave"), "no active EspoCRM user"),
    (who("robot"), "no active EspoCRM user"),
    (who("twin", "twins@example.com"), "several EspoCRM users share"),
    (Principal(sub="client@clients"), "no email address"),
    (who("alice", email_verified=False), "not verified"),
], ids=["unknown", "inactive", "api-user", "ambiguous", "no-email", "unverified"])
def test_unmapped_identities_fail_clearly(crm: FakeCrm, principal: Principal,
                                          reason: str) -> None:
    identity = mapper(crm)
    assert identity.resolve(principal) is None
    with pytest.raises(ToolError) as info:
        identity.require(principal)
    assert "not mapped to an EspoCRM user" in info.value.message
    assert reason in info.value.message
    described = identity.describe(principal)
    assert described["mapped"] is False and reason in described["reason"]


def test_describe_a_mapped_user(crm: FakeCrm) -> None:
    described = mapper(crm).describe(who("alice"))
    assert described["mapped"] is True and described["id"] == ALICE
    assert described["team_ids"] == [SALES]


@pytest.mark.parametrize("value", [ALICE, "alice"], ids=["user-id", "user-name"])
def test_configured_claim_wins_over_email(crm: FakeCrm, value: str) -> None:
    identity = mapper(crm, identity_claim=CLAIM)
    principal = who("someone", "other@example.com", **{CLAIM: value})
    assert identity.require(principal).id == ALICE


def test_configured_claim_missing_falls_back_to_email(crm: FakeCrm) -> None:
    assert mapper(crm, identity_claim=CLAIM).require(who("alice")).id == ALICE


@pytest.mark.parametrize("value", ["66a0c1d2e3f4a5b6f", "ghost", "../etc/passwd"],
                         ids=["unknown-id", "unknown-name", "hostile"])
def test_configured_claim_that_matches_nobody(crm: FakeCrm, value: str) -> None:
    identity = mapper(crm, identity_claim=CLAIM)
    with pytest.raises(ToolError, match="not mapped"):
        identity.require(who("alice", **{CLAIM: value}))


def test_crm_down_is_a_clear_error_and_not_cached(crm: FakeCrm) -> None:
    identity = mapper(crm)
    crm.down = True
    with pytest.raises(ToolError, match="EspoCRM unavailable"):
        identity.require(who("alice"))
    with pytest.raises(ToolError, match="EspoCRM unavailable"):
        identity.resolve(who("alice"))
    assert identity.describe(who("alice"))["mapped"] is False
    crm.down = False
    assert identity.require(who("alice")).id == ALICE


def test_user_entity_type_must_be_enabled(crm: FakeCrm) -> None:
    with pytest.raises(ToolError, match="ESPOMCP_ENTITY_TYPES"):
        mapper(crm, entity_types="Contact,Account").require(who("alice"))
    assert crm.calls == []


def test_no_crm_configured(crm: FakeCrm) -> None:
    with pytest.raises(ToolError, match="EspoCRM unavailable"):
        mapper(None).require(who("alice"))


@pytest.mark.parametrize(("name", "team", "admin"), [("alice", "Sales", False),
                                                     ("carol", "Support", False),
                                                     ("admin", None, True)])
def test_demo_users_map_against_the_fake_espocrm(espocrm_server: Any, name: str,
                                                 team: str | None, admin: bool) -> None:
    from fakes.espocrm.seed import team_id, user_id

    client = espocrm_server.client()
    try:
        user = mapper(client, entity_types="User,Team,Contact").require(who(name))
    finally:
        client.close()
    assert user.id == user_id(name) and user.user_name == name
    assert user.is_admin is admin
    assert user.team_ids == ((team_id(team),) if team else ())


def test_fake_espocrm_down_is_espocrm_unavailable(espocrm_server: Any) -> None:
    client = espocrm_server.client()
    espocrm_server.fault("down")
    try:
        with pytest.raises(ToolError, match="EspoCRM unavailable"):
            mapper(client).require(who("alice"))
    finally:
        client.close()
