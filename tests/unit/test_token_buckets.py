"""The token buckets behind the per-key rate limit and the per-address
failed-authentication budget: refill, retry hint, bounded memory."""

from __future__ import annotations

import pytest

from uba.domain import errors
from uba.domain.security import FailureLimiter, RateLimiter, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_the_burst_then_refuses_with_the_wait_until_the_next_token():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("k")
    with pytest.raises(errors.ResourceExhausted) as info:
        limiter.acquire("k")
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.acquire("other")  # each key has its own bucket
    clock.now = 0.5
    limiter.acquire("k")


def test_failure_limiter_counts_only_failures_and_refills():
    clock = Clock()
    limiter = FailureLimiter(rate=1.0, burst=2, clock=clock)
    limiter.check("a")
    limiter.failed("a")
    limiter.failed("a")
    with pytest.raises(errors.ResourceExhausted):
        limiter.check("a")
    limiter.failed("a")  # never below empty: one second still refills one
    clock.now = 1.0
    limiter.check("a")


def test_buckets_forget_idle_names_past_the_bound():
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock, max_names=3)
    for name in "abc":
        buckets.take(name)
    clock.now = 5.0  # a, b and c are full again: idle
    buckets.take("d")
    assert buckets.wait("d") > 0 and buckets.wait("a") == 0
    assert len(buckets._buckets) == 1


def test_zero_rate_means_no_limit():
    limiter = FailureLimiter(rate=0, burst=0)
    for _ in range(100):
        limiter.failed("a")
    limiter.check("a")
