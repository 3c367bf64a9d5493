"""Wrapping a grpc.aio method handler's behaviour, for server interceptors.

A grpc.aio server interceptor only sees the method name and metadata; what must happen around
the call itself (admission, load shedding, timing, the access log) runs in a wrapper around the
handler's behaviour, where the ServicerContext is available. `wrap_handler` builds that
wrapper for the four call shapes; `WrappingInterceptor` builds it once per method, not per call
(grpc.aio asks every interceptor for every call's handler). `chained` makes consecutive
wrapping interceptors one: grpc.aio runs each interceptor as a coroutine of its own per call,
a chain of them as one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import grpc


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that wraps each method's handler (`wrap`) the first time the method is
    called, and hands out that wrapped handler for every later call. The handlers it gets are
    the server's own, the same object per method (or another interceptor's, cached alike): a
    different one is wrapped again."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler | None:
        """The handler serving calls of `method` (full name) in place of `handler`."""
        raise NotImplementedError

    def refuse(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """A handler refusing the call at once, before its method's handler is looked up (and
        before the interceptors after this one run); None, the default, to serve it."""
        return None

    async def intercept_service(self, continuation, handler_call_details):
        refusal = self.refuse(handler_call_details)
        if refusal is not None:
            return refusal
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self.wrap(handler, method))
        return cached[1]


class _Chain(WrappingInterceptor):
    """Wrapping interceptors run as one (see `chained`): only the first may refuse."""

    def __init__(self, layers: list[WrappingInterceptor]) -> None:
        super().__init__()
        self._layers = layers
        self.refuse = layers[0].refuse  # type: ignore[method-assign]

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler | None:
        wrapped: grpc.RpcMethodHandler | None = handler
        for layer in reversed(self._layers):  # the innermost first
            if wrapped is None:
                return None
            wrapped = layer.wrap(wrapped, method)
        return wrapped


def _refuses(interceptor: WrappingInterceptor) -> bool:
    return type(interceptor).refuse is not WrappingInterceptor.refuse


def chained(interceptors: list[grpc.aio.ServerInterceptor]) -> list[grpc.aio.ServerInterceptor]:
    """`interceptors` as grpc.aio would run them, each run of consecutive `WrappingInterceptor`s
    made one interceptor: the same wrappers around each method's handler, the same refusals,
    one interceptor coroutine per call instead of one per interceptor. An interceptor that may
    refuse starts a run (the interceptors before it wrap its refusals, as they would alone)."""
    result: list[grpc.aio.ServerInterceptor] = []
    run: list[WrappingInterceptor] = []

    def close_run() -> None:
        if run:
            result.append(run[0] if len(run) == 1 else _Chain(list(run)))
            run.clear()

    for interceptor in interceptors:
        if not isinstance(interceptor, WrappingInterceptor):
            close_run()
            result.append(interceptor)
            continue
        if _refuses(interceptor):
            close_run()
        run.append(interceptor)
    close_run()
    return result


class CallScope(Protocol):
    """What a wrapper's context manager may yield to see the responses go out."""

    def sent(self, response: Any) -> None: ...


Around = Callable[[Any, grpc.aio.ServicerContext], AbstractAsyncContextManager["CallScope | None"]]


def wrap_handler(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour run inside `around(request, context)` -- an async context
    manager entered before the behaviour and left after its last response, with the exception
    that ended it if any. `request` is None for request streams. When the manager yields a
    `CallScope`, each response is passed to its `sent` before it goes out.

    Context variables set inside `around` are visible to the behaviour: grpc.aio runs each call
    in its own task, whose context is a copy, so nothing set there outlives the call.
    """
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            async with around(request, context) as scope:
                response = await inner(request, context)
                if scope is not None:
                    scope.sent(response)
                return response

        return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
    if handler.stream_unary is not None:
        inner = handler.stream_unary

        async def stream_unary(request_iterator, context):
            async with around(None, context) as scope:
                response = await inner(request_iterator, context)
                if scope is not None:
                    scope.sent(response)
                return response

        return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
    # Streaming responses come either from an async generator or from a coroutine that calls
    # context.write(); grpc.aio refuses mixing the two, so the wrapper keeps the inner style.
    if handler.unary_stream is not None:
        inner, streaming_request = handler.unary_stream, False
        factory = grpc.unary_stream_rpc_method_handler
    else:
        inner, streaming_request = handler.stream_stream, True
        factory = grpc.stream_stream_rpc_method_handler
    if inspect.isasyncgenfunction(inner):

        async def streaming_generator(request, context):
            async with around(None if streaming_request else request, context) as scope:
                async for response in inner(request, context):
                    if scope is not None:
                        scope.sent(response)
                    yield response

        return factory(streaming_generator, **serializers)

    async def streaming_writer(request, context):
        async with around(None if streaming_request else request, context):
            return await inner(request, context)

    return factory(streaming_writer, **serializers)
