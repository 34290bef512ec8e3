"""Read-only console pages: overview, explained access check, per-user visibility, audit log,
sync health. Each is a thin view over a service; the logic lives with the service."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import request

from espomcp.admin.relationships import model_relations, model_types
from espomcp.admin.tuples_query import InputError, check_object, check_relation
from espomcp.admin.web import bp, console, page_number, page_size, render, services
from espomcp.fga.explain import Node, explain

log = logging.getLogger("espomcp.admin")
LIST_OBJECTS_TTL = 30.0
AUDIT_FILTERS = ("user", "tool", "decision", "layer")
_list_lock = threading.Lock()


def labeler(values: list[str]) -> Callable[[str], str]:
    """A label function: users by name, other objects as ``type:id (name)`` when known."""
    names = console().directory.labels(values)

    def label(value: str) -> str:
        obj, _, rel = value.partition("#")
        name = names.get(obj)
        if not name:
            return value
        shown = name if obj.startswith("user:") else f"{obj} ({name})"
        return f"{shown}#{rel}" if rel else shown

    return label


FGA_TOKEN = re.compile(r"(?<![\w:])([a-z][a-z0-9_]*:[^\s#,()]+)")


def tree_texts(node: Node) -> Iterator[str]:
    yield node.label
    yield node.detail
    for child in node.children:
        yield from tree_texts(child)


def text_labeler(texts: list[str]) -> Callable[[str], str]:
    """Replace every ``type:id`` inside free text by its label (see ``labeler``)."""
    label = labeler(sorted({m for t in texts for m in FGA_TOKEN.findall(t)}))
    return lambda text: FGA_TOKEN.sub(lambda m: label(m.group(1)), text)


@bp.get("/")
def home() -> Any:
    svc = services()
    ok, detail = _health(svc.fga)
    return render("admin/home.html", fga_ok=ok, fga_detail=detail,
                  audit_available=svc.audit is not None)


def _health(backend: Any) -> tuple[bool, str]:
    if backend is None:
        return False, "no FGA backend is configured"
    try:
        return backend.health()
    except Exception as exc:  # health() must not raise; a broken one is reported, not fatal
        return False, f"health check failed: {type(exc).__name__}"


@bp.get("/check")
def check() -> Any:
    args = request.args
    result = texts = label = label_text = None
    if args.get("user") or args.get("object"):
        user = console().directory.resolve_user(args.get("user", ""))
        relation = check_relation(args.get("relation", "can_read"))
        obj = check_object(args.get("object", ""))
        context = _context(args.get("context", ""))
        result = explain(services().fga, user, relation, obj, context=context)
        hop_values = [user, obj] + [h.object for chain in result.paths for h in chain] + [
            h.subject for chain in result.paths for h in chain]
        label = labeler(hop_values)
        texts = result.path_texts(label)
        label_text = text_labeler([*result.reasons, *tree_texts(result.tree)])
    return render("admin/check.html", form=args, result=result, paths=texts, label=label,
                  label_text=label_text, relations=model_relations())


def _context(raw: str) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"context must be a JSON object: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InputError("context must be a JSON object")
    return value


def _list_objects(user: str, relation: str, type_: str) -> list[str]:
    """ListObjects, remembered for LIST_OBJECTS_TTL so paging through a list stays fast."""
    cache = console().listings
    key = (user, relation, type_)
    now = time.monotonic()
    with _list_lock:
        hit = cache.get(key)
        if hit and now - hit[0] < LIST_OBJECTS_TTL:
            return hit[1]
    objects = sorted(services().fga.list_objects(user, relation, type_))
    with _list_lock:
        if len(cache) > 200:
            cache.clear()
        cache[key] = (now, objects)
    return objects


@bp.get("/visibility")
def visibility() -> Any:
    args = request.args
    relation = check_relation(args.get("relation", "can_read") or "can_read")
    counts: list[tuple[str, int]] = []
    listing: list[str] = []
    user = ""
    chosen = args.get("type", "").strip().lower()
    page, size, has_next = page_number(), page_size(), False
    if args.get("user"):
        user = console().directory.resolve_user(args["user"])
        model = {td["type"]: td for td in services().fga.model().get("type_definitions", [])}
        for entity in services().settings.entity_types:
            fga_type = entity.lower()
            if relation not in (model.get(fga_type, {}).get("relations") or {}):
                continue
            counts.append((fga_type, len(_list_objects(user, relation, fga_type))))
        if chosen:
            if chosen not in model:
                raise InputError(f"unknown object type {chosen!r}")
            objects = _list_objects(user, relation, chosen)
            listing = objects[(page - 1) * size: page * size]
            has_next = len(objects) > page * size
    label = labeler([*listing, user]) if user else str
    pager_args = {k: v for k, v in args.items() if k != "page"}
    return render("admin/visibility.html", form=args, user=user, relation=relation,
                  counts=counts, chosen=chosen, listing=listing, page=page, size=size,
                  has_next=has_next, label=label, args=pager_args, relations=model_relations(),
                  types=model_types())


@bp.get("/audit")
def audit_log() -> Any:
    audit = services().audit
    filters = {k: request.args.get(k, "").strip() for k in AUDIT_FILTERS}
    page, size = page_number(), page_size()
    events: list[dict[str, Any]] = []
    has_next = False
    if audit is not None:
        wanted = {k: v for k, v in filters.items() if v}
        rows = audit.recent(limit=page * size + 1, **wanted)
        events = rows[(page - 1) * size: page * size]
        has_next = len(rows) > page * size
    pager_args = {k: v for k, v in request.args.items() if k != "page"}
    return render("admin/audit.html", available=audit is not None, events=events,
                  filters=filters, page=page, size=size, has_next=has_next, args=pager_args)


@bp.get("/sync")
def sync_health() -> Any:
    status, problem = _sync_status()
    return render("admin/sync.html", sync=status, problem=problem)


def _sync_status() -> tuple[dict[str, Any] | None, str]:
    try:
        from espomcp.sync.status import sync_status
    except ImportError:
        return None, "The permission sync is not installed in this build."
    try:
        status = sync_status(services().settings, services().extras.get("outbox"))
    except Exception as exc:  # a status page must render even when the sync is broken
        log.warning("sync_status failed: %s", type(exc).__name__)
        return None, f"The sync status could not be read ({type(exc).__name__})."
    if not isinstance(status, dict):
        return None, "The sync reported no status."
    return status, ""
