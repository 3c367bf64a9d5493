"""Health: grpc.health.v1 statuses per service, liveness, and the plaintext health port that
probes use."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domicile.server import create_server
from tests.e2e.test_security import dev_settings

SERVING = health_pb2.HealthCheckResponse.SERVING


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
