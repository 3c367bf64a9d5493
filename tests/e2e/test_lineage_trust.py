"""Lineage writes are owned, and what loosens constraints takes `lineage:admin` -- over real
TLS channels to a `--dev` server with the example policy, with tokens of several principals.

The two attacks of issue 14 fail: a pipeline token holding only `lineage:write` can neither
end the edges that carry a constraint nor launder it by re-recording its job with a
declassifying transform; both leave a DENY in place and a security event behind.
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import aiohttp
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from domicile.config import load_settings
from domicile.grpc_errors import details_of
from domicile.security.dev_credentials import DEV_AUDIENCE, DEV_ISSUER, dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
CUSTOMERS = "s3://bank-eu/customers"
PAYMENTS = "s3://bank-in/card-payments"
JOINED = "s3://bank-analytics/joined"
US = "aws:us-east-1"
JOIN_JOB = "airflow-us/join_customers_payments"


@pytest.fixture
async def server(tmp_path):
    settings = load_settings(
        dev=True,
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        data_dir=tmp_path,
        policy=EXAMPLE_POLICY,
        lineage={"namespace_owners": {"claim:team=payments": ["airflow-in"]}},
    )
    running = await create_server(settings)
    yield running
    await running.stop(0)


class Client:
    """Stubs over one mTLS channel, calling with the token of one principal."""

    def __init__(self, server, token: str) -> None:
        paths = dev_paths(server.app.settings.data_dir)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=paths.ca_cert.read_bytes(),
            private_key=paths.client_key.read_bytes(),
            certificate_chain=paths.client_cert.read_bytes(),
        )
        self.channel = grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials)
        self.metadata = [("authorization", f"Bearer {token}")]
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        self.lineage = lineage_pb2_grpc.LineageServiceStub(self.channel)
        self.residency = residency_pb2_grpc.ResidencyServiceStub(self.channel)

    async def record(self, job: str, inputs, outputs, transform: str = "", run: str = "r1"):
        request = lineage_pb2.RecordLineageRequest(
            job=job, run_id=run, inputs=inputs, outputs=outputs, transform=transform
        )
        return await self.lineage.RecordLineage(request, metadata=self.metadata)

    async def end(self, job: str, inputs, outputs):
        request = lineage_pb2.EndLineageRequest(job=job, inputs=inputs, outputs=outputs)
        return await self.lineage.EndLineage(request, metadata=self.metadata)

    async def decide(self, dataset_id: str, region: str = US) -> residency_pb2.Decision:
        request = residency_pb2.DecideRequest(
            dataset_id=dataset_id, operation=residency_pb2.OPERATION_STORE, region=region
        )
        return (await self.residency.Decide(request, metadata=self.metadata)).decision


def token(server, subject: str, *scopes: str) -> str:
    return mint_dev_token(server.app.settings.data_dir, scopes=list(scopes), subject=subject)


def security_events(server, event: str) -> list[dict]:
    lines = server.app.settings.security_log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


async def refused(awaitable, code=grpc.StatusCode.PERMISSION_DENIED) -> dict:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return details_of(info.value)


@pytest.fixture
async def joined(server):
    """The catalog of the attacks: EU customers and Indian card payments (registered by the
    dev principal), joined by the US pipeline's job into a dataset nobody registered."""
    admin = Client(server, token(server, "dev", "catalog:write", "catalog:read", "residency:decide"))
    pipeline = Client(server, token(server, "airflow-us", "lineage:write", "residency:decide", "lineage:read"))
    for dataset_id, labels, origin in ((CUSTOMERS, "PII.CONTACT", "DE"), (PAYMENTS, "FINANCIAL.PAYMENT.CARD", "IN")):
        dataset = catalog_pb2.Dataset(id=dataset_id, classifications=[labels], origins=[origin])
        await admin.catalog.UpsertDataset(catalog_pb2.UpsertDatasetRequest(dataset=dataset), metadata=admin.metadata)
    await pipeline.record(JOIN_JOB, [CUSTOMERS, PAYMENTS], [JOINED])
    denied = await pipeline.decide(JOINED)
    assert denied.outcome == residency_pb2.OUTCOME_DENY and denied.inherited_only
    yield admin, pipeline
    await admin.channel.close()
    await pipeline.channel.close()


async def test_a_pipeline_token_cannot_end_the_lineage_that_carries_a_constraint(server, joined):
    _, pipeline = joined
    details = await refused(pipeline.end(JOIN_JOB, [CUSTOMERS, PAYMENTS], [JOINED]))
    assert details["reason"] == "MISSING_SCOPE"
    decision = await pipeline.decide(JOINED)
    assert decision.outcome == residency_pb2.OUTCOME_DENY
    assert {r.rule_id for r in decision.reasons} == {"gdpr-personal-data", "rbi-payment-storage"}
    (event,) = [e for e in security_events(server, "authz_denied") if e["method"].endswith("/EndLineage")]
    assert event["principal"] == "airflow-us" and event["detail"]["required"] == "lineage:admin"


async def test_a_pipeline_cannot_launder_a_constraint_by_claiming_a_declassifying_transform(server, joined):
    _, pipeline = joined
    # Re-recording the join as an "aggregate": recorded as claimed, not honoured (the policy
    # grants aggregate to airflow-eu/daily_rollup and airflow-in/payment_volumes only).
    await pipeline.record(JOIN_JOB, [CUSTOMERS, PAYMENTS], [JOINED], transform="aggregate", run="r2")
    decision = await pipeline.decide(JOINED)
    assert decision.outcome == residency_pb2.OUTCOME_DENY
    assert {r.rule_id for r in decision.reasons} == {"gdpr-personal-data", "rbi-payment-storage"}
    (event,) = security_events(server, "unapproved_declassification")
    assert (event["principal"], event["reason"]) == ("airflow-us", "UNAPPROVED_DECLASSIFICATION")
    assert (event["detail"]["job"], event["detail"]["transform"]) == (JOIN_JOB, "aggregate")
    assert event["detail"]["outputs"] == [JOINED]
    # GetLineage and Explain show the claim as not honoured.
    lineage = await pipeline.lineage.GetLineage(
        lineage_pb2.GetLineageRequest(dataset_id=JOINED), metadata=pipeline.metadata
    )
    assert {(e.input, e.transform, e.unapproved_declassification) for e in lineage.edges} == {
        (CUSTOMERS, "aggregate", True),
        (PAYMENTS, "aggregate", True),
    }
    explained = await pipeline.residency.Explain(
        residency_pb2.ExplainRequest(dataset_id=JOINED), metadata=pipeline.metadata
    )
    assert explained.inherited_only
    assert {
        (u.input, u.job, u.transform, tuple(u.classifications)) for u in explained.unapproved_declassifications
    } == {
        (CUSTOMERS, JOIN_JOB, "aggregate", ("PII.CONTACT",)),
        (PAYMENTS, JOIN_JOB, "aggregate", ("FINANCIAL.PAYMENT.CARD",)),
    }


async def test_a_principal_writes_lineage_only_for_the_job_namespaces_it_owns(server, joined):
    _, pipeline = joined
    for job in ("airflow-eu/daily_rollup", "daily_rollup"):  # the latter is default/daily_rollup
        details = await refused(pipeline.record(job, [CUSTOMERS], ["s3://x"]))
        assert details["reason"] == "JOB_NAMESPACE_NOT_OWNED", job
    events = [e for e in security_events(server, "authz_denied") if e["reason"] == "JOB_NAMESPACE_NOT_OWNED"]
    assert [e["detail"]["namespace"] for e in events] == ["airflow-eu", "default"]
    # Owners by claim (settings: claim:team=payments owns airflow-in).
    key = load_pem_private_key(dev_paths(server.app.settings.data_dir).jwt_key.read_bytes(), password=None)
    now = int(time.time())
    claims = {"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "bob", "iat": now, "exp": now + 300}
    claims.update(scope="lineage:write", team="payments")
    team_member = Client(server, jwt.encode(claims, key, algorithm="ES256"))
    try:
        await team_member.record("airflow-in/payment_volumes", [PAYMENTS], ["s3://bank-in/volumes"], "aggregate")
        await refused(team_member.record("airflow-eu/x", [PAYMENTS], ["s3://y"]))
    finally:
        await team_member.channel.close()
    # Nothing refused was written.
    ids = {"s3://x", "s3://y"}
    listed = await joined[0].catalog.ListDatasets(catalog_pb2.ListDatasetsRequest(), metadata=joined[0].metadata)
    assert not ids & {d.id for d in listed.datasets}


async def test_loosening_an_existing_jobs_transform_takes_lineage_admin_and_is_reported(server, joined):
    counts = "s3://bank-eu/customer-counts"
    writer = Client(server, token(server, "airflow-eu", "lineage:write", "residency:decide"))
    admin = Client(server, token(server, "airflow-eu", "lineage:write", "lineage:admin", "residency:decide"))
    try:
        await writer.record("airflow-eu/daily_rollup", [CUSTOMERS], [counts])  # a plain copy first
        assert (await writer.decide(counts)).outcome == residency_pb2.OUTCOME_DENY
        details = await refused(
            writer.record("airflow-eu/daily_rollup", [CUSTOMERS], [counts], transform="aggregate", run="r2")
        )
        assert details["reason"] == "LINEAGE_ADMIN_REQUIRED"
        assert (await writer.decide(counts)).outcome == residency_pb2.OUTCOME_DENY
        # A new job's first run with a granted transform is no loosening: lineage:write suffices.
        await writer.record("airflow-eu/anonymize_customers", [CUSTOMERS], ["s3://bank-eu/anon"], "anonymize")
        assert (await writer.decide("s3://bank-eu/anon")).outcome == residency_pb2.OUTCOME_ALLOW
        assert not security_events(server, "lineage_loosened")
        # With lineage:admin the change goes through, and names what it loosened.
        await admin.record("airflow-eu/daily_rollup", [CUSTOMERS], [counts], transform="aggregate", run="r3")
        assert (await admin.decide(counts)).outcome == residency_pb2.OUTCOME_ALLOW
        (event,) = security_events(server, "lineage_loosened")
        assert (event["principal"], event["reason"]) == ("airflow-eu", "TRANSFORM_CHANGED")
        assert event["detail"]["loosened"] == [{"dataset": counts, "lost": ["PII.CONTACT"]}]
        assert event["detail"]["loosened_count"] == 1
    finally:
        await writer.channel.close()
        await admin.channel.close()


async def test_ending_lineage_with_lineage_admin_names_the_datasets_it_loosened(server, joined):
    _, pipeline = joined
    report = "s3://bank-analytics/joined-report"
    await pipeline.record("airflow-us/report", [JOINED], [report])
    admin = Client(server, token(server, "airflow-us", "lineage:admin", "residency:decide"))
    try:
        ended = await admin.end(JOIN_JOB, [PAYMENTS], [JOINED])
        assert ended.edges_ended == 1
        (event,) = security_events(server, "lineage_loosened")
        assert event["reason"] == "EDGES_ENDED" and event["detail"]["job"] == JOIN_JOB
        assert event["detail"]["loosened"] == [
            {"dataset": JOINED, "lost": ["FINANCIAL.PAYMENT.CARD", "IN"]},
            {"dataset": report, "lost": ["FINANCIAL.PAYMENT.CARD", "IN"]},
        ]
        decision = await admin.decide(report)
        assert [r.rule_id for r in decision.reasons] == ["gdpr-personal-data"]  # the EU constraint stays
    finally:
        await admin.channel.close()


async def test_openlineage_events_are_owned_too(server, joined):
    paths = dev_paths(server.app.settings.data_dir)
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    context.load_cert_chain(paths.client_cert, paths.client_key)
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-01T00:00:00Z",
        "producer": "https://example.com/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
        "run": {"runId": "01936b2e-0000-7000-8000-000000000001"},
        "job": {"namespace": "airflow-eu", "name": "daily_rollup"},
        "inputs": [{"namespace": "s3://bank-eu", "name": "customers"}],
        "outputs": [{"namespace": "s3://bank-eu", "name": "rollup"}],
    }
    headers = {"Authorization": f"Bearer {token(server, 'airflow-us', 'lineage:write')}"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.post(f"https://localhost:{server.http_port}/api/v1/lineage", json=event, headers=headers) as response,
    ):
        assert response.status == 403
        assert (await response.json())["error"]["reason"] == "JOB_NAMESPACE_NOT_OWNED"
    events = [e for e in security_events(server, "authz_denied") if e["method"] == "POST /api/v1/lineage"]
    assert [e["detail"]["job"] for e in events] == ["airflow-eu/daily_rollup"]
