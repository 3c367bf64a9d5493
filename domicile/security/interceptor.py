"""The grpc.aio authentication/authorization interceptor.

A server interceptor only sees the method name and metadata, not the peer's certificate, so
the checks run inside a wrapper around the method's handler, where the ServicerContext (with
`auth_context()`) is available. The wrapper also sets the `Caller` and trace id context
variables in the task that runs the handler, which is where servicers read them, and puts the
security context (principal, delegation chain, the scope that granted the call or the reason
it was refused) on the call's span when tracing is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from domicile.errors import DomicileError
from domicile.grpc_errors import abort
from domicile.grpc_handlers import wrap_handler
from domicile.security.budgets import Budgets, Resource
from domicile.security.context import current_caller, current_trace_id
from domicile.security.guard import Guard
from domicile.security.scopes import METHOD_SCOPES
from domicile.telemetry.security import describe_caller, describe_refusal, request_trace_id


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

        @contextlib.asynccontextmanager
        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            trace_id = request_trace_id(_metadata_value(context, "traceparent"))
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
                describe_refusal(error)
                await abort(context, error)
            current_caller.set(caller)
            describe_caller(caller, required)
            yield

        return wrap_handler(handler, admitted)


class AnonymousInterceptor(grpc.aio.ServerInterceptor):
    """Without authentication (--insecure): every call is the anonymous principal's and spends
    its request budget (`domicile.security.budgets`)."""

    def __init__(self, budgets: Budgets) -> None:
        self._budgets = budgets

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        @contextlib.asynccontextmanager
        async def charged(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            trace_id = request_trace_id(_metadata_value(context, "traceparent"))
            current_trace_id.set(trace_id)
            try:
                self._budgets.charge("", Resource.REQUESTS, method=method, peer=context.peer() or "", trace_id=trace_id)
            except DomicileError as error:
                await abort(context, error)
            yield

        return wrap_handler(handler, charged)
