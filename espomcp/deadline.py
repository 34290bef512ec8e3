"""An overall time budget for one tool call (``settings.request_timeout_seconds``).

Upstream clients time out per call, but a tool may make many calls (a search scanning pages,
a bulk change), so a slow EspoCRM could otherwise hold a request for ``calls x timeout``. The
tool-call path opens a budget with ``within(seconds)``; every upstream call asks
``call_timeout(own_timeout)`` for the time it may still use, which raises ``DeadlineExceeded``
once the budget is spent. The budget lives in a ``ContextVar``, so each request thread (or
task) has its own and code outside a tool call is unaffected.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Below this much time left an upstream call is not worth starting.
MIN_CALL_SECONDS = 0.05

_deadline: ContextVar[float | None] = ContextVar("espomcp_deadline", default=None)


class DeadlineExceeded(Exception):
    """The request's time budget is spent; ``str(exc)`` is safe to show."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the block with a budget of ``seconds`` (nested budgets only ever shrink)."""
    end = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left in the current budget (None = no budget)."""
    end = _deadline.get()
    return None if end is None else end - time.monotonic()


def call_timeout(timeout: float) -> float:
    """The timeout an upstream call may use: its own, capped by the budget left.

    Raises ``DeadlineExceeded`` when too little time is left to start the call.
    """
    left = remaining()
    if left is None:
        return timeout
    if left < MIN_CALL_SECONDS:
        raise DeadlineExceeded("the request's time limit was reached")
    return min(timeout, left)
