"""Load shedding: calls beyond what the server can take are refused at once, with
`RESOURCE_EXHAUSTED` and a `google.rpc.RetryInfo` saying when to retry -- never left to wait
until the caller's deadline cancels them.

Three limits (settings `load_shedding.*`, docs/operations.md "Load shedding"):

- **concurrent calls per server** (`max_concurrent_rpcs`): calls being served at once;
- **concurrent calls per principal** (`max_concurrent_rpcs_per_principal`): so that one caller
  cannot take every slot (checked after authentication, beside the rate limits of
  `domicile.security`, whose refusals look the same to callers);
- **event-loop lag** (`max_event_loop_lag_seconds`): every call runs on one event loop; when
  it keeps running late (`LATE_SAMPLES` samples in a row), the server is saturated even if few
  calls are in flight (cheap calls do not overlap, they queue), and a share of new calls --
  growing while the lag stays above the bound, shrinking once it is back under -- is refused.

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

from domicile import callslots
from domicile.config import LoadSheddingSettings
from domicile.errors import DomicileError, ErrorCode
from domicile.grpc_errors import status_for
from domicile.grpc_handlers import wrap_handler
from domicile.security.context import current_caller
from domicile.telemetry.metrics import RPC_SHED
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

log = logging.getLogger(__name__)

SERVER_CONCURRENCY = "server_concurrency"
PRINCIPAL_CONCURRENCY = "principal_concurrency"
EVENT_LOOP_LAG = "event_loop_lag"

# How often the event loop's lag is sampled; how many samples in a row must be late before
# calls are shed (one late sample is a pause -- a collection, a busy neighbour -- not overload);
# how the share of refused calls moves.
LAG_SAMPLE_SECONDS = 0.005
LATE_SAMPLES = 3
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
    """The limits' state: calls in flight (per server and per principal) and the loop's lag."""

    def __init__(self, settings: LoadSheddingSettings) -> None:
        self.settings = settings
        self.in_flight = 0
        self._per_principal: dict[str, int] = {}
        self.lag = 0.0
        self.shed_share = 0.0  # the share of new calls refused for lag
        self._task: asyncio.Task[None] | None = None
        # A handful of refusals with retry delays spread over [0.5, 1.5] x retry_after, built
        # once: a refusal must cost far less than a call, and callers should not retry in step.
        base = settings.retry_after_seconds
        self._refusals = {
            limit: [
                status_for(
                    DomicileError(
                        f"server overloaded ({limit.replace('_', ' ')}); retry later",
                        ErrorCode.RESOURCE_EXHAUSTED,
                        "OVERLOADED",
                        retry_after=base * (0.5 + i / 7),
                        metadata={"limit": limit},
                    )
                )
                for i in range(8)
            ]
            for limit in (SERVER_CONCURRENCY, EVENT_LOOP_LAG)
        }

    async def start(self) -> None:
        if self.settings.max_event_loop_lag_seconds > 0:
            self._task = asyncio.create_task(self._sample_lag(), name="load-shedding-lag")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample_lag(self) -> None:
        loop = asyncio.get_running_loop()
        bound = self.settings.max_event_loop_lag_seconds
        late = 0
        while True:
            asked = loop.time()
            await asyncio.sleep(LAG_SAMPLE_SECONDS)
            self.lag = max(0.0, loop.time() - asked - LAG_SAMPLE_SECONDS)
            late = late + 1 if self.lag > bound else 0
            if late >= LATE_SAMPLES:
                self.shed_share = min(1.0, self.shed_share + SHED_STEP_UP)
            elif not late:
                self.shed_share = max(0.0, self.shed_share - SHED_STEP_DOWN)

    def server_refusal(self) -> str:
        """The limit a new call would exceed now ('' when it may start)."""
        if self.in_flight >= self.settings.max_concurrent_rpcs:
            return SERVER_CONCURRENCY
        if self.shed_share and random.random() < self.shed_share:
            return EVENT_LOOP_LAG
        return ""

    def refusal_status(self, limit: str) -> grpc.Status:
        return random.choice(self._refusals[limit])

    @contextlib.contextmanager
    def principal_slot(self, principal: str) -> Any:
        """Hold one of `principal`'s slots for the duration; DomicileError RESOURCE_EXHAUSTED
        (with retry_after) when all are taken."""
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
        try:
            yield
        finally:
            slot.give_back()


class ServerLoadShedding(grpc.aio.ServerInterceptor):
    """The server-wide limits, first of all interceptors: a refused call costs no more than
    the gRPC stack's own work for it."""

    def __init__(self, shedder: LoadShedder) -> None:
        self._shedder = shedder
        self._sheddable = sheddable_methods()

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method not in self._sheddable:
            return await continuation(handler_call_details)
        shedder = self._shedder
        limit = shedder.server_refusal()
        if limit:
            RPC_SHED.labels(limit).inc()
            return _refusal_handler(shedder.refusal_status(limit))
        handler = await continuation(handler_call_details)
        if handler is None:
            return None

        @contextlib.asynccontextmanager
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            slot = _ServerSlot(shedder)
            slot.take_again()
            callslots.hold(slot)
            try:
                yield
            finally:
                slot.give_back()

        return wrap_handler(handler, counted)


class _ServerSlot:
    """A call's place in the server-wide count (a `callslots.Slot`); held while not given back."""

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
    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> None:
        # Setting the status (rather than raising through `abort`) is the cheapest refusal
        # grpc.aio has; the request is never parsed.
        context.set_code(status.code)
        context.set_details(status.details)
        context.set_trailing_metadata(status.trailing_metadata)

    return grpc.unary_unary_rpc_method_handler(refuse)


class PrincipalLoadShedding(grpc.aio.ServerInterceptor):
    """The per-principal limit; placed after authentication, which names the principal."""

    def __init__(self, shedder: LoadShedder) -> None:
        self._shedder = shedder
        self._sheddable = sheddable_methods()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method not in self._sheddable:
            return handler

        @contextlib.asynccontextmanager
        async def slot(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            caller = current_caller.get()
            if caller is None:  # --insecure: nobody to tell apart
                yield
                return
            with self._shedder.principal_slot(caller.subject):
                yield

        return wrap_handler(handler, slot)
