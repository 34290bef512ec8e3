"""espomcp.jsontext: orjson's output must equal the standard library's compact UTF-8 JSON,
including the values orjson refuses (it hands those to ``json``)."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from espomcp.jsontext import dumps, dumps_text


@dataclasses.dataclass
class Point:
    x: int


def stdlib(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode("ascii")


@pytest.mark.parametrize("value", [
    {"record": {"id": "66a0c1d2e3f4a5b6c", "name": "Zoë 北京", "n": 1.5, "ok": True,
                "none": None, "tags": ["a", "b"]}},
    {1: "int key", None: "null key"},   # non-string keys as json writes them
    2**70,                              # beyond 64 bits: orjson refuses, json answers
    "lone \ud800 surrogate",            # cannot be UTF-8: escaped, as before
    {"when": datetime.datetime(2026, 11, 26, 9, 15)},  # str(), not RFC 3339
    Point(1),                           # str(), not an object
    {"set": {1}},
    "\u2028 line separator and </script>",
])
def test_same_bytes_as_the_standard_library(value):
    assert dumps(value) == stdlib(value)
    assert dumps_text(value) == stdlib(value).decode("utf-8")


def test_nesting_beyond_orjsons_limit_still_encodes():
    deep: list[Any] = []
    cursor = deep
    for _ in range(300):
        cursor.append([])
        cursor = cursor[0]
    assert dumps(deep) == stdlib(deep)
