"""HTTP in/out of the fake OpenFGA server: parse each REST request, call the state, shape the
answer as OpenFGA does (openfga.md §10). Routes are listed in ``urls.py``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response, jsonify, request

from espomcp.fga.errors import FgaError
from espomcp.fga.tuples import TupleKey
from fakes.openfga.exceptions import (
    InvalidBearerToken,
    OpenFgaError,
    Unavailable,
    ValidationError,
    from_engine,
)
from fakes.openfga.models import FakeOpenFga, Store, page

CORRELATION_ID = re.compile(r"^[\w\d-]{1,36}$")
MAX_TUPLES_PER_WRITE = 100
MAX_CONTEXTUAL_TUPLES = 100
MAX_BATCH_CHECKS = 50


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None and not request.get_data():
        return {}
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


def _require_str(data: dict[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"invalid {where}.{name}: value length must be at least 1")
    return value


def _tuple_keys(container: Any, where: str) -> list[TupleKey]:
    if container is None:
        return []
    if not isinstance(container, dict) or not isinstance(container.get("tuple_keys", []), list):
        raise ValidationError(f"invalid {where}: expected {{\"tuple_keys\": [...]}}")
    return [TupleKey.from_dict(item) for item in container.get("tuple_keys", [])]


def _contextual(data: dict[str, Any]) -> list[TupleKey]:
    raw = data.get("contextual_tuples")
    keys = raw if isinstance(raw, list) else _tuple_keys(raw, "contextual_tuples")
    keys = [TupleKey.from_dict(item) for item in keys]
    if len(keys) > MAX_CONTEXTUAL_TUPLES:
        raise ValidationError(f"at most {MAX_CONTEXTUAL_TUPLES} contextual tuples are allowed",
                              code="exceeded_entity_limit")
    return keys


def _context(data: dict[str, Any]) -> dict[str, Any] | None:
    context = data.get("context")
    if context is not None and not isinstance(context, dict):
        raise ValidationError("context must be an object")
    return context


def _user_json(user: str) -> dict[str, Any]:
    kind, _, rest = user.partition(":")
    if rest == "*":
        return {"wildcard": {"type": kind}}
    ident, hash_, relation = rest.partition("#")
    if hash_:
        return {"userset": {"type": kind, "id": ident, "relation": relation}}
    return {"object": {"type": kind, "id": ident}}


def _model_json(model_id: str, model: dict[str, Any]) -> dict[str, Any]:
    return {"id": model_id, "schema_version": model["schema_version"],
            "type_definitions": model["type_definitions"], "conditions": model.get("conditions") or {}}


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"invalid start_time {value!r}: expected RFC 3339",
                              code="invalid_start_time") from None


class OpenFgaResponses:
    """One handler per OpenFGA endpoint, over a :class:`FakeOpenFga` state."""

    def __init__(self, state: FakeOpenFga) -> None:
        self.state = state

    # --- cross-cutting ------------------------------------------------------------
    def before(self) -> None:
        """Fault knobs first (down → 503, slow → delay), then bearer authentication."""
        if request.path.startswith("/_fake/"):
            return
        fault = self.state.fault
        if fault.mode == "down":
            raise Unavailable("fake OpenFGA is down")
        if fault.mode == "slow":
            time.sleep(fault.delay)
        if request.path != "/oauth/token":
            self.state.authenticate(request.headers.get("Authorization"))

    @staticmethod
    def error(exc: OpenFgaError) -> Response:
        response = jsonify(exc.body())
        response.status_code = exc.status
        return response

    @staticmethod
    def engine_error(exc: FgaError) -> Response:
        return OpenFgaResponses.error(from_engine(exc))

    # --- stores ---------------------------------------------------------------------
    def create_store(self) -> tuple[Response, int]:
        store = self.state.create_store(_body().get("name", ""))
        return jsonify(store.to_json()), 201

    def list_stores(self) -> Response:
        stores = self.state.list_stores()
        name = request.args.get("name")
        if name:
            stores = [store for store in stores if store.name == name]
        chunk, token = page(stores, request.args.get("page_size"), request.args.get("continuation_token"))
        return jsonify(stores=[store.to_json() for store in chunk], continuation_token=token)

    def get_store(self, store_id: str) -> Response:
        return jsonify(self.state.store(store_id).to_json())

    def delete_store(self, store_id: str) -> tuple[str, int]:
        self.state.delete_store(store_id)
        return "", 204

    # --- authorization models ---------------------------------------------------------
    def write_model(self, store_id: str) -> tuple[Response, int]:
        model_id = self.state.write_model(store_id, _body())
        return jsonify(authorization_model_id=model_id), 201

    def read_models(self, store_id: str) -> Response:
        store = self.state.store(store_id)
        newest_first = list(reversed(store.models))
        chunk, token = page(newest_first, request.args.get("page_size"),
                            request.args.get("continuation_token"))
        return jsonify(authorization_models=[_model_json(mid, m) for mid, m in chunk],
                       continuation_token=token)

    def read_model(self, store_id: str, model_id: str) -> Response:
        mid, model = self.state.store(store_id).model(model_id)
        return jsonify(authorization_model=_model_json(mid, model))

    # --- tuples -----------------------------------------------------------------------
    def write(self, store_id: str) -> Response:
        data = _body()
        store = self.state.store(store_id)
        writes_raw, deletes_raw = data.get("writes"), data.get("deletes")
        writes = _tuple_keys(writes_raw, "writes")
        deletes = _tuple_keys(deletes_raw, "deletes")
        if not writes and not deletes:
            raise ValidationError("invalid WriteRequest: at least one write or delete is required")
        if len(writes) + len(deletes) > MAX_TUPLES_PER_WRITE:
            raise ValidationError(f"the number of write operations exceeds the allowed limit of "
                                  f"{MAX_TUPLES_PER_WRITE}", code="exceeded_entity_limit")
        on_duplicate = (writes_raw or {}).get("on_duplicate") or "error"
        on_missing = (deletes_raw or {}).get("on_missing") or "error"
        if on_duplicate not in ("error", "ignore") or on_missing not in ("error", "ignore"):
            raise ValidationError("on_duplicate / on_missing must be 'error' or 'ignore'")
        engine = store.engine(data.get("authorization_model_id"))
        engine.write(writes, deletes, on_duplicate=on_duplicate, on_missing=on_missing)
        return jsonify({})

    def read(self, store_id: str) -> Response:
        data = _body()
        store = self.state.store(store_id)
        key = data.get("tuple_key") or {}
        if not isinstance(key, dict):
            raise ValidationError("tuple_key must be an object")
        size = data.get("page_size") or 50
        if not isinstance(size, int) or not 1 <= size <= 100:
            raise ValidationError("page_size must be between 1 and 100", code="page_size_invalid")
        engine = store.engine(None) if store.models else None
        if engine is None:
            return jsonify(tuples=[], continuation_token="")
        rows, token = engine.read(key.get("user") or None, key.get("relation") or None,
                                  key.get("object") or None, page_size=size,
                                  continuation_token=data.get("continuation_token") or None)
        return jsonify(tuples=[{"key": tk.to_dict(), "timestamp": ts} for tk, ts in rows],
                       continuation_token=token)

    def read_changes(self, store_id: str) -> Response:
        store = self.state.store(store_id)
        if not store.models:
            return jsonify(changes=[], continuation_token="")
        size = request.args.get("page_size", "50")
        if not size.isdigit() or not 1 <= int(size) <= 100:
            raise ValidationError("page_size must be between 1 and 100", code="page_size_invalid")
        changes, token = store.engine(None).read_changes(
            request.args.get("type") or None, page_size=int(size),
            continuation_token=request.args.get("continuation_token") or None)
        start = request.args.get("start_time")
        if start:
            since = _timestamp(start)
            changes = [c for c in changes if _timestamp(c["timestamp"]) >= since]
        return jsonify(changes=changes, continuation_token=token)

    # --- queries ----------------------------------------------------------------------
    def check(self, store_id: str) -> Response:
        data = _body()
        store = self.state.store(store_id)
        key = data.get("tuple_key")
        if not isinstance(key, dict):
            raise ValidationError("invalid CheckRequest.TupleKey: value is required")
        user = _require_str(key, "user", "CheckRequestTupleKey")
        relation = _require_str(key, "relation", "CheckRequestTupleKey")
        obj = _require_str(key, "object", "CheckRequestTupleKey")
        engine = store.engine(data.get("authorization_model_id"))
        allowed = engine.check(user, relation, obj, context=_context(data),
                               contextual_tuples=_contextual(data))
        return jsonify(allowed=bool(allowed), resolution="")

    def batch_check(self, store_id: str) -> Response:
        data = _body()
        store = self.state.store(store_id)
        checks = data.get("checks")
        if not isinstance(checks, list) or not 1 <= len(checks) <= MAX_BATCH_CHECKS:
            raise ValidationError(f"invalid BatchCheckRequest.Checks: between 1 and {MAX_BATCH_CHECKS} "
                                  "checks are required")
        items, seen = [], set()
        for check in checks:
            if not isinstance(check, dict) or not isinstance(check.get("tuple_key"), dict):
                raise ValidationError("every check needs a tuple_key")
            cid = check.get("correlation_id")
            if not isinstance(cid, str) or not CORRELATION_ID.match(cid):
                raise ValidationError(f"invalid correlation_id {cid!r}")
            if cid in seen:
                raise ValidationError(f"duplicate correlation_id {cid!r}")
            seen.add(cid)
            key = check["tuple_key"]
            items.append({"user": _require_str(key, "user", "tuple_key"),
                          "relation": _require_str(key, "relation", "tuple_key"),
                          "object": _require_str(key, "object", "tuple_key"),
                          "correlation_id": cid, "context": _context(check),
                          "contextual_tuples": _contextual(check)})
        results = store.engine(data.get("authorization_model_id")).batch_check(items)
        out: dict[str, Any] = {}
        for cid, result in results.items():
            if isinstance(result, FgaError):
                wire = from_engine(result)
                kind = "internal_error" if wire.status >= 500 else "input_error"
                out[cid] = {"error": {kind: wire.code, "message": wire.message}}
            else:
                out[cid] = {"allowed": bool(result)}
        return jsonify(result=out)

    def _list_objects_args(self, store_id: str) -> tuple[Any, dict[str, Any]]:
        data = _body()
        store = self.state.store(store_id)
        engine = store.engine(data.get("authorization_model_id"))
        return engine, {"user": _require_str(data, "user", "ListObjectsRequest"),
                        "relation": _require_str(data, "relation", "ListObjectsRequest"),
                        "type": _require_str(data, "type", "ListObjectsRequest"),
                        "context": _context(data), "contextual_tuples": _contextual(data)}

    def list_objects(self, store_id: str) -> Response:
        engine, args = self._list_objects_args(store_id)
        objects = engine.list_objects(args.pop("user"), args.pop("relation"), args.pop("type"), **args)
        return jsonify(objects=list(objects))

    def streamed_list_objects(self, store_id: str) -> Response:
        engine, args = self._list_objects_args(store_id)
        objects = engine.list_objects(args.pop("user"), args.pop("relation"), args.pop("type"), **args)

        def lines() -> Iterator[str]:
            for obj in objects:
                yield json.dumps({"result": {"object": obj}}) + "\n"

        return Response(lines(), mimetype="application/x-ndjson")

    def list_users(self, store_id: str) -> Response:
        data = _body()
        store = self.state.store(store_id)
        obj = data.get("object")
        if not isinstance(obj, dict):
            raise ValidationError("invalid ListUsersRequest.Object: value is required")
        obj_type = _require_str(obj, "type", "Object")
        obj_id = _require_str(obj, "id", "Object")
        relation = _require_str(data, "relation", "ListUsersRequest")
        filters = data.get("user_filters")
        if not isinstance(filters, list) or len(filters) != 1 or not isinstance(filters[0], dict):
            raise ValidationError("invalid ListUsersRequest.UserFilters: exactly 1 filter is required")
        user_filters = [(_require_str(f, "type", "UserTypeFilter"), f.get("relation") or None)
                        for f in filters]
        engine = store.engine(data.get("authorization_model_id"))
        users = engine.list_users(f"{obj_type}:{obj_id}", relation, user_filters,
                                  context=_context(data), contextual_tuples=_contextual(data))
        return jsonify(users=[_user_json(user) for user in users])

    def expand(self, store_id: str) -> Response:
        data = _body()
        store = self.state.store(store_id)
        key = data.get("tuple_key")
        if not isinstance(key, dict):
            raise ValidationError("invalid ExpandRequest.TupleKey: value is required")
        engine = store.engine(data.get("authorization_model_id"))
        tree = engine.expand(_require_str(key, "relation", "ExpandRequestTupleKey"),
                             _require_str(key, "object", "ExpandRequestTupleKey"))
        return jsonify(tree=tree)

    # --- assertions -------------------------------------------------------------------
    def read_assertions(self, store_id: str, model_id: str) -> Response:
        store: Store = self.state.store(store_id)
        store.model(model_id)
        return jsonify(authorization_model_id=model_id, assertions=store.assertions.get(model_id, []))

    def write_assertions(self, store_id: str, model_id: str) -> tuple[str, int]:
        store = self.state.store(store_id)
        store.model(model_id)
        assertions = _body().get("assertions")
        if not isinstance(assertions, list):
            raise ValidationError("assertions must be a list")
        store.assertions[model_id] = assertions
        return "", 204

    # --- client credentials and test knobs -------------------------------------------
    def token(self) -> tuple[Response, int]:
        form = request.form if request.form else (request.get_json(silent=True) or {})
        if form.get("grant_type") != "client_credentials":
            return jsonify(error="unsupported_grant_type",
                           error_description="only client_credentials is supported"), 400
        try:
            answer = self.state.issue_token(str(form.get("client_id", "")),
                                            str(form.get("client_secret", "")), form.get("audience"))
        except InvalidBearerToken as exc:
            return jsonify(error="access_denied", error_description=exc.message), 401
        return jsonify(answer), 200

    def fault(self) -> Response:
        data = _body()
        self.state.set_fault(str(data.get("mode", "")), data.get("delay"))
        return jsonify(mode=self.state.fault.mode, delay=self.state.fault.delay)

    def reset(self) -> Response:
        self.state.reset()
        return jsonify(reset=True)
