"""The `domicile serve` log: JSON lines with trace ids, one access line per call and request,
and nothing from gRPC's C core unless asked for."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest

from domicile.config import load_settings
from domicile.v1 import residency_pb2, residency_pb2_grpc
from tests.e2e.test_server_process import READY

HTTP_READY = re.compile(r"serving HTTP on \S+ \(port (\d+)\)")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def serve(tmp_path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen, int, int]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "domicile", "serve", "--insecure", "--store", f"sqlite:///{tmp_path / 'c.db'}"),
            *("--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", str(tmp_path)),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ports = []
    deadline = time.monotonic() + 60
    while len(ports) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if match := READY.search(line) or HTTP_READY.search(line):
            ports.append(int(match.group(1)))
    if len(ports) < 2:
        process.kill()
        raise AssertionError(f"server did not start: {process.stderr.read()}")
    return process, ports[0], ports[1]


def test_json_log_lines_carry_trace_ids_and_an_access_line_per_request(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    process, port, http_port = serve(tmp_path, "--log-format", "json", env=env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = residency_pb2_grpc.ResidencyServiceStub(channel)
            request = residency_pb2.DecideRequest(
                dataset_id="s3://x/y", operation=residency_pb2.OPERATION_STORE, region="aws:us-east-1"
            )
            stub.Decide(request, metadata=[("traceparent", TRACEPARENT)], timeout=20)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Decide(residency_pb2.DecideRequest(), timeout=20)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=20) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    lines = stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"timestamp", "level", "logger", "message", "trace_id", "span_id"} <= record.keys()
    access = [r for r in records if r["logger"] == "domicile.access"]
    # (A refusal's status goes out before its line is written: the lines need not be in order.)
    assert sorted((r["kind"], r["method"], r["status"]) for r in access) == [
        ("grpc", "/domicile.v1.ResidencyService/Decide", "INVALID_ARGUMENT"),
        ("grpc", "/domicile.v1.ResidencyService/Decide", "OK"),
        ("http", "GET /healthz", "200"),
    ]
    (first,) = [r for r in access if r["status"] == "OK"]
    assert first["trace_id"] == TRACE_ID
    assert first["request_bytes"] > 0 and first["response_bytes"] > 0 and first["latency_ms"] > 0
    assert first["peer"].startswith("ipv4:127.0.0.1:") and first["principal"] == ""
    (refused,) = [r for r in access if r["status"] == "INVALID_ARGUMENT"]
    assert len(refused["trace_id"]) == 32 and refused["trace_id"] != TRACE_ID
    assert any(r["logger"] == "domicile.server" and "shutting down" in r["message"] for r in records)


def test_the_log_format_comes_from_the_config_file_too(tmp_path):
    config = tmp_path / "domicile.yaml"
    config.write_text("log_format: json\naccess_log: false\n")
    settings = load_settings(config)
    assert settings.log_format == "json" and settings.access_log is False
