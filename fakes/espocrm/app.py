"""The fake EspoCRM as a Flask app, plus ``FakeEspoCRM`` (state + sender + server thread).

Test/admin hooks under ``/_fake`` (no auth, never faulted):

- ``POST /_fake/fault`` ``{"mode": "slow"|"down"|"500"|"garbage"|"status"|"off", "count": n,
  "delay": s, "status": code, "reason": text}`` — the next ``count`` API requests (default: all) misbehave:
  ``down`` = 503 (maintenance), ``500`` = 500, ``status`` = that status, ``garbage`` = 200 with
  a non-JSON body, ``slow`` = answer after ``delay`` seconds.
- ``POST /_fake/acl`` ``{"deny": {"Lead": ["read", "edit"]}, "hidden": ["Lead:<id>"]}`` —
  the API users' ACL: 403 ``No <action> access.``; hidden records 403 and absent from lists.
- ``GET /_fake/requests`` (the request log), ``DELETE /_fake/requests`` (clear it).
- ``POST /_fake/ui`` ``{"user": userName, "action": "create"|"update"|"delete", "entityType",
  "id", "data"}`` — a person changing data in EspoCRM's UI (stream notes, webhook events).
- ``POST /_fake/deliver`` ``{"advance": seconds}`` — run the webhook sender once.
- ``POST /_fake/reset`` — reseed; ``GET /_fake/users`` — seeded users and their ids.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from fakes.espocrm import seed as seeding
from fakes.espocrm.exceptions import BadRequest, EspoHttpError
from fakes.espocrm.models import EspoState, Record
from fakes.espocrm.responses import Api
from fakes.espocrm.webhooks import WebhookSender
from fakes.server import ServerThread

FAULT_MODES = ("slow", "down", "500", "garbage", "status")


def create_app(state: EspoState, sender: WebhookSender | None = None) -> Flask:
    """A Flask app serving ``state`` at ``/api/v1/...`` plus the ``/_fake`` hooks."""
    app = Flask("fake-espocrm")
    api = Api(state)
    sender = sender or WebhookSender(state)
    app.extensions["espocrm"] = state

    @app.route("/api/v1/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def _api(rest: str) -> Any:
        return api.dispatch()

    @app.post("/_fake/fault")
    def _fault() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        mode = str(body.get("mode", "off"))
        with state.lock:
            if mode == "off":
                state.fault = None
            elif mode in FAULT_MODES:
                state.fault = {"mode": mode, "count": body.get("count"),
                               "delay": float(body.get("delay", 2.0)),
                               "status": int(body.get("status", 500)),
                               "reason": str(body.get("reason", "Error"))}
            else:
                return jsonify(error=f"mode must be one of {FAULT_MODES} or off"), 400
        return jsonify(fault=state.fault)

    @app.post("/_fake/acl")
    def _acl() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        with state.lock:
            state.denied = {e: set(a) for e, a in (body.get("deny") or {}).items()}
            state.hidden = set(body.get("hidden") or [])
        return jsonify(deny={e: sorted(a) for e, a in state.denied.items()},
                       hidden=sorted(state.hidden))

    @app.route("/_fake/requests", methods=["GET", "DELETE"])
    def _requests() -> Any:
        with state.lock:
            if request.method == "DELETE":
                state.request_log.clear()
            return jsonify(list(state.request_log))

    @app.post("/_fake/ui")
    def _ui() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        try:
            return jsonify(ui_action(state, body))
        except EspoHttpError as exc:
            return jsonify(error=exc.reason, body=exc.body), exc.status

    @app.post("/_fake/deliver")
    def _deliver() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        return jsonify(sender.deliver_pending(time.time() + float(body.get("advance", 0))))

    @app.post("/_fake/reset")
    def _reset() -> Any:
        seeding.seed(state)
        return jsonify(ok=True)

    @app.get("/_fake/users")
    def _users() -> Any:
        return jsonify({u["userName"]: u["id"] for u in state.records["User"].values()})

    return app


def ui_action(state: EspoState, body: Record) -> Any:
    """Perform a change as a person (by userName) would in EspoCRM's UI."""
    actor = state.user_by_name(str(body.get("user", "")))["id"]
    action, entity_type = body.get("action"), str(body.get("entityType", ""))
    data = body.get("data") or {}
    if action == "create":
        return state.create(entity_type, data, actor, skip_duplicate_check=True)
    if action == "update":
        return state.update(entity_type, str(body.get("id")), data, actor)
    if action == "delete":
        state.delete(entity_type, str(body.get("id")), actor)
        return True
    raise BadRequest("action must be create, update or delete")


class FakeEspoCRM:
    """A seeded fake EspoCRM: ``state``, ``sender``, ``app``; ``start()`` serves it on a port."""

    def __init__(self, data_file: str | Path | None = None, *, seed: bool = True,
                 api_key: str = seeding.DEMO_API_KEY, secret: str = seeding.DEMO_SECRET) -> None:
        self.state = EspoState(data_file)
        if not self.state.load() and seed:
            seeding.seed(self.state, api_key=api_key, secret=secret)
        self.sender = WebhookSender(self.state)
        self.app = create_app(self.state, self.sender)
        self.server: ServerThread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeEspoCRM:
        self.server = ServerThread(self.app, host=host, port=port).start()
        return self

    def stop(self) -> None:
        self.sender.stop()
        if self.server:
            self.server.stop()

    @property
    def url(self) -> str:
        assert self.server is not None, "start() the fake first"
        return self.server.url

    def as_user(self, user_name: str) -> str:
        """The seeded user id of ``user_name`` (pass as ``actor`` to state methods)."""
        return self.state.user_by_name(user_name)["id"]

    def api_requests(self, prefix: str = "") -> list[Record]:
        """Logged ``/api/v1`` requests whose resource path starts with ``prefix``."""
        with self.state.lock:
            return [r for r in self.state.request_log if r["path"].startswith(prefix)]

    def deny(self, entity_type: str, *actions: str) -> None:
        """API users lose ``actions`` (create/read/edit/delete) on ``entity_type`` (403)."""
        with self.state.lock:
            self.state.denied.setdefault(entity_type, set()).update(actions)

    def hide(self, entity_type: str, record_id: str) -> None:
        """API users may not access this record: 403 on it, absent from lists."""
        with self.state.lock:
            self.state.hidden.add(f"{entity_type}:{record_id}")

    def set_fault(self, mode: str, *, count: int | None = None, delay: float = 2.0,
                  status: int = 500, reason: str = "Error") -> None:
        if mode not in (*FAULT_MODES, "off"):
            raise ValueError(f"unknown fault mode {mode!r}")
        with self.state.lock:
            self.state.fault = None if mode == "off" else {"mode": mode, "count": count,
                                                           "delay": delay, "status": status,
                                                           "reason": reason}
