"""Per-user rate limiting: token buckets, Retry-After, bounded memory."""

from __future__ import annotations

from freezegun import freeze_time

from espomcp.ratelimit import RateLimiter


def test_allows_up_to_capacity_then_asks_to_wait():
    with freeze_time("2026-01-01 00:00:00"):
        limiter = RateLimiter(60, burst=3)
        assert [limiter.hit("alice") for _ in range(3)] == [0, 0, 0]
        assert limiter.hit("alice") == 1
        assert limiter.hit("bob") == 0


def test_tokens_refill_over_time():
    with freeze_time("2026-01-01 00:00:00") as clock:
        limiter = RateLimiter(6, burst=1)  # one request per 10 s
        assert limiter.hit("alice") == 0
        assert limiter.hit("alice") == 10
        clock.tick(10)
        assert limiter.hit("alice") == 0


def test_memory_is_bounded():
    limiter = RateLimiter(60, max_users=100)
    for i in range(1000):
        limiter.hit(f"user-{i}")
    assert len(limiter) == 100
