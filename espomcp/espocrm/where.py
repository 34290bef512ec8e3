"""Typed where items (reference §4, ``Core/Select/Where/Item.php``), checked before sending.

An item is ``{type, attribute, value, dateTime?, timeZone?}`` (``field`` is accepted as an alias
of ``attribute``). Each type has a value kind; anything else is refused with ``InvalidInput``
so that a filter can never be silently dropped or misread by EspoCRM.
"""

from __future__ import annotations

from typing import Any

from espomcp.espocrm.errors import InvalidInput
from espomcp.espocrm.ids import validate_attribute, validate_id

# value kinds: scalar, list (non-empty list of scalars), pair ([from, to]), int, none, items, ids
VALUE_KINDS: dict[str, str] = {
    **dict.fromkeys(("equals", "notEquals", "greaterThan", "lessThan", "greaterThanOrEquals",
                     "lessThanOrEquals", "like", "notLike", "contains", "notContains",
                     "startsWith", "endsWith", "on", "notOn", "after", "before"), "scalar"),
    **dict.fromkeys(("in", "notIn", "arrayAnyOf", "arrayNoneOf", "arrayAllOf"), "list"),
    "between": "pair",
    **dict.fromkeys(("lastXDays", "nextXDays", "olderThanXDays", "afterXDays"), "int"),
    **dict.fromkeys(("isNull", "isNotNull", "isTrue", "isFalse", "ever", "today", "past",
                     "future", "lastSevenDays", "currentMonth", "lastMonth", "nextMonth",
                     "currentQuarter", "lastQuarter", "currentYear", "lastYear",
                     "currentFiscalYear", "lastFiscalYear", "currentFiscalQuarter",
                     "lastFiscalQuarter", "arrayIsEmpty", "arrayIsNotEmpty", "isLinked",
                     "isNotLinked"), "none"),
    **dict.fromkeys(("linkedWith", "notLinkedWith", "linkedWithAll"), "ids"),
    **dict.fromkeys(("and", "or", "not"), "items"),
}
REFUSED = ("subQueryIn", "subQueryNotIn", "expression")
ALLOWED_KEYS = {"type", "attribute", "field", "value", "dateTime", "timeZone"}
MAX_DEPTH = 5
MAX_ITEMS = 100


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not (isinstance(value, str) and
                                                              len(value) > 1000)


def validate_where(items: object) -> list[dict[str, Any]]:
    """Return normalised where items (``field`` renamed ``attribute``) or raise InvalidInput."""
    counter = [0]
    return _items(items, 0, counter)


def _items(items: object, depth: int, counter: list[int]) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise InvalidInput("'where' must be a list of items like "
                           "{'type': 'equals', 'attribute': 'status', 'value': 'New'}.")
    if depth > MAX_DEPTH:
        raise InvalidInput(f"'where' is nested too deeply (max {MAX_DEPTH} levels).")
    return [_item(item, depth, counter) for item in items]


def _item(item: object, depth: int, counter: list[int]) -> dict[str, Any]:
    counter[0] += 1
    if counter[0] > MAX_ITEMS:
        raise InvalidInput(f"'where' has too many items (max {MAX_ITEMS}).")
    if not isinstance(item, dict):
        raise InvalidInput("Each where item must be an object with 'type'.")
    unknown = sorted(set(item) - ALLOWED_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown where item key(s): {', '.join(map(str, unknown))}.")
    kind_name = item.get("type")
    if kind_name in REFUSED:
        raise InvalidInput(f"Where type '{kind_name}' is not allowed.")
    if not isinstance(kind_name, str) or kind_name not in VALUE_KINDS:
        raise InvalidInput(f"Unknown where type {kind_name!r}; known: {', '.join(VALUE_KINDS)}.")
    kind = VALUE_KINDS[kind_name]
    out: dict[str, Any] = {"type": kind_name}
    attribute = item.get("attribute", item.get("field"))
    if kind == "items":
        if attribute is not None:
            raise InvalidInput(f"Where type '{kind_name}' takes no attribute.")
        value = item.get("value")
        if kind_name == "not" and isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"Where type '{kind_name}' needs a non-empty list of items as value.")
        out["value"] = _items(value, depth + 1, counter)
        return out
    if attribute is None:
        raise InvalidInput(f"Where type '{kind_name}' needs an 'attribute'.")
    out["attribute"] = validate_attribute(attribute)
    if "value" in item or kind != "none":
        out["value"] = _value(kind_name, kind, item.get("value"))
    for key in ("dateTime", "timeZone"):
        if key in item:
            out[key] = item[key]
    if "dateTime" in out and not isinstance(out["dateTime"], bool):
        raise InvalidInput("'dateTime' must be true or false.")
    if "timeZone" in out and not (isinstance(out["timeZone"], str) and len(out["timeZone"]) < 64):
        raise InvalidInput("'timeZone' must be a time-zone name like 'Europe/Berlin'.")
    return out


def _value(name: str, kind: str, value: Any) -> Any:
    if kind == "none":
        if value is not None:
            raise InvalidInput(f"Where type '{name}' takes no value.")
        return None
    if kind == "scalar":
        if not _scalar(value):
            hint = " (use isNull for empty values)" if value is None else ""
            raise InvalidInput(f"Where type '{name}' needs a single text/number/boolean value{hint}.")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36500:
            raise InvalidInput(f"Where type '{name}' needs a whole number of days.")
        return value
    if kind == "pair":
        if not isinstance(value, list) or len(value) != 2 or not all(map(_scalar, value)):
            raise InvalidInput(f"Where type '{name}' needs [from, to].")
        return value
    if kind == "ids":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"Where type '{name}' needs a list of record ids.")
        return [validate_id(v) for v in value]
    if not isinstance(value, list) or not value or not all(map(_scalar, value)):
        raise InvalidInput(f"Where type '{name}' needs a non-empty list of values.")
    return value
