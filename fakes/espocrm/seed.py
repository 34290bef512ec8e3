"""The deterministic demo dataset: teams, users (incl. the API users) and ~650 records.

User and team ids are derived from their names (``user_id("alice")``) so other fakes and
tests can refer to them; record ids and values come from a seeded RNG. Timestamps are relative
to a fixed ``ANCHOR`` so two seedings are identical.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta
from typing import Any

from fakes.espocrm import entitydefs as defs
from fakes.espocrm.models import EspoState, Record

ANCHOR = datetime(2026, 11, 1, 9, 0, 0)
DEMO_API_KEY = "demo-api-key"
DEMO_SECRET = "demo-secret"
TEAMS = {"Sales": ["Manager", "Sales Rep"], "Support": ["Manager", "Support Agent"]}
# userName: (first, last, type, team, team role, title)
USERS: dict[str, tuple[str, str, str, str | None, str | None, str]] = {
    "admin": ("Ada", "Admin", "admin", None, None, "Administrator"),
    "alice": ("Alice", "Anders", "regular", "Sales", "Sales Rep", "Account Executive"),
    "bob": ("Bob", "Baker", "regular", "Sales", "Manager", "Sales Manager"),
    "carol": ("Carol", "Chen", "regular", "Support", "Support Agent", "Support Engineer"),
    "dave": ("Dave", "Duncan", "regular", "Sales", "Sales Rep", "Account Executive"),
    "erin": ("Erin", "Evans", "regular", "Support", "Support Agent", "Support Engineer"),
    "frank": ("Frank", "Fischer", "regular", "Sales", "Sales Rep", "Sales Development Rep"),
}
API_USERS = {"espomcp": "ApiKey", "espomcp-hmac": "Hmac"}
SALES = ("alice", "bob", "dave", "frank")
SUPPORT = ("carol", "erin")
FIRST = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David",
         "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
         "Sarah", "Karen", "Nancy", "Daniel", "Lisa", "Matthew", "Betty", "Anthony", "Sandra",
         "Mark", "Ashley", "Paul", "Emily", "Steven", "Donna", "Andrew", "Michelle", "Kenji",
         "Amara", "Lars", "Sofia", "Mateo", "Aisha"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
        "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson",
        "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Young",
        "Allen", "King", "Wright", "Scott", "Nakamura", "Okafor", "Lindqvist", "Rossi", "Novak"]
PREFIX = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
          "Soylent", "Hooli", "Vandelay", "Pied Piper", "Oscorp", "Gringotts", "Monarch", "Nakatomi",
          "Aperture", "Black Mesa", "Massive Dynamic", "Blue Sun", "Dunder Mifflin", "Prestige",
          "Sterling", "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adventure"]
SUFFIX = ["Corp", "Inc", "Ltd", "GmbH", "Group", "Labs", "Systems", "Holdings", "Partners", "Co"]
CITIES = [("Berlin", "Germany"), ("Austin", "USA"), ("London", "UK"), ("Lyon", "France"),
          ("Osaka", "Japan"), ("Toronto", "Canada"), ("Madrid", "Spain"), ("Boston", "USA")]
SUBJECTS = ["Quarterly review", "Product demo", "Pricing discussion", "Onboarding", "Renewal",
            "Kick-off", "Technical deep dive", "Contract negotiation", "Follow-up", "Workshop"]
ISSUES = ["Cannot log in", "Invoice is wrong", "Export fails", "Slow dashboard", "API errors",
          "Missing data after import", "Password reset email not received", "Feature request",
          "Integration broken", "License question"]


def user_id(user_name: str) -> str:
    """The seeded EspoCRM user id for ``user_name`` (stable across seedings)."""
    return hashlib.sha1(f"espocrm-user:{user_name}".encode()).hexdigest()[:17]


def team_id(name: str) -> str:
    return hashlib.sha1(f"espocrm-team:{name}".encode()).hexdigest()[:17]


class _Gen:
    def __init__(self, state: EspoState, rng: random.Random, anchor: datetime) -> None:
        self.state, self.rng, self.anchor = state, rng, anchor
        self.notes = 0

    def id(self) -> str:
        return f"{self.rng.getrandbits(68):017x}"

    def stamp(self, days_back: float) -> str:
        return (self.anchor - timedelta(days=days_back)).strftime("%Y-%m-%d %H:%M:%S")

    def put(self, entity_type: str, data: Record, owner: str, days_back: float | None = None,
            extra_team: bool = True) -> Record:
        created = self.stamp(self.rng.uniform(1, 365) if days_back is None else days_back)
        team = USERS[owner][3]
        teams = [team_id(team)] if team else []
        if extra_team and self.rng.random() < 0.1:
            teams.append(team_id("Support" if team == "Sales" else "Sales"))
        record = {"id": self.id(), **{k: v for k, v in defaults(entity_type).items()},
                  **data, "createdAt": created, "modifiedAt": created,
                  "createdById": user_id(owner), "assignedUserId": user_id(owner),
                  "teamsIds": teams}
        if record.get("status") == "Completed":
            record["dateCompleted"] = record.get("dateEnd") or created
        if "number" in defs.fields(entity_type):
            self.state.counters[entity_type] = self.state.counters.get(entity_type, 0) + 1
            record["number"] = self.state.counters[entity_type]
        self.state._derive(entity_type, record)
        self.state.records[entity_type][record["id"]] = record
        if entity_type in defs.STREAM:
            self.state.follow(entity_type, record["id"], user_id(owner))
            self.note(entity_type, record, owner)
        return record

    def note(self, entity_type: str, record: Record, owner: str) -> None:
        self.state.counters["Note"] = self.state.counters.get("Note", 0) + 1
        note = {"id": self.id(), "type": "Create", "parentType": entity_type,
                "parentId": record["id"], "data": {"assignedUserId": user_id(owner)},
                "createdAt": record["createdAt"], "modifiedAt": record["createdAt"],
                "createdById": user_id(owner), "number": self.state.counters["Note"],
                "isInternal": False, "post": None}
        self.state.records["Note"][note["id"]] = note

    def person(self) -> tuple[str, str]:
        return self.rng.choice(FIRST), self.rng.choice(LAST)


def defaults(entity_type: str) -> dict[str, Any]:
    return {name: spec["default"] for name, spec in defs.fields(entity_type).items()
            if "default" in spec}


def seed(state: EspoState, *, rng_seed: int = 7, anchor: datetime = ANCHOR,
         api_key: str = DEMO_API_KEY, secret: str = DEMO_SECRET) -> EspoState:
    """Fill ``state`` with the demo dataset (replacing its records)."""
    with state.lock:
        autosave, state.autosave = state.autosave, False
        state.records = {e: {} for e in defs.FIELDS}
        state.api_secrets, state.webhooks, state.webhook_queue = {}, {}, []
        state.follows, state.counters = {}, {"Case": 0, "Note": 0}
        created = anchor.replace(year=anchor.year - 2).strftime("%Y-%m-%d %H:%M:%S")
        for name, positions in TEAMS.items():
            state.records["Team"][team_id(name)] = {
                "id": team_id(name), "name": name, "positionList": positions,
                "description": f"The {name} team", "createdAt": created, "modifiedAt": created}
        for user_name, (first, last, kind, team, role, title) in USERS.items():
            state.records["User"][user_id(user_name)] = {
                "id": user_id(user_name), "userName": user_name, "firstName": first,
                "lastName": last, "type": kind, "isActive": True, "title": title,
                "emailAddress": f"{user_name}@example.com", "createdAt": created,
                "modifiedAt": created, "defaultTeamId": team_id(team) if team else None,
                "teamsIds": [team_id(team)] if team else [],
                "teamsColumns": {team_id(team): {"role": role}} if team else {}}
        for user_name, method in API_USERS.items():
            state.records["User"][user_id(user_name)] = {
                "id": user_id(user_name), "userName": user_name, "lastName": "espomcp service",
                "firstName": "API", "type": "api", "authMethod": method, "apiKey": api_key,
                "isActive": True, "createdAt": created, "modifiedAt": created, "teamsIds": []}
            if method == "Hmac":
                state.api_secrets[user_id(user_name)] = secret
        _records(_Gen(state, random.Random(rng_seed), anchor))
        state.autosave = autosave
        state.changed()
    return state


def _records(gen: _Gen) -> None:
    rng = gen.rng
    accounts = []
    used: set[str] = set()
    for _ in range(60):
        name = f"{rng.choice(PREFIX)} {rng.choice(SUFFIX)}"
        while name in used:
            name = f"{rng.choice(PREFIX)} {rng.choice(SUFFIX)} {rng.randint(2, 99)}"
        used.add(name)
        city, country = rng.choice(CITIES)
        domain = name.lower().replace(" ", "") + ".example.com"
        accounts.append(gen.put("Account", {
            "name": name, "website": f"https://{domain}", "emailAddress": f"info@{domain}",
            "phoneNumber": f"+1 555 {rng.randint(1000000, 9999999)}",
            "type": rng.choice(["Customer", "Customer", "Partner", "Reseller", "Investor", ""]),
            "industry": rng.choice(defs.INDUSTRIES[1:]), "billingAddressCity": city,
            "billingAddressCountry": country, "description": f"{name} is a demo account."},
            rng.choice(SALES)))
    contacts = []
    for _ in range(150):
        first, last = gen.person()
        account = rng.choice(accounts)
        domain = account["website"].split("//")[1]
        contacts.append(gen.put("Contact", {
            "firstName": first, "lastName": last, "salutationName": rng.choice(defs.SALUTATIONS),
            "title": rng.choice(["CEO", "CTO", "Buyer", "Head of IT", "Office Manager", ""]),
            "emailAddress": f"{first.lower()}.{last.lower()}.{rng.randint(1, 999)}@{domain}",
            "phoneNumber": f"+1 555 {rng.randint(1000000, 9999999)}", "accountId": account["id"],
            "doNotCall": rng.random() < 0.15,
            "opportunityRole": rng.choice(["", "Decision Maker", "Evaluator", "Influencer"])},
            rng.choice(SALES)))
    leads = []
    for _ in range(100):
        first, last = gen.person()
        leads.append(gen.put("Lead", {
            "firstName": first, "lastName": last,
            "status": rng.choice(["New", "New", "Assigned", "In Process", "Recycled", "Dead"]),
            "source": rng.choice(defs.LEAD_SOURCES[1:]), "industry": rng.choice(defs.INDUSTRIES[1:]),
            "accountName": f"{rng.choice(PREFIX)} {rng.choice(SUFFIX)}",
            "emailAddress": f"{first.lower()}.{last.lower()}{rng.randint(1, 9999)}@lead.example.net",
            "opportunityAmount": rng.randrange(1000, 90000, 500), "opportunityAmountCurrency": "USD"},
            rng.choice(SALES)))
    opportunities = []
    for _ in range(80):
        account = rng.choice(accounts)
        stage = rng.choice(list(defs.STAGE_PROBABILITY))
        members = [c["id"] for c in contacts if c["accountId"] == account["id"]][:2]
        opportunities.append(gen.put("Opportunity", {
            "name": f"{account['name']} - {rng.choice(['Licenses', 'Services', 'Expansion', 'Renewal'])}",
            "amount": rng.randrange(2000, 250000, 500), "amountCurrency": "USD",
            "closeDate": (gen.anchor + timedelta(days=rng.randint(-120, 180))).date().isoformat(),
            "stage": stage, "probability": defs.STAGE_PROBABILITY[stage],
            "leadSource": rng.choice(defs.LEAD_SOURCES[1:]), "accountId": account["id"],
            "contactsIds": members}, owner_of(account)))
    cases = []
    for _ in range(60):
        account = rng.choice(accounts)
        contact = next((c for c in contacts if c["accountId"] == account["id"]), None)
        cases.append(gen.put("Case", {
            "name": rng.choice(ISSUES), "status": rng.choice(["New", "Assigned", "Pending",
                                                              "Closed", "Rejected"]),
            "priority": rng.choice(["Low", "Normal", "Normal", "High", "Urgent"]),
            "type": rng.choice(["Question", "Incident", "Problem"]), "accountId": account["id"],
            "contactId": contact["id"] if contact else None,
            "contactsIds": [contact["id"]] if contact else []}, rng.choice(SUPPORT)))
    parents = [("Account", accounts), ("Opportunity", opportunities), ("Lead", leads),
               ("Contact", contacts), ("Case", cases)]
    for entity_type, count in (("Meeting", 60), ("Call", 60)):
        for _ in range(count):
            ptype, pool = rng.choice(parents[:3])
            parent = rng.choice(pool)
            start = gen.anchor + timedelta(days=rng.randint(-60, 60), hours=rng.randint(0, 8))
            minutes = 60 if entity_type == "Meeting" else 15
            owner = owner_of(parent)
            data = {"name": f"{rng.choice(SUBJECTS)} with {parent.get('name') or parent.get('lastName')}",
                    "status": "Held" if start < gen.anchor else "Planned",
                    "dateStart": start.strftime("%Y-%m-%d %H:%M:%S"),
                    "dateEnd": (start + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S"),
                    "duration": minutes * 60, "parentType": ptype, "parentId": parent["id"],
                    "usersIds": [user_id(owner)]}
            if entity_type == "Call":
                data["direction"] = rng.choice(["Outbound", "Inbound"])
            gen.put(entity_type, data, owner)
    for _ in range(90):
        ptype, pool = rng.choice(parents)
        parent = rng.choice(pool)
        due = gen.anchor + timedelta(days=rng.randint(-30, 45))
        gen.put("Task", {
            "name": rng.choice(["Send proposal", "Call back", "Prepare quote", "Check contract",
                                "Schedule demo", "Update CRM notes", "Reply to ticket"]),
            "status": rng.choice(["Not Started", "Started", "Completed", "Deferred"]),
            "priority": rng.choice(["Low", "Normal", "High", "Urgent"]),
            "dateEnd": due.strftime("%Y-%m-%d %H:%M:%S"), "parentType": ptype,
            "parentId": parent["id"]}, owner_of(parent))


def owner_of(record: Record) -> str:
    """The userName a seeded record is assigned to."""
    return next(u for u in USERS if user_id(u) == record["assignedUserId"])
