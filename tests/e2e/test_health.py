"""Health: grpc.health.v1 statuses per service, liveness, and the plaintext health port that
probes use."""

from __future__ import annotations

import errno

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domicile.server import create_server
from tests.e2e.conftest import insecure_settings
from tests.e2e.test_security import dev_settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=20
        )
        return response.status


async def test_the_plaintext_health_port_answers_probes_without_credentials(tmp_path):
    running = await create_server(dev_settings(tmp_path, health_listen="127.0.0.1:0"))
    try:
        for service in ("", "liveness", "domicile.v1.ResidencyService", "domicile.v1.CatalogService"):
            assert await check(running.health_port, service) == SERVING, service
        # Only health is served there: the API stays behind TLS.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            list_regions = channel.unary_unary("/domicile.v1.CatalogService/ListRegions")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_regions(b"", timeout=20)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.stop(0)


async def test_residency_is_not_serving_while_the_decision_log_cannot_write(tmp_path, monkeypatch):
    from domicile import appendfile
    from domicile.v1 import residency_pb2, residency_pb2_grpc

    running = await create_server(
        insecure_settings(tmp_path, http_listen="127.0.0.1:0", router={"durable_decision_log": True})
    )
    try:

        def failing_write(fd: int, buffers) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(appendfile.os, "writev", failing_write)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            request = residency_pb2.DecideRequest(
                dataset_id="s3://x/y", operation=residency_pb2.OPERATION_STORE, region="aws:us-east-1"
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await residency_pb2_grpc.ResidencyServiceStub(channel).Decide(request, timeout=20)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await running.service_health.check()
        assert await check(running.port, "domicile.v1.ResidencyService") == NOT_SERVING
        assert await check(running.port, "domicile.v1.CatalogService") == SERVING
        assert await check(running.port, "") == NOT_SERVING
        assert await check(running.port, "liveness") == SERVING
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{running.http_port}"
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
                body = await response.json()
                assert body["status"] == "not ready"
                assert body["services"]["domicile.v1.ResidencyService"] == "NOT_SERVING"
                assert any("No space left" in problem for problem in body["problems"])
            async with session.get(f"{base}/livez") as response:
                assert response.status == 200
    finally:
        monkeypatch.undo()
        await running.stop(0)
