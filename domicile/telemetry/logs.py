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
from typing import IO, Literal

from pythonjsonlogger.orjson import OrjsonFormatter

from domicile.security.context import current_trace
from domicile.telemetry.tracing import current_trace_ids

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TraceContext(logging.Filter):
    """Adds `trace_id` and `span_id` to each record: the current span's when tracing is on,
    else the request's trace id (from its `traceparent`, or generated) and no span id."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id, span_id = current_trace_ids()
        record.trace_id = trace_id or current_trace()
        record.span_id = span_id
        return True


class JsonLines(OrjsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "trace_id", "span_id"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            timestamp=True,
        )


def configure_logging(level: str, log_format: LogFormat, stream: IO[str] | None = None) -> None:
    """Route every logger to `stream` (stderr) at `level`, as text or JSON lines."""
    # Neither format names a thread or a process: records need not look them up (the logging
    # module's documented switches; each access log line would pay for them).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContext())
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
