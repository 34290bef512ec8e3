"""The fake EspoCRM's state and behaviour (moto's ``models.py``): records, relations,
validation, duplicates, stream notes, lead conversion, mass actions and the webhook queue.

Every mutating operation takes the acting user's id, so changes made "through EspoCRM's UI"
(``as_user``/the ``/_fake/ui`` hook) and through the REST API produce the same stream notes and
webhook events. State can persist to a JSON file (saved on every change, loaded at start).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from fakes.espocrm import entitydefs as defs
from fakes.espocrm import query
from fakes.espocrm.events import ChangeEvents
from fakes.espocrm.exceptions import BadRequest, Duplicate, Forbidden, NotFound
from fakes.espocrm.ids import new_id, now_str
from fakes.espocrm.validation import clean_input, validate

Record = dict[str, Any]
PERSISTED = ("records", "api_secrets", "webhooks", "webhook_queue", "follows", "counters")


class EspoState(ChangeEvents):
    """All data of one fake EspoCRM instance; thread-safe through ``lock``."""

    def __init__(self, data_file: str | Path | None = None) -> None:
        self.lock = threading.RLock()
        self.data_file = Path(data_file) if data_file else None
        self.records: dict[str, dict[str, Record]] = {e: {} for e in defs.FIELDS}
        self.api_secrets: dict[str, str] = {}
        self.webhooks: dict[str, Record] = {}
        self.webhook_queue: list[Record] = []
        self.follows: dict[str, list[str]] = {}  # "Entity:id" -> follower user ids
        self.counters: dict[str, int] = {"Case": 0, "Note": 0}
        self.request_log: list[Record] = []
        self.deliveries: list[Record] = []
        self.fault: Record | None = None
        # ACL knobs for the API users (not persisted): entity type -> denied actions
        # (create/read/edit/delete), and "Entity:id" records they may not access at all.
        self.denied: dict[str, set[str]] = {}
        self.hidden: set[str] = set()
        self.webhook_retry_period = 600.0
        self.webhook_max_attempts = 4
        self.autosave = True

    # --- persistence -----------------------------------------------------------------
    def load(self) -> bool:
        """Load the JSON file if it exists; True if data was loaded."""
        if not self.data_file or not self.data_file.exists():
            return False
        data = json.loads(self.data_file.read_text())
        with self.lock:
            for key in PERSISTED:
                setattr(self, key, data[key])
            for entity_type in defs.FIELDS:
                self.records.setdefault(entity_type, {})
        return True

    def save(self) -> None:
        if not self.data_file:
            return
        with self.lock:
            text = json.dumps({key: getattr(self, key) for key in PERSISTED})
        tmp = self.data_file.with_suffix(self.data_file.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.data_file)

    def changed(self) -> None:
        if self.autosave:
            self.save()

    # --- lookups ---------------------------------------------------------------------
    def table(self, entity_type: str) -> dict[str, Record]:
        if entity_type not in self.records:
            raise NotFound(f"Controller '{entity_type}' does not exist.")
        return self.records[entity_type]

    def exists(self, entity_type: str, record_id: str) -> bool:
        return record_id in self.records.get(entity_type, {})

    def stored(self, entity_type: str, record_id: str) -> Record:
        record = self.table(entity_type).get(record_id)
        if record is None:
            raise NotFound()
        return record

    def user_by_name(self, user_name: str) -> Record:
        for user in self.records["User"].values():
            if user["userName"] == user_name or user["id"] == user_name:
                return user
        raise NotFound(f"No user '{user_name}'.")

    def api_user(self, api_key: str, method: str) -> Record | None:
        """The active API user with this key and auth method (``Logins/ApiKey|Hmac.php``)."""
        for user in self.records["User"].values():
            if (user.get("type") == "api" and user.get("isActive") and user.get("apiKey") == api_key
                    and user.get("authMethod") == method):
                return user
        return None

    def name_of(self, entity_type: str | None, record_id: str | None) -> str | None:
        if not entity_type or not record_id:
            return None
        record = self.records.get(entity_type, {}).get(record_id)
        if record is None:
            return None
        if defs.fields(entity_type).get("name", {}).get("type") == "personName":
            return " ".join(p for p in (record.get("firstName"), record.get("lastName")) if p)
        return record.get("name")

    def related_ids(self, entity_type: str, record_id: str, link: str) -> set[str]:
        spec = defs.links(entity_type).get(link)
        if spec is None:
            raise NotFound(f"Link '{link}' does not exist.")
        record = self.stored(entity_type, record_id)
        kind = spec["kind"]
        if kind in ("belongsTo", "parent"):
            value = record.get(f"{link}Id")
            return {value} if value else set()
        if kind == "multiple":
            return {i for i in record.get(f"{link}Ids") or [] if self.exists(spec["entity"], i)}
        foreign = self.records[spec["entity"]].values()
        if kind == "hasMany":
            return {r["id"] for r in foreign if r.get(f"{spec['foreign']}Id") == record_id}
        if kind == "inverse":
            return {r["id"] for r in foreign if record_id in (r.get(f"{spec['foreign']}Ids") or [])}
        return {r["id"] for r in foreign
                if r.get("parentType") == entity_type and r.get("parentId") == record_id}

    # --- rendering -------------------------------------------------------------------
    def render(self, entity_type: str, record: Record) -> Record:
        """The API view of a stored record: names, email/phone data, follower info."""
        out: Record = {"id": record["id"]}
        for name, spec in defs.fields(entity_type).items():
            kind = spec["type"]
            if kind == "personName":
                out["name"] = self.name_of(entity_type, record["id"])
            elif kind == "link":
                out[f"{name}Id"] = record.get(f"{name}Id")
                out[f"{name}Name"] = self.name_of(spec["entity"], record.get(f"{name}Id"))
            elif kind == "linkParent":
                ptype, pid = record.get(f"{name}Type"), record.get(f"{name}Id")
                out.update({f"{name}Id": pid, f"{name}Type": ptype,
                            f"{name}Name": self.name_of(ptype, pid)})
            elif kind == "linkMultiple":
                ids = [i for i in record.get(f"{name}Ids") or [] if self.exists(spec["entity"], i)]
                out[f"{name}Ids"] = ids
                out[f"{name}Names"] = {i: self.name_of(spec["entity"], i) for i in ids}
                if spec.get("columns"):
                    columns = record.get(f"{name}Columns") or {}
                    out[f"{name}Columns"] = {i: columns.get(i, {"role": None}) for i in ids}
            elif kind == "email":
                value = record.get(name)
                out[name] = value
                out[f"{name}Data"] = [{"emailAddress": value, "lower": value.lower(),
                                       "primary": True, "optOut": False, "invalid": False}] \
                    if value else []
            elif kind == "phone":
                value = record.get(name)
                out[name] = value
                out[f"{name}Data"] = [{"phoneNumber": value, "type": "Office", "primary": True,
                                       "optOut": False, "invalid": False}] if value else []
            else:
                for attr in defs.attributes_of(name, spec):
                    out[attr] = record.get(attr)
        if entity_type == "User":
            out.pop("apiKey", None)
        if entity_type in defs.STREAM:
            followers = self.follows.get(f"{entity_type}:{record['id']}", [])
            out["followersIds"] = list(followers)
        return out

    # --- lists -----------------------------------------------------------------------
    def find(self, entity_type: str, params: Record, user_id: str,
             ids: set[str] | None = None) -> tuple[int, list[Record]]:
        """Apply EspoCRM list params (already decoded) → (total, page of rendered records)."""
        rows = [self.render(entity_type, r) for r in self.table(entity_type).values()
                if (ids is None or r["id"] in ids) and f"{entity_type}:{r['id']}" not in self.hidden]
        preds = []
        if params.get("where"):
            preds.append(query.WhereCompiler(entity_type, self).compile(params["where"]))
        if params.get("textFilter"):
            preds.append(query.text_filter(entity_type, str(params["textFilter"])))
        if params.get("primaryFilter"):
            preds.append(query.primary_filter(entity_type, str(params["primaryFilter"])))
        for name in params.get("boolFilterList") or []:
            preds.append(self._bool_filter(entity_type, str(name), user_id))
        rows = [r for r in rows if all(p(r) for p in preds)]
        rows = query.sort(entity_type, rows, params.get("orderBy"), params.get("order"))
        offset, max_size = params["offset"], params["maxSize"]
        page = rows[offset:offset + max_size]
        select = params.get("select")
        if select:
            keep = {"id", *select}
            page = [{k: v for k, v in r.items() if k in keep} for r in page]
        return len(rows), page

    def _bool_filter(self, entity_type: str, name: str, user_id: str) -> query.Pred:
        if name == "onlyMy":
            return lambda r: r.get("assignedUserId") == user_id
        if name == "followed":
            return lambda r: user_id in self.follows.get(f"{entity_type}:{r['id']}", [])
        if name == "shared":
            return lambda r: user_id in (r.get("collaboratorsIds") or [])
        raise BadRequest(f"No bool filter '{name}' for '{entity_type}'.")

    # --- writes ----------------------------------------------------------------------
    def create(self, entity_type: str, data: Record, actor: str, *,
               skip_duplicate_check: bool = False) -> Record:
        """Create a record as ``actor`` (user id); returns the rendered record."""
        with self.lock:
            if entity_type == "Note":
                raise Forbidden("Use create_note.")
            self.table(entity_type)
            record = clean_input(entity_type, data)
            for name, spec in defs.fields(entity_type).items():
                if "default" in spec and record.get(name) is None:
                    record[name] = spec["default"]
            if entity_type == "Opportunity" and record.get("probability") is None:
                record["probability"] = defs.STAGE_PROBABILITY.get(record.get("stage"), 10)
            validate(entity_type, record, set(record), True, self)
            if not skip_duplicate_check:
                duplicates = self.find_duplicates(entity_type, record)
                if duplicates:
                    raise Duplicate(duplicates)
            record_id = data.get("id") if entity_type == "User" and data.get("id") else new_id()
            stamp = now_str()
            record.update(id=record_id, createdAt=stamp, modifiedAt=stamp, createdById=actor)
            if "number" in defs.fields(entity_type):
                self.counters[entity_type] = self.counters.get(entity_type, 0) + 1
                record["number"] = self.counters[entity_type]
            self._derive(entity_type, record)
            self.records[entity_type][record_id] = record
            self._after_create(entity_type, record, actor)
            self.changed()
            return self.render(entity_type, record)

    def update(self, entity_type: str, record_id: str, data: Record, actor: str, *,
               system: Record | None = None) -> Record:
        """Update as ``actor``; ``system`` sets read-only attributes (EspoCRM-internal writes)."""
        with self.lock:
            record = self.stored(entity_type, record_id)
            changes = {**clean_input(entity_type, data), **(system or {})}
            merged = {**record, **changes}
            validate(entity_type, merged, set(changes), False, self)
            before = self.render(entity_type, record)
            self._derive(entity_type, merged)
            if all(record.get(k) == v for k, v in merged.items()) and set(record) >= set(merged):
                return before
            merged.update(modifiedAt=now_str(), modifiedById=actor)
            self.records[entity_type][record_id] = merged
            after = self.render(entity_type, merged)
            self._after_update(entity_type, before, after, actor)
            self.changed()
            return after

    def delete(self, entity_type: str, record_id: str, actor: str) -> None:
        with self.lock:
            self.stored(entity_type, record_id)
            del self.records[entity_type][record_id]
            self.follows.pop(f"{entity_type}:{record_id}", None)
            self.queue_event(f"{entity_type}.delete", entity_type, {"id": record_id}, actor)
            self.changed()

    def _derive(self, entity_type: str, record: Record) -> None:
        """Read-only attributes EspoCRM computes: accountId of activities, dateCompleted."""
        if entity_type in ("Meeting", "Call", "Task"):
            ptype, pid = record.get("parentType"), record.get("parentId")
            parent = self.records.get(ptype or "", {}).get(pid or "")
            record["accountId"] = pid if ptype == "Account" else (parent or {}).get("accountId")
            if entity_type == "Task":
                record["contactId"] = pid if ptype == "Contact" else None
        if entity_type == "Task" and record.get("status") == "Completed" and \
                not record.get("dateCompleted"):
            record["dateCompleted"] = now_str()

    def find_duplicates(self, entity_type: str, record: Record) -> list[Record]:
        """``DuplicateWhereBuilders/General.php``: Account name or email; person name or email."""
        if entity_type not in ("Account", "Contact", "Lead"):
            return []

        def same(a: Any, b: Any) -> bool:
            return bool(a) and bool(b) and str(a).casefold() == str(b).casefold()
        found = []
        for other in self.records[entity_type].values():
            if entity_type == "Account":
                hit = same(other.get("name"), record.get("name"))
            else:
                hit = same(other.get("lastName"), record.get("lastName")) and \
                    (other.get("firstName") or "").casefold() == (record.get("firstName") or "").casefold()
            if hit or same(other.get("emailAddress"), record.get("emailAddress")):
                found.append({**self.render(entity_type, other), "_entityType": entity_type})
        return found[:20]

    # --- relations -------------------------------------------------------------------
    def relate(self, entity_type: str, record_id: str, link: str, foreign_ids: list[str],
               actor: str, columns: Record | None = None, unrelate: bool = False) -> None:
        with self.lock:
            spec = defs.links(entity_type).get(link)
            if spec is None:
                raise NotFound(f"Link '{link}' does not exist.")
            record = self.stored(entity_type, record_id)
            if spec["kind"] == "parent":
                raise Forbidden("Use parentType/parentId to relate a parent.")
            target = spec["entity"]
            for foreign_id in foreign_ids:
                foreign = self.stored(target, foreign_id)
                self._relate_one(spec, link, entity_type, record, foreign, columns, unrelate)
            self.changed()
        del actor

    @staticmethod
    def _relate_one(spec: Record, link: str, entity_type: str, record: Record, foreign: Record,
                    columns: Record | None, unrelate: bool) -> None:
        kind = spec["kind"]
        if kind == "belongsTo":
            if not unrelate:
                record[f"{link}Id"] = foreign["id"]
            elif record.get(f"{link}Id") == foreign["id"]:
                record[f"{link}Id"] = None
        elif kind == "hasMany":
            key = f"{spec['foreign']}Id"
            if not unrelate:
                foreign[key] = record["id"]
            elif foreign.get(key) == record["id"]:
                foreign[key] = None
        elif kind == "children":
            if not unrelate:
                foreign.update(parentType=entity_type, parentId=record["id"])
            elif foreign.get("parentId") == record["id"]:
                foreign.update(parentType=None, parentId=None)
        else:
            owner, other, key = (record, foreign, link) if kind == "multiple" else \
                (foreign, record, spec["foreign"])
            ids = [i for i in owner.get(f"{key}Ids") or [] if i != other["id"]]
            if not unrelate:
                ids.append(other["id"])
                if columns:
                    owner.setdefault(f"{key}Columns", {})[other["id"]] = dict(columns)
            owner[f"{key}Ids"] = ids
