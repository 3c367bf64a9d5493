"""Load shedding: calls beyond what the server can take are refused at once, with
`RESOURCE_EXHAUSTED` and a `google.rpc.RetryInfo` saying when to retry -- never left to wait
until the caller's deadline cancels them.

Three limits (settings `load_shedding.*`, docs/operations.md "Load shedding"):

- **concurrent calls per server** (`max_concurrent_rpcs`): calls being served at once;
- **concurrent calls per principal** (`max_concurrent_rpcs_per_principal`): so that one caller
  cannot take every slot (checked after authentication, beside the rate limits of
  `domicile.security`, whose refusals look the same to callers);
- **a saturated event loop**: every call runs on one event loop, so the server can be
  saturated with few calls in flight (cheap calls do not overlap, they queue). It is, for
  `SATURATED_SAMPLES` samples in a row, when the loop runs late (`max_event_loop_lag_seconds`:
  long calls hold it) or hardly ever waits for work (`min_event_loop_idle_share`: calls arrive
  faster than it takes them, and queue in gRPC's C core where nothing else sees them -- see
  `domicile.eventloop`). Then a share of new calls -- growing while the loop stays saturated,
  shrinking once it is not -- is refused.

Only the unary methods of the `domicile.v1` services are shed: health checks and reflection
always get through (an orchestrator must be able to tell an overloaded server from a dead one).
A call shed by the server-wide limits is refused before authentication and anything else
runs, and counted in `domicile_rpc_shed_total{limit}`; it gets no access log line. A call
waiting for the decision log's group commit does not count as in flight meanwhile (see
`domicile.callslots`): the log bounds that backlog itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc

from domicile import callslots, eventloop
from domicile.config import LoadSheddingSettings
from domicile.errors import DomicileError, ErrorCode
from domicile.grpc_errors import status_for
from domicile.grpc_handlers import WrappingInterceptor, wrap_handler
from domicile.security.context import current_caller
from domicile.telemetry.metrics import RPC_SHED
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

log = logging.getLogger(__name__)

SERVER_CONCURRENCY = "server_concurrency"
PRINCIPAL_CONCURRENCY = "principal_concurrency"
EVENT_LOOP_SATURATED = "event_loop_saturated"

# How often the event loop is sampled; how many samples in a row must find it saturated before
# calls are shed (one such sample is a pause -- a collection, a busy neighbour -- not overload);
# how the share of refused calls moves.
SAMPLE_SECONDS = 0.005
SATURATED_SAMPLES = 3
SHED_STEP_UP, SHED_STEP_DOWN = 0.2, 0.05


def sheddable_methods() -> frozenset[str]:
    """The full names of the unary methods of the domicile.v1 services."""
    return frozenset(
        f"/{service.full_name}/{method.name}"
        for module in (catalog_pb2, lineage_pb2, residency_pb2, policy_pb2, audit_pb2, access_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    )


class LoadShedder:
    """The limits' state: calls in flight (per server and per principal) and how saturated the
    event loop is."""

    def __init__(self, settings: LoadSheddingSettings) -> None:
        self.settings = settings
        self.in_flight = 0
        self._per_principal: dict[str, int] = {}
        self.lag = 0.0  # how late the loop ran the last sample's timer
        self.idle_share: float | None = None  # the share of the last sample it waited for work
        self.shed_share = 0.0  # the share of new calls refused because the loop is saturated
        self._saturated_samples = 0
        self._task: asyncio.Task[None] | None = None
        # A handful of refusals with retry delays spread over [0.5, 1.5] x retry_after, built
        # once: a refusal must cost far less than a call, and callers should not retry in step.
        base = settings.retry_after_seconds
        self._refusals = {
            limit: [
                _refusal_handler(
                    status_for(
                        DomicileError(
                            f"server overloaded ({limit.replace('_', ' ')}); retry later",
                            ErrorCode.RESOURCE_EXHAUSTED,
                            "OVERLOADED",
                            retry_after=base * (0.5 + i / 7),
                            metadata={"limit": limit},
                        )
                    )
                )
                for i in range(8)
            ]
            for limit in (SERVER_CONCURRENCY, EVENT_LOOP_SATURATED)
        }
        # (A label lookup costs several times the count itself, on every refusal.)
        self.shed_counters = {limit: RPC_SHED.labels(limit) for limit in (SERVER_CONCURRENCY, EVENT_LOOP_SATURATED)}

    async def start(self) -> None:
        idle = eventloop.idle_tracker(asyncio.get_running_loop())  # measured even when not a limit
        if self.settings.max_event_loop_lag_seconds > 0 or idle is not None:
            self._task = asyncio.create_task(self._sample(idle), name="load-shedding-sampler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample(self, idle: eventloop.IdleTrackingSelector | None) -> None:
        """Measure the loop every SAMPLE_SECONDS (it runs on it): how late the timer fires, and
        (on a loop built by `domicile.eventloop`) how much of the time it waited for work."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            waited = idle.waited_seconds if idle is not None else 0.0
            await asyncio.sleep(SAMPLE_SECONDS)
            elapsed = loop.time() - asked
            idle_share = min(1.0, (idle.waited_seconds - waited) / elapsed) if idle is not None else None
            self.observe(max(0.0, elapsed - SAMPLE_SECONDS), idle_share)

    def observe(self, lag: float, idle_share: float | None) -> None:
        """One sample of the loop: `lag` seconds late, waiting for work `idle_share` of the time
        (None: not measured). Moves the share of new calls refused."""
        self.lag, self.idle_share = lag, idle_share
        settings = self.settings
        saturated = 0 < settings.max_event_loop_lag_seconds < lag or (
            idle_share is not None and idle_share < settings.min_event_loop_idle_share
        )
        self._saturated_samples = self._saturated_samples + 1 if saturated else 0
        if self._saturated_samples >= SATURATED_SAMPLES:
            self.shed_share = min(1.0, self.shed_share + SHED_STEP_UP)
        elif not saturated:
            self.shed_share = max(0.0, self.shed_share - SHED_STEP_DOWN)

    def server_refusal(self) -> str:
        """The limit a new call would exceed now ('' when it may start)."""
        if self.in_flight >= self.settings.max_concurrent_rpcs:
            return SERVER_CONCURRENCY
        if self.shed_share and random.random() < self.shed_share:
            return EVENT_LOOP_SATURATED
        return ""

    def refusal_handler(self, limit: str) -> grpc.RpcMethodHandler:
        """A handler refusing a call for `limit`."""
        return random.choice(self._refusals[limit])

    def principal_slot(self, principal: str) -> _PrincipalSlot:
        """One of `principal`'s slots, held (and known to `callslots`) until given back;
        DomicileError RESOURCE_EXHAUSTED (with retry_after) when all are taken."""
        held = self._per_principal.get(principal, 0)
        if held >= self.settings.max_concurrent_rpcs_per_principal:
            RPC_SHED.labels(PRINCIPAL_CONCURRENCY).inc()
            raise DomicileError(
                f"too many concurrent calls from {principal} (at most "
                f"{self.settings.max_concurrent_rpcs_per_principal}); retry later",
                ErrorCode.RESOURCE_EXHAUSTED,
                "PRINCIPAL_CONCURRENCY_LIMIT",
                retry_after=self.settings.retry_after_seconds * random.uniform(0.5, 1.5),
            )
        slot = _PrincipalSlot(self._per_principal, principal)
        slot.take_again()
        callslots.hold(slot)
        return slot


class ServerLoadShedding(WrappingInterceptor):
    """The server-wide limits, first of all interceptors: a refused call costs no more than
    the gRPC stack's own work for it."""

    def __init__(self, shedder: LoadShedder) -> None:
        super().__init__()
        self._shedder = shedder
        self._sheddable = sheddable_methods()

    def refuse(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method not in self._sheddable:
            return None
        shedder = self._shedder
        limit = shedder.server_refusal()
        if not limit:
            return None
        shedder.shed_counters[limit].inc()
        return shedder.refusal_handler(limit)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        shedder = self._shedder
        return wrap_handler(handler, lambda request, context: _ServerSlot(shedder))


class _ServerSlot:
    """A call's place in the server-wide count (a `callslots.Slot`), held from entering the call
    to leaving it, unless given back meanwhile."""

    __slots__ = ("_held", "_shedder")

    def __init__(self, shedder: LoadShedder) -> None:
        self._shedder = shedder
        self._held = False

    def take_again(self) -> None:
        if not self._held:
            self._held = True
            self._shedder.in_flight += 1

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._shedder.in_flight -= 1

    async def __aenter__(self) -> None:
        self.take_again()
        callslots.hold(self)

    async def __aexit__(self, *exc_info: Any) -> None:
        self.give_back()


class _PrincipalSlot:
    """A call's place in its principal's count (a `callslots.Slot`)."""

    __slots__ = ("_counts", "_held", "_principal")

    def __init__(self, counts: dict[str, int], principal: str) -> None:
        self._counts = counts
        self._principal = principal
        self._held = False

    def take_again(self) -> None:
        if not self._held:
            self._held = True
            self._counts[self._principal] = self._counts.get(self._principal, 0) + 1

    def give_back(self) -> None:
        if self._held:
            self._held = False
            remaining = self._counts[self._principal] - 1
            if remaining:
                self._counts[self._principal] = remaining
            else:
                del self._counts[self._principal]


def _refusal_handler(status: grpc.Status) -> grpc.RpcMethodHandler:
    async def refuse(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        # Setting the status (rather than raising through `abort`) is the cheapest refusal
        # grpc.aio has.
        context.set_code(status.code)
        context.set_details(status.details)
        context.set_trailing_metadata(status.trailing_metadata)

    # Served as client-streaming, so that grpc.aio does not even read the request (a unary
    # handler waits for it first): one operation through gRPC's core less per refusal, whose
    # cost is nearly all gRPC's own. Callers see their unary call refused all the same.
    return grpc.stream_unary_rpc_method_handler(refuse)


class PrincipalLoadShedding(WrappingInterceptor):
    """The per-principal limit; placed after authentication, which names the principal."""

    def __init__(self, shedder: LoadShedder) -> None:
        super().__init__()
        self._shedder = shedder
        self._sheddable = sheddable_methods()

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if method not in self._sheddable:
            return handler
        shedder = self._shedder
        return wrap_handler(handler, lambda request, context: _PrincipalCall(shedder))


class _PrincipalCall:
    """A call held in its principal's count for its duration (nobody's with --insecure)."""

    __slots__ = ("_shedder", "_slot")

    def __init__(self, shedder: LoadShedder) -> None:
        self._shedder = shedder
        self._slot: _PrincipalSlot | None = None

    async def __aenter__(self) -> None:
        caller = current_caller.get()
        if caller is not None:  # --insecure: nobody to tell apart
            self._slot = self._shedder.principal_slot(caller.subject)

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._slot is not None:
            self._slot.give_back()
