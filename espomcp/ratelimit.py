"""Per-user rate limiting for /mcp: a token bucket per subject, in bounded memory.

Each process keeps its own buckets (with N gunicorn workers a user gets at most N times the
rate in the worst case); the least recently seen subjects are evicted beyond ``max_users``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict


class RateLimiter:
    """``hit(subject)`` returns 0 when allowed, else whole seconds to wait (for Retry-After)."""

    def __init__(self, per_minute: int, *, burst: int | None = None,
                 max_users: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else per_minute)
        self.max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, subject: str) -> int:
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.pop(subject, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[subject] = (tokens - 1.0, now)
                wait = 0
            else:
                self._buckets[subject] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            while len(self._buckets) > self.max_users:
                self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
