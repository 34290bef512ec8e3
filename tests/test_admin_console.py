"""The admin console in a real browser (Debian's Chromium, headless, driven by Playwright)
against espomcp on a real port, the fake Auth0 login form and the seeded fake EspoCRM whose
permissions were backfilled into the embedded FGA store. Screenshots of every page land in
``test-artifacts/screenshots/``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from espomcp import create_app
from espomcp.services import Services
from espomcp.sync.backfill import Backfill
from espomcp.sync.status import SyncStatus
from fakes.server import ServerThread, free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"


@dataclass
class Console:
    url: str
    svc: Services
    users: dict[str, str]  # userName -> EspoCRM user id
    mint: Any

    def mcp_get_record(self, user: str, entity_type: str, record_id: str) -> dict[str, Any]:
        token = self.mint(user, audience=self.svc.settings.audience)
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "get_record",
                           "arguments": {"entity_type": entity_type, "id": record_id}}}
        response = requests.post(f"{self.url}/mcp", data=json.dumps(body), timeout=20, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"})
        assert response.status_code == 200, response.text
        return response.json()["result"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def console(auth_server: Any, espocrm_server: Any, mint_token: Any, tmp_path: Path
            ) -> Iterator[Console]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth_server.backend.clients["espomcp-admin"].redirect_uris.append(f"{url}/admin/callback")
    settings = espocrm_server.settings(public_url=url, auth_issuer=auth_server.issuer,
                                       data_dir=tmp_path / "data", fga_backend="embedded",
                                       session_secret="browser-test", rate_limit_per_minute=0)
    app = create_app(settings)
    svc: Services = app.extensions["espomcp"]
    summary = Backfill(svc.crm, svc.fga, svc.outbox, settings.data_dir,
                       entity_types=settings.entity_types).run()
    assert summary.complete, summary.message
    SyncStatus(settings.data_dir).record_run("backfill", summary.to_dict())  # as `espomcp sync`
    users = requests.get(f"{espocrm_server.url}/_fake/users", timeout=10).json()
    server = ServerThread(app, port=port).start()
    try:
        yield Console(url, svc, users, mint_token)
    finally:
        server.stop()
        svc.extras["outbox"].stop_drainer()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def sign_in(page: Page, console: Console, user: str, target: str = "/admin/") -> None:
    page.goto(console.url + target)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill("demo")
    if user == "admin":
        shot(page, "00-login-form")
    page.get_by_role("button", name="Continue").click()


def contact_of(console: Console, user: str) -> str:
    page = console.svc.crm.list_records("Contact", where=[
        {"type": "equals", "attribute": "assignedUserId", "value": console.users[user]}],
        max_size=1)
    return str(page.list[0]["id"])


def contact_hidden_from(console: Console, user: str) -> str:
    """A seeded contact ``user`` may not read (per the backfilled FGA store)."""
    for row in console.svc.crm.iter_records("Contact", select=["id"]):
        if not console.svc.fga.check(f"user:{console.users[user]}", "can_read", f"contact:{row['id']}"):
            return str(row["id"])
    raise AssertionError(f"every contact is readable by {user}")


def test_admin_finds_explains_and_changes_access(page: Page, console: Console) -> None:
    alice, carol = console.users["alice"], console.users["carol"]
    sign_in(page, console, "admin")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".badge.ok")).to_have_text("healthy")
    shot(page, "01-overview")

    # Relationships: find alice's by her user name
    nav(page, "Relationships")
    page.get_by_label("User", exact=True).fill("alice")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.tuples tbody tr")
    expect(rows.first).to_contain_text(f"user:{alice}")
    expect(page.locator("table.tuples")).to_contain_text("member")
    expect(page.locator("p.hint")).to_contain_text("alice")
    shot(page, "02-relationships-alice")
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Team", exact=True).fill("Sales")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.tuples")).to_contain_text(f"user:{alice}")
    expect(page.locator("table.tuples tbody tr").first).to_contain_text("Sales")

    # Access check with explanation: alice reads her own contact
    own = contact_of(console, "alice")
    nav(page, "Access check")
    page.get_by_label("Can user", exact=True).fill("alice")
    page.get_by_label("on object", exact=True).fill(f"contact:{own}")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#verdict")).to_contain_text("Yes")
    expect(page.locator("li.path").first).to_contain_text(f"of contact:{own}")
    expect(page.locator("li.path").first).to_contain_text("→ can_read")
    shot(page, "03-check-allowed")

    # A contact carol cannot read, in the console and through MCP
    other = contact_hidden_from(console, "carol")
    assert console.mcp_get_record("carol", "Contact", other)["isError"] is True
    page.get_by_label("Can user", exact=True).fill("carol")
    page.get_by_label("on object", exact=True).fill(f"contact:{other}")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#verdict")).to_contain_text("No")
    expect(page.locator("ul.reasons li").first).to_be_visible()
    page.get_by_text("Full evaluation tree").click()
    expect(page.locator("ul.tree li").first).to_contain_text("can_read on contact:")
    shot(page, "04-check-denied")

    # Add carol as collaborator, through the confirmation step
    nav(page, "Relationships")
    page.get_by_role("link", name="Add relationship").click()
    page.get_by_label("User", exact=True).fill("carol")
    page.locator("select[name=relation]").select_option("collaborator")
    page.get_by_label("Object", exact=True).fill(f"contact:{other}")
    shot(page, "05-add-form")
    page.get_by_role("button", name="Review…").click()
    expect(page.get_by_role("heading", name="Add this relationship?")).to_be_visible()
    shot(page, "06-add-confirm")
    page.get_by_role("button", name="Add relationship").click()
    expect(page.locator(".flash")).to_contain_text(f"Added user:{carol} (carol) collaborator contact:{other}")
    shot(page, "07-added")

    # The access change is visible through MCP at once
    result = console.mcp_get_record("carol", "Contact", other)
    assert result["isError"] is False
    assert result["structuredContent"]["record"]["id"] == other

    # What can alice see: counts per type, then a paginated list
    nav(page, "What can a user see")
    page.get_by_label("User", exact=True).fill("alice")
    page.get_by_role("button", name="Show").click()
    contact_row = page.locator("table.counts tr", has_text="contact")
    expect(contact_row).to_be_visible()
    count = int(contact_row.locator("td.num").inner_text().rstrip("+"))
    assert count >= 2
    contact_row.get_by_role("link").click()
    expect(page.locator("ul.objects li").first).to_be_visible()
    assert page.locator("ul.objects li").count() == min(count, 50)
    shot(page, "08-visibility")

    # Model with its store tests
    nav(page, "Model")
    expect(page.locator("#store-tests")).to_contain_text("passing")
    assert re.match(r"(\d+) / \1 passing", page.locator("#store-tests").inner_text())
    shot(page, "09-model")

    # Audit log shows the console change under the admin's name
    nav(page, "Audit log")
    page.locator("select[name=layer]").select_option("admin")
    expect(page.locator("table.audit tbody tr").first).to_contain_text("admin.add_tuple")
    expect(page.locator("table.audit tbody tr").first).to_contain_text("admin@example.com")
    shot(page, "10-audit")

    nav(page, "Sync health")
    expect(page.get_by_role("heading", name="Last backfill")).to_be_visible()
    overflowing = page.eval_on_selector_all(  # the per-type counts once spilled into the next card
        ".card", "cards => cards.filter(c => c.scrollWidth > c.clientWidth).length")
    assert overflowing == 0
    shot(page, "11-sync")

    # Remove it again: access ends
    page.goto(f"{console.url}/admin/relationships?type=contact&id={other}&user=carol")
    page.locator("tr", has_text="collaborator").get_by_role("button", name="Remove…").click()
    expect(page.get_by_role("heading", name="Remove this relationship?")).to_be_visible()
    shot(page, "12-remove-confirm")
    page.get_by_role("button", name="Remove relationship").click()
    expect(page.locator(".flash")).to_contain_text("Removed")
    assert console.mcp_get_record("carol", "Contact", other)["isError"] is True

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    page.goto(console.url + "/admin/relationships")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_non_admin_is_refused(page: Page, console: Console) -> None:
    sign_in(page, console, "alice")
    expect(page.get_by_role("heading", name="Not an administrator")).to_be_visible()
    expect(page.locator("main")).to_contain_text("espocrm:admin")
    shot(page, "13-refused-alice")
    page.goto(console.url + "/admin/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
