"""``espomcp token``: demo tokens the configured server accepts (or rejects when expired)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from espomcp.auth.bearer import BearerError
from espomcp.auth.resource_server import build_authenticator
from espomcp.cli import main
from espomcp.settings import Settings
from fakes.auth0 import FakeAuth0


@pytest.fixture
def settings(auth_settings: Callable[..., Settings], auth_server: FakeAuth0,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ESPOMCP_AUTH_ISSUER", auth_server.url)
    monkeypatch.setenv("ESPOMCP_PUBLIC_URL", "http://127.0.0.1:8765")
    return auth_settings(public_url="http://127.0.0.1:8765")


def token_for(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["token", *argv])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_token_is_accepted_by_the_configured_server(settings: Settings,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, token, _ = token_for(capsys, "bob")
    assert code == 0
    principal = build_authenticator(settings).authenticate(f"Bearer {token}")
    assert principal.sub == "auth0|bob"
    assert "espocrm:contacts:delete" in principal.scopes


def test_scopes_are_limited_to_the_users_rights(settings: Settings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, token, err = token_for(capsys, "alice", "--scope",
                                 "espocrm:contacts:read espocrm:admin", "--scope",
                                 "espocrm:leads:write")
    assert code == 0 and "espocrm:admin" in err
    principal = build_authenticator(settings).authenticate(f"Bearer {token}")
    assert principal.scopes == {"espocrm:contacts:read", "espocrm:leads:write"}


def test_negative_ttl_gives_an_expired_token(settings: Settings,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, token, _ = token_for(capsys, "carol", "--ttl", "-600")
    with pytest.raises(BearerError) as info:
        build_authenticator(settings).authenticate(f"Bearer {token}")
    assert info.value.error == "invalid_token" and "expired" in info.value.description


def test_unknown_user_is_a_clear_error(settings: Settings,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = token_for(capsys, "mallory")
    assert code == 2 and out == "" and "unknown demo user" in err
