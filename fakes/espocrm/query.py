"""List queries as EspoCRM evaluates them (reference §4): where items, text/primary/bool
filters, ordering and ``select`` over rendered records.

SQL semantics are kept where they show: string comparisons are case-insensitive (MySQL
collation), and a NULL attribute never matches a comparison (``notEquals`` excludes NULLs).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fakes.espocrm import entitydefs as defs
from fakes.espocrm.exceptions import BadRequest, Forbidden

Record = dict[str, Any]
Pred = Callable[[Record], bool]
ITEM_KEYS = {"type", "attribute", "field", "value", "dateTime", "timeZone"}
COMPARE = {"equals", "notEquals", "greaterThan", "lessThan", "greaterThanOrEquals",
           "lessThanOrEquals"}
TEXT = {"like", "notLike", "contains", "notContains", "startsWith", "endsWith"}
DATE_NO_VALUE = {"today", "past", "future", "lastSevenDays", "currentMonth", "lastMonth",
                 "nextMonth", "currentQuarter", "lastQuarter", "currentYear", "lastYear",
                 "currentFiscalYear", "lastFiscalYear", "currentFiscalQuarter",
                 "lastFiscalQuarter", "ever"}
DATE_X = {"lastXDays", "nextXDays", "olderThanXDays", "afterXDays"}
LINKS = {"linkedWith", "notLinkedWith", "linkedWithAll", "isLinked", "isNotLinked"}
ARRAYS = {"arrayAnyOf", "arrayNoneOf", "arrayAllOf", "arrayIsEmpty", "arrayIsNotEmpty"}


class Relations(Protocol):
    def related_ids(self, entity_type: str, record_id: str, link: str) -> set[str]: ...


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _coerce(sample: Any, value: Any) -> Any:
    """Bracket-encoded params arrive as strings: compare them like MySQL would."""
    if isinstance(value, str) and isinstance(sample, int | float) and not isinstance(sample, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, str) and isinstance(sample, bool):
        return value.lower() in ("1", "true")
    return _norm(value)


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": operator.eq, "notEquals": operator.ne, "greaterThan": operator.gt,
    "lessThan": operator.lt, "greaterThanOrEquals": operator.ge, "lessThanOrEquals": operator.le,
}


def _cmp(kind: str, a: Any, b: Any) -> bool:
    try:
        return bool(_OPS[kind](a, b))
    except TypeError:
        return False


def _today(tz: ZoneInfo | None) -> date:
    return datetime.now(tz or UTC).date()


def _bounds(first: date, last: date, is_datetime: bool, tz: ZoneInfo | None) -> tuple[str, str]:
    """Inclusive [start, end] strings for a day range, in UTC for datetime attributes."""
    if not is_datetime:
        return first.isoformat(), last.isoformat()
    zone = tz or UTC
    start = datetime(first.year, first.month, first.day, tzinfo=zone).astimezone(UTC)
    end = datetime(last.year, last.month, last.day, 23, 59, 59, tzinfo=zone).astimezone(UTC)
    return start.strftime("%Y-%m-%d %H:%M:%S"), end.strftime("%Y-%m-%d %H:%M:%S")


def _month(day: date, delta: int) -> tuple[date, date]:
    index = day.year * 12 + day.month - 1 + delta
    first = date(index // 12, index % 12 + 1, 1)
    nxt = date((index + 1) // 12, (index + 1) % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def _quarter(day: date, delta: int) -> tuple[date, date]:
    first, _ = _month(date(day.year, (day.month - 1) // 3 * 3 + 1, 1), delta * 3)
    _, last = _month(first, 2)
    return first, last


def _date_range(kind: str, value: Any, tz: ZoneInfo | None) -> tuple[date, date] | None:
    today = _today(tz)
    if kind == "today":
        return today, today
    if kind == "lastSevenDays":
        return today - timedelta(days=7), today
    if kind in ("currentMonth", "lastMonth", "nextMonth"):
        return _month(today, {"currentMonth": 0, "lastMonth": -1, "nextMonth": 1}[kind])
    if kind in ("currentQuarter", "currentFiscalQuarter"):
        return _quarter(today, 0)
    if kind in ("lastQuarter", "lastFiscalQuarter"):
        return _quarter(today, -1)
    if kind in ("currentYear", "currentFiscalYear"):
        return date(today.year, 1, 1), date(today.year, 12, 31)
    if kind in ("lastYear", "lastFiscalYear"):
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    days = _int(value, kind)
    if kind == "lastXDays":
        return today - timedelta(days=days), today
    if kind == "nextXDays":
        return today, today + timedelta(days=days)
    return None


def _int(value: Any, kind: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"Bad where item '{kind}': value must be a number.") from None


def _parse_day(value: Any, kind: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise BadRequest(f"Bad where item '{kind}': bad date value.") from None


class WhereCompiler:
    """Compiles EspoCRM where items into predicates over rendered records of one type."""

    def __init__(self, entity_type: str, relations: Relations) -> None:
        self.entity_type = entity_type
        self.relations = relations
        self.fields = defs.fields(entity_type)
        self.attributes = set(defs.attributes(entity_type))
        self.links = defs.links(entity_type)
        self.types = {a: spec["type"] for name, spec in self.fields.items()
                      for a in defs.attributes_of(name, spec)}

    def compile(self, items: Any) -> Pred:
        items = _as_list(items)
        preds = [self.item(item) for item in items]
        return lambda rec: all(p(rec) for p in preds)

    def item(self, item: Any) -> Pred:
        if not isinstance(item, dict):
            raise BadRequest("Bad where item.")
        for key in item:
            if key not in ITEM_KEYS:
                raise BadRequest(f"Unknown parameter '{key}'.")
        kind = item.get("type")
        if not kind:
            raise BadRequest("Bad where item. No 'type'.")
        if kind in ("subQueryIn", "subQueryNotIn", "expression"):
            raise Forbidden(f"Where item type '{kind}' is not allowed.")
        value = item.get("value")
        if kind in ("and", "or", "not"):
            preds = [self.item(i) for i in _as_list(value)]
            if kind == "or":
                return lambda rec: any(p(rec) for p in preds)
            if kind == "not":
                return lambda rec: not all(p(rec) for p in preds)
            return lambda rec: all(p(rec) for p in preds)
        attribute = item.get("attribute", item.get("field"))
        if not isinstance(attribute, str):
            raise BadRequest("Bad where item. No 'attribute'.")
        if kind in LINKS:
            return self._link(kind, attribute, value)
        if attribute not in self.attributes:
            raise BadRequest(f"Not existing attribute '{attribute}' in where.")
        attr_type = self.types.get(attribute, "varchar")
        is_datetime = attr_type in ("datetime", "datetimeOptional") and not attribute.endswith("Date")
        tz = ZoneInfo(item["timeZone"]) if item.get("dateTime") and item.get("timeZone") else None
        return self._simple(kind, attribute, value, is_datetime, tz)

    def _simple(self, kind: str, attribute: str, value: Any, is_dt: bool,
                tz: ZoneInfo | None) -> Pred:
        def get(rec: Record) -> Any:
            return rec.get(attribute)

        if kind in COMPARE:
            if isinstance(value, list | dict) or value is None:
                raise BadRequest(f"Bad where item '{kind}': value must be a scalar.")
            return lambda rec: get(rec) is not None and _cmp(kind, _norm(get(rec)),
                                                           _coerce(get(rec), value))
        if kind in ("in", "notIn"):
            values = _as_list(value)
            def member(rec: Record) -> bool:
                return _norm(get(rec)) in [_coerce(get(rec), v) for v in values]
            if kind == "in":
                return lambda rec: get(rec) is not None and member(rec)
            return lambda rec: get(rec) is not None and not member(rec)
        if kind in TEXT:
            text = str(value if value is not None else "")
            pattern = _like({"like": text, "notLike": text, "contains": f"%{text}%",
                             "notContains": f"%{text}%", "startsWith": f"{text}%",
                             "endsWith": f"%{text}"}[kind])
            negate = kind in ("notLike", "notContains")
            return lambda rec: get(rec) is not None and bool(
                pattern.fullmatch(str(get(rec)))) != negate
        if kind in ("isNull", "isNotNull"):  # SQL IS [NOT] NULL: "" is not NULL
            want_null = kind == "isNull"
            return lambda rec: (get(rec) is None) == want_null
        if kind in ("isTrue", "isFalse"):
            want = kind == "isTrue"
            return lambda rec: bool(get(rec)) == want
        if kind in ARRAYS:
            return self._array(kind, get, value)
        return self._date(kind, get, value, is_dt, tz)

    def _array(self, kind: str, get: Callable[[Record], Any], value: Any) -> Pred:
        if kind == "arrayIsEmpty":
            return lambda rec: not get(rec)
        if kind == "arrayIsNotEmpty":
            return lambda rec: bool(get(rec))
        wanted = {_norm(v) for v in _as_list(value)}

        def have(rec: Record) -> set[Any]:
            return {_norm(v) for v in (get(rec) or [])}
        if kind == "arrayAnyOf":
            return lambda rec: bool(have(rec) & wanted)
        if kind == "arrayNoneOf":
            return lambda rec: not have(rec) & wanted
        return lambda rec: wanted <= have(rec)

    def _date(self, kind: str, get: Callable[[Record], Any], value: Any, is_dt: bool,
              tz: ZoneInfo | None) -> Pred:
        if kind == "ever":
            return lambda rec: get(rec) not in (None, "")
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        if kind in ("past", "future"):
            pivot = now if is_dt else _today(tz).isoformat()
            if kind == "past":
                return lambda rec: bool(get(rec)) and get(rec) < pivot
            return lambda rec: bool(get(rec)) and get(rec) > pivot
        if kind in ("olderThanXDays", "afterXDays"):
            days = _int(value, kind)
            if kind == "olderThanXDays":
                start, _ = _bounds(_today(tz) - timedelta(days=days), _today(tz), is_dt, tz)
                return lambda rec: bool(get(rec)) and get(rec) < start
            _, end = _bounds(_today(tz), _today(tz) + timedelta(days=days), is_dt, tz)
            return lambda rec: bool(get(rec)) and get(rec) > end
        if kind in DATE_NO_VALUE or kind in DATE_X:
            first, last = _date_range(kind, value, tz)  # type: ignore[misc]
            lo, hi = _bounds(first, last, is_dt, tz)
            return lambda rec: bool(get(rec)) and lo <= get(rec) <= hi
        if kind == "between":
            pair = _as_list(value)
            if len(pair) != 2:
                raise BadRequest("Bad where item 'between': value must be [from, to].")
            lo, _ = self._point(pair[0], is_dt, tz, kind)
            _, hi = self._point(pair[1], is_dt, tz, kind)
            return lambda rec: bool(get(rec)) and lo <= get(rec) <= hi
        if kind in ("on", "notOn", "after", "before"):
            lo, hi = self._point(value, is_dt, tz, kind)
            test = {"on": lambda v: lo <= v <= hi, "notOn": lambda v: not lo <= v <= hi,
                    "after": lambda v: v > hi, "before": lambda v: v < lo}[kind]
            return lambda rec: bool(get(rec)) and test(get(rec))
        raise BadRequest(f"Unknown where item type '{kind}'.")

    @staticmethod
    def _point(value: Any, is_dt: bool, tz: ZoneInfo | None, kind: str) -> tuple[str, str]:
        text = str(value or "")
        if is_dt and len(text) > 10:
            return text, text
        day = _parse_day(text, kind)
        return _bounds(day, day, is_dt, tz)

    def _link(self, kind: str, link: str, value: Any) -> Pred:
        if link not in self.links:
            raise BadRequest(f"Not existing link '{link}' in where.")
        entity_type, relations = self.entity_type, self.relations
        wanted = set(_as_list(value)) if kind not in ("isLinked", "isNotLinked") else set()

        def ids(rec: Record) -> set[str]:
            return relations.related_ids(entity_type, rec["id"], link)
        preds: dict[str, Pred] = {
            "linkedWith": lambda rec: bool(ids(rec) & wanted),
            "notLinkedWith": lambda rec: not ids(rec) & wanted,
            "linkedWithAll": lambda rec: wanted <= ids(rec),
            "isLinked": lambda rec: bool(ids(rec)),
            "isNotLinked": lambda rec: not ids(rec),
        }
        return preds[kind]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):  # PHP bracket arrays decode to {"0": ..., "1": ...}
        return [value[k] for k in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0)]
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text_filter(entity_type: str, text: str) -> Pred:
    """``textFilter``: starts-with over the collection's textFilterFields; ``*`` = wildcard."""
    pattern = _like(text.replace("*", "%") + "%")
    fields = defs.COLLECTION[entity_type]["textFilterFields"]
    attrs: list[str] = []
    for name in fields:
        spec = defs.fields(entity_type).get(name, {})
        attrs.extend(["name", "firstName", "lastName"] if spec.get("type") == "personName"
                     else [name])
    return lambda rec: any(rec.get(a) is not None and pattern.fullmatch(str(rec[a]))
                           for a in attrs)


def _not_in(attr: str, values: tuple[str, ...]) -> Pred:
    return lambda rec: rec.get(attr) not in values


def _is(attr: str, *values: str) -> Pred:
    return lambda rec: rec.get(attr) in values


def _on_today(attr: str) -> Pred:
    return lambda rec: str(rec.get(attr) or "")[:10] == _today(None).isoformat()


def _recent(rec: Record) -> bool:
    week_ago = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S")
    return (rec.get("createdAt") or "") >= week_ago


def _overdue(rec: Record) -> bool:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    end = rec.get("dateEnd") or rec.get("dateEndDate")
    return bool(end) and end < now and rec.get("status") not in ("Completed", "Canceled", "Deferred")


_TASK_DONE = ("Completed", "Canceled", "Deferred")
PRIMARY_FILTERS: dict[str, dict[str, Pred]] = {
    "Lead": {"actual": _not_in("status", ("Converted", "Recycled", "Dead")),
             "converted": _is("status", "Converted")},
    "Opportunity": {"open": _not_in("stage", ("Closed Won", "Closed Lost")),
                    "won": _is("stage", "Closed Won"), "lost": _is("stage", "Closed Lost")},
    "Case": {"open": _not_in("status", ("Closed", "Rejected", "Duplicate")),
             "closed": _is("status", "Closed")},
    "Task": {"actual": _not_in("status", _TASK_DONE), "completed": _is("status", "Completed"),
             "overdue": _overdue,
             "todays": lambda rec: _on_today("dateEnd")(rec) and rec.get("status") not in _TASK_DONE},
    "Meeting": {"planned": _is("status", "Planned"), "held": _is("status", "Held"),
                "todays": _on_today("dateStart")},
    "Call": {"planned": _is("status", "Planned"), "held": _is("status", "Held"),
             "todays": _on_today("dateStart")},
    "Account": {"customers": _is("type", "Customer"), "partners": _is("type", "Partner"),
                "resellers": _is("type", "Reseller"), "recentlyCreated": _recent},
    "User": {"active": lambda rec: bool(rec.get("isActive")) and rec.get("type") != "api",
             "api": _is("type", "api")},
}


def primary_filter(entity_type: str, name: str) -> Pred:
    try:
        return PRIMARY_FILTERS.get(entity_type, {})[name]
    except KeyError:
        raise BadRequest(f"No primary filter '{name}' for '{entity_type}'.") from None


def sort(entity_type: str, records: list[Record], order_by: str | None,
         order: str | None) -> list[Record]:
    """Order like EspoCRM: the collection default, NULLs first ascending, then id."""
    collection = defs.COLLECTION[entity_type]
    attribute = order_by or collection["orderBy"]
    direction = (order or (collection["order"] if not order_by else "asc")).lower()
    if direction not in ("asc", "desc"):
        raise BadRequest("Bad order parameter.")
    spec = defs.fields(entity_type).get(attribute)
    if spec is None and attribute not in defs.attributes(entity_type):
        raise BadRequest(f"Not existing field '{attribute}' in order.")
    if spec is not None and spec["type"] in ("link", "linkParent"):
        attribute += "Name"

    def key(rec: Record) -> tuple[Any, ...]:
        value = rec.get(attribute)
        if isinstance(value, str):
            return (1, 1, value.casefold(), 0)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (1, 0, "", value)
        return (0 if value is None else 1, 2, str(value), 0)
    return sorted(records, key=lambda r: (key(r), r["id"]), reverse=direction == "desc")
