"""Real pipeline tools (Airflow, dbt) feeding a real `domicile serve --dev` process (TLS, JWT,
the demo catalog, examples/policy.yaml). Each tool runs from its own virtual environment
(tools/pipelines/venv.sh: installed from PyPI on first use, cached under .tools/pipelines)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from domicile.client import Client, ConnectionSettings
from domicile.security.dev_credentials import dev_paths, mint_dev_token

ROOT = Path(__file__).parents[2]
EXAMPLE_POLICY = ROOT / "examples" / "policy.yaml"
_PORT_LINE = re.compile(r"domicile serving (gRPC|HTTP) on \S+ \(port (\d+)\)")
# Installing Airflow from PyPI on a busy machine takes minutes; only a hang exceeds this.
INSTALL_TIMEOUT_SECONDS = 2400
T = TypeVar("T")


def pipeline_env(name: str) -> Path:
    """The bin directory of integration `name`'s environment, built if missing or outdated."""
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "pipelines" / "venv.sh"), name],
        stdout=subprocess.PIPE,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        check=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class DomicileServer:
    process: subprocess.Popen
    data_dir: Path
    port: int
    http_port: int

    def client(self) -> Client:
        return Client(ConnectionSettings(server=f"127.0.0.1:{self.port}", data_dir=self.data_dir))

    def token(self, subject: str, *scopes: str) -> str:
        return mint_dev_token(self.data_dir, scopes=list(scopes), subject=subject, ttl_seconds=3600)

    def openlineage_transport(self, token: str) -> dict:
        """The OpenLineage client's HTTP transport settings for this server."""
        paths = dev_paths(self.data_dir)
        return {
            "type": "http",
            "url": f"https://localhost:{self.http_port}",
            "endpoint": "api/v1/lineage",
            "auth": {"type": "api_key", "apiKey": token},
            "sslContext": {
                "caCertPath": str(paths.ca_cert),
                "clientCertPath": str(paths.client_cert),
                "clientKeyPath": str(paths.client_key),
            },
        }


def start_domicile(data_dir: Path, *, namespace_regions: Mapping[str, str] | None = None) -> DomicileServer:
    env = dict(os.environ)
    if namespace_regions:
        env["DOMICILE_LINEAGE__NAMESPACE_REGIONS"] = json.dumps(dict(namespace_regions))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "domicile", "serve", "--dev", "--demo"),
            *("--policy", str(EXAMPLE_POLICY), "--store", f"sqlite:///{data_dir / 'catalog.db'}"),
            *("--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--console-listen", ""),
            *("--data-dir", str(data_dir)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    ports: dict[str, int] = {}
    assert process.stdout is not None
    while len(ports) < 2:
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError(f"domicile serve exited with {process.wait()} before serving")
        if match := _PORT_LINE.search(line):
            ports[match.group(1)] = int(match.group(2))
    return DomicileServer(process, data_dir, ports["gRPC"], ports["HTTP"])


@pytest.fixture
def domicile_server(tmp_path_factory) -> Iterator[Callable[..., DomicileServer]]:
    """`domicile_server(namespace_regions=...)`: a server process, stopped after the test."""
    started: list[DomicileServer] = []

    def start(**settings) -> DomicileServer:
        started.append(start_domicile(tmp_path_factory.mktemp("domicile"), **settings))
        return started[-1]

    yield start
    for server in started:
        server.process.terminate()
        server.process.wait(timeout=60)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 120.0) -> T:
    """The first truthy result of `probe`; fails naming `what` after `timeout` seconds (events
    are posted by the tools' own threads, after the command may already have returned)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:.0f}s: {what}")
        time.sleep(0.5)
