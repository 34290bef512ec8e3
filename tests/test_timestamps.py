"""Log and audit timestamps: the once-per-second cache must never serve a stale second."""

from __future__ import annotations

import time

import pytest

from espomcp.timestamps import iso_millis


def reference(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


@pytest.mark.parametrize("epoch", [0.0, 1764148548.1234, 1764148548.9996, 1764148549.0004,
                                   1764148549.5, 1764148548.2, 1798761599.999])
def test_matches_strftime_across_second_boundaries(epoch):
    assert iso_millis(epoch) == reference(epoch)


def test_going_back_in_time_is_not_served_from_the_cache():
    later, earlier = 1764148600.25, 1764148500.75
    assert iso_millis(later) == reference(later)
    assert iso_millis(earlier) == reference(earlier)
