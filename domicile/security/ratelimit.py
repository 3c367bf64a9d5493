"""Per-principal token buckets.

Each principal (a token's `sub`) has a bucket of `burst` tokens refilled at `rate` tokens per
second; a request takes one token or is refused with the time until one is available. Buckets
are kept in memory per process: several replicas each apply the limit (documented).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Above this many buckets, full (idle) buckets are dropped: an idle bucket is
# indistinguishable from a fresh one, so forgetting it changes no answer.
_PRUNE_ABOVE = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token-bucket limiter keyed by principal. Not thread-safe: used from the event loop."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, principal: str) -> float | None:
        """Take one token for `principal`: None when allowed, else the seconds to wait before
        a retry can succeed (> 0)."""
        now = self._clock()
        bucket = self._buckets.get(principal)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[principal] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        idle = [key for key, b in self._buckets.items() if now - b.updated >= refill]
        for key in idle:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
