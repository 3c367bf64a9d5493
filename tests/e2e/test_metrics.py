"""`/metrics`: what a Prometheus scrape of a real server shows after real calls, and who may
scrape it."""

from __future__ import annotations

import ssl

import aiohttp
import grpc
import pytest
import yaml
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.serde import Serde
from prometheus_client.parser import text_string_to_metric_families

from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import catalog_pb2, catalog_pb2_grpc, residency_pb2
from tests.e2e.residency_harness import (
    CUSTOMERS,
    EXAMPLE_POLICY,
    FRANKFURT,
    US,
    expect_error,
    start_residency,
    stop_residency,
)
from tests.e2e.test_openlineage_http import run_event
from tests.e2e.test_security import credentials, dev_settings

EXAMPLE_VERSION = yaml.safe_load(EXAMPLE_POLICY.read_text())["metadata"]["version"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(port: int, **kwargs) -> Samples:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics", **kwargs) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return parse(await response.text())


@pytest.fixture
async def harness(tmp_path):
    harness = await start_residency(
        tmp_path, policy=EXAMPLE_POLICY, http_listen="127.0.0.1:0", ops_listen="127.0.0.1:0"
    )
    yield harness
    await stop_residency(harness)


async def test_a_scrape_shows_calls_decisions_store_and_router(harness):
    port = harness.running.http_port
    before = await scrape(port)
    await harness.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    assert (await harness.decide(CUSTOMERS, US)).outcome == 2  # DENY
    assert (await harness.decide(CUSTOMERS, FRANKFURT)).outcome == 1  # ALLOW
    await harness.decide("s3://nobody/knows", FRANKFURT)
    await expect_error(harness.decide(CUSTOMERS, "aws:nowhere-1"), grpc.StatusCode.INVALID_ARGUMENT)
    await harness.router.flush_decision_log()
    after = await scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    decide = {"service": "domicile.v1.ResidencyService", "method": "Decide"}
    assert delta("domicile_rpc_duration_seconds_count", code="OK", **decide) == 3
    assert delta("domicile_rpc_duration_seconds_count", code="INVALID_ARGUMENT", **decide) == 1
    assert delta("domicile_rpc_duration_seconds_bucket", code="OK", le="+Inf", **decide) == 3
    upsert = {"service": "domicile.v1.CatalogService", "method": "UpsertDataset", "code": "OK"}
    assert delta("domicile_rpc_duration_seconds_count", **upsert) == 1
    assert delta("domicile_decisions_total", operation="store", outcome="deny") == 2
    assert delta("domicile_decisions_total", operation="store", outcome="allow") == 1
    assert delta("domicile_decision_reasons_total", code="RULE_DENIED", rule="gdpr-personal-data") == 1
    assert delta("domicile_decision_reasons_total", code="UNKNOWN_DATASET", rule="") == 1
    store_call = {"backend": "sqlite", "operation": "upsert_dataset", "outcome": "ok"}
    assert delta("domicile_store_operation_duration_seconds_count", **store_call) == 1
    assert delta("domicile_decision_log_write_seconds_count") >= 1
    assert delta("domicile_http_request_duration_seconds_count", method="GET", route="/metrics", status="200") == 1

    revision = harness.router.catalog_revision
    assert value(after, "domicile_router_catalog_revision") == revision
    assert value(after, "domicile_catalog_revision") == revision
    assert value(after, "domicile_router_feed_lag_revisions") == 0
    assert 0 <= value(after, "domicile_router_view_age_seconds") < 60
    assert value(after, "domicile_decision_log_queue_depth") >= 0
    assert value(after, "domicile_policy_info", version=EXAMPLE_VERSION) == 1
    assert value(after, "domicile_build_info", version="0.1.0") == 1
    assert value(after, "process_cpu_seconds_total") > 0


async def test_route_and_check_job_decisions_are_counted_once(harness):
    port = harness.running.http_port
    await harness.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    before = await scrape(port)
    store, process = residency_pb2.OPERATION_STORE, residency_pb2.OPERATION_PROCESS
    routed = await harness.residency.Route(
        residency_pb2.RouteRequest(dataset_id=CUSTOMERS, operation=store, candidates=[US, FRANKFURT])
    )
    assert routed.region == FRANKFURT
    checked = await harness.residency.CheckJob(
        residency_pb2.CheckJobRequest(
            inputs=[CUSTOMERS], outputs=["s3://bank-eu/report"], run_region=US, output_region=FRANKFURT
        )
    )
    await harness.router.flush_decision_log()
    after = await scrape(port)

    def total(samples: Samples) -> float:
        return sum(v for (name, _), v in samples.items() if name == "domicile_decisions_total")

    assert total(after) - total(before) == 1 + len(checked.decisions) == 3
    outcomes = {1: "allow", 2: "deny"}
    operations = {store: "store", process: "process"}
    expected: dict[tuple[str, str], int] = {}
    for decision in (routed.decision, *checked.decisions):
        key = (operations[decision.operation], outcomes[decision.outcome])
        expected[key] = expected.get(key, 0) + 1
    for (operation, outcome), count in expected.items():
        delta = value(after, "domicile_decisions_total", operation=operation, outcome=outcome) - value(
            before, "domicile_decisions_total", operation=operation, outcome=outcome
        )
        assert delta == count, (operation, outcome)


async def test_the_ops_listener_serves_metrics_and_nothing_else(harness):
    port = harness.running.ops_port
    samples = await scrape(port)
    assert value(samples, "domicile_router_catalog_revision") == harness.router.catalog_revision
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/api/v1/lineage", json={}) as response,
    ):
        assert response.status == 404


async def test_openlineage_events_are_counted(harness):
    port = harness.running.http_port
    before = await scrape(port)
    event = run_event(
        inputs=[InputDataset(namespace="s3://bank-eu", name="a")],
        outputs=[OutputDataset(namespace="s3://bank-eu", name="b")],
    )
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/api/v1/lineage"
        async with session.post(url, data=Serde.to_json(event), headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200, await r.text()
        async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
    after = await scrape(port)
    events = "domicile_openlineage_events_total"
    assert value(after, events, outcome="accepted") - value(before, events, outcome="accepted") == 1
    assert value(after, events, outcome="rejected") - value(before, events, outcome="rejected") == 1


async def test_metrics_need_the_metrics_scope_on_the_authenticated_listener(tmp_path):
    running = await create_server(dev_settings(tmp_path, ops_listen="127.0.0.1:0"))
    paths = dev_paths(tmp_path)
    try:
        url = f"https://127.0.0.1:{running.http_port}/metrics"
        client_tls = ssl.create_default_context(cafile=str(paths.ca_cert))
        client_tls.load_cert_chain(paths.client_cert, paths.client_key)
        before = await scrape(running.ops_port)
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=client_tls) as response:
                assert response.status == 401
            reader = mint_dev_token(tmp_path, scopes=["catalog:read"])
            async with session.get(url, ssl=client_tls, headers={"Authorization": f"Bearer {reader}"}) as response:
                assert response.status == 403
            scraper = mint_dev_token(tmp_path, scopes=["metrics:read"], subject="prometheus")
            async with session.get(url, ssl=client_tls, headers={"Authorization": f"Bearer {scraper}"}) as response:
                assert response.status == 200
                assert "domicile_router_catalog_revision" in await response.text()
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", credentials(paths)) as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            await expect_error(
                stub.ListRegions(catalog_pb2.ListRegionsRequest(), metadata=[("authorization", "Bearer nope")]),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        # The plaintext ops listener needs no token.
        after = await scrape(running.ops_port)
        failures = "domicile_authentication_failures_total"
        assert value(after, failures, reason="MALFORMED_TOKEN") - value(before, failures, reason="MALFORMED_TOKEN") == 1
        assert value(after, failures, reason="MISSING_TOKEN") - value(before, failures, reason="MISSING_TOKEN") == 1
        denied = "domicile_authorization_failures_total"
        assert value(after, denied, reason="MISSING_SCOPE") - value(before, denied, reason="MISSING_SCOPE") == 1
    finally:
        await running.stop(0)
