"""Id and name hygiene: nothing reaches a URL path unless it is a well-formed EspoCRM token.

Reference §1: ids are 17 lowercase hex characters (or UUID4 when the instance is configured
for it); a client must reject ids containing ``/``, ``?``, ``#``, ``%`` or ``..`` before
building a path. We go further and accept only the shapes EspoCRM actually produces, plus the
short alphanumeric ids of built-in records (``system``, legacy ``1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from espomcp.espocrm.errors import InvalidInput

_ID = re.compile(
    r"[0-9a-f]{17}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|[A-Za-z0-9]{1,24}"
)
_ENTITY_TYPE = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}(\.[A-Za-z][A-Za-z0-9_]{0,99})?")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "...'"


def validate_id(value: object) -> str:
    """Return ``value`` if it is a well-formed EspoCRM record id, else raise ``InvalidInput``."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(
            f"Invalid record id {_shown(value)}: EspoCRM ids are 17 lowercase hex characters "
            "(e.g. '66a0c1d2e3f4a5b6c') or a UUID."
        )
    return value


def validate_ids(values: object) -> list[str]:
    """A non-empty list of valid ids (each checked by ``validate_id``)."""
    if not isinstance(values, list | tuple) or not values:
        raise InvalidInput("Expected a non-empty list of record ids.")
    return [validate_id(v) for v in values]


def validate_entity_type(value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of the ``allowed`` entity types (case-sensitive)."""
    allowed = list(allowed)
    if isinstance(value, str) and _ENTITY_TYPE.fullmatch(value) and value in allowed:
        return value
    hint = ""
    if isinstance(value, str):
        hint = next((f" Did you mean '{a}'?" for a in allowed if a.lower() == value.lower()), "")
    raise InvalidInput(
        f"Unknown or disallowed entity type {_shown(value)}.{hint} Allowed: {', '.join(allowed)}."
    )


def validate_name(value: object, what: str = "link") -> str:
    """A link, field or action name: letters, digits and ``_``, starting with a letter."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(f"Invalid {what} name {_shown(value)}.")
    return value


def validate_attribute(value: object) -> str:
    """An attribute name as used in ``select``/``orderBy``/where (``name``, ``account.name``)."""
    if not isinstance(value, str) or not _ATTRIBUTE.fullmatch(value):
        raise InvalidInput(f"Invalid attribute name {_shown(value)}.")
    return value
