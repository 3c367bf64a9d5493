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
import time
from datetime import UTC, datetime
from typing import IO, Any, Literal

import orjson
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
    """Adds `trace_id` and `span_id` to each record (`trace_ids()`)."""

    def filter(self, record: logging.LogRecord) -> bool:
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
    """The server log's handler (`configure_logging`). Besides the records of every logger it
    writes lines given as fields, several in one write (`write_lines`): the access log's, off
    the event loop (`domicile.telemetry.access`), without a LogRecord and a trip through the
    logging machinery each. Such a line is the very line the handler's formatter makes of an
    INFO record with the same fields (tests/unit/test_access_log.py holds the two together)."""

    def __init__(self, stream: IO[str], log_format: LogFormat) -> None:
        super().__init__(stream)
        self.addFilter(TraceContext())
        self.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
        self._json = log_format == "json"
        self._second = -1
        self._second_text = ""

    def info_line(
        self, logger: str, created: float, message: str, trace_id: str, span_id: str, fields: dict[str, Any]
    ) -> str:
        """The line of an INFO record of `logger` made at `created` (time.time()), carrying
        `trace_id`, `span_id` and the `fields` its caller would pass as `extra`."""
        if self._json:
            return orjson.dumps(
                {
                    "level": "INFO",
                    "logger": logger,
                    "message": message,
                    "trace_id": trace_id,
                    "span_id": span_id,
                    **fields,
                    "timestamp": datetime.fromtimestamp(created, tz=UTC),
                },
                option=orjson.OPT_NON_STR_KEYS,
            ).decode()
        second = int(created)
        formatter = self.formatter
        assert formatter is not None
        if second != self._second:  # lines come many a second: format the date once
            self._second_text = time.strftime(formatter.default_time_format, formatter.converter(second))
            self._second = second
        msec_format = formatter.default_msec_format
        asctime = (
            msec_format % (self._second_text, int((created - second) * 1000)) if msec_format else self._second_text
        )
        return TEXT_FORMAT % {"asctime": asctime, "levelname": "INFO", "name": logger, "message": message}

    def write_lines(self, lines: list[str]) -> None:
        """Write `lines` (`info_line`s) in one write and one flush, as `emit` writes a record
        (a failure is reported as logging reports one)."""
        if not lines:
            return
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(self.terminator.join(lines) + self.terminator)
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": lines[0], "levelno": logging.INFO}))


def server_log() -> ServerLog | None:
    """The server log's handler when `configure_logging` installed it."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ServerLog):
            return handler
    return None


def configure_logging(level: str, log_format: LogFormat, stream: IO[str] | None = None) -> None:
    """Route every logger to `stream` (stderr) at `level`, as text or JSON lines."""
    # Neither format names a thread or a process: records need not look them up (the logging
    # module's documented switches; every record would pay for them).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = ServerLog(stream or sys.stderr, log_format)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
