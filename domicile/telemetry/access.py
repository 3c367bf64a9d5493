"""Per-request telemetry at the edges: the latency histograms and one access log line for every
gRPC call and HTTP request.

Access log lines are INFO lines of the `domicile.access` logger in the server log
(`access_log: false`, or a level above INFO for that logger, turns them off). In JSON
(`--log-format json`) each is an object with `kind` (`grpc` or `http`), `method`
(`/domicile.v1.ResidencyService/Decide`, or `POST /api/v1/lineage`), `status` (the gRPC code
name or the HTTP status), `latency_ms`, `request_bytes`, `response_bytes`, `principal` (empty
when unauthenticated), `peer` and `trace_id`; as text, the same in one line.

A call's line costs the call only the taking of its fields: `AccessLog` renders the lines and
writes them from a thread of its own, a batch every few dozen milliseconds (one write of the
server log each), so that neither the formatting nor the write is on the event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from domicile.grpc_handlers import WrappingInterceptor, wrap_handler
from domicile.security.context import current_principal, current_trace_id
from domicile.security.http import PRINCIPAL_KEY
from domicile.telemetry.logs import ServerLog, server_log, trace_ids
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
            access_lines.add(
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


class AccessLog:
    """The access log's lines: `add` takes a call's fields (and the request's trace ids, which
    live in its context) as the call ends; a thread of its own renders them in the server
    log's format and writes them, `INTERVAL` after the first line of a batch, the batch in one
    write (`ServerLog.write_lines`). `flush` writes what is pending at once: a server's stop
    does, and so does the interpreter's exit, so that no line is lost on a clean shutdown.
    Lines go to the server log (`configure_logging`): without it, none are written. The
    logger's level is checked as each line is added."""

    # Each batch holds the interpreter lock while it is rendered (a few microseconds a line)
    # and costs a wake-up of the thread: a few dozen a second.
    INTERVAL = 0.025

    def __init__(self) -> None:
        self._pending: list[tuple[Any, ...]] = []
        self._ready = threading.Event()
        self._taking = threading.Lock()
        self._delivering = threading.Lock()
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(
        self, kind: str, method: str, status: str, elapsed: float, received: int, sent: int, peer: str, principal: str
    ) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        line = (
            time.time(),
            current_trace_id.get(),
            *trace_ids(),
            kind,
            method,
            status,
            elapsed,
            received,
            sent,
            peer,
            principal,
        )
        # Taken under the lock `flush` takes the batch with: otherwise a line could join a
        # batch after it was rendered, and be lost.
        with self._taking:
            self._pending.append(line)
            first = len(self._pending) == 1
        if first:  # the first line of a batch wakes the thread
            if self._thread is None:
                self._start()
            self._ready.set()

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                atexit.register(self.flush)
                self._thread = threading.Thread(target=self._run, name="domicile-access-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._ready.wait()
            time.sleep(self.INTERVAL)
            self._ready.clear()
            try:
                self.flush()
            except Exception:  # a bug: say so, and keep the thread for the next lines
                logging.getLogger(__name__).exception("access log: lines lost")

    def flush(self) -> None:
        """Write the pending lines now."""
        with self._delivering:
            with self._taking:
                lines, self._pending = self._pending, []
            server = server_log()
            if lines and server is not None:
                server.write_lines([_line(server, *line) for line in lines])


def _line(
    server: ServerLog,
    created: float,
    request_trace: str,
    trace_id: str,
    span_id: str,
    kind: str,
    method: str,
    status: str,
    elapsed: float,
    received: int,
    sent: int,
    peer: str,
    principal: str,
) -> str:
    latency_ms = round(elapsed * 1000, 3)
    message = (
        f"{method} {status} {latency_ms:.3f}ms in={received}B out={sent}B principal={principal or '-'} "
        f"peer={peer} trace={request_trace or '-'}"
    )
    fields = {
        "kind": kind,
        "method": method,
        "status": status,
        "latency_ms": latency_ms,
        "request_bytes": received,
        "response_bytes": sent,
        "principal": principal,
        "peer": peer,
    }
    return server.info_line(access_log.name, created, message, trace_id, span_id, fields)


access_lines = AccessLog()


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
                access_lines.add(
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
