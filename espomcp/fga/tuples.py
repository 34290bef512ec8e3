"""Relationship tuples (OpenFGA ``TupleKey``) and the syntax of their object and user strings.

Objects are ``type:id``; users are ``type:id``, the typed wildcard ``type:*`` or a userset
``type:id#relation``. ``TupleKey.from_dict`` / ``to_dict`` use the REST shape
``{"user", "relation", "object", "condition"?: {"name", "context"?}}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from espomcp.fga.errors import VALIDATION_ERROR, FgaError

_TYPE = r"[^\s:#*]+"
_ID = r"[^\s#:*][^\s#]*"
_REL = r"[^\s:#@*]+"
OBJECT_RE = re.compile(rf"^({_TYPE}):({_ID})$")
USER_RE = re.compile(rf"^({_TYPE}):(?:(\*)|({_ID})(?:#({_REL}))?)$")
RELATION_RE = re.compile(rf"^{_REL}$")
MAX_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Condition:
    """A tuple's condition: the model condition ``name`` and the parameter values stored with it."""

    name: str
    context: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.context:
            out["context"] = dict(self.context)
        return out


@dataclass(frozen=True, slots=True)
class TupleKey:
    """One relationship ``(user, relation, object)``, optionally conditioned."""

    user: str
    relation: str
    object: str
    condition: Condition | None = None

    @classmethod
    def from_dict(cls, data: Any) -> TupleKey:
        """Build from the REST shape; a malformed value raises FgaError(2000)."""
        if isinstance(data, TupleKey):
            return data
        if not isinstance(data, dict):
            raise FgaError(VALIDATION_ERROR, "a tuple key must be an object with user, relation, object")
        fields = []
        for name in ("user", "relation", "object"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise FgaError(VALIDATION_ERROR, f"tuple key field {name!r} must be a non-empty string")
            fields.append(value)
        condition = None
        raw = data.get("condition")
        if raw is not None:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
                raise FgaError(VALIDATION_ERROR, "a tuple condition needs a non-empty name")
            context = raw.get("context")
            if context is not None and not isinstance(context, dict):
                raise FgaError(VALIDATION_ERROR, "a tuple condition context must be an object")
            condition = Condition(raw["name"], dict(context) if context else None)
        return cls(fields[0], fields[1], fields[2], condition)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.user, "relation": self.relation, "object": self.object}
        if self.condition is not None:
            out["condition"] = self.condition.to_dict()
        return out

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the tuple in a store (the condition is not part of it)."""
        return (self.object, self.relation, self.user)

    def __str__(self) -> str:
        return f"{self.object}#{self.relation}@{self.user}"


def object_type(obj: str) -> str:
    """The type part of ``type:id`` (or of a user string)."""
    return obj.partition(":")[0]


def parse_object(obj: str) -> tuple[str, str]:
    """Split ``type:id``; anything else raises FgaError(2000)."""
    match = OBJECT_RE.match(obj) if isinstance(obj, str) and len(obj) <= MAX_LENGTH else None
    if match is None:
        raise FgaError(VALIDATION_ERROR, f"invalid object {obj!r}: expected 'type:id'")
    return match.group(1), match.group(2)


def parse_user(user: str) -> tuple[str, str, str | None]:
    """Split a user into ``(type, id, relation)``; id is ``*`` for a wildcard.

    Raises FgaError(2000) for malformed users (also ``type:*#relation``).
    """
    match = USER_RE.match(user) if isinstance(user, str) and len(user) <= MAX_LENGTH else None
    if match is None:
        raise FgaError(VALIDATION_ERROR, f"invalid user {user!r}: expected 'type:id', 'type:*' or "
                                         "'type:id#relation'")
    kind, star, ident, relation = match.groups()
    return kind, (star or ident), relation


def user_form(user: str) -> str:
    """The restriction a (well-formed) user string needs: ``type``, ``type:*`` or ``type#relation``."""
    kind, _, rest = user.partition(":")
    if rest == "*":
        return kind + ":*"
    _, hash_, relation = rest.partition("#")
    return f"{kind}#{relation}" if hash_ else kind


def check_relation_name(relation: str) -> str:
    """Reject a syntactically invalid relation name with FgaError(2000)."""
    if not isinstance(relation, str) or not RELATION_RE.match(relation) or len(relation) > 50:
        raise FgaError(VALIDATION_ERROR, f"invalid relation {relation!r}")
    return relation
