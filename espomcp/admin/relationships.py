"""Relationships page: browse tuples by user, team, object and relation; add and remove them.

Changes take two POSTs: ``confirm`` shows exactly what will change, ``apply`` writes it through
the FGA backend and records an audit event (``layer="admin"``, ``tool="admin.add_tuple"`` or
``"admin.remove_tuple"``). Both need the session's CSRF token.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import g, redirect, request, url_for

from espomcp.admin.tuples_query import (
    InputError,
    TupleFilter,
    check_object,
    check_relation,
    check_type,
    safe_read_page,
)
from espomcp.admin.web import (
    bp,
    console,
    cursor_for,
    flash,
    page_number,
    page_size,
    principal,
    remember_cursor,
    render,
    services,
)
from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.tuples import Condition, TupleKey

log = logging.getLogger("espomcp.admin")
ACTIONS = {"add": "admin.add_tuple", "remove": "admin.remove_tuple"}


def model_types() -> list[str]:
    return [td["type"] for td in services().fga.model().get("type_definitions", [])]


def model_relations() -> list[str]:
    names: set[str] = set()
    for td in services().fga.model().get("type_definitions", []):
        names.update((td.get("relations") or {}).keys())
    return sorted(names)


def stored_relations() -> list[str]:
    """Relations a tuple can be written for (they admit users directly: ``[user, ...]``)."""
    names: set[str] = set()
    for td in services().fga.model().get("type_definitions", []):
        for name, meta in ((td.get("metadata") or {}).get("relations") or {}).items():
            if (meta or {}).get("directly_related_user_types"):
                names.add(name)
    return sorted(names)


def filter_from_args(args: Any) -> TupleFilter:
    user = args.get("user", "").strip()
    team = args.get("team", "").strip()
    if team:
        team = console().directory.resolve_team(team)
    object_type = check_type(args.get("type", ""), model_types())
    object_id = args.get("id", "").strip()
    if object_id:
        if not object_type:
            raise InputError("choose an object type to filter by object id")
        check_object(f"{object_type}:{object_id}", "object id")
    relation = args.get("relation", "").strip()
    return TupleFilter(
        user=console().directory.resolve_user(user) if user else "",
        team=team, object_type=object_type, object_id=object_id,
        relation=check_relation(relation) if relation else "")


@bp.get("/relationships")
def relationships() -> Any:
    backend = services().fga
    flt = filter_from_args(request.args)
    size = page_size()
    page, cursor = cursor_for(f"rel|{flt.key}|{size}", page_number())
    rows, next_cursor = safe_read_page(backend, flt, size, cursor)
    remember_cursor(f"rel|{flt.key}|{size}", page, next_cursor)
    labels = console().directory.labels([v for k in rows for v in (k.user, k.object)])
    args = {k: v for k, v in request.args.items() if k not in ("page",)}
    return render("admin/relationships.html", rows=rows, labels=labels, flt=flt,
                  form=request.args, page=page, has_next=bool(next_cursor), args=args,
                  types=model_types(), relations=stored_relations(), size=size)


@bp.get("/relationships/new")
def new_relationship() -> Any:
    model = services().fga.model()
    return render("admin/relationship_new.html", form=request.args, types=model_types(),
                  relations=stored_relations(), conditions=sorted(model.get("conditions") or {}))


def tuple_from_form(form: Any) -> TupleKey:
    """The tuple an add/remove form names (user names resolved), validated; InputError."""
    user = console().directory.resolve_user(form.get("user", ""))
    relation = check_relation(form.get("relation", ""))
    obj = check_object(form.get("object", ""))
    check_type(obj.split(":", 1)[0], model_types())
    condition = None
    name = form.get("condition", "").strip()
    if name:
        raw = form.get("context", "").strip() or "{}"
        try:
            context = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"condition context must be a JSON object: {exc.msg}") from exc
        if not isinstance(context, dict):
            raise InputError("condition context must be a JSON object like {\"until\": \"...\"}")
        condition = Condition(check_relation(name, "condition"), context or None)
    return TupleKey(user, relation, obj, condition)


def _exists(key: TupleKey) -> bool:
    rows, _ = services().fga.read(user=key.user, relation=key.relation, object=key.object,
                                  page_size=1)
    return any(k.user == key.user and k.relation == key.relation and k.object == key.object
               for k in rows)


def _action() -> str:
    action = request.form.get("action", "")
    if action not in ACTIONS:
        raise InputError("action must be add or remove")
    return action


@bp.post("/relationships/confirm")
def confirm_relationship() -> Any:
    action = _action()
    key = tuple_from_form(request.form)
    exists = _exists(key)
    labels = console().directory.labels([key.user, key.object])
    return render("admin/relationship_confirm.html", action=action, key=key, exists=exists,
                  labels=labels, context_json=json.dumps(key.condition.context or {})
                  if key.condition else "")


@bp.post("/relationships/apply")
def apply_relationship() -> Any:
    action = _action()
    try:
        key = tuple_from_form(request.form)
    except FgaUnavailable:
        _audit({"tool": ACTIONS[action], "layer": "admin", "decision": "error",
                "reason": "FGA backend unavailable"})
        raise
    backend = services().fga
    event: dict[str, Any] = {"tool": ACTIONS[action], "layer": "admin",
                             "entity_type": key.object.split(":", 1)[0],
                             "record_id": key.object.split(":", 1)[1], "tuple": key.to_dict()}
    try:
        if action == "add":
            backend.write(writes=[key])
        else:
            backend.write(deletes=[key])
    except FgaError as exc:
        _audit({**event, "decision": "error", "reason": exc.message})
        raise
    except FgaUnavailable:
        _audit({**event, "decision": "error", "reason": "FGA backend unavailable"})
        raise
    _audit({**event, "decision": "allow"})
    console().listings.clear()
    verb = "Added" if action == "add" else "Removed"
    names = console().directory.labels([key.user, key.object])
    who, what = (f" ({names[v.split('#', 1)[0]]})" if v.split("#", 1)[0] in names else ""
                 for v in (key.user, key.object))
    flash("ok", f"{verb} {key.user}{who} {key.relation} {key.object}{what}.")
    log.info("admin %s %s tuple %s %s %s", g.admin["sub"], action, key.user, key.relation,
             key.object)
    obj_type, obj_id = key.object.split(":", 1)
    return redirect(url_for("admin.relationships", type=obj_type, id=obj_id), code=303)


def _audit(event: dict[str, Any]) -> None:
    audit = services().audit
    if audit is not None:
        audit.record(principal(), event)
