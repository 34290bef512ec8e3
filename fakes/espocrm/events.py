"""What a change triggers in EspoCRM: stream notes (Create, CreateRelated, Update, Assign,
posts), followers, and webhook queue items (``{E}.create``, ``{E}.update`` with the changed
attributes, ``{E}.fieldUpdate.{field}``, ``{E}.delete``). Mixed into ``EspoState``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fakes.espocrm import entitydefs as defs
from fakes.espocrm.exceptions import BadRequest
from fakes.espocrm.ids import new_id, now_str
from fakes.espocrm.validation import clean_input, validate

if TYPE_CHECKING:
    from fakes.espocrm.models import EspoState

Record = dict[str, Any]


class ChangeEvents:
    """Stream and webhook side effects of record changes (``self`` is the ``EspoState``)."""

    # --- stream ----------------------------------------------------------------------
    def create_note(self: EspoState, data: Record, actor: str, note_type: str = "Post") -> Record:
        with self.lock:
            note = clean_input("Note", data)
            if note_type == "Post":
                if not (note.get("post") or "").strip():
                    raise BadRequest("Post is empty.")
                if note.get("parentType") or note.get("parentId"):
                    self.stored(str(note.get("parentType")), str(note.get("parentId")))
                elif not note.get("targetType"):
                    raise BadRequest("No target.")
            validate("Note", {**note}, set(note), True, self)
            self.counters["Note"] = self.counters.get("Note", 0) + 1
            stamp = now_str()
            note.update(id=new_id(), type=note_type, createdAt=stamp, modifiedAt=stamp,
                        createdById=actor, number=self.counters["Note"],
                        data=data.get("data") if note_type != "Post" else {},
                        relatedType=data.get("relatedType"), relatedId=data.get("relatedId"))
            note.setdefault("isInternal", False)
            self.records["Note"][note["id"]] = note
            self.changed()
            return self.render("Note", note)

    def stream(self: EspoState, entity_type: str, record_id: str, offset: int, max_size: int
               ) -> tuple[int, list[Record]]:
        self.stored(entity_type, record_id)
        notes = [n for n in self.records["Note"].values()
                 if n.get("parentType") == entity_type and n.get("parentId") == record_id]
        notes.sort(key=lambda n: n["number"], reverse=True)
        return len(notes), [self.render("Note", n) for n in notes[offset:offset + max_size]]

    def follow(self: EspoState, entity_type: str, record_id: str, user_id: str | None) -> None:
        if user_id and entity_type in defs.STREAM:
            followers = self.follows.setdefault(f"{entity_type}:{record_id}", [])
            if user_id not in followers:
                followers.append(user_id)

    def _after_create(self: EspoState, entity_type: str, record: Record, actor: str) -> None:
        if entity_type in defs.STREAM:
            self.follow(entity_type, record["id"], actor)
            self.follow(entity_type, record["id"], record.get("assignedUserId"))
            self.create_note({"parentType": entity_type, "parentId": record["id"],
                              "data": {"assignedUserId": record.get("assignedUserId"),
                                       "assignedUserName": self.name_of("User",
                                                                        record.get("assignedUserId"))}},
                             actor, "Create")
        ptype, pid = record.get("parentType"), record.get("parentId")
        if entity_type in ("Meeting", "Call", "Task") and ptype in defs.STREAM and pid:
            self.create_note({"parentType": ptype, "parentId": pid, "relatedType": entity_type,
                              "relatedId": record["id"], "data": {}}, actor, "CreateRelated")
        self.queue_event(f"{entity_type}.create", entity_type, self.render(entity_type, record),
                         actor)

    def _after_update(self: EspoState, entity_type: str, before: Record, after: Record, actor: str) -> None:
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        record_id = after["id"]
        if entity_type in defs.STREAM and "assignedUserId" in changed:
            self.follow(entity_type, record_id, after.get("assignedUserId"))
            self.create_note({"parentType": entity_type, "parentId": record_id,
                              "data": {"assignedUserId": after.get("assignedUserId"),
                                       "assignedUserName": after.get("assignedUserName")}},
                             actor, "Assign")
        audited = [f for f in defs.AUDITED.get(entity_type, ()) if f != "assignedUser" and
                   any(a in changed for a in defs.attributes_of(f, defs.fields(entity_type)[f]))]
        if audited and entity_type in defs.STREAM:
            attrs = [a for f in audited for a in defs.attributes_of(f, defs.fields(entity_type)[f])]
            self.create_note({"parentType": entity_type, "parentId": record_id, "data": {
                "fields": audited, "attributes": {"was": {a: before.get(a) for a in attrs},
                                                  "became": {a: after.get(a) for a in attrs}}}},
                actor, "Update")
        self.queue_event(f"{entity_type}.update", entity_type, {"id": record_id, **changed}, actor)
        for name, spec in defs.fields(entity_type).items():
            attrs = [a for a in defs.attributes_of(name, spec) if a in after]
            if any(a in changed for a in attrs):
                self.queue_event(f"{entity_type}.fieldUpdate.{name}", entity_type,
                                 {"id": record_id, **{a: after[a] for a in attrs}}, actor)

    # --- webhook queue ---------------------------------------------------------------
    def queue_event(self: EspoState, event: str, entity_type: str, item: Record, actor: str) -> None:
        """Queue ``item`` for every active webhook on ``event`` (skipOwn honoured)."""
        del entity_type
        stamp = datetime.now(UTC).timestamp()
        for hook in self.webhooks.values():
            if hook["event"] != event or not hook.get("isActive", True):
                continue
            if hook.get("skipOwn") and hook.get("userId") == actor:
                continue
            self.webhook_queue.append({"webhookId": hook["id"], "event": event, "data": item,
                                       "attempts": 0, "processAt": stamp, "status": "Pending"})
