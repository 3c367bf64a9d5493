"""A residency test harness: the server of `domicile.server.create_server` on a real store,
with stubs and helpers to describe a catalog and ask for decisions over real gRPC channels.
The `residency` fixture (tests/e2e/conftest.py) yields one per store backend."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from domicile.app import App
from domicile.catalog.store import GraphStore
from domicile.grpc_errors import details_of
from domicile.router.runtime import Clock, Router, utc_clock
from domicile.server import RunningServer, create_server
from domicile.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    policy_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)
from tests.e2e.conftest import insecure_settings

EXAMPLE_POLICY = Path(__file__).parents[2] / "examples" / "policy.yaml"
STORE, PROCESS = residency_pb2.OPERATION_STORE, residency_pb2.OPERATION_PROCESS
ALLOW, DENY = residency_pb2.OUTCOME_ALLOW, residency_pb2.OUTCOME_DENY

CUSTOMERS = "s3://bank-eu/customers"
COPY = "s3://bank-eu/customers-copy"
PAYMENTS = "postgres://db.in:5432/payments.public.upi"
US, FRANKFURT, MUMBAI = "aws:us-east-1", "aws:eu-central-1", "aws:ap-south-1"

_runs = itertools.count(1)


@dataclass
class Residency:
    """A running server (`domicile.server.create_server`) and stubs for every service it serves."""

    running: RunningServer
    channel: grpc.aio.Channel
    catalog: catalog_pb2_grpc.CatalogServiceStub
    lineage: lineage_pb2_grpc.LineageServiceStub
    residency: residency_pb2_grpc.ResidencyServiceStub
    policy: policy_pb2_grpc.PolicyServiceStub

    @property
    def app(self) -> App:
        return self.running.app

    @property
    def router(self) -> Router:
        assert self.running.app.router is not None
        return self.running.app.router

    @property
    def port(self) -> int:
        return self.running.port

    async def put(self, dataset_id: str, **fields) -> catalog_pb2.Dataset:
        response = await self.catalog.UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id=dataset_id, **fields))
        )
        return response.dataset

    async def derive(self, inputs: list[str], outputs: list[str], transform: str = "", job: str = "job") -> None:
        await self.lineage.RecordLineage(
            lineage_pb2.RecordLineageRequest(
                job=job, run_id=f"run-{next(_runs)}", inputs=inputs, outputs=outputs, transform=transform
            )
        )

    async def decide(self, dataset_id: str, region: str, operation: int = STORE) -> residency_pb2.Decision:
        request = residency_pb2.DecideRequest(dataset_id=dataset_id, operation=operation, region=region)
        return (await self.residency.Decide(request)).decision


async def start_residency(
    tmp_path: Path, clock: Clock = utc_clock, store: GraphStore | None = None, **settings_overrides
) -> Residency:
    """A server from `create_server` (insecure, loopback, no HTTP endpoint unless the overrides
    ask for one); with `clock`, its
    router is restarted on that clock (the servicers reach the router through the app)."""
    settings = insecure_settings(tmp_path, **{"http_listen": "", **settings_overrides})
    running = await create_server(settings, store=store)
    if clock is not utc_clock:
        await running.app.router.close()
        running.app.router = await Router.start(running.app, clock=clock)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    return Residency(
        running,
        channel,
        catalog_pb2_grpc.CatalogServiceStub(channel),
        lineage_pb2_grpc.LineageServiceStub(channel),
        residency_pb2_grpc.ResidencyServiceStub(channel),
        policy_pb2_grpc.PolicyServiceStub(channel),
    )


async def stop_residency(harness: Residency) -> None:
    await harness.channel.close()
    await harness.running.stop(0)


async def expect_error(awaitable, code: grpc.StatusCode) -> dict:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return details_of(info.value)
