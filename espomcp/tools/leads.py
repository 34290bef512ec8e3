"""``convert_lead``: turn a lead into an account, contact and/or opportunity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from espomcp.auth.scopes import scope_for
from espomcp.authz import Authorizer
from espomcp.espocrm.errors import Duplicate
from espomcp.mcp.registry import WRITE, JsonObject, Tool, ToolContext, ToolError
from espomcp.tools.common import ID_SCHEMA, PERMISSIONS_SCHEMA, RECORD_SCHEMA, crm_errors, present
from espomcp.tools.lifecycle import sync_record
from espomcp.tools.records import _clean_data, _id, check_new_record, readable_duplicates

if TYPE_CHECKING:
    from espomcp.services import Services

CREATED_KEYS = {
    "Account": "createdAccountId",
    "Contact": "createdContactId",
    "Opportunity": "createdOpportunityId",
}
ARG_TYPES = {"account": "Account", "contact": "Contact", "opportunity": "Opportunity"}


def required_scopes(args: JsonObject) -> frozenset[str]:
    needed = {scope_for("Lead", "write")}
    needed |= {scope_for(t, "write") for key, t in ARG_TYPES.items() if args.get(key)}
    return frozenset(needed)


def convert_lead(ctx: ToolContext, args: JsonObject) -> JsonObject:
    lead_id = _id(args["lead_id"])
    records = {t: _clean_data(args[key]) for key, t in ARG_TYPES.items() if args.get(key)}
    if not records:
        raise ToolError("name at least one of account, contact or opportunity to create")
    unavailable = [t for t in records if t not in ctx.services.settings.entity_types]
    if unavailable:
        raise ToolError(f"{', '.join(unavailable)} records are not available through this server.")
    authz = Authorizer(ctx)
    authz.require("can_write", "Lead", lead_id)
    user = authz.user
    for entity_type, data in records.items():
        data.setdefault("assignedUserId", user.id)
        if user.default_team_id:
            data.setdefault("teamsIds", [user.default_team_id])
        check_new_record(ctx, authz, entity_type, data)
    crm = ctx.services.crm
    try:
        with crm_errors(ctx):
            before = crm.get_record("Lead", lead_id)
            lead = crm.convert_lead(
                lead_id, records, skip_duplicate_check=bool(args.get("skip_duplicate_check"))
            )
            created = {
                t: crm.get_record(t, lead[key])
                for t, key in CREATED_KEYS.items()
                if t in records and lead.get(key)
            }
    except Duplicate as exc:
        visible = readable_duplicates(ctx, authz, exc.records)
        found = ("Similar records already exist, so the lead was not converted. Review them. "
                 if visible else "EspoCRM found possible duplicates that you cannot see, so the "
                 "lead was not converted. ")
        ctx.audit.update(decision="allow", layer="crm", reason="duplicate")
        return {"converted": False, "duplicates": visible, "message": found + "To convert it "
                "anyway, call again with skip_duplicate_check=true."}
    permissions = [sync_record(ctx, "Lead", before, lead)]
    permissions += [sync_record(ctx, t, None, r, owner_id=user.id) for t, r in created.items()]
    synced = all(p["synced"] for p in permissions)
    return {
        "converted": True,
        "lead": present(ctx.services, "Lead", lead),
        "created": {t.lower(): present(ctx.services, t, r) for t, r in created.items()},
        "permissions": {"synced": synced, "message": "; ".join(p["message"] for p in permissions)},
    }


def tools(svc: Services) -> list[Tool]:
    data = {"type": "object", "maxProperties": 100}
    return [
        Tool(
            name="convert_lead",
            title="Convert a lead",
            description="Convert a lead into a new account, contact and/or opportunity (give the "
            "field values of each record to create). The lead becomes Converted and links to the "
            "new records, which are assigned to you.",
            input_schema={
                "type": "object",
                "properties": {
                    "lead_id": ID_SCHEMA,
                    "account": {**data, "description": "Fields of the account to create, e.g. name"},
                    "contact": {**data, "description": "Fields of the contact, e.g. lastName"},
                    "opportunity": {
                        **data,
                        "description": "Fields of the opportunity: name, amount, closeDate (YYYY-MM-DD)",
                    },
                    "skip_duplicate_check": {"type": "boolean", "default": False},
                },
                "required": ["lead_id"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {
                    "converted": {"type": "boolean"},
                    "lead": RECORD_SCHEMA,
                    "created": {"type": "object"},
                    "permissions": PERMISSIONS_SCHEMA,
                    "duplicates": {"type": "array", "items": RECORD_SCHEMA},
                    "message": {"type": "string"},
                },
                "required": ["converted"],
            },
            handler=convert_lead,
            relations=("can_write",),
            annotations=WRITE,
            required_scopes=required_scopes,
            visible_with=frozenset({scope_for("Lead", "write")}),
        )
    ]
