"""The contract suite's fixtures: every test here runs once per GraphStore backend.

`store_factory(clock=None)` opens a fresh, empty store of the backend under test;
`store` is one such store driven by the controllable `clock`. The "neo4j" parameter is
marked `neo4j` and uses the session fixture `neo4j_uri` and `open_clean_neo4j_store` from
tests/neo4j_plugin.py. Stores are closed after each test. A fresh Neo4j store may wipe the
shared test database, so a test that needs two stores is done with the first (its answers
collected) before it opens the second.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from domicile.catalog.store import GraphStore
from domicile.catalog.stores.sqlite import SQLiteGraphStore

StoreFactory = Callable[..., Awaitable[GraphStore]]


class FakeClock:
    """A clock that only moves when told to, so tests know every write's time exactly."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        """Move forward and return the new time (the time the next write gets)."""
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def store_factory(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StoreFactory]:
    opened: list[GraphStore] = []
    if request.param == "sqlite":
        numbers = itertools.count()

        async def open_store(clock: Callable[[], datetime] | None = None) -> GraphStore:
            store = await SQLiteGraphStore.open(f"sqlite:///{tmp_path}/store-{next(numbers)}.db", clock=clock)
            opened.append(store)
            return store

    else:
        from tests.neo4j_plugin import open_clean_neo4j_store

        uri = request.getfixturevalue("neo4j_uri")

        async def open_store(clock: Callable[[], datetime] | None = None) -> GraphStore:
            store = await open_clean_neo4j_store(uri, clock=clock)
            opened.append(store)
            return store

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory, clock: FakeClock) -> GraphStore:
    return await store_factory(clock=clock)
