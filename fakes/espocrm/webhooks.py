"""Webhooks (reference §8, ``Core/Webhook/{Sender,Queue}.php``): registration, signing and
delivery with EspoCRM's retry rules.

Delivery is explicit (``WebhookSender.deliver_pending()`` for tests) or periodic from a
background thread (``start()``, for the demo). Each run POSTs, per webhook, up to 50 queued
items as one JSON array (PHP ``json_encode`` style), signed with ``Signature`` (hex) and the
legacy ``X-Signature`` (raw digest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any

import requests

from fakes.espocrm import entitydefs as defs
from fakes.espocrm.exceptions import Forbidden, NotFound, ValidationFailure
from fakes.espocrm.ids import new_id, now_str
from fakes.espocrm.models import EspoState, Record

BATCH = 50
MAX_PER_USER = 50
RETRY_CODES = {0, 401, 403, 404, 405, 408, 500, 503}
EVENT_TYPES = ("create", "update", "delete", "fieldUpdate")


def parse_event(state: EspoState, event: Any) -> tuple[str, str, str | None]:
    """``BeforeSave::processEntityEventData``: (entity type, kind, field), checks in its order."""
    if not isinstance(event, str) or not event:
        raise Forbidden("Event is empty.")
    parts = event.split(".")
    if len(parts) not in (2, 3):
        raise Forbidden("Not supported event.")
    entity_type, kind = parts[0], parts[1]
    if not entity_type:
        raise Forbidden("Entity Type is empty.")
    if entity_type not in defs.ENTITY_TYPES:
        raise Forbidden("Entity type is not available for Webhooks.")
    if "read" in state.denied.get(entity_type, set()):
        raise Forbidden("Entity type is forbidden.")
    if kind not in EVENT_TYPES:
        raise Forbidden("Not supported event.")
    if kind != "fieldUpdate":
        return entity_type, kind, None
    field = parts[2] if len(parts) == 3 else ""
    if not field:
        raise Forbidden("Field is empty.")
    if field not in defs.fields(entity_type):
        raise Forbidden("Field does not exist.")
    return entity_type, kind, field


def register(state: EspoState, body: Record, user: Record) -> Record:
    """``POST /Webhook``: validate the event and URL, return the record with ``secretKey``."""
    event, url = body.get("event"), body.get("url")
    entity_type, kind, field = parse_event(state, event)
    if not url:
        raise ValidationFailure("Webhook", "url", "required")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 512:
        raise ValidationFailure("Webhook", "url", "valid")
    with state.lock:
        own = [h for h in state.webhooks.values() if h["userId"] == user["id"]]
        if len(own) >= MAX_PER_USER and user.get("type") != "admin":
            raise Forbidden("Webhook number per user exceeded the limit.")
        stamp = now_str()
        hook = {"id": new_id(), "event": event, "url": url, "isActive": True,
                "userId": user["id"], "userName": state.name_of("User", user["id"]),
                "entityType": entity_type, "type": kind, "field": field,
                "skipOwn": bool(body.get("skipOwn", False)), "secretKey": secrets.token_hex(16),
                "createdAt": stamp, "modifiedAt": stamp}
        state.webhooks[hook["id"]] = hook
        state.changed()
        return dict(hook)


def visible(state: EspoState, user: Record) -> list[Record]:
    return [dict(h) for h in state.webhooks.values()
            if user.get("type") == "admin" or h["userId"] == user["id"]]


def remove(state: EspoState, hook_id: str, user: Record) -> None:
    with state.lock:
        hook = state.webhooks.get(hook_id)
        if hook is None:
            raise NotFound()
        if user.get("type") != "admin" and hook["userId"] != user["id"]:
            raise Forbidden("No delete access.")
        del state.webhooks[hook_id]
        state.webhook_queue = [q for q in state.webhook_queue if q["webhookId"] != hook_id]
        state.changed()


def encode_body(items: list[Any]) -> bytes:
    """PHP ``json_encode`` defaults: compact, ``/`` escaped, non-ASCII as ``\\u`` escapes."""
    return json.dumps(items, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def signature_headers(hook_id: str, secret: str, body: bytes) -> dict[str, str]:
    """``Signature`` (hex digest) and legacy ``X-Signature`` (raw digest), both base64."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256)
    return {
        "Signature": base64.b64encode(f"{hook_id}:{mac.hexdigest()}".encode()).decode(),
        "X-Signature": base64.b64encode(hook_id.encode() + b":" + mac.digest()).decode(),
    }


class WebhookSender:
    """Sends queued webhook items; one ``deliver_pending`` call = one scheduled-job run."""

    def __init__(self, state: EspoState, *, connect_timeout: float = 5.0,
                 total_timeout: float = 10.0) -> None:
        self.state = state
        self.timeout = (connect_timeout, total_timeout)
        self._session = requests.Session()
        self._session.trust_env = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_pending(self, now: float | None = None) -> list[Record]:
        """Deliver every due batch; returns one log entry per POST attempted."""
        now = time.time() if now is None else now
        with self.state.lock:
            batches: dict[str, list[Record]] = {}
            for item in self.state.webhook_queue:
                if item["status"] == "Pending" and item["processAt"] <= now and \
                        len(batches.setdefault(item["webhookId"], [])) < BATCH:
                    batches[item["webhookId"]].append(item)
            for items in batches.values():  # Queue::prepareItemData: unreadable → deleted
                dropped = {id(i) for i in items if not self._readable(i)}
                items[:] = [i for i in items if id(i) not in dropped]
                self.state.webhook_queue = [q for q in self.state.webhook_queue
                                            if id(q) not in dropped]
            hooks = {i: dict(self.state.webhooks[i]) for i in batches if i in self.state.webhooks}
        results = []
        for hook_id, items in batches.items():
            hook = hooks.get(hook_id)
            if hook is None or not items:
                continue
            code = self._post(hook, [i["data"] for i in items])
            results.append(self._settle(hook, items, code, now))
        return results

    def _readable(self, item: Record) -> bool:
        """May the webhook owner (an API user) still read the item's record?"""
        entity_type = item["event"].split(".", 1)[0]
        record_id = (item.get("data") or {}).get("id")
        return "read" not in self.state.denied.get(entity_type, set()) and \
            f"{entity_type}:{record_id}" not in self.state.hidden

    def _post(self, hook: Record, payload: list[Any]) -> int:
        body = encode_body(payload)
        headers = {"Content-Type": "application/json",
                   **signature_headers(hook["id"], hook["secretKey"], body)}
        try:
            response = self._session.post(hook["url"], data=body, headers=headers,
                                          timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            return 408
        except requests.RequestException:
            return 0
        return response.status_code

    def _settle(self, hook: Record, items: list[Record], code: int, now: float) -> Record:
        state = self.state
        with state.lock:
            outcome = "success" if 200 <= code < 400 else "deleted" if code == 410 else \
                "retry" if code in RETRY_CODES else "failed"
            for item in items:
                item["attempts"] += 1
                if outcome == "success":
                    item["status"] = "Success"
                elif outcome == "retry" and item["attempts"] < state.webhook_max_attempts:
                    item["processAt"] = now + state.webhook_retry_period
                else:
                    item["status"] = "Failed"
            if outcome == "deleted":
                state.webhooks.pop(hook["id"], None)
            state.webhook_queue = [q for q in state.webhook_queue
                                   if q["status"] == "Pending" and q["webhookId"] in state.webhooks]
            entry = {"webhookId": hook["id"], "url": hook["url"], "status": code,
                     "count": len(items), "outcome": outcome, "attempt": items[0]["attempts"]}
            state.deliveries.append(entry)
            state.changed()
            return entry

    def start(self, interval: float = 1.0) -> WebhookSender:
        """Deliver in the background every ``interval`` seconds until ``stop()``."""
        def loop() -> None:
            while not self._stop.wait(interval):
                self.deliver_pending()
        self._thread = threading.Thread(target=loop, daemon=True, name="espocrm-webhooks")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._session.close()
