"""Composite operations (reference §7): lead conversion and mass actions."""

from __future__ import annotations

from typing import Any

from fakes.espocrm.exceptions import BadRequest, Duplicate
from fakes.espocrm.ids import now_str
from fakes.espocrm.models import EspoState, Record

CONVERT_ORDER = ("Account", "Contact", "Opportunity")


def convert_lead(state: EspoState, body: Record, actor: str) -> Record:
    """``POST /Lead/action/convert``: create the given records, link them, mark the lead."""
    lead_id = body.get("id")
    if not lead_id or not isinstance(lead_id, str):
        raise BadRequest("No id.")
    records = body.get("records") or {}
    if not isinstance(records, dict):
        raise BadRequest("Bad records.")
    with state.lock:
        lead = state.stored("Lead", lead_id)
        wanted = {e: dict(records[e]) for e in CONVERT_ORDER if isinstance(records.get(e), dict)}
        if not body.get("skipDuplicateCheck"):
            duplicates = [{"id": d["id"], "name": d.get("name"), "_entityType": e}
                          for e, data in wanted.items() if e != "Opportunity"
                          for d in state.find_duplicates(e, data)]
            if duplicates:
                raise Duplicate(duplicates)
        created: dict[str, Record] = {}
        defaults = {"assignedUserId": lead.get("assignedUserId"),
                    "teamsIds": list(lead.get("teamsIds") or [])}
        for entity_type, data in wanted.items():
            data = {**defaults, **data}
            if entity_type == "Contact" and "Account" in created:
                data.setdefault("accountId", created["Account"]["id"])
            if entity_type == "Opportunity":
                if "Account" in created:
                    data.setdefault("accountId", created["Account"]["id"])
                if "Contact" in created:
                    data.setdefault("contactsIds", [created["Contact"]["id"]])
            created[entity_type] = state.create(entity_type, data, actor, skip_duplicate_check=True)
        system: dict[str, Any] = {"convertedAt": now_str()}
        for entity_type, record in created.items():
            system[f"created{entity_type}Id"] = record["id"]
        return state.update("Lead", lead_id, {"status": "Converted"}, actor, system=system)


def mass_action(state: EspoState, body: Record, actor: str) -> Record:
    """``POST /MassAction``: update, delete, follow or unfollow by ids, where or searchParams."""
    entity_type = body.get("entityType")
    action = body.get("action")
    params = body.get("params")
    if not isinstance(entity_type, str):
        raise BadRequest("No entityType.")
    state.table(entity_type)
    if not isinstance(params, dict) or not any(k in params for k in ("ids", "where",
                                                                     "searchParams")):
        raise BadRequest("Bad search params for mass action.")
    with state.lock:
        if "ids" in params:
            ids = [i for i in params["ids"] if isinstance(i, str) and state.exists(entity_type, i)]
        else:
            search = params.get("searchParams") or {"where": params.get("where") or []}
            _, rows = state.find(entity_type, {**search, "offset": 0, "maxSize": 10 ** 9,
                                               "select": ["id"]}, actor)
            ids = [r["id"] for r in rows]
        done: list[str] = []
        for record_id in ids:
            if action == "update":
                try:
                    state.update(entity_type, record_id, dict(body.get("data") or {}), actor)
                except BadRequest:
                    continue
            elif action == "delete":
                state.delete(entity_type, record_id, actor)
            elif action in ("follow", "unfollow"):
                key = f"{entity_type}:{record_id}"
                followers = state.follows.setdefault(key, [])
                if action == "follow" and actor not in followers:
                    followers.append(actor)
                elif action == "unfollow" and actor in followers:
                    followers.remove(actor)
            else:
                raise BadRequest(f"No mass action '{action}'.")
            done.append(record_id)
        state.changed()
        return {"count": len(done), "ids": done}
