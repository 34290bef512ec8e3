"""A fake EspoCRM for benchmarks: the seeded demo plus generated records, in its own process.

Served by gunicorn (``bench.stack.Stack.crm``) rather than werkzeug's development server, which
closes every connection: a real EspoCRM sits behind a web server that keeps connections
alive, and ``EspoClient`` pools them. Generated records are written straight into the fake's
state (no webhooks, stream notes or autosave).

The fake answers a list by rendering every row of the table before filtering; a database does
not, so two index-like fast paths are installed (same answers, only faster): an ``id in [...]``
where item narrows the rows before rendering (a primary-key lookup), and an unfiltered page
ordered by a stored attribute renders only that page (an index scan with LIMIT).
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from fakes.espocrm import FakeEspoCRM, query
from fakes.espocrm import entitydefs as defs
from fakes.espocrm.models import EspoState
from fakes.espocrm.seed import defaults, team_id, user_id

FILTERS = ("where", "textFilter", "primaryFilter", "boolFilterList")
BULK_MIX = (("Account", 0.15), ("Contact", 0.3), ("Lead", 0.25), ("Opportunity", 0.1),
            ("Case", 0.1), ("Task", 0.1))
SALES = ("alice", "bob", "dave", "frank")


def add_records(state: EspoState, entity_type: str, count: int, owner: str, rng: random.Random,
                *, team: str | None = None, parents: list[str] | None = None) -> list[str]:
    """Insert ``count`` minimal valid records of ``entity_type`` owned by ``owner``."""
    ids = []
    table = state.records[entity_type]
    base = defaults(entity_type)
    for n in range(count):
        record_id = f"{rng.getrandbits(68):017x}"
        stamp = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 10:{n % 60:02d}:00"
        record: dict[str, Any] = {"id": record_id, **base, "createdAt": stamp,
                                  "modifiedAt": stamp, "createdById": user_id(owner),
                                  "assignedUserId": user_id(owner),
                                  "teamsIds": [team_id(team)] if team else []}
        fields = defs.fields(entity_type)
        if "lastName" in defs.attributes(entity_type):
            record.update(firstName="Gen", lastName=f"{entity_type} {n}")
        else:
            record["name"] = f"Generated {entity_type} {n}"
        if parents and "account" in fields:
            record["accountId"] = rng.choice(parents)
        if entity_type == "Task" and parents:
            record.update(parentType="Account", parentId=rng.choice(parents))
        table[record_id] = record
        ids.append(record_id)
    return ids


def fill_bulk(state: EspoState, total: int, seed: int = 11) -> None:
    """About ``total`` records across the CRM types, owned by the sales reps, team Sales."""
    rng = random.Random(seed)
    accounts = list(state.records["Account"])
    for entity_type, share in BULK_MIX:
        count = int(total * share)
        per_owner = count // len(SALES)
        for owner in SALES:
            made = add_records(state, entity_type, per_owner, owner, rng, team="Sales",
                               parents=accounts)
            if entity_type == "Account":
                accounts += made


def install_fast_paths(state: EspoState) -> None:
    """Replace ``state.find`` with the index-like fast paths described in the module docstring."""
    original = state.find
    orders: dict[tuple[str, str | None, str | None, int], list[str]] = {}

    def find(entity_type: str, params: dict[str, Any], user_id: str,
             ids: set[str] | None = None) -> tuple[int, list[dict[str, Any]]]:
        where = params.get("where") or []
        id_lists = [set(item.get("value") or []) for item in where
                    if isinstance(item, dict) and item.get("type") == "in"
                    and item.get("attribute") == "id"]
        if ids is None and id_lists:  # the ids narrow the rows; the rest of where still applies
            rest = [item for item in where if not (isinstance(item, dict)
                    and item.get("type") == "in" and item.get("attribute") == "id")]
            return original(entity_type, {**params, "where": rest}, user_id,
                            set.intersection(*id_lists))
        order_by = params.get("orderBy") or defs.COLLECTION[entity_type]["orderBy"]
        simple = (ids is None and not any(params.get(k) for k in FILTERS) and not state.hidden
                  and order_by in defs.fields(entity_type)
                  and defs.fields(entity_type)[order_by]["type"] not in ("link", "linkParent"))
        if not simple:
            return original(entity_type, params, user_id, ids)
        table = state.table(entity_type)
        key = (entity_type, params.get("orderBy"), params.get("order"), len(table))
        if key not in orders:
            ranked = query.sort(entity_type, list(table.values()), params.get("orderBy"),
                                params.get("order"))
            orders[key] = [r["id"] for r in ranked]
        offset, size = params["offset"], params["maxSize"]
        page = [state.render(entity_type, table[i]) for i in orders[key][offset:offset + size]]
        select = params.get("select")
        if select:
            keep = {"id", *select}
            page = [{k: v for k, v in r.items() if k in keep} for r in page]
        return len(table), page

    state.find = find  # type: ignore[method-assign]


def build(leads: str = "", bulk: int = 0) -> FakeEspoCRM:
    """The seeded fake plus generated records (``leads`` = ``COUNT:USER,...``), fast paths on."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    fake = FakeEspoCRM(None)
    state = fake.state
    state.autosave = False
    rng = random.Random(5)
    for part in filter(None, leads.split(",")):
        count, _, owner = part.partition(":")
        add_records(state, "Lead", int(count), owner, rng)
    if bulk:
        fill_bulk(state, bulk)
    install_fast_paths(state)
    return fake


def app() -> Any:
    """WSGI factory for ``gunicorn -w 1 -k gthread 'bench.crm:app()'`` (one worker: the state
    is in memory); ``BENCH_CRM_LEADS`` / ``BENCH_CRM_BULK`` choose the generated records."""
    return build(os.environ.get("BENCH_CRM_LEADS", ""),
                 int(os.environ.get("BENCH_CRM_BULK", "0") or 0)).app
