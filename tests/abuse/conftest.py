"""Fixtures of the abuse suite: real servers on loopback ports, attacked over real channels.

The store is SQLite: what is attacked here (request parsing, limits, the event loop) sits in
front of the GraphStore, whose backends the contract suite holds to one behaviour.
"""

from __future__ import annotations

import grpc
import pytest

from domicile.server import create_server
from tests.e2e.conftest import insecure_settings

# A call that takes longer than this is hung, not slow: no test measures time with it.
HANG = 30.0


@pytest.fixture
async def server(tmp_path):
    running = await create_server(insecure_settings(tmp_path))
    yield running
    await running.stop(0)


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def http_url(server, path: str = "/api/v1/lineage") -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"
