"""UTC timestamps with milliseconds for log and audit lines (``2026-11-26T09:15:48.123Z``)."""

from __future__ import annotations

import time

_last: tuple[int, str] = (-1, "")


def iso_millis(epoch: float) -> str:
    """``epoch`` as ISO 8601 UTC with milliseconds; the date-time part is formatted once per
    second (every request writes two such stamps)."""
    global _last
    second = int(epoch)
    cached = _last  # one read: another thread may replace it, never half-way
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _last = cached
    return f"{cached[1]}.{int((epoch - second) * 1000):03d}Z"
