"""EspoCRM webhooks (reference §8): registration, secrets, and the signed receiver.

Registration creates one webhook per event EspoCRM should report (create/update/delete of every
synced type, plus ``fieldUpdate.assignedUser``/``teams`` while the 50-per-user budget allows)
pointing at ``<public_url>/webhooks/espocrm``; each webhook's ``secretKey`` is kept in
``<data_dir>/webhook_secrets.json`` (mode 0600), keyed by webhook id.

The receiver ``POST /webhooks/espocrm`` accepts a delivery only if its ``Signature`` (or legacy
``X-Signature``) is an HMAC-SHA256 of the raw body under the secret of the webhook id named in
the signature, compared with ``hmac.compare_digest``; unsigned → 401, forged or unknown → 403,
a delivery already seen within ``webhook_max_age_seconds`` → 409, oversized → 413, malformed →
400; in all of these nothing is applied. Accepted items are applied idempotently: create/update
re-read the record from EspoCRM and rewrite its tuples (``refresh``), delete removes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from espomcp.espocrm.errors import EspoError, InvalidInput
from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.sync import refresh
from espomcp.sync.backfill import sync_entity_types
from espomcp.sync.mapping import MappingError
from espomcp.sync.status import SyncStatus, connect_wal

log = logging.getLogger("espomcp.sync.webhooks")

WEBHOOK_PATH = "/webhooks/espocrm"
MAX_WEBHOOKS = 50  # EspoCRM: at most 50 webhooks per API user
MAX_ITEMS = 100  # EspoCRM sends at most 50 items per delivery
FIELD_EVENTS = ("assignedUser", "teams")  # fields whose changes also get a dedicated event
_EVENT = re.compile(r"^([A-Z][A-Za-z0-9]*)\.(create|update|delete|fieldUpdate)(?:\.([A-Za-z0-9_]+))?$")
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def wanted_events(entity_types: list[str]) -> list[str]:
    """Every event worth a webhook, most important first: create/update/delete (``update``
    already reports every change), then the dedicated field events."""
    types = sync_entity_types(entity_types)
    events = [f"{t}.{action}" for t in types for action in ("create", "update", "delete")]
    fields = [f"{t}.fieldUpdate.{f}" for t in types for f in FIELD_EVENTS
              if not (t == "Team" or (t == "User" and f == "assignedUser"))]
    return events + fields


def planned_events(entity_types: list[str], budget: int = MAX_WEBHOOKS) -> list[str]:
    """The events registered: ``wanted_events`` cut to EspoCRM's per-user budget."""
    return wanted_events(entity_types)[:budget]


def receiver_url(settings: Any) -> str:
    return settings.public_url + WEBHOOK_PATH


class WebhookSecrets:
    """Webhook id → ``{"secret", "event", "url"}`` in a 0600 JSON file (never logged)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "webhook_secrets.json"
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, webhook_id: str) -> dict[str, str] | None:
        entry = self.load().get(webhook_id)
        return entry if isinstance(entry, dict) and isinstance(entry.get("secret"), str) else None

    def put(self, webhook_id: str, secret: str, event: str, url: str) -> None:
        with self._lock:
            data = self.load()
            data[webhook_id] = {"secret": secret, "event": event, "url": url}
            self._save(data)

    def drop(self, webhook_id: str) -> None:
        with self._lock:
            data = self.load()
            if data.pop(webhook_id, None) is not None:
                self._save(data)

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


# --- registration (CLI) -------------------------------------------------------------------
def register_webhooks(client: Any, settings: Any) -> list[dict[str, Any]]:
    """Create the planned webhooks that are missing (idempotent); one row per event."""
    secrets = WebhookSecrets(settings.data_dir)
    url, known = receiver_url(settings), secrets.load()
    existing = {h.get("event"): h for h in client.list_webhooks() if h.get("url") == url}
    rows = []
    for event in planned_events(settings.entity_types):
        hook = existing.get(event)
        if hook and hook.get("id") in known:
            rows.append({"event": event, "id": hook["id"], "status": "exists"})
            continue
        if hook:  # registered before, but its secret is lost: replace it
            client.delete_webhook(hook["id"])
        created = client.create_webhook(event, url, skip_own=True)
        secrets.put(created["id"], created["secretKey"], event, url)
        rows.append({"event": event, "id": created["id"], "status": "created"})
    for event in wanted_events(settings.entity_types)[MAX_WEBHOOKS:]:
        log.warning("webhook for %s not registered: EspoCRM allows %d per API user; "
                    "run reconcile on a schedule", event, MAX_WEBHOOKS)
        rows.append({"event": event, "id": "", "status": f"skipped (limit {MAX_WEBHOOKS})"})
    return rows


def list_webhooks(client: Any, settings: Any) -> list[dict[str, Any]]:
    """Webhooks pointing at this server, and whether their secret is stored here."""
    url, known = receiver_url(settings), WebhookSecrets(settings.data_dir).load()
    return [{"id": h.get("id"), "event": h.get("event"), "active": h.get("isActive", True),
             "secret_stored": h.get("id") in known}
            for h in client.list_webhooks() if h.get("url") == url]


def unregister_webhooks(client: Any, settings: Any) -> list[dict[str, Any]]:
    """Delete every webhook pointing at this server and forget the secrets."""
    secrets = WebhookSecrets(settings.data_dir)
    rows = []
    for hook in list_webhooks(client, settings):
        client.delete_webhook(hook["id"])
        secrets.drop(hook["id"])
        rows.append({"event": hook["event"], "id": hook["id"], "status": "deleted"})
    for webhook_id in list(secrets.load()):
        secrets.drop(webhook_id)
    return rows


# --- verification -----------------------------------------------------------------------
class Rejected(Exception):
    """A delivery refused before anything was applied: ``status``, counter ``reason``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def verify_signature(headers: Any, body: bytes, secrets: WebhookSecrets) -> tuple[str, str]:
    """Return ``(webhook id, event)`` of a correctly signed body, else raise Rejected."""
    header, legacy = headers.get("Signature"), False
    if not header:
        header, legacy = headers.get("X-Signature"), True
    if not header:
        raise Rejected(401, "unsigned", "missing Signature header")
    try:
        decoded = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(403, "forged", "malformed signature") from None
    webhook_id, sep, digest = decoded.partition(b":")
    entry = None
    if sep and _ID.match(webhook_id.decode("ascii", "replace")):
        entry = secrets.get(webhook_id.decode("ascii"))
    if entry is None:
        raise Rejected(403, "forged", "unknown webhook")
    mac = hmac.new(entry["secret"].encode(), body, hashlib.sha256)
    expected = mac.digest() if legacy else mac.hexdigest().encode()
    if not hmac.compare_digest(expected, digest):
        raise Rejected(403, "forged", "signature mismatch")
    return webhook_id.decode("ascii"), entry.get("event", "")


class ReplayGuard:
    """Remembers digests of accepted deliveries for ``max_age`` seconds (SQLite, shared by
    processes). ``claim`` is atomic; ``release`` forgets a delivery that failed to apply."""

    def __init__(self, data_dir: Path, max_age: float) -> None:
        self.path = Path(data_dir) / "webhook_deliveries.sqlite3"
        self.max_age = max_age
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS seen (digest TEXT PRIMARY KEY, at REAL NOT NULL)")

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect_wal(self.path)

    def claim(self, digest: str) -> bool:
        """True if ``digest`` was not seen within the window (and is now remembered)."""
        now = time.time()
        with self._connect() as db:
            db.execute("DELETE FROM seen WHERE at < ?", (now - self.max_age,))
            return db.execute("INSERT OR IGNORE INTO seen (digest, at) VALUES (?, ?)",
                              (digest, now)).rowcount == 1

    def release(self, digest: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM seen WHERE digest = ?", (digest,))


# --- receiver -----------------------------------------------------------------------------
@dataclass
class Delivery:
    """A verified, parsed delivery: its webhook, entity type, action and record ids."""

    webhook_id: str
    entity_type: str
    action: str
    ids: list[str]


class WebhookReceiver:
    """Verifies and applies deliveries; counters go to the persisted sync status."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        settings = svc.settings
        self.secrets = WebhookSecrets(settings.data_dir)
        self.replay = ReplayGuard(settings.data_dir, settings.webhook_max_age_seconds)
        self.status = SyncStatus(settings.data_dir)
        self.types = sync_entity_types(settings.entity_types)
        self.max_bytes = settings.max_body_bytes

    def receive(self, headers: Any, body: bytes) -> tuple[dict[str, Any], int]:
        """Handle one POST; returns (JSON body, status). Never raises."""
        try:
            delivery, digest = self._accept(headers, body)
        except Rejected as exc:
            self.status.count(f"webhook.rejected.{exc.reason}")
            log.warning("webhook delivery rejected (%s): %s", exc.reason, exc.message)
            return {"error": exc.reason, "message": exc.message}, exc.status
        try:
            applied, queued = self._apply(delivery)
        except (EspoError, FgaUnavailable) as exc:
            self.replay.release(digest)  # let EspoCRM's retry apply it later
            self.status.count("webhook.failed")
            detail = exc.message if isinstance(exc, EspoError) else str(exc)
            log.warning("webhook delivery %s not applied, asking for a retry: %s",
                        delivery.webhook_id, detail)
            return {"error": "unavailable", "message": "could not apply now; retry later"}, 503
        self.status.count("webhook.accepted")
        self.status.count("webhook.items", applied)
        return {"status": "ok", "items": applied, "queued": queued}, 200

    def _accept(self, headers: Any, body: bytes) -> tuple[Delivery, str]:
        if len(body) > self.max_bytes:
            raise Rejected(413, "oversized", "delivery too large")
        webhook_id, event = verify_signature(headers, body, self.secrets)
        match = _EVENT.match(event)
        if not match or match.group(1) not in self.types:
            raise Rejected(400, "unknown_event", f"webhook {webhook_id} has no synced event")
        try:
            items = json.loads(body)
        except ValueError:
            raise Rejected(400, "malformed", "body is not JSON") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise Rejected(400, "malformed", "body must be a JSON array of objects")
        if len(items) > MAX_ITEMS:
            raise Rejected(413, "oversized", f"more than {MAX_ITEMS} items")
        ids = [item.get("id") for item in items]
        if not all(isinstance(i, str) and _ID.match(i) for i in ids):
            raise Rejected(400, "malformed", "every item needs a valid id")
        digest = hashlib.sha256(webhook_id.encode() + b"\n" + body).hexdigest()
        if not self.replay.claim(digest):
            raise Rejected(409, "replay", "delivery already received")
        return Delivery(webhook_id, match.group(1), match.group(2), list(dict.fromkeys(ids))), digest

    def _apply(self, delivery: Delivery) -> tuple[int, int]:
        svc, applied, queued = self.svc, 0, 0
        for record_id in delivery.ids:
            try:
                if delivery.action == "delete":
                    result = refresh.remove(svc.fga, svc.outbox, delivery.entity_type, record_id)
                else:
                    result = refresh.refresh(svc.crm, svc.fga, svc.outbox, delivery.entity_type,
                                             record_id)
            except (MappingError, InvalidInput, FgaError) as exc:
                log.warning("webhook item %s %s skipped: %s", delivery.entity_type, record_id, exc)
                continue
            applied += 1
            queued += result.outcome.queued
        return applied, queued


bp = Blueprint("espocrm_webhooks", __name__)


@bp.post(WEBHOOK_PATH)
def receive() -> Any:
    receiver: WebhookReceiver = current_app.extensions["espomcp"].extras["webhooks"]
    if request.content_length is not None and request.content_length > receiver.max_bytes:
        receiver.status.count("webhook.rejected.oversized")
        return jsonify(error="oversized", message="delivery too large"), 413
    body = request.get_data(cache=False)
    payload, status = receiver.receive(request.headers, body)
    return jsonify(payload), status


def init_app(app: Flask, svc: Any) -> None:
    """Mount the receiver; it needs ``svc.crm``, ``svc.fga`` and ``svc.outbox`` (TupleWriter)."""
    svc.extras["webhooks"] = WebhookReceiver(svc)
    app.register_blueprint(bp)
