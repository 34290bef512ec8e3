"""Model page: the authorization model as DSL text, a per-type relation table, and the status
of its store tests (``fga/store.fga.yaml`` run by our engine's runner, cached by file mtimes)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from espomcp.admin.web import bp, render, services

log = logging.getLogger("espomcp.admin")
FGA_DIR = Path(__file__).resolve().parents[2] / "fga"
_tests_cache: dict[tuple[str, float, float], dict[str, Any]] = {}
_tests_lock = threading.Lock()


def rewrite_text(rw: dict[str, Any], restrictions: list[dict[str, Any]] | None = None,
                 nested: bool = False) -> str:
    """One relation's userset rewrite in DSL syntax (``[user] or member from team``)."""
    if "this" in rw:
        return "[" + ", ".join(_restriction(r) for r in restrictions or []) + "]"
    if "computedUserset" in rw:
        return rw["computedUserset"].get("relation", "?")
    if "tupleToUserset" in rw:
        ttu = rw["tupleToUserset"]
        return f"{ttu['computedUserset'].get('relation', '?')} from {ttu['tupleset'].get('relation', '?')}"
    for kind, word in (("union", " or "), ("intersection", " and ")):
        if kind in rw:
            text = word.join(rewrite_text(c, restrictions, True) for c in rw[kind].get("child", []))
            return f"({text})" if nested else text
    if "difference" in rw:
        diff = rw["difference"]
        text = (f"{rewrite_text(diff['base'], restrictions, True)} but not "
                f"{rewrite_text(diff['subtract'], restrictions, True)}")
        return f"({text})" if nested else text
    return "?"


def _has_direct(rw: dict[str, Any]) -> bool:
    if "this" in rw:
        return True
    children = [*(rw.get("union") or {}).get("child", []),
                *(rw.get("intersection") or {}).get("child", [])]
    if "difference" in rw:
        children.append(rw["difference"].get("base", {}))
    return any(_has_direct(c) for c in children)


def _restriction(r: dict[str, Any]) -> str:
    text = r.get("type", "?")
    if "wildcard" in r:
        text += ":*"
    elif r.get("relation"):
        text += "#" + r["relation"]
    if r.get("condition"):
        text += " with " + r["condition"]
    return text


def relation_table(model: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{type, relations: [{name, definition, direct: bool}]}]`` in model order."""
    out = []
    for td in model.get("type_definitions", []):
        meta = (td.get("metadata") or {}).get("relations") or {}
        rows = []
        for name, rw in (td.get("relations") or {}).items():
            allowed = (meta.get(name) or {}).get("directly_related_user_types") or []
            rows.append({"name": name, "definition": rewrite_text(rw, allowed),
                         "direct": _has_direct(rw),
                         "permission": name.startswith("can_")})
        rows.sort(key=lambda r: r["permission"])  # stored relations first, then permissions
        out.append({"type": td["type"], "relations": rows})
    return out


def model_dsl(model: dict[str, Any]) -> tuple[str, str]:
    """(DSL text, where it came from): ``fga/model.fga`` when present, else rendered."""
    source = FGA_DIR / "model.fga"
    if source.is_file():
        return source.read_text(encoding="utf-8"), "fga/model.fga"
    lines = ["model", "  schema " + str(model.get("schema_version", "1.1"))]
    for table in relation_table(model):
        lines += ["", f"type {table['type']}"]
        if table["relations"]:
            lines.append("  relations")
            lines += [f"    define {r['name']}: {r['definition']}" for r in table["relations"]]
    return "\n".join(lines) + "\n", "rendered from the active model"


def store_tests_status() -> dict[str, Any]:
    """The store tests' outcome, computed once per (model file, store file) version."""
    store = FGA_DIR / "store.fga.yaml"
    model = FGA_DIR / "model.fga"
    if not store.is_file():
        return {"available": False, "message": "fga/store.fga.yaml is not part of this install."}
    key = (str(store), store.stat().st_mtime, model.stat().st_mtime if model.is_file() else 0.0)
    with _tests_lock:
        if key in _tests_cache:
            return _tests_cache[key]
        status = _run_store_tests(store)
        _tests_cache.clear()
        _tests_cache[key] = status
        return status


def _run_store_tests(path: Path) -> dict[str, Any]:
    try:
        from espomcp.fga import store_test
    except ImportError:
        return {"available": False, "message": "The store-test runner is not part of this build."}
    try:
        results = store_test.run_store_file(path)
    except store_test.StoreTestError as exc:
        return {"available": True, "ok": False, "total": 0, "failed": 0, "results": [],
                "report": "", "message": f"The store tests could not be loaded: {exc}"}
    rows = []
    for result in results:
        outcomes = [*result.checks, *result.list_objects, *result.list_users]
        passed = sum(1 for o in outcomes if o.passing)
        rows.append({"name": result.name, "ok": result.passing,
                     "detail": f"{passed}/{len(outcomes)} assertions"})
    failed = sum(1 for r in rows if not r["ok"])
    return {"available": True, "ok": failed == 0, "total": len(rows), "failed": failed,
            "results": rows, "report": store_test.report(results) if failed else "",
            "message": ""}


@bp.get("/model")
def model_page() -> Any:
    model = services().fga.model()
    dsl, source = model_dsl(model)
    return render("admin/model.html", dsl=dsl, source=source, table=relation_table(model),
                  tests=store_tests_status(), conditions=model.get("conditions") or {})
