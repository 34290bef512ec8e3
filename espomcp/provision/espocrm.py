"""``espomcp init espocrm`` and the EspoCRM checks ``doctor`` shares with it.

``check_service_account`` verifies the API user (``GET /App/user`` with the configured API key
or HMAC) and its read access to every allowed entity type (one list call each); when EspoCRM
reports the role's ACL table it also checks create/edit/delete on the writable types and the
Webhook scope. ``EspoInit`` then registers the webhooks (``espomcp.sync.webhooks``) and runs
the first backfill (``espomcp.sync.backfill``) when the FGA store lacks tuples EspoCRM implies
(``espomcp.sync.reconcile`` measures it), so a second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from espomcp.espocrm.client import EspoClient
from espomcp.espocrm.errors import AccessDenied, EspoError, NotFound, ServiceAccountError
from espomcp.provision.report import Finding, PlanItem, ProvisionError
from espomcp.settings import READ_ONLY_ENTITY_TYPES, Settings

ACCOUNT_FIX = ("in EspoCRM: Administration → API Users → create a user (auth method ApiKey or "
               "HMAC, matching ESPOMCP_ESPOCRM_AUTH) with a role; set ESPOMCP_ESPOCRM_API_KEY "
               "(and ESPOMCP_ESPOCRM_SECRET_KEY for HMAC)")


def check_service_account(client: Any, settings: Settings) -> list[Finding]:
    """Findings for the API user: credentials, read access per type, write ACL, Webhook scope.
    Stops after the credential check when EspoCRM refuses or cannot be reached."""
    try:
        me = client.app_user()
    except ServiceAccountError:
        return [Finding("EspoCRM service account", False,
                        f"EspoCRM at {settings.espocrm_url} refused the {settings.espocrm_auth} "
                        "credentials (401)", ACCOUNT_FIX)]
    except EspoError as exc:
        return [Finding("EspoCRM service account", False,
                        f"EspoCRM at {settings.espocrm_url} is not usable: {exc.message}",
                        "check ESPOMCP_ESPOCRM_URL (site URL without /api/v1) and that EspoCRM "
                        "is up")]
    user = me.get("user") if isinstance(me, dict) and isinstance(me.get("user"), dict) else {}
    name, kind = user.get("userName", "?"), user.get("type", "?")
    findings = [Finding("EspoCRM service account", True,
                        f"authenticated as {name} (type {kind}, {settings.espocrm_auth})")]
    if kind not in ("api", "?"):
        findings[0] = Finding("EspoCRM service account", False,
                              f"authenticated as {name}, a {kind} user, not an API user",
                              ACCOUNT_FIX)
    for entity_type in settings.entity_types:
        findings.append(_read_access(client, entity_type))
    table = ((me.get("acl") or {}).get("table") or {}) if isinstance(me, dict) else {}
    if isinstance(table, dict) and table:
        findings.extend(_acl_findings(table, settings))
    return findings


def _read_access(client: Any, entity_type: str) -> Finding:
    check = f"EspoCRM read access: {entity_type}"
    try:
        page = client.list_records(entity_type, max_size=1, select=["id"])
    except AccessDenied:
        return Finding(check, False, "403: the API user may not list this type",
                       f"give the API user's role read access to {entity_type} (level all), or "
                       "remove it from ESPOMCP_ENTITY_TYPES")
    except NotFound:
        return Finding(check, False, "404: EspoCRM has no such entity type",
                       f"remove {entity_type} from ESPOMCP_ENTITY_TYPES")
    except EspoError as exc:
        return Finding(check, False, exc.message, "check EspoCRM's log and the API user's role")
    total = page.total if page.total >= 0 else "some"
    return Finding(check, True, f"listing works ({total} records)")


def _acl_findings(table: dict[str, Any], settings: Settings) -> list[Finding]:
    findings = []
    if not settings.read_only:
        for entity_type in settings.entity_types:
            if entity_type in READ_ONLY_ENTITY_TYPES:
                continue
            levels = table.get(entity_type)
            denied = [a for a in ("create", "edit", "delete")
                      if not isinstance(levels, dict) or levels.get(a) in (None, "no", False)]
            if denied:
                findings.append(Finding(f"EspoCRM write access: {entity_type}", False,
                                        f"the API user's role lacks {', '.join(denied)}",
                                        f"give the role create/edit/delete on {entity_type} (level "
                                        "all), or set ESPOMCP_READ_ONLY=true"))
    if table.get("Webhook") in (None, False, "no"):
        findings.append(Finding("EspoCRM Webhook scope", False,
                                "the API user's role has no access to Webhooks",
                                "enable the Webhook scope in the API user's role"))
    return findings


@dataclass
class EspoInitResult:
    items: list[PlanItem] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ok: bool = True


class EspoInit:
    """One ``init espocrm`` run: account checks, webhooks, first backfill."""

    def __init__(self, settings: Settings, *, dry_run: bool = False, backfill: bool = True) -> None:
        self.settings = settings
        self.dry_run = dry_run
        self.backfill = backfill

    def run(self) -> EspoInitResult:
        if not self.settings.espocrm_api_key.get_secret_value():
            raise ProvisionError("ESPOMCP_ESPOCRM_API_KEY is empty; " + ACCOUNT_FIX)
        client = EspoClient.from_settings(self.settings)
        try:
            return self._run(client)
        finally:
            client.close()

    def _run(self, client: EspoClient) -> EspoInitResult:
        result = EspoInitResult()
        findings = check_service_account(client, self.settings)
        for f in findings:
            result.items.append(PlanItem("check", f.check, "passed" if f.ok else "failed",
                                         [f.detail] + ([f"fix: {f.fix}"] if not f.ok else [])))
        if not all(f.ok for f in findings):
            result.ok = False
            return result
        try:
            result.items += self._webhooks(client)
        except AccessDenied as exc:
            raise ProvisionError(f"EspoCRM refused the webhooks: {exc.message} The API user needs "
                                 "the Webhook scope and may own at most 50 webhooks: use one API "
                                 "user per espomcp deployment, or remove the webhooks of an old "
                                 "public URL (espomcp webhooks unregister with that "
                                 "ESPOMCP_PUBLIC_URL)") from None
        except EspoError as exc:
            raise ProvisionError(f"EspoCRM: {exc.message}") from None
        try:
            if self.backfill:
                result.items.append(self._backfill(client))
        except EspoError as exc:
            raise ProvisionError(f"EspoCRM: {exc.message}") from None
        s = self.settings
        result.env = {"ESPOMCP_ESPOCRM_URL": s.espocrm_url, "ESPOMCP_ESPOCRM_AUTH": s.espocrm_auth,
                      "ESPOMCP_ESPOCRM_API_KEY": "(the key used now)"}
        if s.espocrm_auth == "hmac":
            result.env["ESPOMCP_ESPOCRM_SECRET_KEY"] = "(the secret used now)"
        return result

    def _webhooks(self, client: EspoClient) -> list[PlanItem]:
        from espomcp.sync import webhooks

        url = webhooks.receiver_url(self.settings)
        if self.dry_run:
            have = {row["event"] for row in webhooks.list_webhooks(client, self.settings)
                    if row.get("secret_stored")}
            return [PlanItem("webhook", f"{event} → {url}", "unchanged" if event in have else "create")
                    for event in webhooks.planned_events(self.settings.entity_types)]
        rows = webhooks.register_webhooks(client, self.settings)
        return [PlanItem("webhook", f"{row['event']} → {url}",
                         "create" if row["status"] == "created" else "unchanged") for row in rows]

    def _backfill(self, client: EspoClient) -> PlanItem:
        from espomcp.fga.backend import build_backend
        from espomcp.fga.errors import FgaError, FgaUnavailable
        from espomcp.sync.backfill import Backfill
        from espomcp.sync.outbox import Outbox, TupleWriter
        from espomcp.sync.reconcile import reconcile
        from espomcp.sync.status import SyncStatus

        backend = build_backend(self.settings)
        if not getattr(backend, "enforcing", True):
            return PlanItem("backfill", "FGA store", "skipped", ["ESPOMCP_FGA_BACKEND=off"])
        outbox = Outbox.from_settings(self.settings)
        writer = TupleWriter(outbox)
        try:
            drift = reconcile(client, backend, writer, self.settings.entity_types, fix=False)
        except (FgaUnavailable, FgaError) as exc:
            raise ProvisionError(f"the FGA backend is not usable: {exc}; run espomcp init fga "
                                 "or check ESPOMCP_FGA_*") from None
        notes = [f"{drift.records} records imply {drift.expected} tuples; the store holds {drift.held}"]
        if drift.stale:
            notes.append(f"{len(drift.stale)} stale tuples: run espomcp reconcile --fix")
        if not drift.missing:
            return PlanItem("backfill", "FGA store", "unchanged", notes)
        if self.dry_run:
            return PlanItem("backfill", "FGA store", "update",
                            [*notes, f"would write {len(drift.missing)} missing tuples"])
        summary = Backfill(client, backend, writer, self.settings.data_dir,
                           entity_types=self.settings.entity_types).run()
        if outbox.depth():
            outbox.drain(backend)
        SyncStatus(self.settings.data_dir).record_run("backfill", summary.to_dict())
        if not summary.complete:
            raise ProvisionError(f"the backfill {summary.message}")
        notes.append(f"{len(drift.missing)} missing tuples written ({summary.tuples} tuples "
                     f"sent for {summary.records} records in {summary.seconds:.1f} s)")
        return PlanItem("backfill", "FGA store", "update", notes)
