"""The grpc.aio authentication/authorization interceptor.

A server interceptor only sees the method name and metadata, not the peer's certificate, so
the checks run inside a wrapper around the method's handler, where the ServicerContext (with
`auth_context()`) is available. The wrapper also sets the `Caller` and trace id context
variables in the task that runs the handler, which is where servicers read them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from domicile.errors import DomicileError
from domicile.grpc_errors import abort
from domicile.security.context import current_caller, current_trace_id
from domicile.security.guard import Guard, trace_id_from
from domicile.security.scopes import METHOD_SCOPES


def peer_certificate_der(context: grpc.aio.ServicerContext) -> bytes | None:
    """DER of the client certificate of the call's connection; None without mTLS."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    return x509.load_pem_x509_certificate(pems[0]).public_bytes(Encoding.DER)


def _metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    values = [v for k, v in (context.invocation_metadata() or ()) if k == key]
    # Two Authorization headers are ambiguous; treat them as none rather than pick one.
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Admits each call through `Guard` (methods in `open_methods` excepted) before its handler
    runs; a refusal aborts the call with the rich status of the guard's DomicileError."""

    def __init__(self, guard: Guard, open_methods: frozenset[str]) -> None:
        self._guard = guard
        self._open = open_methods

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self._open:
            return handler
        required = METHOD_SCOPES.get(method)

        async def admit(context: grpc.aio.ServicerContext) -> None:
            trace_id = trace_id_from(_metadata_value(context, "traceparent"))
            current_trace_id.set(trace_id)
            try:
                caller = await self._guard.admit(
                    method=method,
                    required=required,
                    authorization=_metadata_value(context, "authorization"),
                    certificate_der=peer_certificate_der(context),
                    peer=context.peer() or "",
                    trace_id=trace_id,
                )
            except DomicileError as error:
                await abort(context, error)
            current_caller.set(caller)

        return _guarded(handler, admit)


Admit = Callable[[grpc.aio.ServicerContext], Any]


def _guarded(handler: grpc.RpcMethodHandler, admit: Admit) -> grpc.RpcMethodHandler:
    """`handler` with `admit(context)` awaited before the behaviour, for all four call shapes.

    Context variables are not reset afterwards: grpc.aio runs every call in its own task, whose
    context is a copy, so nothing set here outlives the call.
    """
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            await admit(context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
    if handler.stream_unary is not None:
        inner = handler.stream_unary

        async def stream_unary(request_iterator, context):
            await admit(context)
            return await inner(request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
    # Streaming responses come either from an async generator or from a coroutine that calls
    # context.write(); grpc.aio refuses mixing the two, so the wrapper keeps the inner style.
    if handler.unary_stream is not None:
        inner = handler.unary_stream
        factory = grpc.unary_stream_rpc_method_handler
    else:
        inner = handler.stream_stream
        factory = grpc.stream_stream_rpc_method_handler
    if inspect.isasyncgenfunction(inner):

        async def streaming_generator(request, context):
            await admit(context)
            async for response in inner(request, context):
                yield response

        return factory(streaming_generator, **serializers)

    async def streaming_writer(request, context):
        await admit(context)
        return await inner(request, context)

    return factory(streaming_writer, **serializers)
