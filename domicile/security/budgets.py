"""Per-principal budgets: the one cost model for what a caller may spend.

Every principal -- a token's `sub`; without authentication (`--insecure`) every caller is the
anonymous principal `""` -- has a budget per resource, a token bucket of `burst` units
refilled at `per_second` units per second (settings `rate_limit.*`):

| resource | one unit is | charged by |
|---|---|---|
| `requests` | an RPC or HTTP request | admission (`Guard`, or the anonymous admission), before the scope check |
| `decisions` | a residency decision answered and logged | ResidencyService: Decide and Route 1, BatchDecide one per question, CheckJob one per input and output |
| `lineage_edges` | an input × output pair recorded or ended | RecordLineage, EndLineage, OpenLineage events that record lineage |

A charge of n units takes n or nothing, after the request was validated (a refused request
costs nothing but its request unit). Past the budget the request is refused
RESOURCE_EXHAUSTED, reason RATE_LIMITED, `ErrorInfo.metadata` naming the resource and a
`RetryInfo` saying when the same charge can succeed; a charge larger than the burst can never
succeed and says so, without retry info. Each refusal is a `rate_limited` security event
(when authentication is on). Budgets are per process: N replicas allow N times as much.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domicile.errors import DomicileError, ErrorCode
from domicile.security import events as ev
from domicile.security.context import current_caller, current_trace
from domicile.security.ratelimit import RateLimiter

if TYPE_CHECKING:
    from domicile.config import RateLimitSettings
    from domicile.security.events import SecurityEventLog


class Resource(enum.Enum):
    REQUESTS = "requests"
    DECISIONS = "decisions"
    LINEAGE_EDGES = "lineage_edges"


@dataclass(frozen=True)
class Budget:
    per_second: float
    burst: int


class Budgets:
    """The budgets of every principal, per resource (see the module docstring). Not
    thread-safe: charged from the event loop."""

    def __init__(self, budgets: Mapping[Resource, Budget], events: SecurityEventLog | None = None) -> None:
        self.budgets = dict(budgets)
        self._buckets = {resource: RateLimiter(b.per_second, b.burst) for resource, b in budgets.items()}
        self._events = events

    @classmethod
    def from_settings(cls, settings: RateLimitSettings, events: SecurityEventLog | None = None) -> Budgets | None:
        """The configured budgets; None when `rate_limit.enabled` is false."""
        if not settings.enabled:
            return None
        return cls(
            {
                Resource.REQUESTS: Budget(settings.requests_per_second, settings.burst),
                Resource.DECISIONS: Budget(settings.decisions_per_second, settings.decision_burst),
                Resource.LINEAGE_EDGES: Budget(settings.lineage_edges_per_second, settings.lineage_edge_burst),
            },
            events,
        )

    def charge(
        self,
        principal: str,
        resource: Resource,
        amount: int = 1,
        *,
        method: str = "",
        peer: str = "",
        trace_id: str = "",
    ) -> None:
        """Take `amount` units of `principal`'s `resource` budget, or raise the refusal the
        module docstring describes (recorded as a security event)."""
        if amount <= 0:
            return
        budget = self.budgets[resource]
        if amount > budget.burst:
            self._refused(principal, resource, amount, None, method, peer, trace_id)
        wait = self._buckets[resource].acquire(principal, amount)
        if wait is not None:
            self._refused(principal, resource, amount, wait, method, peer, trace_id)

    def charge_caller(self, resource: Resource, amount: int) -> None:
        """`charge` the principal of the request being served (see `current_caller`)."""
        caller = current_caller.get()
        self.charge(caller.subject if caller is not None else "", resource, amount, trace_id=current_trace())

    def _refused(
        self,
        principal: str,
        resource: Resource,
        amount: int,
        wait: float | None,
        method: str,
        peer: str,
        trace_id: str,
    ) -> None:
        who = principal or "the anonymous principal"
        if wait is None:
            budget = self.budgets[resource]
            message = (
                f"this request costs {amount} {resource.value}, more than {who}'s budget holds "
                f"({budget.burst}, rate_limit settings): split it"
            )
        else:
            message = f"{resource.value} budget exceeded for {who}"
        if self._events is not None:
            detail: dict[str, str | int | float] = {"resource": resource.value, "amount": amount}
            if wait is not None:
                detail["retry_after_seconds"] = round(wait, 3)
            self._events.record(
                ev.RATE_LIMITED,
                outcome="denied",
                principal=principal,
                method=method,
                peer=peer,
                trace_id=trace_id,
                reason="RATE_LIMITED",
                **detail,
            )
        metadata = {"resource": resource.value}
        if trace_id:
            metadata["trace_id"] = trace_id
        raise DomicileError(message, ErrorCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", retry_after=wait, metadata=metadata)
