"""Per-principal token buckets, on a fake clock."""

from __future__ import annotations

import pytest

from domicile.security.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_time_until_next_token():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("a") is None


def test_principals_have_separate_buckets():
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    assert limiter.acquire("b") is None


def test_refill_is_capped_at_burst():
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=2, clock=clock)
    limiter.acquire("a")
    clock.now += 3600
    assert [limiter.acquire("a") is None for _ in range(3)] == [True, True, False]


def test_idle_buckets_are_forgotten_when_many(monkeypatch):
    monkeypatch.setattr("domicile.security.ratelimit._PRUNE_ABOVE", 10)
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    for i in range(10):
        limiter.acquire(f"p{i}")
    clock.now += 5  # every bucket has refilled
    limiter.acquire("late")
    assert len(limiter) == 1


def test_invalid_configuration():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)
