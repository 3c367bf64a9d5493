"""Per-request telemetry at the edges: the latency histograms and one access log line for every
gRPC call and HTTP request.

Access log lines go to the `domicile.access` logger at INFO (`access_log: false` turns them
off). In JSON (`--log-format json`) each is an object with `kind` (`grpc` or `http`),
`method` (`/domicile.v1.ResidencyService/Decide`, or `POST /api/v1/lineage`), `status` (the
gRPC code name or the HTTP status), `latency_ms`, `request_bytes`, `response_bytes`,
`principal` (empty when unauthenticated), `peer` and `trace_id`; as text, the same in one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from domicile.grpc_handlers import WrappingInterceptor, wrap_handler
from domicile.security.context import current_principal, current_trace_id
from domicile.security.http import PRINCIPAL_KEY
from domicile.telemetry.metrics import HTTP_DURATION, RPC_DURATION
from domicile.telemetry.security import request_trace_id

access_log = logging.getLogger("domicile.access")


def _size(message: Any) -> int:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return len(message)
    if isinstance(message, Message):
        return message.ByteSize()
    return 0


def _code_name(error: BaseException | None, context: grpc.aio.ServicerContext) -> str:
    """The status a call ended with: OK, the code it was aborted with, CANCELLED when the
    caller went away (its task cancelled), else UNKNOWN."""
    if error is None:
        return "OK"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


class AccessInterceptor(WrappingInterceptor):
    """Measures every call (`domicile_rpc_duration_seconds`) and writes its access log line.
    Placed before the error mapping and authentication, so it sees their refusals too."""

    def __init__(self, *, log_access: bool) -> None:
        super().__init__()
        self._log_access = log_access

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        observed = _MethodAccess(method, self._log_access)
        return wrap_handler(handler, lambda request, context: _Observed(observed, request, context))


class _MethodAccess:
    """What the calls of one method share: its name and latency histograms by status code."""

    __slots__ = ("durations", "log_access", "method", "name", "service")

    def __init__(self, method: str, log_access: bool) -> None:
        self.method = method
        self.service, _, self.name = method[1:].partition("/")
        self.log_access = log_access
        self.durations: dict[str, Any] = {}

    def duration(self, code: str) -> Any:
        histogram = self.durations.get(code)
        if histogram is None:
            histogram = self.durations[code] = RPC_DURATION.labels(self.service, self.name, code)
        return histogram


class _Observed:
    """One call, measured and logged as it ends (a `CallScope`: it counts the response bytes)."""

    __slots__ = ("_access", "_context", "_request", "_started", "response_bytes")

    def __init__(self, access: _MethodAccess, request: Any, context: grpc.aio.ServicerContext) -> None:
        self._access = access
        self._request = request
        self._context = context
        self.response_bytes = 0

    def sent(self, response: Any) -> None:
        self.response_bytes += _size(response)

    async def __aenter__(self) -> _Observed:
        self._started = time.perf_counter()
        if not current_trace_id.get():
            current_trace_id.set(request_trace_id(_traceparent(self._context)))
        return self

    async def __aexit__(self, error_type: Any, error: BaseException | None, traceback: Any) -> None:
        elapsed = time.perf_counter() - self._started
        access, context = self._access, self._context
        code = _code_name(error, context)
        access.duration(code).observe(elapsed)
        if access.log_access:
            _log(
                "grpc",
                access.method,
                code,
                elapsed,
                _size(self._request),
                self.response_bytes,
                context.peer() or "",
                current_principal(),
            )


def _traceparent(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            return value
    return None


def _log(
    kind: str, method: str, status: str, elapsed: float, received: int, sent: int, peer: str, principal: str
) -> None:
    trace_id = current_trace_id.get()
    latency_ms = round(elapsed * 1000, 3)
    access_log.info(
        "%s %s %.3fms in=%dB out=%dB principal=%s peer=%s trace=%s",
        method,
        status,
        latency_ms,
        received,
        sent,
        principal or "-",
        peer,
        trace_id or "-",
        extra={
            "kind": kind,
            "method": method,
            "status": status,
            "latency_ms": latency_ms,
            "request_bytes": received,
            "response_bytes": sent,
            "principal": principal,
            "peer": peer,
        },
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def access_middleware(*, log_access: bool):
    """aiohttp middleware (outermost): `domicile_http_request_duration_seconds` by method,
    route and status, and the access log line of every request."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        trace_token = current_trace_id.set(request_trace_id(request.headers.get("traceparent")))
        status, sent = 500, 0
        try:
            response = await handler(request)
            status = response.status
            sent = response.content_length or 0
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            HTTP_DURATION.labels(request.method, route, str(status)).observe(elapsed)
            if log_access:
                _log(
                    "http",
                    f"{request.method} {request.path}",
                    str(status),
                    elapsed,
                    request.content_length or 0,
                    sent,
                    request.remote or "",
                    request.get(PRINCIPAL_KEY, ""),
                )
            current_trace_id.reset(trace_token)

    return observe
