"""HTTP in/out of the fake EspoCRM (moto's ``responses.py``): authentication exactly as
EspoCRM checks it, request decoding (``searchParams`` JSON and PHP bracket params), faults,
the request log, and EspoCRM's error output.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

from flask import Response, request

from fakes.espocrm import actions, entitydefs, urls, webhooks
from fakes.espocrm.exceptions import (
    BadRequest,
    EspoHttpError,
    Forbidden,
    NotFound,
    Unauthorized,
    controller_missing,
)
from fakes.espocrm.models import EspoState, Record

log = logging.getLogger("fakes.espocrm")
API_PREFIX = "/api/v1"
MAX_SIZE = 200
GLOBAL_SEARCH = ("Account", "Contact", "Lead", "Opportunity")


def raw_path() -> str:
    """The request path exactly as sent (percent-encoded), without the query string."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
    return raw.split("?", 1)[0]


def php_params(query_string: str) -> dict[str, Any]:
    """Decode ``a[0][b]=x&c[]=y`` the way PHP builds ``$_GET`` (lists for numeric keys)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        base, _, rest = key.partition("[")
        tokens = [t.rstrip("]") for t in rest.split("[")] if rest else []
        node: Any = out
        name: Any = base
        for token in tokens:
            child = node.get(name) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node, name = child, token if token != "" else str(len(child))
        node[name] = value
    return {k: _listify(v) for k, v in out.items()}


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _listify(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"Bad {name}.")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise BadRequest(f"Bad {name}.")
    if value < 0:
        raise BadRequest(f"Bad {name}.")
    return value


def list_params(args: dict[str, Any]) -> dict[str, Any]:
    """``Core/Record/SearchParamsFetcher.php``: JSON ``searchParams`` wins over flat params."""
    if "searchParams" in args:
        try:
            params = json.loads(args["searchParams"])
        except (TypeError, ValueError):
            raise BadRequest("Invalid search params JSON.") from None
        if not isinstance(params, dict):
            raise BadRequest("Invalid search params JSON.")
        for key in ("maxSize", "offset"):
            if key in params and (isinstance(params[key], bool) or not isinstance(params[key], int)):
                raise BadRequest(f"Bad {key}.")
        if "select" in params and not isinstance(params["select"], list):
            raise BadRequest("Bad select.")
    else:
        params = {key: args[key] for key in ("orderBy", "order", "textFilter", "primaryFilter")
                  if isinstance(args.get(key), str)}
        for key in ("maxSize", "offset"):
            if key in args:
                params[key] = _int(args[key], key)
        select = args.get("select", args.get("attributeSelect"))
        if isinstance(select, str) and select:
            params["select"] = select.split(",")
        if "textFilter" not in params and isinstance(args.get("q"), str):
            params["textFilter"] = args["q"]
        if isinstance(args.get("boolFilterList"), list):
            params["boolFilterList"] = args["boolFilterList"]
        where = args.get("where", args.get("whereGroup"))
        if isinstance(where, list):  # a non-bracket `where=<json>` is a string: dropped
            params["where"] = where
    params.setdefault("offset", 0)
    params.setdefault("maxSize", MAX_SIZE)
    if params["maxSize"] > MAX_SIZE:
        raise Forbidden(f"Max size should not exceed {MAX_SIZE}. Use offset and limit.")
    if params["offset"] < 0 or params["maxSize"] < 0:
        raise BadRequest("Bad offset or maxSize.")
    order = params.get("order")
    if order is not None and (not isinstance(order, str) or order.lower() not in ("asc", "desc")):
        raise BadRequest("Bad order parameter.")
    return params


def _login_header() -> bytes | None:
    """The decoded ``Espo-Authorization`` / ``Authorization: Basic`` value (the fake has no
    password logins: any such login fails), or None if neither header is sent."""
    espo = request.headers.get("Espo-Authorization")
    basic = request.headers.get("Authorization", "")
    raw = espo if espo is not None else basic[6:] if basic[:6].lower() == "basic " else None
    if raw is None:
        return None
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""


class Api:
    """Request handling for one ``EspoState``; handler methods return JSON-able values."""

    def __init__(self, state: EspoState) -> None:
        self.state = state

    # --- entry point -----------------------------------------------------------------
    def dispatch(self) -> Response:
        path = raw_path()
        resource = path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else path
        entry = {"method": request.method, "path": resource, "raw_path": path,
                 "query": request.query_string.decode("latin-1"), "time": time.time(),
                 "status": None, "user": None}
        with self.state.lock:
            self.state.request_log.append(entry)
        response = self._faulted() or self._handle(resource, entry)
        entry["status"] = response.status_code
        return response

    def _faulted(self) -> Response | None:
        with self.state.lock:
            fault = self.state.fault
            if not fault:
                return None
            if fault.get("count") is not None:
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.state.fault = None
        mode = fault["mode"]
        if mode == "slow":
            time.sleep(float(fault.get("delay", 2.0)))
            return None
        if mode == "down":
            return Response(b"", status=503)
        if mode == "garbage":
            return Response(b"<html><body>Bad gateway?</body>", status=200,
                            content_type="application/json")
        status = int(fault.get("status", 500)) if mode == "status" else 500
        return Response(b"", status=status, headers={"X-Status-Reason": fault.get("reason") or "Error"})

    def _handle(self, resource: str, entry: Record) -> Response:
        try:
            user = self.authenticate(resource)
            entry["user"] = user["userName"]
            segments = [unquote(s) for s in resource.strip("/").split("/")]
            matched = urls.match(request.method, segments)
            if matched is None:
                first = segments[0] if segments else ""
                if first and first not in entitydefs.FIELDS and first[:1].isupper():
                    raise controller_missing(first)
                raise NotFound()
            name, values = matched
            if "E" in values and values["E"] not in entitydefs.FIELDS:
                raise controller_missing(values["E"])
            result = getattr(self, name)(user, **values)
            return Response(json.dumps(result), status=200, content_type="application/json")
        except EspoHttpError as exc:
            body = json.dumps(exc.body).encode() if exc.body is not None else b""
            return Response(body, status=exc.status, headers=exc.headers(),
                            content_type="application/json" if body else None)
        except Exception:
            log.exception("fake EspoCRM failed on %s %s", request.method, resource)
            return Response(b"", status=500, headers={"X-Status-Reason": "Error"})

    def authenticate(self, resource: str) -> Record:
        """API key (``X-Api-Key``) or HMAC (``X-Hmac-Authorization``); 401 empty otherwise."""
        api_key = request.headers.get("X-Api-Key")
        hmac_value = request.headers.get("X-Hmac-Authorization")
        login = _login_header()
        user = None
        if login is not None and b":" not in login:
            raise BadRequest("Bad authorization header.")
        if api_key:
            user = self.state.api_user(api_key, "ApiKey")
        elif hmac_value:
            user = self._hmac_user(hmac_value, resource)
        if user is None:
            # EspoCRM challenges only credential-less, non-XHR, non-POST requests without Referer
            challenge = not (api_key or hmac_value or login is not None or
                             request.headers.get("Authorization")) and \
                request.method != "POST" and not request.headers.get("Referer") and \
                request.headers.get("X-Requested-With") != "XMLHttpRequest"
            raise Unauthorized(challenge)
        return user

    def _hmac_user(self, value: str, resource: str) -> Record | None:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        key, sep, digest = decoded.partition(b":")
        if not sep:
            return None
        user = self.state.api_user(key.decode("utf-8", "replace"), "Hmac")
        secret = self.state.api_secrets.get(user["id"]) if user else None
        if not user or not secret:
            return None
        mac = hmac.new(secret.encode(), f"{request.method} {resource}".encode(), hashlib.sha256)
        if hmac.compare_digest(digest, mac.hexdigest().encode()) or \
                hmac.compare_digest(digest, mac.digest()):
            return user
        return None

    # --- helpers ---------------------------------------------------------------------
    @staticmethod
    def _body() -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError:
            raise BadRequest("Bad JSON.") from None

    def _object(self) -> dict[str, Any]:
        body = self._body()
        if not isinstance(body, dict):
            raise BadRequest("Bad payload.")
        return body

    @staticmethod
    def _args() -> dict[str, Any]:
        return php_params(request.query_string.decode("latin-1"))

    def _page(self, total: int, rows: list[Record], params: dict[str, Any]) -> Record:
        if request.headers.get("X-No-Total", "").lower() == "true":
            total = -1 if total > params["offset"] + len(rows) else -2
        return {"total": total, "list": rows}

    @staticmethod
    def _ids(body: dict[str, Any]) -> list[str]:
        ids = body.get("ids") if "ids" in body else [body.get("id")]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise BadRequest("No id or ids.")
        return ids

    # --- handlers --------------------------------------------------------------------
    def app_user(self, user: Record) -> Record:
        return {"user": self.state.render("User", user), "acl": {"table": {}},
                "preferences": {"timeZone": "UTC"}, "token": secrets.token_hex(16),
                "settings": {"recordListMaxSizeLimit": MAX_SIZE}, "language": "en_US",
                "appParams": {}}

    def metadata(self, user: Record) -> Any:
        data: Any = entitydefs.metadata()
        key = request.args.get("key")
        for part in key.split(".") if key else []:
            data = data.get(part) if isinstance(data, dict) else None
        return data

    def global_search(self, user: Record) -> Record:
        args = self._args()
        q = args.get("q")
        if not isinstance(q, str) or not q.strip():
            raise BadRequest("No `q` parameter.")
        params = list_params({k: v for k, v in args.items() if k in ("maxSize", "offset")})
        found: list[Record] = []
        for entity_type in GLOBAL_SEARCH:
            if "read" in self.state.denied.get(entity_type, set()):
                continue  # GlobalSearch skips types without read access
            _, rows = self.state.find(entity_type, {"textFilter": q, "offset": 0,
                                                    "maxSize": 10 ** 9}, user["id"])
            found += [{"id": r["id"], "name": r.get("name"), "_scope": entity_type} for r in rows]
        found.sort(key=lambda r: ((r["name"] or "").casefold(), r["id"]))
        offset, size = params["offset"], params["maxSize"]
        page = found[offset:offset + size]
        return {"total": -1 if len(found) > offset + len(page) else -2, "list": page}

    def mass_action(self, user: Record) -> Record:
        return actions.mass_action(self.state, self._object(), user["id"])

    def convert_lead(self, user: Record) -> Record:
        body = self._object()
        lead_id, records = body.get("id"), body.get("records")
        if isinstance(lead_id, str) and lead_id:  # reference §7: edit on the lead, then create
            self.state.stored("Lead", lead_id)
            self._acl("Lead", "edit", lead_id)
            for entity_type in actions.CONVERT_ORDER:
                if isinstance(records, dict) and isinstance(records.get(entity_type), dict) and \
                        "create" in self.state.denied.get(entity_type, set()):
                    raise Forbidden(f"No 'create' access for {entity_type}.")
        return actions.convert_lead(self.state, body, user["id"])

    def post_note(self, user: Record) -> Record:
        body = self._object()
        if body.get("type", "Post") != "Post":
            raise Forbidden("Only posts can be created.")
        return self.state.create_note(body, user["id"])

    def list_webhooks(self, user: Record) -> Record:
        hooks = webhooks.visible(self.state, user)
        return {"total": len(hooks), "list": hooks}

    def create_webhook(self, user: Record) -> Record:
        return webhooks.register(self.state, self._object(), user)

    def delete_webhook(self, user: Record, id: str) -> bool:
        webhooks.remove(self.state, id, user)
        return True

    def _acl(self, entity_type: str, action: str, record_id: str | None = None) -> None:
        """EspoCRM's ACL as the knobs set it: 403 ``No <action> access.``."""
        hidden = record_id is not None and f"{entity_type}:{record_id}" in self.state.hidden
        if action in self.state.denied.get(entity_type, set()) or hidden:
            raise Forbidden(f"No {action} access.")

    def stream(self, user: Record, E: str, id: str) -> Record:
        self._acl(E, "read", id)
        params = list_params({k: v for k, v in self._args().items() if k in ("maxSize", "offset")})
        total, rows = self.state.stream(E, id, params["offset"], params["maxSize"])
        return {"total": total, "list": rows}

    def list_records(self, user: Record, E: str) -> Record:
        self._acl(E, "read")
        params = list_params(self._args())
        with self.state.lock:
            total, rows = self.state.find(E, params, user["id"])
        return self._page(total, rows, params)

    def create_record(self, user: Record, E: str) -> Record:
        if E == "Note":
            return self.post_note(user)
        self._acl(E, "create")
        skip = request.headers.get("X-Skip-Duplicate-Check", "").lower() == "true"
        return self.state.create(E, self._object(), user["id"], skip_duplicate_check=skip)

    def get_record(self, user: Record, E: str, id: str) -> Record:
        self.state.stored(E, id)
        self._acl(E, "read", id)
        with self.state.lock:  # like EspoCRM's read action: the full record, no `select`
            return self.state.render(E, self.state.stored(E, id))

    def update_record(self, user: Record, E: str, id: str) -> Record:
        self.state.stored(E, id)
        self._acl(E, "edit", id)
        return self.state.update(E, id, self._object(), user["id"])

    def delete_record(self, user: Record, E: str, id: str) -> bool:
        self.state.stored(E, id)
        self._acl(E, "delete", id)
        self.state.delete(E, id, user["id"])
        return True

    def list_related(self, user: Record, E: str, id: str, link: str) -> Record:
        params = list_params(self._args())
        self._acl(E, "read", id)
        with self.state.lock:
            spec = entitydefs.links(E).get(link)
            if spec is None:
                raise NotFound(f"Link '{link}' does not exist.")
            ids = self.state.related_ids(E, id, link)
            target = spec.get("entity") or self.state.stored(E, id).get(f"{link}Type")
            if not target:
                return {"total": 0, "list": []}
            total, rows = self.state.find(target, params, user["id"], ids=ids)
            if E == "Team" and link == "users":
                for row in rows:
                    columns = self.state.stored("User", row["id"]).get("teamsColumns") or {}
                    row["teamRole"] = (columns.get(id) or {}).get("role")
        return self._page(total, rows, params)

    def relate(self, user: Record, E: str, id: str, link: str) -> bool:
        self._acl(E, "edit", id)
        body = self._object()
        if body.get("massRelate"):
            spec = entitydefs.links(E).get(link)
            if spec is None or "entity" not in spec:
                raise NotFound()
            _, rows = self.state.find(spec["entity"], {"where": body.get("where") or [],
                                                       "offset": 0, "maxSize": 10 ** 9}, user["id"])
            ids = [r["id"] for r in rows]
        else:
            ids = self._ids(body)
        columns = body.get("columns") if isinstance(body.get("columns"), dict) else None
        self.state.relate(E, id, link, ids, user["id"], columns=columns)
        return True

    def unrelate(self, user: Record, E: str, id: str, link: str) -> bool:
        self._acl(E, "edit", id)
        self.state.relate(E, id, link, self._ids(self._object()), user["id"], unrelate=True)
        return True
