"""Access records end to end: the official OpenLineage client against a running server with
the example policy, then the AccessService over a real channel."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.http import HttpConfig, HttpTransport

from domicile.router.decision_log import Series, verify_series
from domicile.server import create_server
from domicile.v1 import (
    access_pb2,
    access_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    residency_pb2,
)
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


async def describe_datasets(channel) -> None:
    """EU customer data in Frankfurt, Indian payment data in Mumbai."""
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


@pytest.fixture
async def stubs(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await describe_datasets(channel)
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


async def test_a_run_seen_before_a_restart_is_judged_once(tmp_path):
    # Its later events write lineage the catalog has not seen (a START writes none), and the
    # restarted server has no memory of it: the access records themselves must say so.
    settings = insecure_settings(tmp_path, policy=EXAMPLE_POLICY)
    by_rpc, by_http = str(uuid.uuid4()), str(uuid.uuid4())
    first = await create_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            await catalog_pb2_grpc.CatalogServiceStub(channel).UpsertDataset(
                catalog_pb2.UpsertDatasetRequest(
                    dataset=catalog_pb2.Dataset(
                        id=CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT]
                    )
                )
            )
        for run_id in (by_rpc, by_http):
            assert len((await send(first, event(US, state=RunState.START, run_id=run_id)))["observed_violations"]) == 1
    finally:
        await first.stop(0)
    second = await create_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            answer = await lineage_pb2_grpc.LineageServiceStub(channel).RecordLineage(
                lineage_pb2.RecordLineageRequest(
                    job=JOB, run_id=by_rpc, run_region=US, inputs=[CUSTOMERS], outputs=["s3://bank-us/copy"]
                )
            )
            # Only the output is new: the input was judged before the restart.
            assert [(v.dataset_id, v.operation) for v in answer.observed_violations] == [
                ("s3://bank-us/copy", residency_pb2.OPERATION_STORE)
            ]
            complete = await send(second, event(US, run_id=by_http, outputs=[("s3://bank-us/copy", US)]))
            assert [(v["dataset_id"], v["operation"]) for v in complete["observed_violations"]] == [
                ("s3://bank-us/copy", "OPERATION_STORE")
            ]
            access = access_pb2_grpc.AccessServiceStub(channel)
            patterns = await access.GetAccessPatterns(access_pb2.GetAccessPatternsRequest(dataset_id=CUSTOMERS))
            (read,) = next(a for a in patterns.actors if a.actor == JOB).accesses
            assert (read.operation, read.region, read.count) == (access_pb2.ACCESS_OPERATION_READ, US, 2)
    finally:
        await second.stop(0)


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


def logged_observations(data_dir: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The decision ids in the decision log as it is on disk, and those of each observed run."""
    ids: set[str] = set()
    runs: dict[str, set[str]] = {}
    for path in Series(data_dir / "decisions.jsonl").files():
        for line in path.read_bytes().split(b"\n")[:-1]:  # (a torn last line has no newline)
            for entry in json.loads(line).get("entries", ()):
                found = {row[0] for row in entry["decisions"]}
                ids |= found
                run_id = (entry.get("context") or {}).get("observed_run_id")
                if run_id is not None:
                    runs.setdefault(run_id, set()).update(found)
    return ids, runs


async def test_a_finding_is_in_the_decision_log_when_it_is_answered(server, stubs, tmp_path):
    run_ids = [str(uuid.uuid4()) for _ in range(3)]
    for run_id in run_ids:  # all ALLOW: answered without waiting for the log
        assert (await send(server, event(IRELAND, run_id=run_id)))["observed_violations"] == []
    (violation,) = (await send(server, event(US)))["observed_violations"]
    ids, runs = logged_observations(tmp_path)  # as the answer found it, nothing flushed since
    assert violation["decision"]["decision_id"] in ids
    # The finding's write took the ALLOWs held before it along.
    assert all(len(runs.get(run_id, ())) == 1 for run_id in run_ids)


def test_after_sigkill_every_reported_finding_is_in_the_decision_log(tmp_path):
    """A run judged all ALLOW is answered before its decisions are durable; one with a finding
    only once they are. Killed under load, the log holds every finding a client received, and
    the ALLOWs of runs answered before it."""
    from tests.e2e.test_server_process import start_server

    process, port = start_server(tmp_path, "--policy", str(EXAMPLE_POLICY))
    reported: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    threads = [threading.Thread(target=lambda n=n: client(n)) for n in range(4)]

    def record(stub, region: str) -> tuple[str, list[str]]:
        run_id = str(uuid.uuid4())
        request = lineage_pb2.RecordLineageRequest(job=JOB, run_id=run_id, run_region=region, inputs=[CUSTOMERS])
        answer = stub.RecordLineage(request, timeout=30)
        return run_id, [v.decision.decision_id for v in answer.observed_violations]

    def client(number: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = lineage_pb2_grpc.LineageServiceStub(channel)
            count = 0
            while not stop.is_set():
                count += 1
                try:
                    _, decisions = record(stub, US if (count + number) % 3 == 0 else IRELAND)
                except grpc.RpcError:
                    return  # the server is gone
                with lock:
                    reported.extend(decisions)

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            catalog_pb2_grpc.CatalogServiceStub(channel).UpsertDataset(
                catalog_pb2.UpsertDatasetRequest(
                    dataset=catalog_pb2.Dataset(
                        id=CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT]
                    )
                ),
                timeout=30,
            )
            stub = lineage_pb2_grpc.LineageServiceStub(channel)
            # Nobody waits for these: the log's writer writes them within its flush interval
            # (the deadline only bounds a hung test).
            quiet = [record(stub, IRELAND) for _ in range(5)]
            assert all(decisions == [] for _, decisions in quiet)
            deadline = time.monotonic() + 30
            while not all(run_id in logged_observations(tmp_path)[1] for run_id, _ in quiet):
                assert time.monotonic() < deadline, "ALLOWs nobody waited for were never written"
                time.sleep(0.01)
            held = [record(stub, IRELAND)[0] for _ in range(20)]
            _, (denied,) = record(stub, US)
            ids, runs = logged_observations(tmp_path)
            assert denied in ids and all(run_id in runs for run_id in held)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(reported) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for thread in threads:
            if thread.ident is not None:
                thread.join(30)
    assert len(reported) >= 30
    ids, _ = logged_observations(tmp_path)
    missing = [decision_id for decision_id in reported if decision_id not in ids]
    assert missing == [], f"{len(missing)} of {len(reported)} reported findings' decisions are not in the log"
    assert verify_series(Series(tmp_path / "decisions.jsonl").files(), None).ok


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


async def test_findings_reach_a_webhook_as_signed_cloudevents(tmp_path):
    from tests.unit.test_access_webhooks import Receiver

    target = Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    secret = b"the SIEM's shared webhook secret"
    (tmp_path / "hook.secret").write_bytes(secret + b"\n")  # as an editor saves it
    hook = {"url": f"http://127.0.0.1:{runner.addresses[0][1]}/hook", "secret_file": str(tmp_path / "hook.secret")}
    settings = insecure_settings(
        tmp_path,
        policy=EXAMPLE_POLICY,
        access={"webhooks": [hook], "anomalies": {"baseline_min_age_days": 1}},
    )
    running = await create_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            await describe_datasets(channel)
        (violation,) = (await send(running, event(US, job="us-jobs/copy")))["observed_violations"]
        for days in (5, 3):  # a baseline, then payment data: an anomaly
            await send(running, event(IRELAND, at=datetime.now(UTC) - timedelta(days=days)))
        await running.app.access.flush()
        await send(running, event(IRELAND, inputs=(PAYMENTS,)))
        await running.app.access.flush()
        deadline = time.monotonic() + 30
        while len(target.requests) < 2:
            assert time.monotonic() < deadline, f"alerts not delivered: {target.requests}"
            await asyncio.sleep(0.05)
    finally:
        await running.stop(0)
        await runner.cleanup()
    for headers, body in target.requests:
        # Signed with the file's secret, its trailing newline not part of the key.
        assert headers["X-Domicile-Signature-256"] == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers["Content-Type"] == "application/cloudevents+json"
    alerts = sorted((json.loads(body) for _, body in target.requests), key=lambda e: e["type"])
    assert [e["type"] for e in alerts] == [
        "dev.domicile.access.anomaly.v1",
        "dev.domicile.access.observed_violation.v1",
    ]
    anomaly, alert = alerts
    assert (alert["subject"], alert["data"]) == (CUSTOMERS, violation)
    assert (anomaly["subject"], anomaly["data"]["kind"], anomaly["data"]["value"]) == (
        JOB,
        "ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR",
        "FINANCIAL.PAYMENT",
    )
    assert not (tmp_path / "access-dead-letter.jsonl").exists()


async def test_run_records_past_their_retention_are_deleted_and_counts_stay(tmp_path):
    first = await create_server(insecure_settings(tmp_path, policy=EXAMPLE_POLICY))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            await lineage_pb2_grpc.LineageServiceStub(channel).RecordLineage(
                lineage_pb2.RecordLineageRequest(job=JOB, run_id="r1", run_region=IRELAND, inputs=[CUSTOMERS])
            )
            access = access_pb2_grpc.AccessServiceStub(channel)
            kept = await access.ListActorAccess(access_pb2.ListActorAccessRequest(actor=JOB))
            assert [r.run_id for r in kept.runs] == ["r1"]
    finally:
        await first.stop(0)
    await asyncio.sleep(1.1)
    # Restarted with a one-second retention, the server prunes at its first round.
    second = await create_server(
        insecure_settings(tmp_path, policy=EXAMPLE_POLICY, access={"run_retention_days": 1 / 86400})
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            access = access_pb2_grpc.AccessServiceStub(channel)
            deadline = time.monotonic() + 30
            while (await access.ListActorAccess(access_pb2.ListActorAccessRequest(actor=JOB))).runs:
                assert time.monotonic() < deadline, "the run record outlived its retention"
                await asyncio.sleep(0.1)
            touched = await access.ListActorAccess(access_pb2.ListActorAccessRequest(actor=JOB))
            assert [(d.dataset_id, d.total_count) for d in touched.datasets] == [(CUSTOMERS, 1)]
    finally:
        await second.stop(0)


async def test_with_access_records_off_runs_are_not_judged_and_reads_are_refused(tmp_path):
    running = await create_server(insecure_settings(tmp_path, policy=EXAMPLE_POLICY, access={"enabled": False}))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            await describe_datasets(channel)
            body = await send(running, event(US))
            assert body["recorded"] is True and body["observed_violations"] == []
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await access_pb2_grpc.AccessServiceStub(channel).GetAccessPatterns(
                    access_pb2.GetAccessPatternsRequest(dataset_id=CUSTOMERS)
                )
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "access.enabled: false" in caught.value.details()
    finally:
        await running.stop(0)
