"""Neo4j for tests: a real local server (tools/neo4j) and a clean store per test.

- `neo4j_uri` (session fixture): DOMICILE_TEST_NEO4J_URI when set (with
  DOMICILE_TEST_NEO4J_PASSWORD for a server with authentication), else a server started
  once per session on a free port with a temporary data directory, stopped at the end.
- `open_clean_neo4j_store(uri, clock=None)`: empties the database and opens a fresh
  `Neo4jGraphStore` on it.
- `Neo4jServer`: start / stop / kill one launcher process, for tests that need a server of
  their own (outages, restarts on the same data directory).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from neo4j import AsyncGraphDatabase, basic_auth

from domicile.catalog.store import GraphStore
from domicile.catalog.stores.neo4j import Neo4jGraphStore

REPO = Path(__file__).resolve().parents[1]
NEO4J_SH = REPO / "tools" / "neo4j" / "neo4j.sh"
URI_ENV = "DOMICILE_TEST_NEO4J_URI"
PASSWORD_ENV = "DOMICILE_TEST_NEO4J_PASSWORD"
READY_PREFIX = "NEO4J READY "


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Neo4jServer:
    """One launcher process (`tools/neo4j/neo4j.sh run`) serving `data_dir` on `port`.

    The process log goes to `log_path` (next to the data directory). `start` may be called
    again after `stop`/`kill`, on the same port and data directory.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 600.0) -> float:
        """Start the server and wait until Bolt accepts connections; returns the seconds it took.

        The first start of a checkout also builds the launcher (Maven, offline once ~/.m2 is
        warm, then one training start for the class-data archive), hence the generous
        timeout. Raises RuntimeError with the log's tail when the server does not come up.
        """
        if self.running:
            raise RuntimeError(f"Neo4j on port {self.port} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            # A session of its own: Ctrl-C on pytest must not kill the server mid-write.
            self._process = subprocess.Popen(
                [str(NEO4J_SH), "run", "--port", str(self.port), "--data", str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if READY_PREFIX.encode() in self._log_since(offset):
                return time.monotonic() - began
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Neo4j exited during start-up (code {self._process.returncode}):\n{self._log_tail()}"
                )
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"Neo4j not ready after {timeout:.0f}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        """Clean shutdown (SIGTERM, as `neo4j.sh down` does); SIGKILL after `timeout`."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Crash the server (SIGKILL): nothing is flushed beyond what Neo4j committed."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _log_since(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read()

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _test_auth():
    password = os.environ.get(PASSWORD_ENV)
    return None if password is None else basic_auth("neo4j", password)


@pytest.fixture(scope="session")
def neo4j_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bolt URI of the Neo4j server the tests share (see the module docstring)."""
    given = os.environ.get(URI_ENV)
    if given:
        yield given
        return
    if shutil.which("java") is None:
        pytest.skip(f"Neo4j tests need Java 17 (or {URI_ENV} pointing at a running server)")
    server = Neo4jServer(tmp_path_factory.mktemp("neo4j") / "data")
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


async def wipe_neo4j(uri: str) -> None:
    """Delete every node and relationship (Community Edition has one user database), in
    batches so a large leftover never needs one huge transaction. Constraints stay."""
    async with AsyncGraphDatabase.driver(uri, auth=_test_auth()) as driver:
        while True:
            records, _, _ = await driver.execute_query(
                "MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS deleted"
            )
            if records[0]["deleted"] == 0:
                return


async def open_clean_neo4j_store(uri: str, clock: Callable[[], datetime] | None = None) -> GraphStore:
    """An empty catalog on the Neo4j server at `uri` (everything there is deleted first)."""
    await wipe_neo4j(uri)
    password = os.environ.get(PASSWORD_ENV)
    return await Neo4jGraphStore.open(uri, password=password, clock=clock)
