"""Per-principal budgets over real channels: a BatchDecide of 10,000 costs 10,000 decisions,
lineage costs its edges, and the defaults let full batches through."""

from __future__ import annotations

import aiohttp
import grpc
import pytest

from domicile.grpc_errors import details_of
from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)
from tests.abuse.conftest import HANG, bearer, client_credentials, dev_settings, http_url
from tests.e2e.conftest import insecure_settings
from tests.e2e.residency_harness import EXAMPLE_POLICY

DATASET = "s3://bank-eu/customers"


def batch(n: int) -> residency_pb2.BatchDecideRequest:
    question = residency_pb2.DecideRequest(dataset_id=DATASET, operation=1, region="aws:eu-west-1")
    return residency_pb2.BatchDecideRequest(requests=[question] * n)


async def test_a_batch_of_10000_costs_10000_decisions_of_its_principal(tmp_path):
    settings = dev_settings(
        tmp_path, policy=EXAMPLE_POLICY, rate_limit={"decisions_per_second": 0.001, "decision_burst": 15_000}
    )
    running = await create_server(settings)
    try:
        paths = dev_paths(tmp_path)
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", client_credentials(paths)) as channel:
            residency = residency_pb2_grpc.ResidencyServiceStub(channel)
            heavy = bearer(mint_dev_token(tmp_path, subject="heavy", scopes=["residency:decide"]))
            answer = await residency.BatchDecide(batch(10_000), metadata=heavy, timeout=HANG)
            assert len(answer.decisions) == 10_000
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await residency.BatchDecide(batch(10_000), metadata=heavy, timeout=HANG)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = details_of(info.value)
            assert details["reason"] == "RATE_LIMITED" and details["metadata"]["resource"] == "decisions"
            assert details["retry_after"] > 0
            # 5,000 are left: a smaller batch and single decisions still fit.
            assert len((await residency.BatchDecide(batch(4_999), metadata=heavy, timeout=HANG)).decisions) == 4_999
            await residency.Decide(batch(1).requests[0], metadata=heavy, timeout=HANG)
            with pytest.raises(grpc.aio.AioRpcError):
                await residency.Decide(batch(1).requests[0], metadata=heavy, timeout=HANG)
            # Another principal has a budget of its own.
            light = bearer(mint_dev_token(tmp_path, subject="light", scopes=["residency:decide"]))
            assert len((await residency.BatchDecide(batch(10_000), metadata=light, timeout=HANG)).decisions) == 10_000
        events = running.app.settings.security_log_path.read_text()
        assert '"resource":"decisions"' in events and '"principal":"heavy"' in events
    finally:
        await running.stop(0)


async def test_lineage_costs_its_edges_over_grpc_and_http(tmp_path):
    settings = insecure_settings(tmp_path, rate_limit={"lineage_edges_per_second": 0.001, "lineage_edge_burst": 150})
    running = await create_server(settings)
    try:
        inputs = [f"s3://raw/in{i}" for i in range(10)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            lineage = lineage_pb2_grpc.LineageServiceStub(channel)

            def record(run: str, outputs: list[str]):
                request = lineage_pb2.RecordLineageRequest(job="j", run_id=run, inputs=inputs, outputs=outputs)
                return lineage.RecordLineage(request, timeout=HANG)

            assert (await record("r1", [f"s3://out/a{i}" for i in range(10)])).edges_created == 100
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await record("r2", [f"s3://out/b{i}" for i in range(10)])
            assert details_of(info.value)["metadata"]["resource"] == "lineage_edges"
            # Refused before anything was written.
            catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await catalog.GetDataset(catalog_pb2.GetDatasetRequest(id="s3://out/b0"), timeout=HANG)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        event = {
            "eventType": "COMPLETE",
            "eventTime": "2026-11-30T10:00:00Z",
            "producer": "https://example.com/p",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": "r3"},
            "job": {"namespace": "ns", "name": "job"},
            "inputs": [{"namespace": "s3://raw", "name": f"in{i}"} for i in range(10)],
            "outputs": [{"namespace": "s3://out", "name": f"c{i}"} for i in range(10)],
        }
        async with aiohttp.ClientSession() as http, http.post(http_url(running), json=event) as response:
            assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
            assert (await response.json())["error"]["reason"] == "RATE_LIMITED"
    finally:
        await running.stop(0)


async def test_the_default_budgets_let_full_batches_through(tmp_path):
    running = await create_server(insecure_settings(tmp_path, policy=EXAMPLE_POLICY))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            residency = residency_pb2_grpc.ResidencyServiceStub(channel)
            for _ in range(5):
                assert len((await residency.BatchDecide(batch(10_000), timeout=HANG)).decisions) == 10_000
    finally:
        await running.stop(0)
