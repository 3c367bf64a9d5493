"""A Neo4j outage end to end: a real server of this module's own, stopped and crashed mid-run.

While a writer keeps writing, the server goes away: store calls must fail with UNAVAILABLE
(with a retry hint, never an empty answer) within seconds. When the server comes back on
the same port and data directory, the very same store object works again without being
reopened, and every write it acknowledged is there. An import cut by a crash is cleared
by the next import.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from domicile.catalog.model import Dataset, DatasetFilter, Direction, EdgeKey, PageRequest, Run
from domicile.catalog.stores import history_format as hf
from domicile.catalog.stores.neo4j import Neo4jGraphStore
from domicile.errors import DomicileError, ErrorCode
from tests.neo4j_plugin import Neo4jServer, wipe_neo4j

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]

# An outage must be reported well within this (the store's driver timeouts are ~3 s).
OUTAGE_REPORT_SECONDS = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """A server for this module only; each test leaves it running."""
    server = Neo4jServer(tmp_path_factory.mktemp("neo4j-outage") / "data")
    server.start()
    yield server
    server.stop()


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


async def test_store_reports_an_outage_and_recovers_with_every_acknowledged_write(server):
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
            expect_unavailable(store.revision),
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


def history(datasets: int) -> Iterator[dict]:
    """A valid history of `datasets` upserts, one revision each."""
    yield hf.header_record()
    start = 1_764_000_000_000_000
    for revision in range(1, datasets + 1):
        yield hf.revision_record(revision, start + revision, "importer", f"upsert s3://imported/{revision:05d}")
    for revision in range(1, datasets + 1):
        yield {
            "type": "dataset_version",
            "revision": revision,
            "valid_from": start + revision,
            "valid_to": None,
            "end_revision": None,
            "deleted": False,
            "create_time": start + revision,
            "updated_by": "importer",
            "dataset": hf.dataset_content(Dataset.create(f"s3://imported/{revision:05d}", owner="importer")),
        }


async def crashing_after(records: Iterator[dict], count: int, server: Neo4jServer) -> AsyncIterator[dict]:
    """Yields `records`, crashing `server` once `count` of them were handed out."""
    for index, record in enumerate(records):
        if index == count:
            await asyncio.to_thread(server.kill)
        yield record


async def test_an_import_cut_by_a_crash_is_cleared_by_the_next_import(server):
    await wipe_neo4j(server.uri)
    store = await Neo4jGraphStore.open(server.uri)
    try:
        # Records are loaded in batches of 1,000: the crash comes after one batch committed,
        # and the import's own clean-up cannot reach the server either.
        with pytest.raises(DomicileError) as caught:
            await store.import_history(crashing_after(history(1_500), 2_200, server))
        assert caught.value.code is ErrorCode.UNAVAILABLE
        await asyncio.to_thread(server.start)

        async def records() -> AsyncIterator[dict]:
            for record in history(1_500):
                yield record

        assert await store.import_history(records()) == 3_001
        assert await store.revision() == 1_500
        imported = await store.get_dataset("s3://imported/01500")
        assert imported is not None and (imported.revision, imported.owner) == (1_500, "importer")
        assert len(await store.changes_since(0, limit=5_000)) == 1_500
    finally:
        await store.close()


async def test_grpc_catalog_answers_unavailable_during_an_outage_and_recovers(server, tmp_path):
    import grpc

    from domicile.config import load_settings
    from domicile.grpc_errors import details_of
    from domicile.server import create_server
    from domicile.v1 import catalog_pb2, catalog_pb2_grpc

    settings = load_settings(insecure=True, listen="127.0.0.1:0", http_listen="", store=server.uri, data_dir=tmp_path)
    running = await create_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            written = await stub.UpsertDataset(
                catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id="s3://outage/grpc", origins=["DE"]))
            )
            await asyncio.to_thread(server.stop)
            for call in (
                stub.GetDataset(catalog_pb2.GetDatasetRequest(id="s3://outage/grpc")),
                stub.ListDatasets(catalog_pb2.ListDatasetsRequest()),
                stub.UpsertDataset(catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id="s3://outage/x"))),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await asyncio.wait_for(call, OUTAGE_REPORT_SECONDS)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
                assert details_of(caught.value)["retry_after"], "UNAVAILABLE must carry a retry hint"
            # Health: the store's services and readiness say NOT_SERVING; decisions (which fail
            # closed) and liveness keep serving, so nothing restarts a server that waits.
            await running.service_health.check()
            assert await health_statuses(channel) == {
                "": "NOT_SERVING",
                "liveness": "SERVING",
                "domicile.v1.CatalogService": "NOT_SERVING",
                "domicile.v1.LineageService": "NOT_SERVING",
                "domicile.v1.ResidencyService": "SERVING",
                "domicile.v1.PolicyService": "SERVING",
                "domicile.v1.AuditService": "SERVING",
                "domicile.v1.AccessService": "NOT_SERVING",
            }
            await asyncio.to_thread(server.start)
            got = await stub.GetDataset(catalog_pb2.GetDatasetRequest(id="s3://outage/grpc"))
            assert got.dataset == written.dataset
            await running.service_health.check()
            assert set((await health_statuses(channel)).values()) == {"SERVING"}
    finally:
        await running.stop(0)


async def health_statuses(channel) -> dict[str, str]:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from domicile.health import LIVENESS, SERVICE_NAMES

    stub = health_pb2_grpc.HealthStub(channel)
    statuses = {}
    for name in ("", LIVENESS, *SERVICE_NAMES):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=20)
        statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return statuses
