"""Load shedding over real channels: calls beyond the server's and a principal's concurrency
limits are refused at once with RESOURCE_EXHAUSTED and RetryInfo; health checks never are.
(Behaviour under overload is measured in bench/overload_bench.py, not tested here.)"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domicile.appendfile import AppendOnlyFile
from domicile.demo import DATASETS
from domicile.grpc_errors import details_of
from domicile.loadshed import EVENT_LOOP_SATURATED, sheddable_methods
from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import catalog_pb2, catalog_pb2_grpc, residency_pb2, residency_pb2_grpc
from tests.e2e.conftest import insecure_settings
from tests.e2e.test_security import credentials, dev_settings
from tests.e2e.test_server_process import start_server

NO_LAG_LIMIT = {"max_event_loop_lag_seconds": 0}


def upsert(stub, dataset_id: str, metadata=()):
    request = catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id=dataset_id, origins=["DE"]))
    return asyncio.ensure_future(stub.UpsertDataset(request, metadata=metadata, timeout=60))


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


class CatalogLock:
    """Another connection holding SQLite's write lock: catalog writes wait (in flight)."""

    def __init__(self, path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


async def test_calls_beyond_the_server_limit_are_refused_at_once(tmp_path):
    settings = insecure_settings(tmp_path, load_shedding={"max_concurrent_rpcs": 2, **NO_LAG_LIMIT})
    running = await create_server(settings)
    lock = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
            lock = CatalogLock(tmp_path / "catalog.db")
            waiting = [upsert(catalog, f"s3://shed/{i}") for i in range(2)]
            await until(lambda: running.shedder.in_flight == 2, "two writes in flight")
            decide = residency_pb2.DecideRequest(
                dataset_id="s3://shed/0", operation=residency_pb2.OPERATION_STORE, region="aws:us-east-1"
            )
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await residency_pb2_grpc.ResidencyServiceStub(channel).Decide(decide, timeout=20)
            assert time.monotonic() - started < 10, "a refusal must not wait"
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = details_of(refused.value)
            assert details["reason"] == "OVERLOADED" and details["metadata"] == {"limit": "server_concurrency"}
            assert 0.05 <= details["retry_after"] <= 0.15
            # Health checks always get through.
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            lock.release()
            lock = None
            for call in waiting:
                assert (await call).dataset.id
            await until(lambda: running.shedder.in_flight == 0, "the writes finished")
            assert (await residency_pb2_grpc.ResidencyServiceStub(channel).Decide(decide, timeout=20)).decision
    finally:
        if lock is not None:
            lock.release()
        await running.stop(0)


async def test_decisions_waiting_for_a_slow_fsync_do_not_take_slots(tmp_path, monkeypatch):
    # A durable Decide waits for its log line's fsync; the ones arriving meanwhile share the
    # next. Waiting is not work: a slow disk must not turn into refusals.
    settings = insecure_settings(tmp_path, load_shedding={"max_concurrent_rpcs": 2, **NO_LAG_LIMIT})
    running = await create_server(settings)
    disk_slow = threading.Event()
    disk_back = threading.Event()
    real_write_pieces = AppendOnlyFile.write_pieces

    def slow_write(self, pieces) -> None:  # the log's writes are synced: a slow sync is a slow write
        if self.path.name == "decisions.jsonl" and disk_slow.is_set():
            assert disk_back.wait(60), "the test never let the disk come back"
        real_write_pieces(self, pieces)

    monkeypatch.setattr(AppendOnlyFile, "write_pieces", slow_write)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            residency = residency_pb2_grpc.ResidencyServiceStub(channel)
            decide = residency_pb2.DecideRequest(
                dataset_id="s3://shed/0", operation=residency_pb2.OPERATION_STORE, region="aws:us-east-1"
            )
            await residency.Decide(decide, timeout=20)
            disk_slow.set()
            waiting = [asyncio.ensure_future(residency.Decide(decide, timeout=60)) for _ in range(6)]
            await until(lambda: running.app.router._log.queued() == 6, "six decisions waiting for the disk")
            assert running.shedder.in_flight == 0
            disk_back.set()
            answers = await asyncio.gather(*waiting)
            assert all(answer.decision.decision_id for answer in answers)
    finally:
        disk_back.set()
        await running.stop(0)


async def test_one_principal_cannot_take_every_slot(tmp_path):
    settings = dev_settings(tmp_path, load_shedding={"max_concurrent_rpcs_per_principal": 1, **NO_LAG_LIMIT})
    running = await create_server(settings)
    paths = dev_paths(tmp_path)
    lock = None
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", credentials(paths)) as channel:
            catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
            greedy = [("authorization", f"Bearer {mint_dev_token(tmp_path, subject='svc-greedy')}")]
            other = [("authorization", f"Bearer {mint_dev_token(tmp_path, subject='svc-other')}")]
            lock = CatalogLock(tmp_path / "catalog.db")
            waiting = upsert(catalog, "s3://shed/greedy", greedy)
            await until(lambda: running.shedder.in_flight == 1, "a write in flight")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await catalog.ListRegions(catalog_pb2.ListRegionsRequest(), metadata=greedy, timeout=20)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = details_of(refused.value)
            assert details["reason"] == "PRINCIPAL_CONCURRENCY_LIMIT" and details["retry_after"] > 0
            # Another principal is served meanwhile.
            assert (await catalog.ListRegions(catalog_pb2.ListRegionsRequest(), metadata=other, timeout=20)).regions
            lock.release()
            lock = None
            assert (await waiting).dataset.id == "s3://shed/greedy"
            assert (await catalog.ListRegions(catalog_pb2.ListRegionsRequest(), metadata=greedy, timeout=20)).regions
    finally:
        if lock is not None:
            lock.release()
        await running.stop(0)


async def test_a_saturated_server_refuses_with_retry_info(tmp_path):
    # `domicile serve` in its own process, told that its loop is saturated whenever it waits
    # for work less than 90% of the time: waves of concurrent calls saturate it. Every call
    # that fails must be a refusal a client can act on -- none left to time out or be cancelled.
    process, port = start_server(
        tmp_path,
        "--demo",
        env={"DOMICILE_LOAD_SHEDDING__MIN_EVENT_LOOP_IDLE_SHARE": "0.9", "DOMICILE_ACCESS_LOG": "false"},
    )
    decide = residency_pb2.DecideRequest(
        dataset_id=DATASETS[0].id, operation=residency_pb2.OPERATION_STORE, region="aws:us-east-1"
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            residency = residency_pb2_grpc.ResidencyServiceStub(channel)
            answered, refused = 0, []
            deadline = time.monotonic() + 120
            while len(refused) < 50:
                assert time.monotonic() < deadline, f"{len(refused)} refusals ({answered} calls answered)"
                wave = [residency.Decide(decide, timeout=60) for _ in range(100)]
                for outcome in await asyncio.gather(*wave, return_exceptions=True):
                    if isinstance(outcome, grpc.aio.AioRpcError):
                        refused.append(outcome)
                    else:
                        answered += 1
            assert {error.code() for error in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            for error in refused:
                details = details_of(error)
                assert details["reason"] == "OVERLOADED", details
                assert details["metadata"] == {"limit": EVENT_LOOP_SATURATED}
                assert details["retry_after"] > 0
            # Health checks always get through, and once the load stops, calls are served again.
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            recovered = time.monotonic() + 60
            outcome = None
            while not isinstance(outcome, residency_pb2.DecideResponse):
                assert time.monotonic() < recovered, f"still refused long after the load stopped: {outcome}"
                await asyncio.sleep(0.1)
                outcome = (await asyncio.gather(residency.Decide(decide, timeout=20), return_exceptions=True))[0]
                if isinstance(outcome, grpc.aio.AioRpcError):
                    assert outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
            assert outcome.decision.decision_id
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_only_the_domicile_unary_methods_are_shed():
    methods = sheddable_methods()
    assert "/domicile.v1.ResidencyService/Decide" in methods
    assert "/domicile.v1.CatalogService/UpsertDataset" in methods
    assert not any(m.startswith("/grpc.") for m in methods)
