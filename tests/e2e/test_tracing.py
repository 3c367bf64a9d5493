"""OpenTelemetry traces of a real server (mTLS + JWT), exported to the SDK's in-memory exporter:
one SERVER span per call continuing the caller's `traceparent`, child spans for the engine,
the store, policy compilation and lineage ingest, and the security context as attributes --
never a token."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import grpc
import pytest
import yaml
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.serde import Serde
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals

from domicile.grpc_errors import details_of
from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.telemetry.tracing import tracing_enabled
from domicile.v1 import catalog_pb2, catalog_pb2_grpc, policy_pb2, policy_pb2_grpc, residency_pb2, residency_pb2_grpc
from tests.e2e.residency_harness import EXAMPLE_POLICY
from tests.e2e.test_openlineage_http import run_event
from tests.e2e.test_security import credentials, dev_settings

EXAMPLE_VERSION = yaml.safe_load(EXAMPLE_POLICY.read_text())["metadata"]["version"]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
CUSTOMERS = "s3://bank-eu/customers"


@pytest.fixture
def spans():
    """An SDK TracerProvider exporting to memory, installed for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_trace_globals()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_trace_globals()
    AioHttpServerInstrumentor().uninstrument()
    AioHttpClientInstrumentor().uninstrument()


@pytest.fixture
async def traced(spans, tmp_path):
    running = await create_server(dev_settings(tmp_path, policy=EXAMPLE_POLICY))
    assert tracing_enabled()
    paths = dev_paths(tmp_path)
    async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", credentials(paths)) as channel:
        yield running, channel, spans
    await running.stop(0)


def metadata(tmp_path, *scopes, subject="svc-a", actors=()):
    token = mint_dev_token(tmp_path, scopes=list(scopes), subject=subject, actors=actors)
    return [("authorization", f"Bearer {token}"), ("traceparent", TRACEPARENT)], token


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def no_credentials(spans: list[ReadableSpan], token: str) -> None:
    for span in spans:
        for value in [*span.attributes.values(), *(v for e in span.events for v in e.attributes.values())]:
            assert token not in str(value) and "Bearer" not in str(value), (span.name, value)


async def test_a_decision_is_one_server_span_with_the_engine_and_security_context(traced, tmp_path):
    _, channel, exporter = traced
    writer, _ = metadata(tmp_path, "catalog:write")
    await catalog_pb2_grpc.CatalogServiceStub(channel).UpsertDataset(
        catalog_pb2.UpsertDatasetRequest(
            dataset=catalog_pb2.Dataset(id=CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
        ),
        metadata=writer,
    )
    asking, token = metadata(tmp_path, "residency:decide", subject="svc-a", actors=("airflow",))
    request = residency_pb2.DecideRequest(
        dataset_id=CUSTOMERS, operation=residency_pb2.OPERATION_STORE, region="aws:us-east-1"
    )
    decision = (await residency_pb2_grpc.ResidencyServiceStub(channel).Decide(request, metadata=asking)).decision
    spans = exporter.get_finished_spans()

    (upsert,) = by_name(spans, "/domicile.v1.CatalogService/UpsertDataset")
    # The write, then the router catching up with it before the answer (read-your-writes).
    assert [s.name for s in children(spans, upsert)] == ["store.upsert_dataset", "store.changes_since"]
    assert children(spans, upsert)[0].attributes["db.system"] == "sqlite"

    (server,) = by_name(spans, "/domicile.v1.ResidencyService/Decide")
    assert server.kind is trace.SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID  # continues the caller's trace
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert server.attributes["enduser.id"] == "svc-a"
    assert server.attributes["domicile.principal"] == "svc-a (via airflow)"
    assert list(server.attributes["domicile.auth.actors"]) == ["airflow"]
    assert server.attributes["domicile.auth.outcome"] == "granted"
    assert server.attributes["domicile.auth.scope"] == "residency:decide"
    (engine,) = children(spans, server)
    assert engine.name == "router.decide"
    assert engine.attributes["domicile.decision.id"] == decision.decision_id
    assert engine.attributes["domicile.decision.outcome"] == "deny"
    assert engine.attributes["domicile.policy.version"] == decision.policy_version
    assert engine.attributes["domicile.catalog.revision"] == decision.catalog_revision
    assert list(engine.attributes["domicile.decision.rules"]) == ["gdpr-personal-data"]
    no_credentials(spans, token)
    # Background store calls (the router following the catalog, health checks) start no traces.
    await asyncio.sleep(0.6)
    assert not [s.name for s in exporter.get_finished_spans() if s.parent is None and s.name.startswith("store.")]


async def test_a_batch_is_one_span_with_events_for_its_denials(traced, tmp_path):
    _, channel, exporter = traced
    asking, _ = metadata(tmp_path, "residency:decide")
    requests = [
        residency_pb2.DecideRequest(dataset_id=f"s3://unknown/{i}", operation=residency_pb2.OPERATION_STORE, region=r)
        for i, r in enumerate(["aws:us-east-1", "aws:eu-central-1", "aws:eu-west-1"])
    ]
    await residency_pb2_grpc.ResidencyServiceStub(channel).BatchDecide(
        residency_pb2.BatchDecideRequest(requests=requests), metadata=asking
    )
    spans = exporter.get_finished_spans()
    (server,) = by_name(spans, "/domicile.v1.ResidencyService/BatchDecide")
    (engine,) = children(spans, server)
    assert engine.name == "router.batch_decide" and children(spans, engine) == []
    assert engine.attributes["domicile.decisions.count"] == 3
    assert engine.attributes["domicile.decisions.denied"] == 3
    assert [e.attributes["domicile.decision.dataset_id"] for e in engine.events] == [r.dataset_id for r in requests]
    assert {tuple(e.attributes["domicile.decision.reasons"]) for e in engine.events} == {("UNKNOWN_DATASET",)}


async def test_a_refusal_names_its_reason_and_shares_the_trace_id(traced, tmp_path):
    _, channel, exporter = traced
    reader, token = metadata(tmp_path, "catalog:read", subject="svc-r")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await policy_pb2_grpc.PolicyServiceStub(channel).SetPolicy(
            policy_pb2.SetPolicyRequest(policy_yaml=EXAMPLE_POLICY.read_text()), metadata=reader
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details_of(info.value)["metadata"]["trace_id"] == TRACE_ID
    spans = exporter.get_finished_spans()
    (server,) = by_name(spans, "/domicile.v1.PolicyService/SetPolicy")
    assert server.attributes["domicile.auth.outcome"] == "refused"
    assert server.attributes["domicile.auth.reason"] == "MISSING_SCOPE"
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert children(spans, server) == []
    no_credentials(spans, token)

    admin, _ = metadata(tmp_path, "policy:admin")
    await policy_pb2_grpc.PolicyServiceStub(channel).SetPolicy(
        policy_pb2.SetPolicyRequest(policy_yaml=EXAMPLE_POLICY.read_text(), dry_run=True), metadata=admin
    )
    (_, allowed) = by_name(exporter.get_finished_spans(), "/domicile.v1.PolicyService/SetPolicy")
    (compiled,) = [s for s in children(exporter.get_finished_spans(), allowed) if s.name == "policy.compile"]
    assert compiled.attributes["domicile.policy.version"] == EXAMPLE_VERSION


async def test_openlineage_ingest_is_traced_from_the_http_request(traced, tmp_path):
    running, _, exporter = traced
    paths = dev_paths(tmp_path)
    client_tls = ssl.create_default_context(cafile=str(paths.ca_cert))
    client_tls.load_cert_chain(paths.client_cert, paths.client_key)
    token = mint_dev_token(tmp_path, scopes=["lineage:write"], subject="airflow-eu")
    event = run_event(
        inputs=[InputDataset(namespace="s3://bank-eu", name="raw")],
        outputs=[OutputDataset(namespace="s3://bank-eu", name="clean")],
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{running.http_port}/api/v1/lineage",
            data=Serde.to_json(event),
            ssl=client_tls,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "traceparent": TRACEPARENT,
            },
        ) as response,
    ):
        assert response.status == 200, await response.text()
    spans = exporter.get_finished_spans()
    # The client's request is traced too (aiohttp is instrumented in this process): its CLIENT
    # span's traceparent is what the server continues.
    (client,) = [s for s in spans if s.kind is trace.SpanKind.CLIENT]
    (server,) = [s for s in spans if s.kind is trace.SpanKind.SERVER]
    assert server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
    assert server.attributes["domicile.principal"] == "airflow-eu"
    assert server.attributes["domicile.auth.scope"] == "lineage:write"
    (ingest,) = by_name(spans, "lineage.ingest")
    assert ingest.parent.span_id == server.context.span_id
    assert ingest.attributes["domicile.lineage.job"] == "airflow-eu/daily.customer_rollup"
    assert "store.record_lineage" in [s.name for s in children(spans, ingest)]
    no_credentials(spans, token)
