"""Token buckets keyed by who spends them (a principal, a client).

Each key has a bucket of `burst` tokens refilled at `rate` tokens per second; a charge takes
its amount of tokens or none, and is refused with the time until that many are available.
Buckets are kept in memory per process: several replicas each apply the limit (documented).
`domicile.security.budgets` builds the per-principal cost model on this.
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
    """Token-bucket limiter keyed by principal or client. Not thread-safe: used from the event loop."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, amount: float = 1.0) -> float | None:
        """Take `amount` tokens (at most `burst`) for `key`: None when allowed, else the
        seconds to wait before the same charge can succeed (> 0); nothing is taken then."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= amount:
            bucket.tokens -= amount
            return None
        return (amount - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        idle = [key for key, b in self._buckets.items() if now - b.updated >= refill]
        for key in idle:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
