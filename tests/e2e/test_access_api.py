"""Access records end to end: the official OpenLineage client against a running server with
the example policy, then the AccessService over a real channel."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.http import HttpConfig, HttpTransport

from domicile.server import create_server
from domicile.v1 import access_pb2, access_pb2_grpc, catalog_pb2, catalog_pb2_grpc, lineage_pb2, lineage_pb2_grpc
from tests.e2e.conftest import insecure_settings
from tests.e2e.test_openlineage_http import ResidencyDatasetFacet, ResidencyRunFacet

EXAMPLE_POLICY = Path(__file__).parents[2] / "examples" / "policy.yaml"
PRODUCER = "https://github.com/example/bank-pipelines"
CUSTOMERS = "s3://bank-eu-lake/customers"
PAYMENTS = "s3://bank-in-lake/card-payments"
US, IRELAND, FRANKFURT, MUMBAI = "aws:us-east-1", "aws:eu-west-1", "aws:eu-central-1", "aws:ap-south-1"
JOB = "airflow-eu/daily.customer_rollup"


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def server(request, tmp_path):
    store = None
    if request.param == "neo4j":
        from tests.neo4j_plugin import open_clean_neo4j_store

        store = await open_clean_neo4j_store(request.getfixturevalue("neo4j_uri"))
    settings = insecure_settings(
        tmp_path,
        policy=EXAMPLE_POLICY,
        access={"anomalies": {"baseline_min_age_days": 1, "baseline_window_days": 30}},
    )
    running = await create_server(settings, store=store)
    yield running
    await running.stop(0)


@pytest.fixture
async def stubs(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        await catalog.UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(
                dataset=catalog_pb2.Dataset(
                    id=CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT]
                )
            )
        )
        await catalog.UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(
                dataset=catalog_pb2.Dataset(
                    id=PAYMENTS, classifications=["FINANCIAL.PAYMENT"], origins=["IN"], locations=[MUMBAI]
                )
            )
        )
        yield access_pb2_grpc.AccessServiceStub(channel), lineage_pb2_grpc.LineageServiceStub(channel)


def transport(server) -> HttpTransport:
    return HttpTransport(
        HttpConfig(url=f"http://127.0.0.1:{server.http_port}", endpoint="api/v1/lineage", retry={"total": 0})
    )


def event(region, *, inputs=(CUSTOMERS,), outputs=(), state=RunState.COMPLETE, run_id=None, at=None, job=JOB):
    namespace, name = job.split("/", 1)
    return RunEvent(
        eventType=state,
        eventTime=(at or datetime.now(UTC)).isoformat(),
        run=Run(runId=run_id or str(uuid.uuid4()), facets={"residency": ResidencyRunFacet(region=region)}),
        job=Job(namespace=namespace, name=name),
        producer=PRODUCER,
        inputs=[InputDataset(namespace=i.rsplit("/", 1)[0], name=i.rsplit("/", 1)[1]) for i in inputs],
        outputs=[
            OutputDataset(
                namespace=o.rsplit("/", 1)[0],
                name=o.rsplit("/", 1)[1],
                facets={"residency": ResidencyDatasetFacet(region=out_region)},
            )
            for o, out_region in outputs
        ],
    )


async def send(server, run_event) -> dict:
    """Emit with the official client's HTTP transport (synchronous: from a thread)."""
    response = await asyncio.to_thread(transport(server).emit, run_event)
    assert response.status_code == 200, response.text
    return response.json()


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def test_a_us_run_reading_eu_personal_data_is_an_observed_violation(server, stubs):
    access, _ = stubs
    body = await send(server, event(US))
    (violation,) = body["observed_violations"]
    assert violation["kind"] == "OBSERVED_VIOLATION_KIND_POLICY_DENIED"
    assert (violation["dataset_id"], violation["operation"], violation["region"]) == (
        CUSTOMERS,
        "OPERATION_PROCESS",
        US,
    )
    assert violation["job"] == JOB and violation["producer"] == PRODUCER
    (reason,) = violation["decision"]["reasons"]
    assert (reason["rule_id"], reason["citation"]) == ("gdpr-personal-data", "GDPR Art. 44-45")
    assert reason["lineage_path"] == [CUSTOMERS]
    listed = await access.ListObservedViolations(access_pb2.ListObservedViolationsRequest())
    assert [v.violation_id for v in listed.violations] == [violation["violation_id"]]
    assert listed.violations[0].decision.decision_id == violation["decision"]["decision_id"]
    # The same run in Ireland is fine.
    assert (await send(server, event(IRELAND)))["observed_violations"] == []
    listed = await access.ListObservedViolations(access_pb2.ListObservedViolationsRequest())
    assert len(listed.violations) == 1
    # The decision is in the decision log, and the finding in the security event log.
    await server.app.router.flush_decision_log()
    assert violation["decision"]["decision_id"] in server.app.settings.decision_log_path.read_text()
    events = [json.loads(line) for line in server.app.settings.security_log_path.read_text().splitlines()]
    assert [e["detail"]["violation_id"] for e in events if e["event"] == "observed_violation"] == [
        violation["violation_id"]
    ]


async def test_a_run_is_judged_once_across_its_events(server, stubs):
    run_id = str(uuid.uuid4())
    start = await send(server, event(US, state=RunState.START, run_id=run_id))
    assert len(start["observed_violations"]) == 1
    complete = await send(
        server, event(US, state=RunState.COMPLETE, run_id=run_id, outputs=[("s3://bank-us/copy", US)])
    )
    # The input was judged at START; COMPLETE judges only the output it adds.
    assert [(v["dataset_id"], v["operation"]) for v in complete["observed_violations"]] == [
        ("s3://bank-us/copy", "OPERATION_STORE")
    ]


async def test_events_of_one_run_sent_at_the_same_time_are_judged_once(server, stubs):
    access, lineage = stubs
    run_id = str(uuid.uuid4())
    request = lineage_pb2.RecordLineageRequest(
        job=JOB, run_id=run_id, run_region=US, inputs=[CUSTOMERS], outputs=["s3://bank-us/copy"]
    )
    answers = await asyncio.gather(
        *(lineage.RecordLineage(request) for _ in range(4)), *(send(server, event(US, run_id=run_id)) for _ in range(2))
    )
    reported = [MessageToDict(v, preserving_proto_field_name=True) for a in answers[:4] for v in a.observed_violations]
    reported += [v for a in answers[4:] for v in a["observed_violations"]]
    # Each access of the run is judged by exactly one of them, and recorded once.
    assert sorted((v["dataset_id"], v["operation"], v["kind"]) for v in reported) == [
        (CUSTOMERS, "OPERATION_PROCESS", "OBSERVED_VIOLATION_KIND_POLICY_DENIED"),
        ("s3://bank-us/copy", "OPERATION_STORE", "OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION"),
    ]
    listed = await access.ListObservedViolations(access_pb2.ListObservedViolationsRequest())
    assert sorted(v.violation_id for v in listed.violations) == sorted(v["violation_id"] for v in reported)


async def test_unknown_run_region_and_output_location_are_reported(server, stubs):
    _, lineage = stubs
    body = await send(server, event(None, outputs=[("s3://nowhere/out", None)]))
    kinds = sorted((v["kind"], v["dataset_id"]) for v in body["observed_violations"])
    assert kinds == [
        ("OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION", "s3://nowhere/out"),
        ("OBSERVED_VIOLATION_KIND_UNKNOWN_RUN_REGION", CUSTOMERS),
    ]
    response = await lineage.RecordLineage(
        lineage_pb2.RecordLineageRequest(job="rpc/job", run_id="r1", run_region=US, inputs=[CUSTOMERS], producer="cli")
    )
    (violation,) = response.observed_violations
    assert violation.kind == access_pb2.OBSERVED_VIOLATION_KIND_POLICY_DENIED
    assert (violation.job, violation.producer, violation.region) == ("rpc/job", "cli", US)


async def test_a_late_event_is_flagged(server, stubs):
    body = await send(server, event(US, at=datetime.now(UTC) - timedelta(days=3)))
    assert body["late"] is True
    assert body["observed_violations"][0]["late"] is True


async def test_access_patterns_and_actor_access_with_time_ranges(server, stubs):
    access, _ = stubs
    now = datetime.now(UTC)
    await send(server, event(IRELAND, at=now - timedelta(days=10)))
    await send(server, event(IRELAND, at=now - timedelta(days=2), outputs=[("s3://bank-eu-lake/rollup", IRELAND)]))
    await send(server, event(IRELAND, at=now))
    patterns = await access.GetAccessPatterns(access_pb2.GetAccessPatternsRequest(dataset_id=CUSTOMERS))
    actors = {a.actor: a for a in patterns.actors}
    assert actors[JOB].total_count == 3
    (read,) = actors[JOB].accesses
    assert (read.operation, read.region, read.count) == (access_pb2.ACCESS_OPERATION_READ, IRELAND, 3)
    assert "(unauthenticated)" in actors  # the catalog writes of the fixture
    # As of five days ago: only the first run had happened.
    earlier = await access.GetAccessPatterns(
        access_pb2.GetAccessPatternsRequest(dataset_id=CUSTOMERS, until=ts(now - timedelta(days=5)))
    )
    assert [(a.actor, a.total_count) for a in earlier.actors] == [(JOB, 1)]
    recent = await access.ListActorAccess(
        access_pb2.ListActorAccessRequest(actor=JOB, since=ts(now - timedelta(days=3)))
    )
    assert [(d.dataset_id, d.total_count) for d in recent.datasets] == [(CUSTOMERS, 2), ("s3://bank-eu-lake/rollup", 1)]
    assert len(recent.runs) == 2 and recent.runs[0].producer == PRODUCER


async def test_a_job_that_suddenly_reads_payment_data_raises_an_anomaly(server, stubs):
    access, _ = stubs
    now = datetime.now(UTC)
    for days in (20, 10, 5):  # a baseline of EU customer reads, older than the minimum age
        await send(server, event(IRELAND, at=now - timedelta(days=days)))
    await server.app.access.flush()
    await send(server, event(IRELAND, inputs=(CUSTOMERS, PAYMENTS)))
    anomalies = (await access.ListAccessAnomalies(access_pb2.ListAccessAnomaliesRequest())).anomalies
    assert [(a.kind, a.actor, a.value, list(a.dataset_ids)) for a in anomalies] == [
        (access_pb2.ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR, JOB, "FINANCIAL.PAYMENT", [PAYMENTS])
    ]
    assert list(anomalies[0].baseline) == ["PII.CONTACT"]
    events = [json.loads(line) for line in server.app.settings.security_log_path.read_text().splitlines()]
    assert [e["reason"] for e in events if e["event"] == "access_anomaly"] == ["NEW_CLASSIFICATION_FOR_ACTOR"]


async def test_no_anomaly_before_the_baseline_has_its_minimum_age(server, stubs):
    access, _ = stubs
    await send(server, event(IRELAND))
    await server.app.access.flush()
    await send(server, event(IRELAND, inputs=(PAYMENTS,)))
    assert (await access.ListAccessAnomalies(access_pb2.ListAccessAnomaliesRequest())).anomalies == []


async def test_bad_ranges_are_invalid_arguments(server, stubs):
    access, _ = stubs
    now = datetime.now(UTC)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await access.ListObservedViolations(access_pb2.ListObservedViolationsRequest(since=ts(now), until=ts(now)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await access.GetAccessPatterns(access_pb2.GetAccessPatternsRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_residency_questions_are_recorded_as_intents(server, stubs):
    access, _ = stubs
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        from domicile.v1 import residency_pb2, residency_pb2_grpc

        residency = residency_pb2_grpc.ResidencyServiceStub(channel)
        question = residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=residency_pb2.OPERATION_STORE, region=US)
        await residency.Decide(question)
        await residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=[question, question]))
    patterns = await access.GetAccessPatterns(access_pb2.GetAccessPatternsRequest(dataset_id=CUSTOMERS))
    (anonymous,) = [a for a in patterns.actors if a.actor == "(unauthenticated)"]
    intents = [(s.operation, s.region, s.count) for s in anonymous.accesses if s.region]
    assert intents == [(access_pb2.ACCESS_OPERATION_INTENT_STORE, US, 3)]


async def test_a_job_without_namespace_is_recorded_under_default(server, stubs):
    access, lineage = stubs
    await lineage.RecordLineage(
        lineage_pb2.RecordLineageRequest(job="nightly", run_id="r1", run_region=IRELAND, inputs=[CUSTOMERS])
    )
    touched = await access.ListActorAccess(access_pb2.ListActorAccessRequest(actor="default/nightly"))
    assert [d.dataset_id for d in touched.datasets] == [CUSTOMERS]
    assert [r.job for r in touched.runs] == ["default/nightly"]
