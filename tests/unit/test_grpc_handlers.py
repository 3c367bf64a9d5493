"""Wrapping interceptors chained into one behave as the same interceptors one by one."""

from __future__ import annotations

import contextlib

import grpc
import pytest

from domicile.grpc_handlers import WrappingInterceptor, chained, wrap_handler
from domicile.v1 import residency_pb2, residency_pb2_grpc


class Recording(WrappingInterceptor):
    """Records entering and leaving each call."""

    def __init__(self, name: str, events: list[str]) -> None:
        super().__init__()
        self._name, self._events = name, events

    def wrap(self, handler, method):
        @contextlib.asynccontextmanager
        async def around(request, context):
            self._events.append(f"{self._name} in")
            yield None
            self._events.append(f"{self._name} out")

        return wrap_handler(handler, around)


class Refusing(Recording):
    """Also refuses the calls of `refused` (a method name)."""

    def __init__(self, name: str, events: list[str], refused: str) -> None:
        super().__init__(name, events)
        self._refused = refused

    def refuse(self, handler_call_details):
        if not handler_call_details.method.endswith(self._refused):
            return None
        self._events.append(f"{self._name} refuses")

        async def refusal(request, context):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._name)

        return grpc.unary_unary_rpc_method_handler(refusal)


class Plain(grpc.aio.ServerInterceptor):
    """Not a wrapping interceptor: it stays one of its own."""

    def __init__(self, events: list[str]) -> None:
        self._events = events

    async def intercept_service(self, continuation, handler_call_details):
        self._events.append("plain")
        return await continuation(handler_call_details)


class Residency(residency_pb2_grpc.ResidencyServiceServicer):
    def __init__(self, events: list[str]) -> None:
        self._events = events

    async def Decide(self, request, context):
        self._events.append("Decide")
        return residency_pb2.DecideResponse()


async def _calls(make_interceptors) -> list[str]:
    events: list[str] = []
    server = grpc.aio.server(interceptors=make_interceptors(events))
    residency_pb2_grpc.add_ResidencyServiceServicer_to_server(Residency(events), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = residency_pb2_grpc.ResidencyServiceStub(channel)
            await stub.Decide(residency_pb2.DecideRequest())
            events.append("--")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Route(residency_pb2.RouteRequest())
            events.append(f"{refused.value.code().name} {refused.value.details()}")
    finally:
        await server.stop(None)
    return events


async def test_a_chain_wraps_and_refuses_in_the_order_of_its_interceptors():
    def interceptors(events: list[str]) -> list[grpc.aio.ServerInterceptor]:
        return [
            Recording("a", events),
            Plain(events),
            Recording("b", events),
            Refusing("c", events, refused="Route"),
            Recording("d", events),
            Recording("e", events),
        ]

    one_by_one = await _calls(interceptors)
    assert one_by_one == [
        *("plain", "a in", "b in", "c in", "d in", "e in", "Decide", "e out", "d out", "c out", "b out", "a out"),
        # The refusal is wrapped by the interceptors before the one refusing, not after it.
        *("--", "plain", "c refuses", "a in", "b in", "RESOURCE_EXHAUSTED c"),
    ]
    chain = await _calls(lambda events: chained(interceptors(events)))
    assert chain == one_by_one
    assert [type(i).__name__ for i in chained(interceptors([]))] == ["Recording", "Plain", "Recording", "_Chain"]
