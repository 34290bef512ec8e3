"""EspoCRM entity definitions the fake serves (reference §6): fields, links, collections.

Field specs use EspoCRM's metadata vocabulary (``type``, ``options``, ``required``,
``default``, ``readOnly``); ``attributes_of`` expands a field into its API attributes.
Link ``kind`` is the fake's storage view: ``belongsTo`` (``xId`` here), ``parent``
(``parentType/parentId`` here), ``multiple`` (``xsIds`` here), ``hasMany`` (the other side's
``{foreign}Id``), ``inverse`` (the other side's ``{foreign}Ids``), ``children`` (the other
side's parent).
"""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]

INDUSTRIES = [
    "", "Advertising", "Aerospace", "Agriculture", "Apparel & Accessories", "Architecture",
    "Automotive", "Banking", "Biotechnology", "Building Materials & Equipment", "Chemical",
    "Construction", "Consulting", "Computer", "Culture", "Creative", "Defense", "Education",
    "Electric Power", "Electronics", "Energy", "Entertainment & Leisure", "Finance",
    "Food & Beverage", "Grocery", "Healthcare", "Hospitality", "Insurance", "Legal",
    "Manufacturing", "Mass Media", "Mining", "Music", "Marketing", "Publishing", "Petroleum",
    "Real Estate", "Retail", "Shipping", "Service", "Support", "Sports", "Software",
    "Technology", "Telecommunications", "Television", "Testing, Inspection & Certification",
    "Transportation", "Travel", "Venture Capital", "Wholesale", "Water",
]
LEAD_SOURCES = ["", "Call", "Email", "Existing Customer", "Partner", "Public Relations",
                "Web Site", "Campaign", "Other"]
SALUTATIONS = ["", "Mr.", "Ms.", "Mrs.", "Dr."]
STAGE_PROBABILITY = {"Prospecting": 10, "Qualification": 20, "Proposal": 50, "Negotiation": 80,
                     "Closed Won": 100, "Closed Lost": 0}
ACTIVITY_PARENTS = ["Account", "Lead", "Contact", "Opportunity", "Case"]


def F(type: str, **options: Any) -> Spec:
    return {"type": type, **options}


def _common(assigned_required: bool = False) -> dict[str, Spec]:
    return {
        "createdAt": F("datetime", readOnly=True),
        "modifiedAt": F("datetime", readOnly=True),
        "createdBy": F("link", entity="User", readOnly=True),
        "modifiedBy": F("link", entity="User", readOnly=True),
        "assignedUser": F("link", entity="User", required=assigned_required),
        "teams": F("linkMultiple", entity="Team"),
    }


def _person() -> dict[str, Spec]:
    return {
        "name": F("personName"),
        "salutationName": F("enum", options=SALUTATIONS),
        "firstName": F("varchar", maxLength=100),
        "lastName": F("varchar", maxLength=100),
    }


def _address(name: str) -> dict[str, Spec]:
    return {name: F("address")}


def _activity(call: bool) -> dict[str, Spec]:
    fields = {
        "name": F("varchar", required=True),
        "status": F("enum", options=["Planned", "Held", "Not Held"], default="Planned"),
        "dateStart": F("datetime" if call else "datetimeOptional", required=True),
        "dateEnd": F("datetime" if call else "datetimeOptional", required=True),
        "duration": F("int", default=300 if call else 3600),
        "parent": F("linkParent", entityList=ACTIVITY_PARENTS),
        "account": F("link", entity="Account", readOnly=True),
        "users": F("linkMultiple", entity="User"),
        "contacts": F("linkMultiple", entity="Contact"),
        "leads": F("linkMultiple", entity="Lead"),
        "description": F("text"),
        **_common(assigned_required=True),
    }
    if call:
        fields["direction"] = F("enum", options=["Outbound", "Inbound"], default="Outbound")
    else:
        fields["isAllDay"] = F("bool", default=False)
    return fields


FIELDS: dict[str, dict[str, Spec]] = {
    "Account": {
        "name": F("varchar", required=True, maxLength=249),
        "website": F("url"),
        "emailAddress": F("email"),
        "phoneNumber": F("phone"),
        "type": F("enum", options=["", "Customer", "Investor", "Partner", "Reseller"]),
        "industry": F("enum", options=INDUSTRIES),
        "sicCode": F("varchar", maxLength=40),
        **_address("billingAddress"),
        **_address("shippingAddress"),
        "description": F("text"),
        **_common(),
    },
    "Contact": {
        **_person(),
        "lastName": F("varchar", maxLength=100, required=True),
        "title": F("varchar", maxLength=100),
        "description": F("text"),
        "emailAddress": F("email"),
        "phoneNumber": F("phone"),
        "doNotCall": F("bool", default=False),
        **_address("address"),
        "account": F("link", entity="Account"),
        "opportunityRole": F("enum", options=["", "Decision Maker", "Evaluator", "Influencer"]),
        **_common(),
    },
    "Lead": {
        **_person(),
        "title": F("varchar", maxLength=100),
        "status": F("enum", options=["New", "Assigned", "In Process", "Converted", "Recycled",
                                     "Dead"], default="New"),
        "source": F("enum", options=LEAD_SOURCES),
        "industry": F("enum", options=INDUSTRIES),
        "opportunityAmount": F("currency"),
        "website": F("url"),
        **_address("address"),
        "emailAddress": F("email"),
        "phoneNumber": F("phone"),
        "doNotCall": F("bool", default=False),
        "accountName": F("varchar"),
        "description": F("text"),
        "convertedAt": F("datetime", readOnly=True),
        "createdAccount": F("link", entity="Account", readOnly=True),
        "createdContact": F("link", entity="Contact", readOnly=True),
        "createdOpportunity": F("link", entity="Opportunity", readOnly=True),
        **_common(),
    },
    "Opportunity": {
        "name": F("varchar", required=True),
        "amount": F("currency", required=True),
        "closeDate": F("date", required=True),
        "stage": F("enum", options=list(STAGE_PROBABILITY), default="Prospecting"),
        "probability": F("int", min=0, max=100),
        "leadSource": F("enum", options=LEAD_SOURCES),
        "account": F("link", entity="Account"),
        "contact": F("link", entity="Contact"),
        "contacts": F("linkMultiple", entity="Contact"),
        "description": F("text"),
        **_common(),
    },
    "Case": {
        "name": F("varchar", required=True),
        "number": F("autoincrement", readOnly=True),
        "status": F("enum", options=["New", "Assigned", "Pending", "Closed", "Rejected",
                                     "Duplicate"], default="New"),
        "priority": F("enum", options=["Low", "Normal", "High", "Urgent"], default="Normal"),
        "type": F("enum", options=["", "Question", "Incident", "Problem"]),
        "account": F("link", entity="Account"),
        "contact": F("link", entity="Contact"),
        "contacts": F("linkMultiple", entity="Contact"),
        "lead": F("link", entity="Lead"),
        "isInternal": F("bool", default=False),
        "collaborators": F("linkMultiple", entity="User"),
        "description": F("text"),
        **_common(),
    },
    "Meeting": _activity(call=False),
    "Call": _activity(call=True),
    "Task": {
        "name": F("varchar", required=True),
        "status": F("enum", options=["Not Started", "Started", "Completed", "Canceled",
                                     "Deferred"], default="Not Started"),
        "priority": F("enum", options=["Low", "Normal", "High", "Urgent"], default="Normal"),
        "dateStart": F("datetimeOptional"),
        "dateEnd": F("datetimeOptional"),
        "dateCompleted": F("datetime", readOnly=True),
        "parent": F("linkParent", entityList=ACTIVITY_PARENTS),
        "account": F("link", entity="Account", readOnly=True),
        "contact": F("link", entity="Contact", readOnly=True),
        "collaborators": F("linkMultiple", entity="User"),
        "description": F("text"),
        **_common(assigned_required=True),
    },
    "User": {
        "userName": F("varchar", required=True, maxLength=50),
        **_person(),
        "lastName": F("varchar", maxLength=100, required=True),
        "type": F("enum", options=["regular", "admin", "portal", "system", "super-admin", "api"],
                  default="regular"),
        "authMethod": F("enum", options=["", "ApiKey", "Hmac"]),
        "apiKey": F("varchar", readOnly=True),
        "isActive": F("bool", default=True),
        "title": F("varchar", maxLength=100),
        "emailAddress": F("email"),
        "phoneNumber": F("phone"),
        "defaultTeam": F("link", entity="Team"),
        "teams": F("linkMultiple", entity="Team", columns={"role": "teamRole"}),
        "createdAt": F("datetime", readOnly=True),
        "modifiedAt": F("datetime", readOnly=True),
        "createdBy": F("link", entity="User", readOnly=True),
    },
    "Team": {
        "name": F("varchar", required=True, maxLength=100),
        "description": F("text"),
        "positionList": F("array"),
        "createdAt": F("datetime", readOnly=True),
        "modifiedAt": F("datetime", readOnly=True),
    },
    "Note": {
        "type": F("enum", options=["Post", "Create", "CreateRelated", "Update", "Assign", "Relate",
                                   "Unrelate", "EmailReceived", "EmailSent"], readOnly=True),
        "post": F("text"),
        "parent": F("linkParent", entityList=["Account", "Contact", "Lead", "Opportunity", "Case",
                                              "Meeting", "Call", "Task", "User"]),
        "related": F("linkParent", readOnly=True),
        "data": F("jsonObject", readOnly=True),
        "targetType": F("enum", options=["", "self", "all", "teams", "users", "portals"]),
        "users": F("linkMultiple", entity="User"),
        "teams": F("linkMultiple", entity="Team"),
        "isInternal": F("bool", default=False),
        "isPinned": F("bool", default=False, readOnly=True),
        "number": F("autoincrement", readOnly=True),
        "createdAt": F("datetime", readOnly=True),
        "modifiedAt": F("datetime", readOnly=True),
        "createdBy": F("link", entity="User", readOnly=True),
    },
}

_ACTIVITIES = {"meetings": "Meeting", "calls": "Call", "tasks": "Task"}
EXTRA_LINKS: dict[str, dict[str, Spec]] = {
    "Account": {"contacts": {"kind": "hasMany", "entity": "Contact", "foreign": "account"},
                "opportunities": {"kind": "hasMany", "entity": "Opportunity", "foreign": "account"},
                "cases": {"kind": "hasMany", "entity": "Case", "foreign": "account"},
                **{k: {"kind": "children", "entity": v} for k, v in _ACTIVITIES.items()}},
    "Contact": {"opportunities": {"kind": "inverse", "entity": "Opportunity", "foreign": "contacts"},
                "cases": {"kind": "inverse", "entity": "Case", "foreign": "contacts"},
                "meetings": {"kind": "inverse", "entity": "Meeting", "foreign": "contacts"},
                "calls": {"kind": "inverse", "entity": "Call", "foreign": "contacts"},
                "tasks": {"kind": "children", "entity": "Task"}},
    "Lead": {"cases": {"kind": "hasMany", "entity": "Case", "foreign": "lead"},
             **{k: {"kind": "children", "entity": v} for k, v in _ACTIVITIES.items()}},
    "Opportunity": {k: {"kind": "children", "entity": v} for k, v in _ACTIVITIES.items()},
    "Case": {k: {"kind": "children", "entity": v} for k, v in _ACTIVITIES.items()},
    "User": {"meetings": {"kind": "inverse", "entity": "Meeting", "foreign": "users"},
             "calls": {"kind": "inverse", "entity": "Call", "foreign": "users"},
             "tasks": {"kind": "hasMany", "entity": "Task", "foreign": "assignedUser"}},
    "Team": {"users": {"kind": "inverse", "entity": "User", "foreign": "teams"}},
}

COLLECTION: dict[str, Spec] = {
    "Account": {"orderBy": "createdAt", "order": "desc",
                "textFilterFields": ["name", "emailAddress"]},
    "Contact": {"orderBy": "createdAt", "order": "desc",
                "textFilterFields": ["name", "emailAddress"]},
    "Lead": {"orderBy": "createdAt", "order": "desc",
             "textFilterFields": ["name", "accountName", "emailAddress"]},
    "Opportunity": {"orderBy": "createdAt", "order": "desc", "textFilterFields": ["name"]},
    "Case": {"orderBy": "number", "order": "desc", "textFilterFields": ["name", "number"]},
    "Meeting": {"orderBy": "dateStart", "order": "desc", "textFilterFields": ["name"]},
    "Call": {"orderBy": "dateStart", "order": "desc", "textFilterFields": ["name"]},
    "Task": {"orderBy": "createdAt", "order": "desc", "textFilterFields": ["name"]},
    "User": {"orderBy": "userName", "order": "asc",
             "textFilterFields": ["name", "userName", "emailAddress"]},
    "Team": {"orderBy": "name", "order": "asc", "textFilterFields": ["name"]},
    "Note": {"orderBy": "number", "order": "desc", "textFilterFields": ["post"]},
}
STREAM = ("Account", "Contact", "Lead", "Opportunity", "Case")
AUDITED = {
    "Lead": ("status", "assignedUser"), "Opportunity": ("stage", "amount", "closeDate"),
    "Case": ("status", "priority"), "Account": ("type",), "Contact": (),
}
ENTITY_TYPES = tuple(e for e in FIELDS if e != "Note")


def fields(entity_type: str) -> dict[str, Spec]:
    return FIELDS[entity_type]


def attributes_of(name: str, spec: Spec) -> list[str]:
    """The API attributes a field consists of (reference §6 field-type table)."""
    kind = spec["type"]
    if kind == "link":
        return [f"{name}Id", f"{name}Name"]
    if kind == "linkMultiple":
        return [f"{name}Ids", f"{name}Names"] + ([f"{name}Columns"] if spec.get("columns") else [])
    if kind == "linkParent":
        return [f"{name}Id", f"{name}Type", f"{name}Name"]
    if kind == "currency":
        return [name, f"{name}Currency"]
    if kind in ("email", "phone"):
        return [name, f"{name}Data"]
    if kind == "address":
        return [name + part for part in ("Street", "City", "State", "Country", "PostalCode")]
    if kind == "datetimeOptional":
        return [name, f"{name}Date"]
    return [name]


def attributes(entity_type: str) -> list[str]:
    """All attributes of the entity type, ``id`` first."""
    out = ["id"]
    for name, spec in FIELDS[entity_type].items():
        out.extend(a for a in attributes_of(name, spec) if a not in out)
    return out


def links(entity_type: str) -> dict[str, Spec]:
    """Every link: from link-type fields plus the inverse/children links."""
    out: dict[str, Spec] = {}
    for name, spec in FIELDS[entity_type].items():
        if spec["type"] == "link":
            out[name] = {"kind": "belongsTo", "entity": spec["entity"]}
        elif spec["type"] == "linkMultiple":
            out[name] = {"kind": "multiple", "entity": spec["entity"]}
        elif spec["type"] == "linkParent":
            out[name] = {"kind": "parent", "entityList": spec.get("entityList", [])}
    out.update(EXTRA_LINKS.get(entity_type, {}))
    return out


_META_LINK_TYPE = {"belongsTo": "belongsTo", "parent": "belongsToParent", "multiple": "hasMany",
                   "hasMany": "hasMany", "inverse": "hasMany", "children": "hasChildren"}


def metadata() -> dict[str, Any]:
    """The ``GET /Metadata`` document (entityDefs and scopes) for every served type."""
    entity_defs: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    for entity_type in FIELDS:
        link_defs = {}
        for name, spec in links(entity_type).items():
            item = {"type": _META_LINK_TYPE[spec["kind"]]}
            if "entity" in spec:
                item["entity"] = spec["entity"]
            if "foreign" in spec:
                item["foreign"] = spec["foreign"]
            if "entityList" in spec:
                item["entityList"] = spec["entityList"]
            link_defs[name] = item
        field_defs = {name: {k: v for k, v in spec.items() if k != "columns"}
                      for name, spec in FIELDS[entity_type].items()}
        entity_defs[entity_type] = {"fields": field_defs, "links": link_defs,
                                    "collection": COLLECTION[entity_type]}
        scopes[entity_type] = {"entity": True, "object": entity_type not in ("User", "Team", "Note"),
                               "stream": entity_type in STREAM, "acl": True}
    return {"entityDefs": entity_defs, "scopes": scopes,
            "app": {"currency": {"list": ["USD", "EUR"], "default": "USD"}}}
