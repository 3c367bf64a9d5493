"""When the SDK tries a call again, and how long it waits first.

Only calls that are safe to repeat are retried (`calls.Call.retryable`: reads, questions,
idempotent writes and writes conditioned on `expected_revision`), only for failures that say
"try again": UNAVAILABLE (the server or its store cannot be reached) and RESOURCE_EXHAUSTED
carrying a RetryInfo (rate limited). A RetryInfo's delay is honoured; otherwise the wait grows
exponentially with full jitter. No retry starts that could not finish before the call's
deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from domicile.client.errors import DomicileRpcError


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first try (1 disables retries); the n-th retry waits a random
    time up to `min(max_backoff, initial_backoff * multiplier**(n-1))` seconds, or the server's
    RetryInfo delay when it sent one."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must not be negative and the multiplier at least 1")

    def delay(
        self, error: DomicileRpcError, attempt: int, remaining: float, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before trying again after `error` ended try number `attempt` (from
        1) of a retryable call with `remaining` seconds to its deadline; None: do not retry."""
        if attempt >= self.max_attempts or not _transient(error):
            return None
        if error.retry_after is not None:
            wait = error.retry_after
        else:
            ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
            wait = (rng or random).uniform(0, ceiling)
        # A try needs some time of its own after the wait; do not start one doomed to time out.
        return wait if wait < remaining * 0.9 else None


NO_RETRIES = RetryPolicy(max_attempts=1)


def _transient(error: DomicileRpcError) -> bool:
    if error.code == grpc.StatusCode.UNAVAILABLE:
        return True
    return error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after is not None
