"""The read RPCs behind the console: decision search and counts, the decision log's head,
policy history, dataset revision history and security events -- over real gRPC channels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from domicile.v1 import audit_pb2, audit_pb2_grpc, catalog_pb2, policy_pb2, residency_pb2
from tests.e2e.residency_harness import (
    CUSTOMERS,
    DENY,
    EXAMPLE_POLICY,
    FRANKFURT,
    US,
    expect_error,
    start_residency,
    stop_residency,
)

pytestmark = pytest.mark.asyncio


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


async def _decided(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    await residency.put("s3://other", origins=["US"])
    ids = []
    for region in (US, FRANKFURT, US):
        ids.append((await residency.decide(CUSTOMERS, region)).decision_id)
    ids.append((await residency.decide("s3://other", US)).decision_id)
    return ids


async def test_list_decisions_filters_newest_first_and_pages(residency):
    ids = await _decided(residency)
    everything = await residency.residency.ListDecisions(residency_pb2.ListDecisionsRequest())
    assert [d.decision.decision_id for d in everything.decisions][:4] == ids[::-1]
    assert everything.complete and not everything.next_page_token

    denied = await residency.residency.ListDecisions(
        residency_pb2.ListDecisionsRequest(dataset_id=CUSTOMERS, outcome=DENY)
    )
    assert [d.decision.decision_id for d in denied.decisions] == [ids[2], ids[0]]
    assert all(d.decision.reasons[0].rule_id == "gdpr-personal-data" for d in denied.decisions)
    assert denied.decisions[0].kind == "decide" and denied.decisions[0].line >= 1
    assert len(denied.decisions[0].line_hash) == 64

    by_rule = await residency.residency.ListDecisions(residency_pb2.ListDecisionsRequest(rule_id="gdpr-personal-data"))
    assert {d.decision.decision_id for d in by_rule.decisions} == {ids[0], ids[2]}

    pages, token = [], ""
    while True:
        page = await residency.residency.ListDecisions(
            residency_pb2.ListDecisionsRequest(dataset_id=CUSTOMERS, page_size=1, page_token=token)
        )
        pages += [d.decision.decision_id for d in page.decisions]
        token = page.next_page_token
        if not token:
            break
    assert pages == ids[2::-1]

    future = datetime.now(UTC) + timedelta(hours=1)
    later = await residency.residency.ListDecisions(residency_pb2.ListDecisionsRequest(start_time=_ts(future)))
    assert list(later.decisions) == []


async def test_list_decisions_refuses_bad_filters(residency):
    details = await expect_error(
        residency.residency.ListDecisions(residency_pb2.ListDecisionsRequest(page_size=5000, outcome=7)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {"page_size", "outcome"} <= {field for field, _ in details["field_violations"]}
    await expect_error(
        residency.residency.ListDecisions(residency_pb2.ListDecisionsRequest(page_token="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_summarize_counts_per_bucket(residency):
    await _decided(residency)
    now = datetime.now(UTC)
    summary = await residency.residency.SummarizeDecisions(
        residency_pb2.SummarizeDecisionsRequest(
            start_time=_ts(now - timedelta(minutes=59)), end_time=_ts(now + timedelta(minutes=1)), bucket_seconds=60
        )
    )
    assert len(summary.buckets) == 60 and summary.complete
    assert sum(b.allow for b in summary.buckets) == 2
    assert sum(b.deny for b in summary.buckets) == 2
    default = await residency.residency.SummarizeDecisions(residency_pb2.SummarizeDecisionsRequest())
    assert len(default.buckets) == 60


async def test_decision_log_status_follows_the_head(residency):
    await _decided(residency)
    await residency.router.flush_decision_log()
    status = await residency.residency.GetDecisionLogStatus(residency_pb2.GetDecisionLogStatusRequest())
    assert status.head_line >= 1 and len(status.head_hash) == 64 and status.chain_ok
    assert (status.head_line, status.head_hash) == residency.router.decision_log_head()[:2]


async def test_policy_versions_and_past_texts(residency):
    first = await residency.policy.GetPolicy(policy_pb2.GetPolicyRequest())
    changed = first.policy_yaml.replace(f'version: "{first.version}"', 'version: "console-test-2"', 1)
    assert changed != first.policy_yaml
    applied = await residency.policy.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=changed))
    assert applied.applied, applied.errors
    versions = await residency.policy.ListPolicyVersions(policy_pb2.ListPolicyVersionsRequest())
    assert [a.version for a in versions.activations][:2] == ["console-test-2", first.version]
    assert versions.activations[0].active and not versions.activations[1].active
    old = await residency.policy.GetPolicy(policy_pb2.GetPolicyRequest(version=first.version))
    assert old.policy_yaml == first.policy_yaml and old.content_hash == first.content_hash
    await expect_error(
        residency.policy.GetPolicy(policy_pb2.GetPolicyRequest(version="never")), grpc.StatusCode.NOT_FOUND
    )


async def test_dataset_revisions(residency):
    await residency.put(CUSTOMERS, origins=["DE"])
    await residency.put(CUSTOMERS, origins=["DE", "FR"])
    await residency.catalog.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=CUSTOMERS))
    answer = await residency.catalog.ListDatasetRevisions(catalog_pb2.ListDatasetRevisionsRequest(id=CUSTOMERS))
    assert [r.change for r in answer.revisions] == [
        catalog_pb2.REVISION_CHANGE_DELETED,
        catalog_pb2.REVISION_CHANGE_UPDATED,
        catalog_pb2.REVISION_CHANGE_CREATED,
    ]
    assert not answer.revisions[0].HasField("dataset")
    assert list(answer.revisions[1].dataset.origins) == ["DE", "FR"]
    await expect_error(
        residency.catalog.ListDatasetRevisions(catalog_pb2.ListDatasetRevisionsRequest(id="s3://never")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_security_events_need_the_event_log(residency):
    stub = audit_pb2_grpc.AuditServiceStub(residency.channel)
    await expect_error(
        stub.ListSecurityEvents(audit_pb2.ListSecurityEventsRequest()), grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_security_events_newest_first(tmp_path):
    # Access tracking off: it would hold the security event log open, and a file has one writer.
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY, access={"enabled": False})
    try:
        from domicile.security.events import AUTH_FAILURE, POLICY_CHANGE, SecurityEventLog

        events = SecurityEventLog(tmp_path / "security.jsonl")
        harness.app.security_events = events
        events.record(AUTH_FAILURE, outcome="denied", reason="MISSING_TOKEN", peer="127.0.0.1")
        events.record(POLICY_CHANGE, outcome="ok", principal="dpo", version="v2")
        events.record(AUTH_FAILURE, outcome="denied", reason="EXPIRED", principal="", peer="127.0.0.2")
        stub = audit_pb2_grpc.AuditServiceStub(harness.channel)
        answer = await stub.ListSecurityEvents(audit_pb2.ListSecurityEventsRequest())
        assert [e.reason for e in answer.events] == ["EXPIRED", "", "MISSING_TOKEN"]
        changes = await stub.ListSecurityEvents(audit_pb2.ListSecurityEventsRequest(event=POLICY_CHANGE))
        assert [(e.principal, e.detail["version"]) for e in changes.events] == [("dpo", "v2")]
        first = await stub.ListSecurityEvents(audit_pb2.ListSecurityEventsRequest(event=AUTH_FAILURE, page_size=1))
        rest = await stub.ListSecurityEvents(
            audit_pb2.ListSecurityEventsRequest(event=AUTH_FAILURE, page_size=1, page_token=first.next_page_token)
        )
        assert [e.reason for e in (*first.events, *rest.events)] == ["EXPIRED", "MISSING_TOKEN"]
        events.close()
    finally:
        await stop_residency(harness)


async def test_explain_as_of_a_past_instant(residency):
    await residency.put(CUSTOMERS, origins=["DE"], locations=[FRANKFURT])
    await residency.router.flush_decision_log()
    before = datetime.now(UTC)
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    now = await residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id=CUSTOMERS))
    then = await residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id=CUSTOMERS, as_of=_ts(before)))
    assert [c.value for c in now.classifications] == ["PII.CONTACT"]
    assert list(then.classifications) == [] and then.catalog_revision == 0
    assert US in then.store_regions and US not in now.store_regions
    await expect_error(
        residency.residency.Explain(
            residency_pb2.ExplainRequest(dataset_id=CUSTOMERS, as_of=_ts(before - timedelta(days=1)))
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_summarize_datasets(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    await residency.put("s3://plain", origins=["US"], locations=[FRANKFURT, US])
    await residency.derive([CUSTOMERS], ["s3://derived"])
    summary = await residency.residency.SummarizeDatasets(residency_pb2.SummarizeDatasetsRequest())
    # The derived placeholder counts too: the router judges it by what it inherits.
    assert summary.datasets == 3
    assert {(c.value, c.datasets) for c in summary.classifications} == {("PII.CONTACT", 2)}
    assert {(o.value, o.datasets) for o in summary.origins} == {("DE", 2), ("US", 1)}
    assert {(r.region, r.datasets, r.classified) for r in summary.regions} == {(FRANKFURT, 2, 1), (US, 1, 0)}
