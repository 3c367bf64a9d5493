"""The server log: text for people, or one JSON object per line for log pipelines.

`configure_logging(level, log_format)` sends every Python logger to stderr. JSON lines carry
`timestamp` (RFC 3339, UTC), `level`, `logger`, `message`, `trace_id` and `span_id` (of the
request being served, empty outside one), `exception` when there is one, and the structured
fields a logger passes as `extra` (the access log's `method`, `status`, ...). Text lines are
`TIME LEVEL LOGGER: MESSAGE`.

gRPC's C core logs on its own (plain text on stderr, not through Python logging); the CLI
silences it unless `GRPC_VERBOSITY` is set (see `domicile.cli`).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Literal

from pythonjsonlogger.orjson import OrjsonFormatter

from domicile.security.context import current_trace
from domicile.telemetry.tracing import current_trace_ids

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def trace_ids() -> tuple[str, str]:
    """(trace id, span id) for a log line: the current span's when tracing is on, else the
    request's trace id (from its `traceparent`, or generated) and no span id."""
    trace_id, span_id = current_trace_ids()
    return trace_id or current_trace(), span_id


class TraceContext(logging.Filter):
    """Adds `trace_id` and `span_id` (`trace_ids()`) to each record that does not carry them:
    a record made off its request's context (the access log's) carries its request's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "trace_id" not in record.__dict__:
            record.trace_id, record.span_id = trace_ids()
        return True


class JsonLines(OrjsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "trace_id", "span_id"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            timestamp=True,
        )


class ServerLog(logging.StreamHandler):
    """The server log's handler. Records it handles inside `batch()` are formatted as they come
    and written together when the batch ends, in one write and one flush: the access log hands
    over its lines so (`domicile.telemetry.access`). Records of other threads meanwhile are
    written as usual."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._batching = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        lines: list[str] | None = getattr(self._batching, "lines", None)
        if lines is None:
            super().emit(record)
            return
        try:
            lines.append(self.format(record) + self.terminator)
            self._batching.last = record
        except Exception:
            self.handleError(record)

    @contextmanager
    def batch(self) -> Iterator[None]:
        lines: list[str] = []
        self._batching.lines = lines
        try:
            yield
        finally:
            self._batching.lines = None
            if lines:
                with self.lock:  # type: ignore[union-attr]
                    try:
                        self.stream.write("".join(lines))
                        self.flush()
                    except Exception:
                        self.handleError(self._batching.last)


def batched_writes() -> AbstractContextManager[None]:
    """Records handled inside go out in one write of the server log (`ServerLog.batch`) when
    logging is configured (`configure_logging`); else each as its handlers write it."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ServerLog):
            return handler.batch()
    return nullcontext()


def configure_logging(level: str, log_format: LogFormat, stream: IO[str] | None = None) -> None:
    """Route every logger to `stream` (stderr) at `level`, as text or JSON lines."""
    # Neither format names a thread or a process: records need not look them up (the logging
    # module's documented switches; each access log line would pay for them).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = ServerLog(stream or sys.stderr)
    handler.addFilter(TraceContext())
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
