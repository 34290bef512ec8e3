"""Input normalisation and field validation as EspoCRM's record service does it (§5, §6).

``clean_input`` keeps only writable attributes (unknown and read-only ones are ignored, as
EspoCRM ignores them); ``validate`` raises ``ValidationFailure(entityType, field, type)`` with
EspoCRM's types: ``required``, ``valid``, ``maxLength``, ``min``, ``max``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Protocol

from fakes.espocrm import entitydefs as defs
from fakes.espocrm.exceptions import ValidationFailure

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ALWAYS_READ_ONLY = {"id", "deleted"}


class Lookup(Protocol):
    def exists(self, entity_type: str, record_id: str) -> bool: ...


def clean_input(entity_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Writable attributes only; ``emailAddressData``/``phoneNumberData`` folded to primary."""
    fields = defs.fields(entity_type)
    writable: set[str] = set()
    for name, spec in fields.items():
        if spec.get("readOnly") or spec["type"] in ("personName",):
            continue
        writable.update(defs.attributes_of(name, spec))
    out = {k: v for k, v in data.items() if k in writable and k not in ALWAYS_READ_ONLY}
    for attr, key in (("emailAddress", "emailAddress"), ("phoneNumber", "phoneNumber")):
        items = out.pop(f"{attr}Data", None)
        if attr not in out and isinstance(items, list) and items:
            primary = next((i for i in items if isinstance(i, dict) and i.get("primary")), items[0])
            if isinstance(primary, dict):
                out[attr] = primary.get(key)
    for name, spec in fields.items():  # Names are derived, never stored
        if spec["type"] in ("datetime", "datetimeOptional") and name in out:
            out[name] = normalise_datetime(out[name])
        if spec["type"] in ("link", "linkParent"):
            out.pop(f"{name}Name", None)
        elif spec["type"] == "linkMultiple":
            out.pop(f"{name}Names", None)
    return out


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _is_date(value: Any) -> bool:
    try:
        return isinstance(value, str) and len(value) == 10 and bool(date.fromisoformat(value))
    except ValueError:
        return False


def normalise_datetime(value: Any) -> Any:
    """``YYYY-MM-DD HH:MM[:SS]`` → with seconds; other values unchanged (then refused)."""
    if isinstance(value, str):
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
            try:
                return datetime.strptime(value, fmt).strftime("%Y-%m-%d %H:%M:%S")
            except ValueError:
                continue
    return value


def validate(entity_type: str, record: dict[str, Any], changed: set[str], creating: bool,
             lookup: Lookup) -> None:
    """Check ``record`` (the merged state); only ``changed`` attributes are type-checked."""
    for name, spec in defs.fields(entity_type).items():
        attrs = defs.attributes_of(name, spec)
        touched = creating or any(a in changed for a in attrs)
        if not touched or spec.get("readOnly"):
            continue
        if _required(entity_type, name, spec, record) and _missing(name, spec, record):
            raise ValidationFailure(entity_type, name, "required")
        kind = _invalid(name, spec, record, lookup)
        if kind:
            raise ValidationFailure(entity_type, name, kind)


def _required(entity_type: str, name: str, spec: dict[str, Any], record: dict[str, Any]) -> bool:
    if entity_type == "Lead" and name == "lastName":  # dynamic logic (reference §6)
        return all(_empty(record.get(a)) for a in ("accountName", "emailAddress", "phoneNumber"))
    return bool(spec.get("required"))


def _missing(name: str, spec: dict[str, Any], record: dict[str, Any]) -> bool:
    kind = spec["type"]
    if kind == "link":
        return _empty(record.get(f"{name}Id"))
    if kind == "linkMultiple":
        return _empty(record.get(f"{name}Ids"))
    if kind == "linkParent":
        return _empty(record.get(f"{name}Id")) or _empty(record.get(f"{name}Type"))
    if kind == "datetimeOptional":
        return _empty(record.get(name)) and _empty(record.get(f"{name}Date"))
    return _empty(record.get(name))


def _invalid(name: str, spec: dict[str, Any], rec: dict[str, Any], lookup: Lookup) -> str | None:
    kind = spec["type"]
    value = rec.get(name)
    if kind in ("varchar", "url", "text", "phone"):
        if value is not None and not isinstance(value, str):
            return "valid"
        if kind == "varchar" and value and len(value) > spec.get("maxLength", 255):
            return "maxLength"
        return None
    if kind == "enum":
        options = spec["options"]
        return None if value in options or (value is None and "" in options) else "valid"
    if kind in ("int", "float", "currency", "autoincrement"):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind == "int" and not isinstance(value, int)):
            return "valid"
        if "min" in spec and value < spec["min"]:
            return "min"
        if "max" in spec and value > spec["max"]:
            return "max"
        return None
    if kind == "bool":
        return None if value is None or isinstance(value, bool) else "valid"
    if kind == "date":
        return None if value in (None, "") or _is_date(value) else "valid"
    if kind in ("datetime", "datetimeOptional"):
        if kind == "datetimeOptional" and rec.get(f"{name}Date") not in (None, "") and \
                not _is_date(rec.get(f"{name}Date")):
            return "valid"
        return None if value in (None, "") or _is_datetime(value) else "valid"
    if kind == "email":
        return None if value in (None, "") or (isinstance(value, str) and EMAIL.fullmatch(value)) \
            else "valid"
    if kind == "array":
        return None if value is None or (isinstance(value, list) and
                                         all(isinstance(v, str) for v in value)) else "valid"
    if kind == "link":
        ref = rec.get(f"{name}Id")
        return None if _empty(ref) or (isinstance(ref, str) and
                                       lookup.exists(spec["entity"], ref)) else "valid"
    if kind == "linkMultiple":
        ids = rec.get(f"{name}Ids")
        if ids is None:
            return None
        if not isinstance(ids, list) or not all(isinstance(i, str) and
                                                lookup.exists(spec["entity"], i) for i in ids):
            return "valid"
        return None
    if kind == "linkParent":
        ref, ptype = rec.get(f"{name}Id"), rec.get(f"{name}Type")
        if _empty(ref) and _empty(ptype):
            return None
        ok = ptype in spec.get("entityList", []) and isinstance(ref, str) and lookup.exists(ptype, ref)
        return None if ok else "valid"
    return None


def _is_datetime(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(datetime.strptime(value, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return False
