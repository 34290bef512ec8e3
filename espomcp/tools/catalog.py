"""``list_entity_types`` and ``describe_entity``: what the CRM holds and how its records look."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from espomcp.auth.scopes import scope_for
from espomcp.mcp.registry import READ, JsonObject, Tool, ToolContext
from espomcp.settings import READ_ONLY_ENTITY_TYPES
from espomcp.tools.common import crm_errors, entity_type_schema, readable_types, scopes_of

if TYPE_CHECKING:
    from espomcp.services import Services

METADATA_TTL_SECONDS = 600
FIELD_KEYS = (
    "type",
    "required",
    "options",
    "readOnly",
    "maxLength",
    "min",
    "max",
    "default",
    "entity",
    "entityList",
)


class MetadataCache:
    """Entity definitions from EspoCRM's Metadata, cached per type for a few minutes."""

    def __init__(self, ttl: float = METADATA_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def entity_defs(self, crm: Any, entity_type: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(entity_type)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        defs = crm.metadata(f"entityDefs.{entity_type}") or {}
        with self._lock:
            self._items[entity_type] = (now, defs)
        return defs


def _cache(services: Services) -> MetadataCache:
    return services.extras.setdefault("metadata_cache", MetadataCache())


def list_entity_types(ctx: ToolContext, args: JsonObject) -> JsonObject:
    scopes = ctx.principal.scopes
    types = []
    for name in ctx.services.settings.entity_types:
        writable = name not in READ_ONLY_ENTITY_TYPES and not ctx.services.settings.read_only
        types.append(
            {
                "entity_type": name,
                "you_may_read": scope_for(name, "read") in scopes,
                "you_may_write": writable and scope_for(name, "write") in scopes,
                "you_may_delete": writable and scope_for(name, "delete") in scopes,
                "read_only": not writable,
            }
        )
    return {"entity_types": types}


def describe_entity(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type = args["entity_type"]
    with crm_errors(ctx):
        defs = _cache(ctx.services).entity_defs(ctx.services.crm, entity_type)
    fields = {}
    for name, spec in (defs.get("fields") or {}).items():
        if not isinstance(spec, dict) or spec.get("disabled") or spec.get("utility"):
            continue
        fields[name] = {k: spec[k] for k in FIELD_KEYS if k in spec}
    links = {}
    for name, spec in (defs.get("links") or {}).items():
        if isinstance(spec, dict) and not spec.get("disabled"):
            links[name] = {k: spec[k] for k in ("type", "entity", "foreign") if k in spec}
    return {"entity_type": entity_type, "fields": fields, "links": links}


def tools(svc: Services) -> list[Tool]:
    types = readable_types(svc.settings)
    return [
        Tool(
            name="list_entity_types",
            title="List entity types",
            description="List the kinds of EspoCRM records available here (Account, Contact, "
            "Lead, …) and whether your permissions let you read, write or delete each.",
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            output_schema={
                "type": "object",
                "properties": {"entity_types": {"type": "array", "items": {"type": "object"}}},
                "required": ["entity_types"],
            },
            handler=list_entity_types,
            annotations=READ,
        ),
        Tool(
            name="describe_entity",
            title="Describe an entity type",
            description="Show the fields of an EspoCRM entity type (attribute names, types, "
            "required flags, enum options) and its links to other types. Use it before "
            "filtering, creating or updating records.",
            input_schema={
                "type": "object",
                "properties": {"entity_type": entity_type_schema(types)},
                "required": ["entity_type"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "entity_type": {"type": "string"},
                    "fields": {"type": "object"},
                    "links": {"type": "object"},
                },
                "required": ["entity_type", "fields", "links"],
            },
            handler=describe_entity,
            annotations=READ,
            required_scopes=scopes_of("read"),
        ),
    ]
