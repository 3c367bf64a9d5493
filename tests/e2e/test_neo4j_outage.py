"""A Neo4j outage end to end: a real server of its own, stopped and crashed mid-run.

While a writer keeps writing, the server goes away: store calls must fail with UNAVAILABLE
(with a retry hint, never an empty answer) within seconds. When the server comes back on
the same port and data directory, the very same store object works again without being
reopened, and every write it acknowledged is there.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from domicile.catalog.model import Dataset, DatasetFilter, Direction, EdgeKey, PageRequest, Run
from domicile.catalog.stores.neo4j import Neo4jGraphStore
from domicile.errors import DomicileError, ErrorCode
from tests.neo4j_plugin import Neo4jServer

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]

# An outage must be reported well within this (the store's driver timeouts are ~3 s).
OUTAGE_REPORT_SECONDS = 15.0


class Writer:
    """Upserts dataset after dataset until the store fails; keeps what was acknowledged."""

    def __init__(self, store: Neo4jGraphStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.acknowledged: list[Dataset] = []
        self.error: DomicileError | None = None

    async def run(self) -> None:
        number = 0
        while True:
            number += 1
            dataset = Dataset.create(f"s3://outage/{self.prefix}-{number:05d}", owner="writer", origins=["DE"])
            try:
                self.acknowledged.append(await self.store.upsert_dataset(dataset, principal="writer"))
            except DomicileError as exc:
                self.error = exc
                return

    async def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert self.error is None, f"writes failed while the server was up: {self.error}"
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} writes in {timeout}s"
            await asyncio.sleep(0.05)


async def expect_unavailable(call) -> float:
    """Runs `call()`; asserts it fails with UNAVAILABLE and a retry hint; returns the seconds it took."""
    began = time.monotonic()
    with pytest.raises(DomicileError) as caught:
        await call()
    elapsed = time.monotonic() - began
    assert caught.value.code is ErrorCode.UNAVAILABLE, caught.value
    assert caught.value.retry_after and caught.value.retry_after > 0
    assert elapsed < OUTAGE_REPORT_SECONDS
    return elapsed


async def interrupt_mid_run(store: Neo4jGraphStore, server: Neo4jServer, prefix: str, *, crash: bool) -> list[Dataset]:
    """Stops (or crashes) `server` while a writer is busy; returns the acknowledged writes.

    The writer must end with UNAVAILABLE, and so must a read; the other calls are checked
    once, after the clean stop.
    """
    writer = Writer(store, prefix)
    task = asyncio.create_task(writer.run())
    await writer.wait_for(25)
    await asyncio.to_thread(server.kill if crash else server.stop)
    await asyncio.wait_for(task, OUTAGE_REPORT_SECONDS)
    assert writer.error is not None and writer.error.code is ErrorCode.UNAVAILABLE, writer.error
    await expect_unavailable(lambda: store.get_dataset(writer.acknowledged[0].id))
    return writer.acknowledged


async def assert_all_there(store: Neo4jGraphStore, acknowledged: list[Dataset]) -> None:
    for dataset in acknowledged:
        assert await store.get_dataset(dataset.id) == dataset
    assert await store.revision() >= acknowledged[-1].revision


async def test_store_reports_an_outage_and_recovers_with_every_acknowledged_write(tmp_path):
    server = Neo4jServer(tmp_path / "data")
    await asyncio.to_thread(server.start)
    store = await Neo4jGraphStore.open(server.uri)
    try:
        await store.record_lineage(Run("etl", "r1"), [EdgeKey("s3://outage/in", "s3://outage/out", "etl")])

        # A clean stop (SIGTERM) mid-run, then a restart on the same port and data.
        stopped = await interrupt_mid_run(store, server, "stop", crash=False)
        # Every kind of call reports the outage, never an empty answer (checked concurrently:
        # each waits out the driver's retries).
        await asyncio.gather(
            expect_unavailable(lambda: store.list_datasets(DatasetFilter(), PageRequest(10))),
            expect_unavailable(lambda: store.traverse("s3://outage/out", Direction.UPSTREAM, max_depth=1)),
            expect_unavailable(lambda: store.revision()),
            expect_unavailable(lambda: store.changes_since(0)),
            expect_unavailable(lambda: store.record_lineage(Run("etl", "r2"), [EdgeKey("s3://a", "s3://b", "etl")])),
        )
        await asyncio.to_thread(server.start)
        await assert_all_there(store, stopped)

        # A crash (SIGKILL) mid-run: acknowledged means committed to disk.
        crashed = await interrupt_mid_run(store, server, "crash", crash=True)
        await asyncio.to_thread(server.start)
        await assert_all_there(store, [*stopped, *crashed])

        # Lineage written before both outages survives too, and writes work again.
        lineage = await store.traverse("s3://outage/out", Direction.UPSTREAM, max_depth=1)
        assert [n.dataset_id for n in lineage.nodes] == ["s3://outage/out", "s3://outage/in"]
        before = await store.revision()
        await store.upsert_dataset(Dataset.create("s3://outage/after"))
        assert await store.revision() == before + 1
    finally:
        await store.close()
        await asyncio.to_thread(server.stop)
