"""A unary Decide's own Python in process: the handler `domicile serve` serves, timed call by call.

    .venv/bin/python bench/unary_handler_bench.py [--datasets 20000] [--rounds 2]

The server's CPU per Decide (bench/router_bench.py's gRPC phases) is mostly grpc.aio's own per
call (its accept loop, a task, callbacks -- the canned-answer floor's share) plus what Domicile
runs for the call, which this measures alone: the Decide handler wrapped by the server's
interceptors as `create_server` chains them (load shedding, access telemetry and its log line,
error mapping, the anonymous principal's budget, request parsing), called on an event loop with
a stand-in ServicerContext, for router_bench's catalog (--datasets datasets, seed 7) and policy
and 20,000 of its questions, decision log on (non-durable, as router_bench's in-process
phases), logging to a file. Beside it the same chain without the access log line, without the
access interceptor, `ResidencyServicer.Decide` alone (its request parsed), and the floor's
handler (the error mapping around a canned answer, parsed and serialized). Thread CPU per
call, the best of five passes, each variant in turn, --rounds times: in-process figures are hot
in the caches, so inside a server, between grpc.aio's own work, the same code costs more.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from router_bench import POLICY, REGIONS, App, questions, synthetic_catalog

from domicile.config import load_settings
from domicile.grpc_errors import ErrorMappingInterceptor, RequestParsingInterceptor
from domicile.grpc_handlers import chained
from domicile.loadshed import LoadShedder, ServerLoadShedding
from domicile.router.runtime import Router
from domicile.router.service import ResidencyServicer, add_residency_service
from domicile.security import build_security
from domicile.telemetry.access import AccessInterceptor
from domicile.telemetry.logs import configure_logging
from domicile.v1 import residency_pb2

METHOD = "/domicile.v1.ResidencyService/Decide"
OPERATIONS = {"store": residency_pb2.OPERATION_STORE, "process": residency_pb2.OPERATION_PROCESS}


class _Context:
    """What the handlers read of a grpc.aio ServicerContext on a call that succeeds."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def code(self) -> None:
        return None

    async def abort(self, *status: Any) -> None:
        raise RuntimeError(f"the benchmark's call failed: {status}")


class _Details:
    method = METHOD
    invocation_metadata = ()


class _Handlers:
    """Collects the generic handlers a registration function adds, as a server would."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, generic: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.generic.extend(generic)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        pass  # the same handlers as the generic ones (older registrations add both)

    def find(self) -> grpc.RpcMethodHandler:
        return next(h for h in (g.service(_Details()) for g in self.generic) if h is not None)


async def _wrapped(interceptors: list[grpc.aio.ServerInterceptor], handler: grpc.RpcMethodHandler):
    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return handler

    (chain,) = chained(interceptors)
    return (await chain.intercept_service(continuation, _Details())).unary_unary


async def _best_of_five(call: Callable[[bytes], Awaitable[Any]], requests: list[bytes]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for i, request in enumerate(requests):
            await call(request)
            if i % 100 == 0:
                await asyncio.sleep(0)  # the router's catalog polls run, as in a server
        best = min(best, (time.thread_time() - start) / len(requests))
    return best


async def run(args: argparse.Namespace, workdir: Path) -> None:
    store_uri, store, ids, _ = await synthetic_catalog(workdir, args.datasets, 7)
    configure_logging("INFO", "text", (workdir / "server.log").open("w"))
    settings = load_settings(
        store=store_uri,
        data_dir=workdir,
        policy=POLICY,
        insecure=True,
        http_listen="",
        # One process asking as fast as it can: the request budgets' defaults would refuse it.
        rate_limit={"requests_per_second": 1e9, "burst": 10**9, "decisions_per_second": 1e9, "decision_burst": 10**9},
        router={"durable_decision_log": False},
    )
    security = build_security(settings)
    app = App(settings=settings, store=store, security_events=security.events, budgets=security.budgets)
    app.router = await Router.start(app)
    shedder = LoadShedder(settings.load_shedding)
    await shedder.start()
    try:
        collected = _Handlers()
        add_residency_service(ResidencyServicer(app), collected)  # type: ignore[arg-type]
        decide = collected.find()

        def server_chain(access: list[grpc.aio.ServerInterceptor]) -> list[grpc.aio.ServerInterceptor]:
            # As `create_server` orders them (no tracing interceptor: tracing is off; no
            # per-principal limit: --insecure).
            return [
                ServerLoadShedding(shedder),
                *access,
                ErrorMappingInterceptor(),
                *security.interceptors,
                RequestParsingInterceptor(),
            ]

        context = _Context()
        served = await _wrapped(server_chain([AccessInterceptor(log_access=True)]), decide)
        no_line = await _wrapped(server_chain([AccessInterceptor(log_access=False)]), decide)
        no_access = await _wrapped(server_chain([]), decide)
        servicer = decide.unary_unary
        parse = residency_pb2.DecideRequest.FromString
        canned = None
        for d, op, r in questions(ids, 1000, 10):
            answer = residency_pb2.DecideResponse.FromString(
                await servicer(
                    residency_pb2.DecideRequest(dataset_id=d, operation=OPERATIONS[op.value], region=r), context
                )
            )
            if answer.decision.outcome == residency_pb2.OUTCOME_DENY and answer.decision.reasons:
                canned = answer
                break
        assert canned is not None, "no DENY with reasons among 1,000 questions"

        async def canned_decide(request: Any, context: Any) -> residency_pb2.DecideResponse:
            return canned

        floor = ErrorMappingInterceptor().wrap(
            grpc.unary_unary_rpc_method_handler(
                canned_decide, request_deserializer=parse, response_serializer=type(canned).SerializeToString
            ),
            METHOD,
        )
        requests = [
            residency_pb2.DecideRequest(dataset_id=d, operation=OPERATIONS[op.value], region=r).SerializeToString()
            for d, op, r in questions(ids, 20_000, 9)
        ]
        for request in requests:  # every question once: the memo and the caches warm
            await served(request, context)

        variants: dict[str, Callable[[bytes], Awaitable[Any]]] = {
            "the Decide handler as served (interceptors chained)": lambda m: served(m, context),
            "  the same without the access log line": lambda m: no_line(m, context),
            "  the same without the access interceptor": lambda m: no_access(m, context),
            "  ResidencyServicer.Decide alone (its request parsed)": lambda m: servicer(parse(m), context),
            "the floor's handler (error mapping, canned answer)": lambda m: _floor(floor, m, context),
        }
        print(
            f"{len(requests):,} Decide requests over {len(ids):,} datasets ({len(REGIONS)} regions), "
            "thread CPU per call, best of 5 passes:",
            flush=True,
        )
        for round_number in range(args.rounds):
            for name, call in variants.items():
                print(f"  round {round_number + 1}: {name:<56} {await _best_of_five(call, requests) * 1e6:7.2f} us")
    finally:
        await shedder.close()
        await app.router.close()
        await security.close()
        await store.close()


async def _floor(handler: grpc.RpcMethodHandler, data: bytes, context: Any) -> bytes:
    return handler.response_serializer(await handler.unary_unary(handler.request_deserializer(data), context))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="unary-handler-bench-"))
    try:
        asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
