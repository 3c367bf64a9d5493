"""PolicyService over a real gRPC channel: set (validated, versioned), get, impact."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from domicile.errors import DomicileError
from domicile.server import create_server
from domicile.v1 import catalog_pb2, policy_pb2, residency_pb2
from tests.e2e.conftest import insecure_settings
from tests.e2e.residency_harness import (
    ALLOW,
    CUSTOMERS,
    DENY,
    EXAMPLE_POLICY,
    FRANKFURT,
    PAYMENTS,
    US,
    expect_error,
)

BROKEN_POLICY = Path(__file__).parents[2] / "examples" / "broken-policy.yaml"
ORIGINAL = EXAMPLE_POLICY.read_text("utf-8")


def revised(version: str, *replacements: tuple[str, str]) -> str:
    """The example policy under another version, with textual replacements (each must apply)."""
    text = ORIGINAL.replace('version: "2026.12.1"', f'version: "{version}"')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


async def set_policy(residency, text: str, dry_run: bool = False) -> policy_pb2.SetPolicyResponse:
    return await residency.policy.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=text, dry_run=dry_run))


async def active(residency) -> policy_pb2.GetPolicyResponse:
    return await residency.policy.GetPolicy(policy_pb2.GetPolicyRequest())


async def test_get_policy_returns_the_active_text_version_and_hash(residency):
    response = await active(residency)
    assert response.policy_yaml == ORIGINAL and response.version == "2026.12.1"
    assert len(response.content_hash) == 64


async def test_an_invalid_policy_is_rejected_with_line_numbers_and_the_old_one_stays(residency):
    await residency.put(CUSTOMERS, classifications=["PII"], origins=["DE"])
    response = await set_policy(residency, BROKEN_POLICY.read_text("utf-8"))
    assert not response.applied and len(response.errors) >= 5
    assert all(e.line > 0 for e in response.errors)
    assert any(e.path == "rules[0].proces" for e in response.errors)
    assert (await active(residency)).version == "2026.12.1"
    decision = await residency.decide(CUSTOMERS, US)
    assert decision.outcome == DENY and decision.policy_version == "2026.12.1"

    details = await expect_error(set_policy(residency, "  \n"), grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in details["field_violations"]] == ["policy_yaml"]


async def test_set_policy_activates_a_new_version_and_dry_run_does_not(residency):
    await residency.put(CUSTOMERS, classifications=["PII"], origins=["DE"])
    everywhere = revised(
        "2026.12.2",
        ("store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: ['*']}"),
        ('  - {id: "onprem:fra-dc1"', '  - {id: "onprem:ber-dc2", country: DE}\n  - {id: "onprem:fra-dc1"'),
    )
    dry = await set_policy(residency, everywhere, dry_run=True)
    assert (dry.version, dry.applied, list(dry.errors)) == ("2026.12.2", False, [])
    assert (await active(residency)).version == "2026.12.1"
    assert (await residency.decide(CUSTOMERS, US)).outcome == DENY

    applied = await set_policy(residency, everywhere)
    assert applied.applied and applied.version == "2026.12.2"
    got = await active(residency)
    assert (got.version, got.policy_yaml) == ("2026.12.2", everywhere)
    decision = await residency.decide(CUSTOMERS, US)
    assert decision.outcome == ALLOW and decision.policy_version == "2026.12.2"
    # The new policy's private region is now a known region, for decisions and the catalog.
    assert (await residency.decide(CUSTOMERS, "onprem:ber-dc2")).outcome == ALLOW
    regions = await residency.catalog.ListRegions(catalog_pb2.ListRegionsRequest())
    assert "onprem:ber-dc2" in {r.id for r in regions.regions}


async def test_a_used_version_cannot_get_another_text(residency):
    changed = revised("2026.12.1", ("store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: ['*']}"))
    response = await set_policy(residency, changed)
    assert not response.applied
    assert [(e.path, e.line > 0) for e in response.errors] == [("metadata.version", True)]
    assert "already recorded" in response.errors[0].message
    assert (await active(residency)).policy_yaml == ORIGINAL
    # The same text again is fine (idempotent).
    assert (await set_policy(residency, ORIGINAL)).applied
    # A version used before stays bound to its text after another version was active.
    assert (await set_policy(residency, revised("2026.12.2"))).applied
    assert not (await set_policy(residency, changed)).applied
    assert (await set_policy(residency, ORIGINAL)).applied


async def test_a_declassifier_change_recomputes_effective_attributes(residency):
    masked = "s3://lake/masked"
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.derive([CUSTOMERS], [masked], transform="mask")
    await residency.put(masked)
    assert (await residency.decide(masked, US)).outcome == DENY
    anonymize = '  - {transform: anonymize, removes: [PII], jobs: ["airflow-eu/anonymize_*"]}'
    with_mask = revised(
        "2026.12.2", (anonymize, anonymize + '\n  - {transform: mask, removes: [PII], jobs: ["default/job"]}')
    )
    assert (await set_policy(residency, with_mask)).applied
    assert (await residency.decide(masked, US)).outcome == ALLOW
    explained = await residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id=masked))
    assert [a.value for a in explained.classifications] == []
    assert [a.value for a in explained.origins] == ["DE"]


async def test_policy_impact_reports_changes_without_applying(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    await residency.put(PAYMENTS, classifications=["FINANCIAL.PAYMENT"], origins=["IN"], locations=["aws:ap-south-1"])
    await residency.put("s3://lake/kpis", locations=[US])
    await residency.derive([PAYMENTS], ["s3://lake/kpis"], transform="aggregate", job="airflow-in/payment_volumes")
    # Candidate: GDPR data only in the EEA proper (drops adequacy countries), and aggregation
    # no longer declassifies payment data (so the kpis stored in the US become a violation).
    candidate = revised(
        "2026.12.2",
        (
            "    store:   {allow: [EU_PLUS_ADEQUATE]}\n    process: {allow: [EU_PLUS_ADEQUATE]}",
            "    store:   {allow: [EEA]}\n    process: {allow: [EU_PLUS_ADEQUATE]}",
        ),
        ("  - {transform: aggregate, removes: [PII, FINANCIAL.PAYMENT],", "  - {transform: aggregate, removes: [PII],"),
    )
    response = await residency.policy.PolicyImpact(policy_pb2.PolicyImpactRequest(policy_yaml=candidate))
    assert response.version == "2026.12.2" and not response.errors
    changes = {(c.dataset_id, c.operation): c for c in response.changes}
    customers = changes[(CUSTOMERS, residency_pb2.OPERATION_STORE)]
    assert "gcp:europe-west6" in customers.removed_regions and not customers.added_regions
    assert not customers.new_violations
    assert (CUSTOMERS, residency_pb2.OPERATION_PROCESS) not in changes
    kpis = changes[("s3://lake/kpis", residency_pb2.OPERATION_STORE)]
    assert US in kpis.removed_regions and list(kpis.new_violations) == [US]
    assert (PAYMENTS, residency_pb2.OPERATION_STORE) not in changes
    # Nothing changed: the active policy and the live attributes are as before.
    assert (await active(residency)).version == "2026.12.1"
    assert (await residency.decide("s3://lake/kpis", US)).outcome == ALLOW

    broken = await residency.policy.PolicyImpact(
        policy_pb2.PolicyImpactRequest(policy_yaml=BROKEN_POLICY.read_text("utf-8"))
    )
    assert broken.errors and not broken.changes


async def test_policy_impact_shows_what_granting_a_job_would_change(residency):
    # A job the policy does not grant `aggregate` produced the counts (a placeholder, judged by
    # what it inherits): the claim is not honoured. Granting the job honours its past runs.
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    counts = "s3://lake/customer-counts"
    await residency.derive([CUSTOMERS], [counts], transform="aggregate", job="airflow-eu/weekly_rollup")
    assert (await residency.decide(counts, US)).outcome == DENY
    granted = revised(
        "2026.12.2",
        ('jobs: ["airflow-eu/daily_rollup",', 'jobs: ["airflow-eu/weekly_rollup", "airflow-eu/daily_rollup",'),
    )
    response = await residency.policy.PolicyImpact(policy_pb2.PolicyImpactRequest(policy_yaml=granted))
    changes = {(c.dataset_id, c.operation): c for c in response.changes}
    assert US in changes[(counts, residency_pb2.OPERATION_STORE)].added_regions
    assert (CUSTOMERS, residency_pb2.OPERATION_STORE) not in changes
    assert (await set_policy(residency, granted)).applied
    decision = await residency.decide(counts, US)
    assert decision.outcome == ALLOW and decision.inherited_only


async def test_a_declassifier_without_jobs_is_refused_naming_its_line(residency):
    without_jobs = revised("2026.12.2", (', jobs: ["airflow-in/tokenize_*"]', ""))
    response = await set_policy(residency, without_jobs)
    assert not response.applied
    line = 1 + without_jobs.splitlines().index("  - {transform: tokenize, removes: [FINANCIAL.PAYMENT.CARD]}")
    assert [(e.line, e.path) for e in response.errors] == [(line, "declassifiers[2]")]
    assert "needs 'jobs'" in response.errors[0].message
    assert (await active(residency)).version == "2026.12.1"


async def test_a_policy_file_with_a_declassifier_without_jobs_is_refused_at_start(tmp_path):
    text = revised("2026.12.2", (', jobs: ["airflow-in/tokenize_*"]', ""))
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(text, "utf-8")
    with pytest.raises(DomicileError) as info:
        await create_server(insecure_settings(tmp_path, policy=policy_file))
    line = 1 + text.splitlines().index("  - {transform: tokenize, removes: [FINANCIAL.PAYMENT.CARD]}")
    assert f"{policy_file}:{line}:" in info.value.message and "needs 'jobs'" in info.value.message
