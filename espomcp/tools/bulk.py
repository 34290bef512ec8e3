"""Bulk create, update and delete: per-item results; one bad item never hides the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from espomcp.authz import Authorizer
from espomcp.espocrm.errors import InvalidInput
from espomcp.espocrm.ids import validate_id
from espomcp.mcp.registry import (
    DESTRUCTIVE,
    WRITE,
    JsonObject,
    Tool,
    ToolContext,
    ToolError,
)
from espomcp.tools.common import ID_SCHEMA, any_scope, entity_type_schema, scopes_of, writable_types
from espomcp.tools.records import DATA_SCHEMA, create_one, delete_one, update_one

if TYPE_CHECKING:
    from espomcp.services import Services

MAX_ITEMS = 50
BULK_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {
        "entity_type": {"type": "string"},
        "succeeded": {"type": "integer"},
        "failed": {"type": "integer"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "ok": {"type": "boolean"},
                    "id": {"type": ["string", "null"]},
                    "error": {"type": "string"},
                    "result": {"type": "object"},
                },
                "required": ["index", "ok"],
            },
        },
    },
    "required": ["entity_type", "succeeded", "failed", "results"],
}


def _run(
    entity_type: str, items: list[Any], one: Callable[[int, Any], tuple[str | None, JsonObject]]
) -> JsonObject:
    results = []
    for index, item in enumerate(items):
        try:
            record_id, result = one(index, item)
            ok = not (isinstance(result, dict) and result.get("created") is False)
            entry: JsonObject = {"index": index, "ok": ok, "id": record_id, "result": result}
            if not ok:
                entry["error"] = result.get("message", "not created")
        except ToolError as exc:
            entry = {"index": index, "ok": False, "id": _item_id(item), "error": exc.message}
        results.append(entry)
    succeeded = sum(1 for r in results if r["ok"])
    return {
        "entity_type": entity_type,
        "succeeded": succeeded,
        "failed": len(results) - succeeded,
        "results": results,
    }


def _item_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else item
    return value if isinstance(value, str) and len(value) <= 64 else None


def _checked_ids(authz: Authorizer, relation: str, entity_type: str, ids: list[Any]) -> dict[int, bool]:
    """Validate ids and batch-check them in one FGA call: index → allowed (absent = bad id)."""
    valid: dict[int, str] = {}
    for index, value in enumerate(ids):
        try:
            valid[index] = validate_id(value)
        except InvalidInput:
            continue
    flags = authz.check_many(relation, [(entity_type, i) for i in valid.values()])
    return dict(zip(valid, flags, strict=True))


def bulk_create_records(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type = args["entity_type"]
    authz = Authorizer(ctx)
    skip = bool(args.get("skip_duplicate_check"))

    def one(index: int, data: JsonObject) -> tuple[str | None, JsonObject]:
        result = create_one(ctx, entity_type, dict(data), skip, authz)
        record = result.get("record") or {}
        return record.get("id"), result

    return _run(entity_type, args["records"], one)


def bulk_update_records(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type = args["entity_type"]
    authz = Authorizer(ctx)
    items = args["items"]
    allowed = _checked_ids(authz, "can_write", entity_type, [i.get("id") for i in items])

    def one(index: int, item: JsonObject) -> tuple[str | None, JsonObject]:
        if index not in allowed:
            raise ToolError(f"invalid id {str(item.get('id'))[:64]!r}")
        if not allowed[index]:
            raise ToolError(
                f"Permission denied: you may not write {entity_type} {item['id']} "
                "(missing permission 'can_write'; it may also not exist)."
            )
        return item["id"], update_one(ctx, authz, entity_type, item["id"], dict(item["data"]),
                                     write_checked=True)

    return _run(entity_type, items, one)


def bulk_delete_records(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type = args["entity_type"]
    authz = Authorizer(ctx)
    ids = args["ids"]
    allowed = _checked_ids(authz, "can_delete", entity_type, ids)

    def one(index: int, record_id: str) -> tuple[str | None, JsonObject]:
        if index not in allowed:
            raise ToolError(f"invalid id {str(record_id)[:64]!r}")
        if not allowed[index]:
            raise ToolError(
                f"Permission denied: you may not delete {entity_type} {record_id} "
                "(missing permission 'can_delete'; it may also not exist)."
            )
        return record_id, delete_one(ctx, authz, entity_type, record_id, delete_checked=True)

    return _run(entity_type, ids, one)


def tools(svc: Services) -> list[Tool]:
    types = writable_types(svc.settings)
    etype = entity_type_schema(types, "records")
    return [
        Tool(
            name="bulk_create_records",
            title="Create several records",
            description=f"Create up to {MAX_ITEMS} records of one entity type. Each item "
            "succeeds or fails on its own; results list the outcome per item (duplicates are "
            "reported, not created, unless skip_duplicate_check=true).",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": etype,
                    "records": {"type": "array", "items": DATA_SCHEMA, "minItems": 1, "maxItems": MAX_ITEMS},
                    "skip_duplicate_check": {"type": "boolean", "default": False},
                },
                "required": ["entity_type", "records"],
                "additionalProperties": False,
            },
            output_schema=BULK_OUTPUT,
            handler=bulk_create_records,
            relations=("can_read",),
            annotations=WRITE,
            required_scopes=scopes_of("write"),
            visible_with=any_scope(types, "write"),
        ),
        Tool(
            name="bulk_update_records",
            title="Update several records",
            description=f"Apply partial updates to up to {MAX_ITEMS} records of one entity "
            "type; each item is {id, data}. Permissions are checked for all items at once; "
            "results list the outcome per item.",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": etype,
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_ITEMS,
                        "items": {
                            "type": "object",
                            "properties": {"id": ID_SCHEMA, "data": DATA_SCHEMA},
                            "required": ["id", "data"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["entity_type", "items"],
                "additionalProperties": False,
            },
            output_schema=BULK_OUTPUT,
            handler=bulk_update_records,
            relations=("can_write", "can_assign"),
            annotations=DESTRUCTIVE,
            required_scopes=scopes_of("write"),
            visible_with=any_scope(types, "write"),
        ),
        Tool(
            name="bulk_delete_records",
            title="Delete several records",
            description=f"Delete up to {MAX_ITEMS} records of one entity type permanently. "
            "Permissions are checked for all at once; results list the outcome per item.",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": etype,
                    "ids": {"type": "array", "items": ID_SCHEMA, "minItems": 1, "maxItems": MAX_ITEMS},
                },
                "required": ["entity_type", "ids"],
                "additionalProperties": False,
            },
            output_schema=BULK_OUTPUT,
            handler=bulk_delete_records,
            relations=("can_delete",),
            annotations=DESTRUCTIVE,
            required_scopes=scopes_of("delete"),
            visible_with=any_scope(types, "delete"),
        ),
    ]
