"""``search_records`` and ``global_search``: EspoCRM lists filtered by what the user may read.

Filtering keeps pagination honest: when the readable set is small it is pushed into the
EspoCRM query as an ``id in`` where item (exact total, full pages, one request); otherwise
the matching ids are scanned and checked, and the page is fetched by id. Offsets always count
readable records only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from espomcp.auth.scopes import scope_for
from espomcp.authz import PUSHDOWN_LIMIT, Authorizer, ReadableSet
from espomcp.espocrm.errors import Unavailable
from espomcp.mcp.registry import READ, JsonObject, Tool, ToolContext, ToolError
from espomcp.tools.common import (
    RECORD_SCHEMA,
    any_scope,
    crm_errors,
    entity_type_schema,
    present,
    readable_types,
    scopes_of,
)

if TYPE_CHECKING:
    from espomcp.services import Services

RAW_PAGE = 200  # EspoCRM's maxSize limit
TOTAL_SCAN_LIMIT = 5000  # rows scanned (ids only) to count an over-fetched total
POSITION_SCAN_LIMIT = 20_000  # rows scanned (ids only) to find where a later page starts
GLOBAL_RAW_PAGE = 50  # GlobalSearch hits fetched per request
GLOBAL_SCAN_LIMIT = 1000  # GlobalSearch hits scanned per global_search call

WHERE_ITEM: JsonObject = {
    "type": "object",
    "properties": {
        "type": {
            "type": "string",
            "description": "equals, notEquals, in, notIn, contains, "
            "startsWith, endsWith, like, isNull, isNotNull, isTrue, isFalse, greaterThan, "
            "lessThan, greaterThanOrEquals, lessThanOrEquals, between, before, after, on, "
            "today, past, future, linkedWith, notLinkedWith, and, or, not",
        },
        "attribute": {
            "type": "string",
            "description": "Field attribute, e.g. status, assignedUserId, accountId, createdAt",
        },
        "value": {"description": "Scalar, list (in/notIn/between/linkedWith) or nested where items (and/or)"},
    },
    "required": ["type"],
    "additionalProperties": False,
}

SEARCH_OUTPUT: JsonObject = {
    "type": "object",
    "properties": {
        "entity_type": {"type": "string"},
        "total": {"type": "integer", "description": "Matching records you may read"},
        "total_is_exact": {"type": "boolean"},
        "records": {"type": "array", "items": RECORD_SCHEMA},
        "next_offset": {
            "type": ["integer", "null"],
            "description": "Pass as offset to get the next page; null at the end",
        },
    },
    "required": ["entity_type", "total", "records", "next_offset"],
}


def _list_kwargs(args: JsonObject) -> dict[str, Any]:
    select = args.get("select")
    if select is not None and "id" not in select:
        select = ["id", *select]
    return {
        "where": args.get("where"),
        "text_filter": args.get("text"),
        "primary_filter": args.get("primary_filter"),
        "select": select,
        "order_by": args.get("order_by"),
        "order": args.get("order"),
    }


def search_page(
    ctx: ToolContext, authz: Authorizer, entity_type: str, kwargs: dict[str, Any], offset: int, limit: int
) -> dict[str, Any]:
    """One page of ``entity_type`` records matching ``kwargs`` that the user may read."""
    crm = ctx.services.crm
    readable = authz.readable(entity_type)
    with crm_errors(ctx):
        if readable.everything:
            page = crm.list_records(entity_type, offset=offset, max_size=limit, **kwargs)
            return _page_result(ctx, entity_type, page, offset)
        if readable.complete and len(readable.ids) <= PUSHDOWN_LIMIT:
            if not readable.ids:
                return _result(ctx, entity_type, [], 0, True, offset, False)
            where = [
                *(kwargs["where"] or []),
                {"type": "in", "attribute": "id", "value": sorted(readable.ids)},
            ]
            try:
                page = crm.list_records(entity_type, offset=offset, max_size=limit,
                                        **{**kwargs, "where": where})
            except Unavailable as exc:
                if exc.status != 414:  # the id list made the URL too long for EspoCRM's server
                    raise
                return _overfetch(ctx, authz, readable, entity_type, kwargs, offset, limit)
            return _page_result(ctx, entity_type, page, offset)
        return _overfetch(ctx, authz, readable, entity_type, kwargs, offset, limit)


Fetch = Callable[[int, int, dict[str, Any]], Any]
BY_ID_CHUNK = 100  # ids per ``id in`` request when fetching an over-fetched page


def _overfetch(
    ctx: ToolContext,
    authz: Authorizer,
    readable: ReadableSet,
    entity_type: str,
    kwargs: dict[str, Any],
    offset: int,
    limit: int,
    fetch: Fetch | None = None,
) -> dict[str, Any]:
    """A page of readable matches when the readable set is too large to push down.

    One scan of ids only (in the list's order) finds the page's ids, whether a further
    readable match exists, and the total (up to TOTAL_SCAN_LIMIT rows; beyond that the total
    is a lower bound); the page's records are then fetched by id. ``offset`` and
    ``next_offset`` count readable matches only: a raw EspoCRM position would shift with every
    hidden record matching the filters, an oracle on records the caller may not read."""
    if fetch is None:

        def fetch(off: int, size: int, kw: dict[str, Any]) -> Any:
            return ctx.services.crm.list_records(entity_type, offset=off, max_size=size, **kw)

    ids_only = {**kwargs, "select": ["id"]}
    page_ids: list[str] = []
    visible = raw = 0
    exact = False
    while True:
        found_page = visible > offset + limit  # the page and one readable record beyond it
        if (found_page and raw >= TOTAL_SCAN_LIMIT) or raw >= POSITION_SCAN_LIMIT:
            break
        page = fetch(raw, RAW_PAGE, ids_only)
        for record, ok in zip(page.list, _readable_flags(authz, readable, entity_type, page.list),
                              strict=True):
            if ok:
                if offset <= visible < offset + limit:
                    page_ids.append(record["id"])
                visible += 1
        raw += len(page.list)
        if not page.list or raw >= page.total:
            exact = True
            break
    if not exact and visible <= offset:
        raise ToolError(f"This page is too deep to find among {POSITION_SCAN_LIMIT} matching "
                        "records; narrow the search with filters (where, text) instead of paging.")
    records = _fetch_by_ids(fetch, kwargs, page_ids)
    return _result(ctx, entity_type, records, visible, exact, offset + limit,
                   visible > offset + limit)


def _fetch_by_ids(fetch: Fetch, kwargs: dict[str, Any], ids: list[str]) -> list[dict[str, Any]]:
    """The records of ``ids`` (with the caller's select), in the order of ``ids``."""
    by_id: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BY_ID_CHUNK):
        chunk = ids[start:start + BY_ID_CHUNK]
        where = [*(kwargs.get("where") or []), {"type": "in", "attribute": "id", "value": chunk}]
        page = fetch(0, len(chunk), {**kwargs, "where": where})
        by_id.update((r["id"], r) for r in page.list if "id" in r)
    return [by_id[i] for i in ids if i in by_id]  # a record deleted meanwhile drops out


def _readable_flags(
    authz: Authorizer, readable: ReadableSet, entity_type: str, records: list[dict[str, Any]]
) -> list[bool]:
    if readable.everything:
        return [True] * len(records)
    if readable.complete:
        return [r.get("id") in readable.ids for r in records]
    return authz.check_many("can_read", [(entity_type, r["id"]) for r in records])


def _page_result(ctx: ToolContext, entity_type: str, page: Any, offset: int) -> dict[str, Any]:
    """An EspoCRM list page whose total is already exact for the caller."""
    end = offset + len(page.list)
    return _result(ctx, entity_type, page.list, page.total, True, end, end < page.total)


def _result(
    ctx: ToolContext,
    entity_type: str,
    records: list[dict[str, Any]],
    total: int,
    exact: bool,
    next_offset: int,
    more: bool,
) -> dict[str, Any]:
    return {
        "entity_type": entity_type,
        "total": total,
        "total_is_exact": exact,
        "records": [present(ctx.services, entity_type, r) for r in records],
        "next_offset": next_offset if more else None,
    }


def search_records(ctx: ToolContext, args: JsonObject) -> JsonObject:
    entity_type = args["entity_type"]
    authz = Authorizer(ctx)
    return search_page(
        ctx, authz, entity_type, _list_kwargs(args), args.get("offset", 0), args.get("limit", 20)
    )


def global_search(ctx: ToolContext, args: JsonObject) -> JsonObject:
    """Search across types; keep only types the scopes allow and records FGA lets you read.

    ``offset``/``next_offset`` count readable hits only (raw GlobalSearch positions would
    reveal how many hidden records match the text); each call scans raw hits from the start,
    at most GLOBAL_SCAN_LIMIT of them, until it knows whether a further readable hit exists."""
    crm = ctx.services.crm
    authz = Authorizer(ctx)
    offset, limit = args.get("offset", 0), args.get("limit", 20)
    visible: list[dict[str, Any]] = []
    raw = 0
    while len(visible) <= offset + limit and raw < GLOBAL_SCAN_LIMIT:
        with crm_errors(ctx):
            page = crm.global_search(args["query"], offset=raw, max_size=GLOBAL_RAW_PAGE)
        visible += _readable_hits(ctx, authz, page.list)
        raw += len(page.list)
        # GlobalSearch reports total -1 (more rows exist) or -2 (no more), reference §7.
        more = page.total == -1 if page.total < 0 else raw < page.total
        if not page.list or not more:
            break
    return {
        "query": args["query"],
        "records": visible[offset:offset + limit],
        "next_offset": offset + limit if len(visible) > offset + limit else None,
    }


def _readable_hits(ctx: ToolContext, authz: Authorizer, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    allowed = set(ctx.services.settings.entity_types)
    candidates = [
        r
        for r in hits
        if r.get("_scope") in allowed and scope_for(r["_scope"], "read") in ctx.principal.scopes
    ]
    flags = authz.check_many("can_read", [(r["_scope"], r["id"]) for r in candidates])
    return [present(ctx.services, r["_scope"], r) for r, ok in zip(candidates, flags, strict=True) if ok]


def tools(svc: Services) -> list[Tool]:
    types = readable_types(svc.settings)
    schema: JsonObject = {
        "type": "object",
        "properties": {
            "entity_type": entity_type_schema(types),
            "text": {
                "type": "string",
                "maxLength": 200,
                "description": "Quick text search (name, email…; starts-with, * wildcard)",
            },
            "where": {
                "type": "array",
                "items": WHERE_ITEM,
                "maxItems": 20,
                "description": "Filters, all must match (EspoCRM where items)",
            },
            "primary_filter": {
                "type": "string",
                "maxLength": 50,
                "description": "Named filter, e.g. Lead: actual, converted; "
                "Opportunity: open, won, lost; Case: open, closed",
            },
            "select": {
                "type": "array",
                "items": {"type": "string", "maxLength": 100},
                "maxItems": 100,
                "description": "Attributes to return (default all)",
            },
            "order_by": {"type": "string", "maxLength": 100},
            "order": {"type": "string", "enum": ["asc", "desc"]},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
            "offset": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
        },
        "required": ["entity_type"],
        "additionalProperties": False,
    }
    return [
        Tool(
            name="search_records",
            title="Search records",
            description="Find EspoCRM records of one entity type with text search, filters, "
            "a named primary filter, ordering and paging. Returns only records you may read, "
            "the total you may read, and next_offset for the next page. Use describe_entity "
            "first to learn field names for filters.",
            input_schema=schema,
            output_schema=SEARCH_OUTPUT,
            handler=search_records,
            relations=("can_read",),
            annotations=READ,
            required_scopes=scopes_of("read"),
            visible_with=any_scope(types, "read"),
        ),
        Tool(
            name="global_search",
            title="Search everything",
            description="Search accounts, contacts, leads and opportunities at once by name, "
            "email or phone. Returns matching records you may read, each with its entity type "
            "in _scope.",
            input_schema={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 200},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
                    "offset": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 0},
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "records": {"type": "array", "items": RECORD_SCHEMA},
                    "next_offset": {"type": ["integer", "null"]},
                },
                "required": ["query", "records", "next_offset"],
            },
            handler=global_search,
            relations=("can_read",),
            annotations=READ,
            visible_with=any_scope(types, "read"),
        ),
    ]
