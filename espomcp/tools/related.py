"""Related records, links, and the activity stream of a record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from espomcp.auth.bearer import BearerError
from espomcp.auth.scopes import scope_for
from espomcp.authz import Authorizer, fga_type
from espomcp.espocrm.errors import InvalidInput
from espomcp.espocrm.ids import validate_id, validate_ids, validate_name
from espomcp.mcp.registry import (
    DESTRUCTIVE,
    IDEMPOTENT_WRITE,
    READ,
    WRITE,
    JsonObject,
    Tool,
    ToolContext,
    ToolError,
)
from espomcp.sync.mapping import ATTRIBUTES, RECORD_RELATIONS
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
from espomcp.tools.records import ASSIGNMENT_FIELDS, BLOCKED_ATTRIBUTES, _id
from espomcp.tools.search import SEARCH_OUTPUT, _overfetch

if TYPE_CHECKING:
    from espomcp.services import Services

LINK_SCHEMA: JsonObject = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": "^[A-Za-z][A-Za-z0-9]*$",
    "description": "Link name from describe_entity, e.g. contacts",
}


def link_target(ctx: ToolContext, entity_type: str, link: str) -> str:
    """The entity type a link points to, if this server may expose it."""
    try:
        link = validate_name(link, "link")
    except InvalidInput as exc:
        raise ToolError(exc.message, {"field": "link"}) from exc
    with crm_errors(ctx):
        defs = _cache(ctx.services).entity_defs(ctx.services.crm, entity_type)
    spec = (defs.get("links") or {}).get(link)
    if not isinstance(spec, dict) or not spec.get("entity"):
        raise ToolError(
            f"{entity_type} has no link named '{link}' that lists records; see "
            "describe_entity for its links.",
            {"field": "link"},
        )
    target = spec["entity"]
    if target not in ctx.services.settings.entity_types:
        raise ToolError(f"Records of type {target} are not available through this server.")
    return target


def _require_scope(ctx: ToolContext, scope: str, tool: str) -> None:
    if scope not in ctx.principal.scopes:
        ctx.audit.update(decision="deny", layer="scope", missing=[scope])
        raise BearerError("insufficient_scope", f"{scope} required for {tool}", scope={scope})


def list_related(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type, record_id = args["entity_type"], _id(args["id"])
    target = link_target(ctx, entity_type, args["link"])
    _require_scope(ctx, scope_for(target, "read"), "list_related")
    authz = Authorizer(ctx)
    authz.require("can_read", entity_type, record_id)
    crm = ctx.services.crm

    def fetch(offset: int, size: int, kwargs: dict[str, Any]) -> Any:
        return crm.list_related(entity_type, record_id, args["link"], offset=offset, max_size=size, **kwargs)

    with crm_errors(ctx):
        readable = authz.readable(target)
        kwargs = {"select": args.get("select"), "where": None}
        return _overfetch(
            ctx, authz, readable, target, kwargs, args.get("offset", 0), args.get("limit", 20), fetch
        )


def _change_links(ctx: ToolContext, args: JsonObject, unlink: bool) -> JsonObject:
    entity_type, record_id = args["entity_type"], _id(args["id"])
    target = link_target(ctx, entity_type, args["link"])
    tool = "unlink_records" if unlink else "link_records"
    _require_scope(ctx, scope_for(target, "read"), tool)
    writes_target = link_writes_target(ctx, entity_type, args["link"], target)
    if writes_target:
        _require_scope(ctx, scope_for(target, "write"), tool)
    try:
        ids = validate_ids(args["related_ids"])
    except InvalidInput as exc:
        raise ToolError(exc.message, {"field": "related_ids"}) from exc
    authz = Authorizer(ctx)
    authz.require("can_write", entity_type, record_id)
    _require_link_change(ctx, authz, entity_type, record_id, args["link"])
    _require_on_targets(authz, "can_write" if writes_target else "can_read", target, ids,
                        args["link"], unlink)
    crm = ctx.services.crm
    with crm_errors(ctx):
        before = crm.get_record(entity_type, record_id)
        targets_before = {i: crm.get_record(target, i) for i in ids}
        (crm.unlink if unlink else crm.link)(entity_type, record_id, args["link"], ids)
        after = crm.get_record(entity_type, record_id)
        targets_after = {i: crm.get_record(target, i) for i in ids}
    permissions = sync_record(ctx, entity_type, before, after)
    for i in ids:
        sync_record(ctx, target, targets_before[i], targets_after[i])
    return {
        "record": present(ctx.services, entity_type, after),
        "link": args["link"],
        ("unlinked" if unlink else "linked"): ids,
        "permissions": permissions,
    }


def _require_on_targets(authz: Authorizer, relation: str, target: str, ids: list[str],
                        link: str, unlink: bool) -> None:
    """Every related record needs ``relation``: ``can_write`` when the link changes it."""
    flags = authz.check_many(relation, [(target, i) for i in ids])
    denied = [i for i, ok in zip(ids, flags, strict=True) if not ok]
    if not denied:
        return
    authz._deny("fga", f"{relation} on {target} {denied[0]}")
    verb = "edit" if relation == "can_write" else "read"
    why = (f" ({'un' if unlink else ''}linking through '{link}' changes those records)"
           if relation == "can_write" else "")
    raise ToolError(
        f"Permission denied: you may not {verb} {target} {', '.join(denied)}{why} "
        f"(missing permission '{relation}'; the records may also not exist). "
        f"Nothing was {'unlinked' if unlink else 'linked'}.",
        {"permission": relation, "ids": denied},
    )


# Link types (EspoCRM entityDefs) whose foreign key is on the record that holds the link.
_OWN_KEY_LINKS = frozenset({"belongsTo", "belongsToParent"})


def link_writes_target(ctx: ToolContext, entity_type: str, link: str, target: str) -> bool:
    """Whether relating through ``link`` changes the related records themselves (so needs
    edit permission on them), judged from EspoCRM's metadata of both sides."""
    with crm_errors(ctx):
        cache = _cache(ctx.services)
        source_defs = cache.entity_defs(ctx.services.crm, entity_type)
        target_defs = cache.entity_defs(ctx.services.crm, target)
    return changes_related_record(source_defs, link, target_defs, target)


def changes_related_record(source_defs: JsonObject, link: str, target_defs: JsonObject,
                           target: str) -> bool:
    """True unless the link is stored on the source (``belongsTo``) or in a join table that
    no attribute the target's permissions derive from reflects (many-to-many); an unknown
    shape counts as a change (fail closed).

    - ``hasMany`` whose foreign link is ``belongsTo`` (one-to-many, e.g. Account.contacts ->
      Contact.accountId), ``hasChildren`` (the target's parent) and ``hasOne`` write the
      target's foreign key;
    - a many-to-many link (foreign ``hasMany``, or stored in the source's own linkMultiple
      field) changes no field of the target, unless its side of the link is one the target's
      permissions derive from (e.g. Contact.accountsIds makes the account its FGA parent)."""
    spec = (source_defs.get("links") or {}).get(link) or {}
    kind = spec.get("type")
    if kind in _OWN_KEY_LINKS:
        return False
    if kind != "hasMany":
        return True
    foreign = spec.get("foreign")
    back = (target_defs.get("links") or {}).get(foreign) if isinstance(foreign, str) else None
    if isinstance(back, dict):
        if back.get("type") != "hasMany":  # one-to-many: the target holds the key
            return True
        return f"{foreign}Ids" in ATTRIBUTES.get(fga_type(target), ())
    field = (source_defs.get("fields") or {}).get(link)
    return not (isinstance(field, dict) and field.get("type") == "linkMultiple")


def _require_link_change(ctx: ToolContext, authz: Authorizer, entity_type: str, record_id: str,
                         link: str) -> None:
    """Links that stand for attributes get the attribute's rules, as in ``update_record``:
    audit and read-only ones (``createdBy``: the creator owns the record) cannot be changed,
    assignment ones (``assignedUser``, ``teams``) need ``can_assign``."""
    attributes = {f"{link}Id", f"{link}Ids"}
    with crm_errors(ctx):
        defs = _cache(ctx.services).entity_defs(ctx.services.crm, entity_type)
    field = (defs.get("fields") or {}).get(link)
    if attributes & BLOCKED_ATTRIBUTES or (isinstance(field, dict) and field.get("readOnly")):
        raise ToolError(f"The {link} link of {entity_type} is maintained by EspoCRM and cannot "
                        "be changed.", {"field": "link"})
    if attributes & set(ASSIGNMENT_FIELDS):
        authz.require("can_assign", entity_type, record_id)


def link_records(ctx: ToolContext, args: JsonObject) -> JsonObject:
    return _change_links(ctx, args, unlink=False)


def unlink_records(ctx: ToolContext, args: JsonObject) -> JsonObject:
    return _change_links(ctx, args, unlink=True)


def _readable_notes(authz: Authorizer, entity_type: str, record_id: str, notes: list[dict]) -> list[dict]:
    """Notes that name another record (``related``, or a parent other than this record: EspoCRM
    streams a record's children's notes too) only if the caller's scopes and FGA let them read
    that record; a record of a type outside the authorization model cannot be checked, so its
    notes stay hidden (fail closed)."""
    scopes = authz.ctx.principal.scopes
    wanted: list[list[tuple[str, str] | None]] = []
    for note in notes:
        refs: list[tuple[str, str] | None] = []
        for type_key, id_key in (("relatedType", "relatedId"), ("parentType", "parentId")):
            ref_type, ref_id = note.get(type_key), note.get(id_key)
            if (not ref_type and not ref_id) or (ref_type, ref_id) == (entity_type, record_id):
                continue
            ok = isinstance(ref_type, str) and fga_type(ref_type) in RECORD_RELATIONS \
                and scope_for(ref_type, "read") in scopes
            try:
                refs.append((ref_type, validate_id(ref_id)) if ok else None)
            except InvalidInput:
                refs.append(None)
        wanted.append(refs)
    unique = sorted({ref for refs in wanted for ref in refs if ref is not None})
    allowed = {ref for ref, ok in zip(unique, authz.check_many("can_read", unique), strict=True) if ok}
    return [note for note, refs in zip(notes, wanted, strict=True) if all(r in allowed for r in refs)]


STREAM_PAGE = 200
STREAM_SCAN_LIMIT = 1000  # notes read per call to count what the caller may see


def get_stream(ctx: ToolContext, args: JsonObject) -> JsonObject:
    """The record's notes the caller may read; totals and offsets count only those."""
    entity_type, record_id = args["entity_type"], _id(args["id"])
    authz = Authorizer(ctx)
    authz.require("can_read", entity_type, record_id)
    offset, limit = args.get("offset", 0), args.get("limit", 20)
    visible: list[dict[str, Any]] = []
    scanned, complete = 0, False
    with crm_errors(ctx):
        while scanned < STREAM_SCAN_LIMIT:
            page = ctx.services.crm.stream(entity_type, record_id, offset=scanned,
                                           max_size=STREAM_PAGE)
            visible += _readable_notes(authz, entity_type, record_id, page.list)
            scanned += len(page.list)
            if not page.list or scanned >= page.total:
                complete = True
                break
    end = offset + limit
    return {
        "entity_type": entity_type,
        "id": record_id,
        "total": len(visible),
        "total_is_exact": complete,
        "notes": visible[offset:end],
        "next_offset": end if end < len(visible) else None,
    }


def post_note(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type, record_id = args["entity_type"], _id(args["id"])
    authz = Authorizer(ctx)
    authz.require("can_read", entity_type, record_id)
    with crm_errors(ctx):
        note = ctx.services.crm.post_note(
            entity_type, record_id, args["post"], is_internal=bool(args.get("is_internal"))
        )
    permissions = sync_record(ctx, "Note", None, note, owner_id=authz.user.id)
    return {"note": note, "permissions": permissions}


def tools(svc: Services) -> list[Tool]:
    read_types = readable_types(svc.settings)
    write_types = writable_types(svc.settings)
    record_args = {"entity_type": entity_type_schema(read_types, "record"), "id": ID_SCHEMA}
    link_args = {
        "entity_type": entity_type_schema(write_types, "record"),
        "id": ID_SCHEMA,
        "link": LINK_SCHEMA,
        "related_ids": {"type": "array", "items": ID_SCHEMA, "minItems": 1, "maxItems": 50},
    }
    link_output = {
        "type": "object",
        "properties": {
            "record": RECORD_SCHEMA,
            "link": {"type": "string"},
            "linked": {"type": "array"},
            "unlinked": {"type": "array"},
            "permissions": PERMISSIONS_SCHEMA,
        },
        "required": ["record", "link", "permissions"],
    }

    def link_tool(name: str, title: str, description: str, handler: Any,
                  annotations: Any) -> Tool:
        return Tool(
            name=name,
            title=title,
            description=description,
            input_schema={"type": "object", "properties": link_args,
                          "required": ["entity_type", "id", "link", "related_ids"],
                          "additionalProperties": False},
            output_schema=link_output,
            handler=handler,
            relations=("can_write", "can_read", "can_assign"),
            annotations=annotations,
            required_scopes=scopes_of("write"),
            visible_with=any_scope(write_types, "write"),
        )

    page_args = {
        "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
        "offset": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
    }
    return [
        Tool(
            name="list_related",
            title="List related records",
            description="List records linked to a record through one of its links, e.g. an "
            "Account's contacts or opportunities, a Contact's cases. Only records you may read "
            "are returned; next_offset continues the list.",
            input_schema={
                "type": "object",
                "properties": {
                    **record_args,
                    "link": LINK_SCHEMA,
                    "select": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 100},
                        "maxItems": 100,
                    },
                    **page_args,
                },
                "required": ["entity_type", "id", "link"],
                "additionalProperties": False,
            },
            output_schema=SEARCH_OUTPUT,
            handler=list_related,
            relations=("can_read",),
            annotations=READ,
            required_scopes=scopes_of("read"),
            visible_with=any_scope(read_types, "read"),
        ),
        link_tool("link_records", "Link records",
                  "Relate records through a link of the first record, e.g. add contacts to an "
                  "account (link 'contacts'). Needs edit permission on the record, and on each "
                  "related record read permission, or edit permission when the link changes it "
                  "(one-to-many or parent links, e.g. an account's contacts or tasks).",
                  link_records, IDEMPOTENT_WRITE),
        link_tool("unlink_records", "Unlink records",
                  "Remove the relation between a record and related records through one of its "
                  "links. The records themselves stay. Needs the same permissions as "
                  "link_records.",
                  unlink_records, DESTRUCTIVE),
        Tool(
            name="get_stream",
            title="Get a record's activity stream",
            description="Read the activity stream (posts, changes, assignments; newest first) "
            "of a record you may read.",
            input_schema={
                "type": "object",
                "properties": {**record_args, **page_args},
                "required": ["entity_type", "id"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "entity_type": {"type": "string"},
                    "id": {"type": "string"},
                    "total": {"type": "integer", "description": "Notes you may read"},
                    "total_is_exact": {"type": "boolean"},
                    "notes": {"type": "array"},
                    "next_offset": {"type": ["integer", "null"]},
                },
                "required": ["entity_type", "id", "total", "notes", "next_offset"],
            },
            handler=get_stream,
            relations=("can_read",),
            annotations=READ,
            required_scopes=scopes_of("read"),
            visible_with=any_scope(read_types, "read"),
        ),
        Tool(
            name="post_note",
            title="Post a note",
            description="Post a note to the activity stream of a record you may read, e.g. a "
            "call summary. is_internal hides it from portal users.",
            input_schema={
                "type": "object",
                "properties": {
                    **record_args,
                    "post": {"type": "string", "minLength": 1, "maxLength": 20000},
                    "is_internal": {"type": "boolean", "default": False},
                },
                "required": ["entity_type", "id", "post"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {"note": {"type": "object"}, "permissions": PERMISSIONS_SCHEMA},
                "required": ["note", "permissions"],
            },
            handler=post_note,
            relations=("can_read",),
            annotations=WRITE,
            required_scopes=lambda a: scopes_of("read")(a) | {"espocrm:notes:write"},
            visible_with=frozenset({"espocrm:notes:write"}),
        ),
    ]
