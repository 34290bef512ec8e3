"""Compact JSON for responses, audit lines and logs: orjson, the standard library as fallback.

orjson encodes a tool call's response ~10x faster than ``json`` (a 1 KB record: ~2 µs against
~22 µs, and a response holds each record twice: as text and as structured content). What it
refuses (integers beyond 64 bits, lone surrogates, nesting deeper than 254) is encoded by
``json`` exactly as before. Both give the same compact UTF-8 text; values JSON cannot hold
(datetimes, dataclasses, sets …) become their ``str()`` in both.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8 (ASCII escapes where UTF-8 cannot hold a string)."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (from "\ud800" escapes) only survive as escapes
        return json.dumps(value, separators=(",", ":"), default=str).encode("ascii")


def dumps_text(value: Any) -> str:
    """``dumps`` as a ``str``."""
    return dumps(value).decode("utf-8")
