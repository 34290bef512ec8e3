"""Single-record tools: get, create, update, delete and assign (FGA-checked, tuples kept)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from espomcp.authz import Authorizer, fga_type
from espomcp.espocrm.errors import Duplicate, InvalidInput
from espomcp.espocrm.ids import validate_id, validate_ids
from espomcp.mcp.registry import (
    DESTRUCTIVE,
    READ,
    WRITE,
    JsonObject,
    Tool,
    ToolContext,
    ToolError,
)
from espomcp.sync.mapping import RECORD_RELATIONS
from espomcp.tools.catalog import _cache
from espomcp.tools.common import (
    ID_SCHEMA,
    PERMISSIONS_SCHEMA,
    RECORD_SCHEMA,
    any_scope,
    crm_errors,
    entity_type_schema,
    present,
    readable_types,
    scopes_of,
    writable_types,
)
from espomcp.tools.lifecycle import sync_record

if TYPE_CHECKING:
    from espomcp.services import Services

ASSIGNMENT_FIELDS = ("assignedUserId", "assignedUsersIds", "teamsIds")
DATA_SCHEMA: JsonObject = {
    "type": "object",
    "description": "Field values by attribute name (see describe_entity), e.g. "
    '{"firstName": "Ann", "lastName": "Lee", "accountId": "…"}',
    "maxProperties": 200,
}
CHANGE_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {"record": RECORD_SCHEMA, "permissions": PERMISSIONS_SCHEMA},
    "required": ["record", "permissions"],
}


BLOCKED_ATTRIBUTES = frozenset({"id", "createdAt", "modifiedAt", "createdById", "modifiedById",
                                "deleted"})


def _clean_data(data: JsonObject) -> JsonObject:
    """Drop attributes nobody may set directly (ids, audit fields)."""
    return {k: v for k, v in data.items() if k not in BLOCKED_ATTRIBUTES}


def get_record(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type = args["entity_type"]
    record_id = _id(args["id"])
    Authorizer(ctx).require("can_read", entity_type, record_id)
    with crm_errors(ctx):
        record = ctx.services.crm.get_record(entity_type, record_id, select=args.get("select"))
    return {"record": present(ctx.services, entity_type, record)}


def create_one(
    ctx: ToolContext, entity_type: str, data: JsonObject, skip_duplicate_check: bool, authz: Authorizer
) -> JsonObject:
    """Create a record assigned to the caller (and their default team) like EspoCRM would."""
    user = authz.user
    data = _clean_data(data)
    if not any(k in data for k in ("assignedUserId", "assignedUsersIds")):
        data["assignedUserId"] = user.id
    if "teamsIds" not in data and user.default_team_id:
        data["teamsIds"] = [user.default_team_id]
    check_new_record(ctx, authz, entity_type, data)
    try:
        with crm_errors(ctx):
            record = ctx.services.crm.create_record(
                entity_type, data, skip_duplicate_check=skip_duplicate_check
            )
    except Duplicate as exc:
        return _duplicates(ctx, authz, entity_type, exc)
    permissions = sync_record(ctx, entity_type, None, record, owner_id=user.id)
    ctx.audit["record_id"] = record.get("id")
    return {"created": True, "record": present(ctx.services, entity_type, record), "permissions": permissions}


def check_new_record(ctx: ToolContext, authz: Authorizer, entity_type: str, data: JsonObject) -> None:
    """What every new record needs: the assignment rule (for the user and for teams other
    than the caller's own), and readable linked records."""
    many = data.get("assignedUsersIds")
    assignees = [data.get("assignedUserId"), *(many if isinstance(many, list) else [many])]
    others = [u for u in assignees if u and u != authz.user.id]
    if others and not authz.is_admin():
        _require_assignable(authz, others[0])
    teams = data.get("teamsIds")
    own = {*authz.user.team_ids, authz.user.default_team_id}
    if isinstance(teams, list) and set(teams) - own and not authz.is_admin():
        _require_team_manager(authz, "You may only share new records with your own teams; "
                              "sharing with other teams needs a team manager or an administrator.")
    require_readable_links(ctx, authz, entity_type, data, None)


def require_readable_links(
    ctx: ToolContext, authz: Authorizer, entity_type: str, data: JsonObject, current: JsonObject | None
) -> None:
    """Link attributes in ``data`` (``accountId``, ``contactsIds``, ``parentType``/``parentId``)
    relate the record to others like ``link_records`` does: each referenced record of a type
    in the authorization model must be readable by the caller. ``current`` is the record
    being updated (for a ``parentId`` whose ``parentType`` is not in ``data``)."""
    with crm_errors(ctx):
        defs = _cache(ctx.services).entity_defs(ctx.services.crm, entity_type)
    fields, links = defs.get("fields") or {}, defs.get("links") or {}
    refs: list[tuple[str, str]] = []
    for name, spec in fields.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "linkParent":
            if f"{name}Id" not in data and f"{name}Type" not in data:
                continue
            parent_id = data.get(f"{name}Id", (current or {}).get(f"{name}Id"))
            parent_type = data.get(f"{name}Type", (current or {}).get(f"{name}Type"))
            if not parent_id:
                continue
            if not isinstance(parent_type, str) or fga_type(parent_type) not in RECORD_RELATIONS:
                raise ToolError(f"{name}Type must name a record type this server authorizes "
                                f"(e.g. Account, Contact), not {str(parent_type)[:40]!r}.",
                                {"field": f"{name}Type"})
            refs.append((parent_type, _linked_id(parent_id, f"{name}Id")))
        elif kind in ("link", "linkMultiple"):
            key = f"{name}Id" if kind == "link" else f"{name}Ids"
            target = (links.get(name) or {}).get("entity") or spec.get("entity")
            value = data.get(key)
            if not value or not isinstance(target, str) or fga_type(target) not in RECORD_RELATIONS:
                continue
            values = value if isinstance(value, list) else [value]
            refs += [(target, _linked_id(v, key)) for v in values]
    flags = authz.check_many("can_read", refs)
    denied = [ref for ref, ok in zip(refs, flags, strict=True) if not ok]
    if denied:
        shown = ", ".join(f"{t} {i}" for t, i in denied[:10])
        authz._deny("fga", f"can_read on linked {shown}"[:300])
        raise ToolError(
            f"Permission denied: you may not read {shown} (missing permission 'can_read'; the "
            "records may also not exist), so this record cannot be linked to them. Nothing "
            "was changed.",
            {"permission": "can_read", "records": [f"{t}:{i}" for t, i in denied]},
        )


def _linked_id(value: Any, field: str) -> str:
    from espomcp.espocrm.errors import InvalidInput

    try:
        return validate_id(value)
    except InvalidInput as exc:
        raise ToolError(exc.message, {"field": field}) from exc


def _require_assignable(authz: Authorizer, user_id: str) -> None:
    """Assigning to someone else needs a shared team the caller manages, or admin."""
    user_id = _id(user_id)
    _require_team_manager(authz, "You may only assign records to yourself; assigning to others "
                          "needs a team manager or an administrator.", {"assignedUserId": user_id})


def _require_team_manager(authz: Authorizer, message: str, data: JsonObject | None = None) -> None:
    """Raise ``message`` unless the caller manages one of their teams (``team#can_assign``)."""
    teams = authz.user.team_ids or []
    if not teams or not any(authz.check_many("can_assign", [("Team", t) for t in teams])):
        raise ToolError(message, data)


def readable_duplicates(ctx: ToolContext, authz: Authorizer, records: list[JsonObject],
                        entity_type: str | None = None) -> list[JsonObject]:
    """The similar records of a 409 that the caller may read (of ``entity_type``, else each
    record's ``_entityType``); the others are neither listed nor counted, as a count would
    reveal records the caller may not know about."""
    known = ctx.services.settings.entity_types
    refs = [(entity_type or str(r.get("_entityType") or ""), str(r.get("id") or "")) for r in records]
    wanted = [(i, ref) for i, ref in enumerate(refs) if ref[0] in known and ref[1]]
    flags = authz.check_many("can_read", [ref for _, ref in wanted])
    return [present(ctx.services, ref[0], records[i])
            for (i, ref), ok in zip(wanted, flags, strict=True) if ok]


def _duplicates(ctx: ToolContext, authz: Authorizer, entity_type: str, exc: Duplicate) -> JsonObject:
    visible = readable_duplicates(ctx, authz, exc.records, entity_type)
    if visible:
        message = ("Similar records already exist, so nothing was created. Review them; to "
                   "create the record anyway, call again with skip_duplicate_check=true.")
    else:  # that nothing was created tells this much anyway; say no more (no count, no names)
        message = ("EspoCRM found possible duplicates that you cannot see, so nothing was "
                   "created. To create the record anyway, call again with "
                   "skip_duplicate_check=true.")
    ctx.audit.update(decision="allow", layer="crm", reason="duplicate")
    return {"created": False, "duplicates": visible, "message": message}


def create_record(ctx: ToolContext, args: JsonObject) -> JsonObject:
    return create_one(
        ctx, args["entity_type"], dict(args["data"]), bool(args.get("skip_duplicate_check")), Authorizer(ctx)
    )


def update_one(
    ctx: ToolContext, authz: Authorizer, entity_type: str, record_id: str, data: JsonObject,
    *, write_checked: bool = False,
) -> JsonObject:
    """Partial update; ``write_checked``: the caller already batch-checked ``can_write``."""
    data = _clean_data(data)
    if not data:
        raise ToolError("data is empty: name at least one attribute to change")
    if not write_checked:
        authz.require("can_write", entity_type, record_id)
    if any(k in data for k in ASSIGNMENT_FIELDS):
        authz.require("can_assign", entity_type, record_id)
    crm = ctx.services.crm
    with crm_errors(ctx):
        before = crm.get_record(entity_type, record_id)
    require_readable_links(ctx, authz, entity_type, data, before)
    with crm_errors(ctx):
        after = crm.update_record(entity_type, record_id, data)
    permissions = sync_record(ctx, entity_type, before, after)
    return {"record": present(ctx.services, entity_type, after), "permissions": permissions}


def update_record(ctx: ToolContext, args: JsonObject) -> JsonObject:
    return update_one(ctx, Authorizer(ctx), args["entity_type"], _id(args["id"]), dict(args["data"]))


def assign_record(ctx: ToolContext, args: JsonObject) -> JsonObject:
    data: JsonObject = {}
    if "assigned_user_id" in args:
        data["assignedUserId"] = _id(args["assigned_user_id"])
    if "team_ids" in args:
        data["teamsIds"] = _ids(args["team_ids"], "team_ids")
    if not data:
        raise ToolError("name assigned_user_id, team_ids or both")
    return update_one(ctx, Authorizer(ctx), args["entity_type"], _id(args["id"]), data)


def delete_one(ctx: ToolContext, authz: Authorizer, entity_type: str, record_id: str,
               *, delete_checked: bool = False) -> JsonObject:
    """Delete; ``delete_checked``: the caller already batch-checked ``can_delete``."""
    if not delete_checked:
        authz.require("can_delete", entity_type, record_id)
    crm = ctx.services.crm
    with crm_errors(ctx):
        before = crm.get_record(entity_type, record_id)
        crm.delete_record(entity_type, record_id)
    permissions = sync_record(ctx, entity_type, before, None)
    return {"deleted": True, "id": record_id, "permissions": permissions}


def delete_record(ctx: ToolContext, args: JsonObject) -> JsonObject:
    return delete_one(ctx, Authorizer(ctx), args["entity_type"], _id(args["id"]))


def _id(value: Any) -> str:
    try:
        return validate_id(value)
    except InvalidInput as exc:
        raise ToolError(exc.message, {"field": "id"}) from exc


def _ids(values: Any, field: str) -> list[str]:
    try:
        return validate_ids(values)
    except InvalidInput as exc:  # a hostile id is the caller's error, not the server's
        raise ToolError(exc.message, {"field": field}) from exc


def tools(svc: Services) -> list[Tool]:
    read_types = readable_types(svc.settings)
    write_types = writable_types(svc.settings)
    return [
        Tool(
            name="get_record",
            title="Get a record",
            description="Fetch one EspoCRM record by entity type and id, with all its fields "
            "(or only `select`ed attributes) and a link to open it in EspoCRM.",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": entity_type_schema(read_types, "record"),
                    "id": ID_SCHEMA,
                    "select": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 100},
                        "maxItems": 100,
                    },
                },
                "required": ["entity_type", "id"],
                "additionalProperties": False,
            },
            output_schema={"type": "object", "properties": {"record": RECORD_SCHEMA}, "required": ["record"]},
            handler=get_record,
            relations=("can_read",),
            annotations=READ,
            required_scopes=scopes_of("read"),
            visible_with=any_scope(read_types, "read"),
        ),
        Tool(
            name="create_record",
            title="Create a record",
            description="Create an EspoCRM record. It is assigned to you and your default "
            "team unless data says otherwise. If similar records exist, nothing is created "
            "and the candidates are returned: use one of them, or call again with "
            "skip_duplicate_check=true.",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": entity_type_schema(write_types, "record"),
                    "data": DATA_SCHEMA,
                    "skip_duplicate_check": {"type": "boolean", "default": False},
                },
                "required": ["entity_type", "data"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "created": {"type": "boolean"},
                    "record": RECORD_SCHEMA,
                    "permissions": PERMISSIONS_SCHEMA,
                    "duplicates": {"type": "array", "items": RECORD_SCHEMA},
                    "message": {"type": "string"},
                },
                "required": ["created"],
            },
            handler=create_record,
            relations=("can_read",),
            annotations=WRITE,
            required_scopes=scopes_of("write"),
            visible_with=any_scope(write_types, "write"),
        ),
        Tool(
            name="update_record",
            title="Update a record",
            description="Change some fields of an EspoCRM record (partial update: only the "
            "attributes in data change). Changing assignedUserId or teamsIds also needs "
            "permission to reassign.",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": entity_type_schema(write_types, "record"),
                    "id": ID_SCHEMA,
                    "data": DATA_SCHEMA,
                },
                "required": ["entity_type", "id", "data"],
                "additionalProperties": False,
            },
            output_schema=CHANGE_OUTPUT,
            handler=update_record,
            relations=("can_write", "can_assign"),
            annotations=DESTRUCTIVE,
            required_scopes=scopes_of("write"),
            visible_with=any_scope(write_types, "write"),
        ),
        Tool(
            name="assign_record",
            title="Assign a record",
            description="Give an EspoCRM record to another user and/or share it with teams "
            "(replaces the record's teams). Needs reassign permission (team managers, admins).",
            input_schema={
                "type": "object",
                "properties": {
                    "entity_type": entity_type_schema(write_types, "record"),
                    "id": ID_SCHEMA,
                    "assigned_user_id": ID_SCHEMA,
                    "team_ids": {"type": "array", "items": ID_SCHEMA, "maxItems": 50},
                },
                "required": ["entity_type", "id"],
                "additionalProperties": False,
            },
            output_schema=CHANGE_OUTPUT,
            handler=assign_record,
            relations=("can_write", "can_assign"),
            annotations=DESTRUCTIVE,
            required_scopes=scopes_of("write"),
            visible_with=any_scope(write_types, "write"),
        ),
        Tool(
            name="delete_record",
            title="Delete a record",
            description="Delete an EspoCRM record permanently (moves it out of everyone's "
            "reach). Needs delete permission: team managers and admins.",
            input_schema={
                "type": "object",
                "properties": {"entity_type": entity_type_schema(write_types, "record"), "id": ID_SCHEMA},
                "required": ["entity_type", "id"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "deleted": {"type": "boolean"},
                    "id": {"type": "string"},
                    "permissions": PERMISSIONS_SCHEMA,
                },
                "required": ["deleted", "id"],
            },
            handler=delete_record,
            relations=("can_delete",),
            annotations=DESTRUCTIVE,
            required_scopes=scopes_of("delete"),
            visible_with=any_scope(write_types, "delete"),
        ),
    ]
