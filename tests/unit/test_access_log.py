"""The access log's lines: taken as a call ends, written by a thread of their own in batches,
one write of the server log per batch, in the server log's text and JSON formats."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator

import pytest

from domicile.security.context import current_trace_id
from domicile.telemetry.access import AccessLog
from domicile.telemetry.logs import configure_logging, server_log

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
METHOD = "/domicile.v1.ResidencyService/Decide"


@pytest.fixture
def root_logging():
    """configure_logging replaces the root logger's handlers: put back pytest's afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access_level = logging.getLogger("domicile.access").level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("domicile.access").setLevel(access_level)


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@contextlib.contextmanager
def in_request(trace_id: str = TRACE) -> Iterator[None]:
    """Within a request whose trace id is `trace_id` (as the access interceptor sets it)."""
    token = current_trace_id.set(trace_id)
    try:
        yield
    finally:
        current_trace_id.reset(token)


def add_call(lines: AccessLog, status: str = "OK", principal: str = "svc-a") -> None:
    lines.add("grpc", METHOD, status, 0.000612, 46, 1704, "ipv4:10.2.0.7:51234", principal)


def test_a_text_line_per_call_with_the_time_the_call_ended(root_logging):
    stream = CountingStream()
    configure_logging("INFO", "text", stream)
    lines = AccessLog()
    with in_request():
        add_call(lines)
    ended = time.time()
    time.sleep(0.05)  # the line is written later than it was taken...
    lines.flush()
    (line,) = stream.getvalue().splitlines()
    when, rest = line[:23], line[24:]
    assert rest == (
        f"INFO domicile.access: {METHOD} OK 0.612ms in=46B out=1704B principal=svc-a "
        f"peer=ipv4:10.2.0.7:51234 trace={TRACE}"
    )
    # ...but dated when the call ended (the text format's local time, to the millisecond).
    stamped = time.mktime(time.strptime(when[:19], "%Y-%m-%d %H:%M:%S")) + int(when[20:]) / 1000
    assert abs(stamped - ended) < 0.02


def test_json_lines_carry_the_documented_fields_and_the_requests_trace_id(root_logging):
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    lines = AccessLog()
    with in_request():
        add_call(lines)
    add_call(lines, status="UNAUTHENTICATED", principal="")  # outside the request: no trace id
    # Handed over from another thread, whose context has no trace id.
    flusher = threading.Thread(target=lines.flush)
    flusher.start()
    flusher.join()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(first) == [
        "level",
        "logger",
        "message",
        "trace_id",
        "span_id",
        "kind",
        "method",
        "status",
        "latency_ms",
        "request_bytes",
        "response_bytes",
        "principal",
        "peer",
        "timestamp",
    ]
    assert first | {"timestamp": ""} == {
        "level": "INFO",
        "logger": "domicile.access",
        "message": f"{METHOD} OK 0.612ms in=46B out=1704B principal=svc-a peer=ipv4:10.2.0.7:51234 trace={TRACE}",
        "trace_id": TRACE,
        "span_id": "",
        "kind": "grpc",
        "method": METHOD,
        "status": "OK",
        "latency_ms": 0.612,
        "request_bytes": 46,
        "response_bytes": 1704,
        "principal": "svc-a",
        "peer": "ipv4:10.2.0.7:51234",
        "timestamp": "",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", first["timestamp"])
    assert (second["status"], second["trace_id"], second["principal"]) == ("UNAUTHENTICATED", "", "")
    assert second["message"].endswith("principal=- peer=ipv4:10.2.0.7:51234 trace=-")


def test_the_thread_writes_each_batch_in_one_write(root_logging):
    stream = CountingStream()
    configure_logging("INFO", "text", stream)
    lines = AccessLog()
    for _ in range(50):
        add_call(lines)
    deadline = time.monotonic() + 10
    while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue().count("\n") == 50
    assert stream.writes == 1
    add_call(lines)  # a later line: the thread wakes again for it
    while stream.getvalue().count("\n") < 51 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue().count("\n") == 51 and stream.writes == 2


def test_lines_added_while_batches_are_taken_are_written_once(root_logging):
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    lines = AccessLog()
    adders, each = 4, 2000
    done = threading.Event()

    def add(number: int) -> None:
        for call in range(each):
            add_call(lines, principal=f"p{number}-{call}")

    def flush_until_done() -> None:
        while not done.is_set():
            lines.flush()

    flusher = threading.Thread(target=flush_until_done)
    flusher.start()
    threads = [threading.Thread(target=add, args=(number,)) for number in range(adders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    flusher.join()
    lines.flush()
    principals = re.findall(r"principal=(p\d+-\d+) ", stream.getvalue())
    assert sorted(principals) == sorted(f"p{number}-{call}" for number in range(adders) for call in range(each))


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("created", [1_796_000_000.0, 1_796_000_000.000999, 1_796_000_059.987654])
def test_a_line_is_what_the_formatter_makes_of_the_same_record(root_logging, log_format, created):
    configure_logging("INFO", log_format, io.StringIO())
    server = server_log()
    assert server is not None
    fields = {"kind": "http", "method": "GET /healthz", "status": "200", "latency_ms": 1.5, "principal": "svc-a"}
    record = logging.getLogger("domicile.access").makeRecord(
        "domicile.access", logging.INFO, __file__, 1, "GET /healthz 200 ü", (), None, extra=fields
    )
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    with in_request():
        expected = server.format(record) if server.filter(record) else None
    assert server.info_line("domicile.access", created, "GET /healthz 200 ü", TRACE, "", fields) == expected


def test_without_the_server_log_no_line_is_kept(root_logging):
    logging.getLogger().handlers.clear()
    logging.getLogger("domicile.access").setLevel(logging.INFO)
    lines = AccessLog()
    add_call(lines)
    lines.flush()
    assert lines._pending == []


def test_a_raised_level_turns_the_lines_off(root_logging):
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    logging.getLogger("domicile.access").setLevel(logging.WARNING)
    lines = AccessLog()
    add_call(lines)
    lines.flush()
    assert stream.getvalue() == ""


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_reported_as_logging_reports_it(root_logging, capsys, monkeypatch):
    monkeypatch.setattr(logging, "raiseExceptions", True)
    configure_logging("INFO", "text", FullDisk())
    lines = AccessLog()
    add_call(lines)
    lines.flush()
    reported = capsys.readouterr().err
    assert "--- Logging error ---" in reported and "No space left on device" in reported
    assert "principal=svc-a" in reported  # the line whose write failed
