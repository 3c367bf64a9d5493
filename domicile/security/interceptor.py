"""The grpc.aio authentication/authorization interceptor.

A server interceptor only sees the method name and metadata, not the peer's certificate, so
the checks run inside a wrapper around the method's handler, where the ServicerContext (with
`auth_context()`) is available. The wrapper also sets the `Caller` and trace id context
variables in the task that runs the handler, which is where servicers read them, and puts the
security context (principal, delegation chain, the scope that granted the call or the reason
it was refused) on the call's span when tracing is on.
"""

from __future__ import annotations

from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from domicile.errors import DomicileError
from domicile.grpc_errors import abort
from domicile.grpc_handlers import WrappingInterceptor, wrap_handler
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


def _trace_id(context: grpc.aio.ServicerContext) -> str:
    """The call's trace id: the one an outer interceptor set already, else from its
    `traceparent` (and set for the handler)."""
    trace_id = current_trace_id.get()
    if not trace_id:
        trace_id = request_trace_id(_metadata_value(context, "traceparent"))
        current_trace_id.set(trace_id)
    return trace_id


class AuthInterceptor(WrappingInterceptor):
    """Admits each call through `Guard` (methods in `open_methods` excepted) before its handler
    runs; a refusal aborts the call with the rich status of the guard's DomicileError."""

    def __init__(self, guard: Guard, open_methods: frozenset[str]) -> None:
        super().__init__()
        self._guard = guard
        self._open = open_methods

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if method in self._open:
            return handler
        guard, required = self._guard, METHOD_SCOPES.get(method)
        return wrap_handler(handler, lambda request, context: _Admitted(guard, method, required, context))


class _Admitted:
    """A call admitted by the guard before it runs; the caller in `current_caller` meanwhile."""

    __slots__ = ("_context", "_guard", "_method", "_required")

    def __init__(
        self, guard: Guard, method: str, required: frozenset[str] | None, context: grpc.aio.ServicerContext
    ) -> None:
        self._guard = guard
        self._method = method
        self._required = required
        self._context = context

    async def __aenter__(self) -> None:
        context = self._context
        trace_id = _trace_id(context)
        try:
            caller = await self._guard.admit(
                method=self._method,
                required=self._required,
                authorization=_metadata_value(context, "authorization"),
                certificate_der=peer_certificate_der(context),
                peer=context.peer() or "",
                trace_id=trace_id,
            )
        except DomicileError as error:
            describe_refusal(error)
            await abort(context, error)
        current_caller.set(caller)
        describe_caller(caller, self._required)

    async def __aexit__(self, *exc_info: Any) -> None:
        return None


class AnonymousInterceptor(WrappingInterceptor):
    """Without authentication (--insecure): every call is the anonymous principal's and spends
    its request budget (`domicile.security.budgets`)."""

    def __init__(self, budgets: Budgets) -> None:
        super().__init__()
        self._budgets = budgets

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        budgets = self._budgets
        return wrap_handler(handler, lambda request, context: _Charged(budgets, method, context))


class _Charged:
    """A call charged to the anonymous principal's request budget before it runs."""

    __slots__ = ("_budgets", "_context", "_method")

    def __init__(self, budgets: Budgets, method: str, context: grpc.aio.ServicerContext) -> None:
        self._budgets = budgets
        self._method = method
        self._context = context

    async def __aenter__(self) -> None:
        context = self._context
        trace_id = _trace_id(context)
        try:
            self._budgets.charge(
                "", Resource.REQUESTS, method=self._method, peer=context.peer() or "", trace_id=trace_id
            )
        except DomicileError as error:
            await abort(context, error)

    async def __aexit__(self, *exc_info: Any) -> None:
        return None
