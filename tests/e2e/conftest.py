"""End-to-end fixtures: a real server on a loopback port, real gRPC channels.

`server` and `residency` run once per store backend (SQLite file, and the session's Neo4j
server).
"""

from __future__ import annotations

import grpc
import pytest

from domicile.config import load_settings
from domicile.server import create_server


def insecure_settings(tmp_path, **overrides):
    values = {
        "insecure": True,
        "listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "store": f"sqlite:///{tmp_path / 'catalog.db'}",
        "data_dir": tmp_path,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def server(request, tmp_path):
    """A started server (insecure, loopback) on the parametrised backend."""
    settings = insecure_settings(tmp_path)
    store = None
    if request.param == "neo4j":
        from tests.neo4j_plugin import open_clean_neo4j_store

        uri = request.getfixturevalue("neo4j_uri")
        store = await open_clean_neo4j_store(uri)
    running = await create_server(settings, store=store)
    yield running
    await running.stop(0)


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def residency(request, tmp_path):
    """A started server with the example policy, on each store backend, with helpers to
    describe a catalog and ask for decisions (tests/e2e/residency_harness.py)."""
    from tests.e2e.residency_harness import EXAMPLE_POLICY, start_residency, stop_residency

    store = None
    if request.param == "neo4j":
        from tests.neo4j_plugin import open_clean_neo4j_store

        store = await open_clean_neo4j_store(request.getfixturevalue("neo4j_uri"))
    harness = await start_residency(tmp_path, store=store, policy=EXAMPLE_POLICY)
    yield harness
    await stop_residency(harness)
