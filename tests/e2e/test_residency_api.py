"""ResidencyService over a real gRPC channel: the server of `domicile.server.create_server`
on a real store (SQLite; Neo4j with the neo4j marker), the router following it (the
`residency` fixture, tests/e2e/conftest.py)."""

from __future__ import annotations

import grpc
import pytest

from domicile.router.service import MAX_BATCH
from domicile.v1 import catalog_pb2, policy_pb2, residency_pb2
from tests.e2e.residency_harness import (
    ALLOW,
    COPY,
    CUSTOMERS,
    DENY,
    EXAMPLE_POLICY,
    FRANKFURT,
    MUMBAI,
    PAYMENTS,
    PROCESS,
    STORE,
    US,
    expect_error,
)


async def test_decide_follows_lineage_and_names_rule_and_path(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    await residency.derive([CUSTOMERS], [COPY])
    await residency.put(COPY)  # described without labels: everything it carries is inherited

    denied = await residency.decide(COPY, US)
    assert denied.outcome == DENY
    assert [(r.code, r.rule_id, r.citation) for r in denied.reasons] == [
        ("RULE_DENIED", "gdpr-personal-data", "GDPR Art. 44-45")
    ]
    assert list(denied.reasons[0].lineage_path) == [CUSTOMERS, COPY]
    assert denied.decision_id and denied.policy_version == "2026.12.1"
    assert denied.catalog_revision == residency.router.catalog_revision
    assert denied.HasField("decide_time") and denied.region == US and denied.operation == STORE
    assert FRANKFURT in denied.allowed_regions and US not in denied.allowed_regions

    allowed = await residency.decide(COPY, FRANKFURT, PROCESS)
    assert allowed.outcome == ALLOW and not allowed.reasons and allowed.decision_id != denied.decision_id


async def test_a_write_is_visible_to_the_next_decision(residency):
    first = await residency.put(CUSTOMERS)
    assert (await residency.decide(CUSTOMERS, US)).outcome == ALLOW
    second = await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["FR"])
    decision = await residency.decide(CUSTOMERS, US)
    assert decision.outcome == DENY and decision.catalog_revision >= second.revision > first.revision
    await residency.catalog.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=CUSTOMERS))
    gone = await residency.decide(CUSTOMERS, FRANKFURT)
    assert gone.outcome == DENY and [r.code for r in gone.reasons] == ["UNKNOWN_DATASET"]


async def test_a_dataset_known_only_as_a_lineage_output_is_judged_by_what_it_inherits(residency):
    derived = "s3://lake/never-registered"
    await residency.put(PAYMENTS, classifications=["FINANCIAL.PAYMENT"], origins=["IN"])
    await residency.derive([PAYMENTS], [derived])
    decision = await residency.decide(derived, FRANKFURT)
    assert decision.outcome == DENY and decision.inherited_only
    assert [(r.rule_id, list(r.lineage_path)) for r in decision.reasons] == [
        ("rbi-payment-storage", [PAYMENTS, derived])
    ]
    allowed = await residency.decide(derived, MUMBAI)
    assert allowed.outcome == ALLOW and allowed.inherited_only
    explained = await residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id=derived))
    assert explained.inherited_only
    assert {a.value: list(a.lineage_path) for a in explained.classifications} == {
        "FINANCIAL.PAYMENT": [PAYMENTS, derived]
    }
    got = await residency.catalog.GetDataset(catalog_pb2.GetDatasetRequest(id=derived))
    assert got.dataset.placeholder
    # Once registered, it owns what it says it holds, besides what it inherits.
    await residency.put(derived, classifications=["PII.CONTACT"], origins=["DE"])
    decision = await residency.decide(derived, MUMBAI)
    assert decision.outcome == DENY and not decision.inherited_only
    assert {r.rule_id for r in decision.reasons} == {"gdpr-personal-data"}


async def test_decisions_on_a_derived_dataset_say_inherited_only_in_batches_the_log_and_replay(residency):
    derived = "s3://lake/scores"
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.derive([CUSTOMERS], [derived])
    requests = [
        residency_pb2.DecideRequest(dataset_id=d, operation=STORE, region=US) for d in (derived, CUSTOMERS, derived)
    ]
    batch = await residency.residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=requests))
    assert [(d.outcome, d.inherited_only) for d in batch.decisions] == [(DENY, True), (DENY, False), (DENY, True)]
    single = await residency.decide(derived, FRANKFURT)
    assert single.outcome == ALLOW and single.inherited_only
    # Registering it later changes today's answer, not what the logged ones were made of.
    await residency.put(derived, classifications=["FINANCIAL.PAYMENT"], origins=["IN"])
    assert not (await residency.decide(derived, FRANKFURT)).inherited_only
    for decision in (batch.decisions[0], batch.decisions[1], single):
        got = await residency.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=decision.decision_id))
        assert got.decision == decision
        replay = await residency.residency.ReplayDecision(
            residency_pb2.ReplayDecisionRequest(decision_id=decision.decision_id)
        )
        assert replay.matches, (replay.original, replay.replayed)
        assert replay.replayed.inherited_only == decision.inherited_only


async def test_unknown_dataset_is_a_deny_not_an_error(residency):
    decision = await residency.decide("s3://nowhere/x", FRANKFURT)
    assert decision.outcome == DENY and [r.code for r in decision.reasons] == ["UNKNOWN_DATASET"]
    assert not decision.allowed_regions and decision.decision_id


async def test_bad_requests_name_every_bad_field(residency):
    details = await expect_error(
        residency.residency.Decide(residency_pb2.DecideRequest(dataset_id="", region="mars:base-1")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {f for f, _ in details["field_violations"]} == {"dataset_id", "operation", "region"}
    details = await expect_error(
        residency.residency.Decide(residency_pb2.DecideRequest(dataset_id="a\x07b", operation=STORE, region=US)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["dataset_id"]
    details = await expect_error(
        residency.residency.Decide(residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=7, region=US)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["operation"]


async def test_batch_decide_answers_in_order_and_validates_each_request(residency):
    await residency.put(CUSTOMERS, classifications=["PII"], origins=["DE"])
    questions = [(CUSTOMERS, STORE, US), (CUSTOMERS, STORE, FRANKFURT), ("s3://nowhere/x", PROCESS, US)]
    response = await residency.residency.BatchDecide(
        residency_pb2.BatchDecideRequest(
            requests=[residency_pb2.DecideRequest(dataset_id=d, operation=o, region=r) for d, o, r in questions]
        )
    )
    assert [(d.dataset_id, d.operation, d.region) for d in response.decisions] == questions
    assert [d.outcome for d in response.decisions] == [DENY, ALLOW, DENY]
    assert len({d.decision_id for d in response.decisions}) == 3
    # Each decision is a full Decision, equal to what GetDecision returns for it.
    for decision in response.decisions:
        got = await residency.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=decision.decision_id))
        assert got.decision == decision

    bad = [
        residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region=US),
        residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region="aws:nowhere-1"),
    ]
    details = await expect_error(
        residency.residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["requests[1].region"]
    too_many = [residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region=US)] * (MAX_BATCH + 1)
    details = await expect_error(
        residency.residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=too_many)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["requests"]
    # A batch logs no context: asked with one, it is refused rather than dropped unseen.
    with_context = [residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region=US, context={"k": "v"})]
    details = await expect_error(
        residency.residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=with_context)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["requests[0].context"]


async def test_batch_decide_reads_any_valid_request_and_refuses_malformed_bytes(residency):
    await residency.put(CUSTOMERS, classifications=["PII"], origins=["DE"])
    raw = residency.channel.unary_unary(
        "/domicile.v1.ResidencyService/BatchDecide",
        request_serializer=None,
        response_deserializer=residency_pb2.BatchDecideResponse.FromString,
    )
    # Plain requests, one with a non-ASCII id and an unknown field: the same answers.
    plain = residency_pb2.BatchDecideRequest(
        requests=[residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region=US)]
    ).SerializeToString()
    unusual = (
        plain
        + residency_pb2.BatchDecideRequest(
            requests=[residency_pb2.DecideRequest(dataset_id="s3://nowhere/é", operation=PROCESS, region=FRANKFURT)]
        ).SerializeToString()
        + b"\x10\x01"
    )
    for data, expected in ((plain, [(CUSTOMERS, DENY)]), (unusual, [(CUSTOMERS, DENY), ("s3://nowhere/é", DENY)])):
        response = await raw(data)
        assert [(d.dataset_id, d.outcome) for d in response.decisions] == expected
    # Not protobuf at all (a string that is not UTF-8): INVALID_ARGUMENT, saying so.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\x0a\x05\x0a\x03\xff\xfe\xfd")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid BatchDecideRequest" in info.value.details()


async def test_route_picks_the_first_allowed_candidate(residency):
    await residency.put(CUSTOMERS, classifications=["PII"], origins=["DE"])
    response = await residency.residency.Route(
        residency_pb2.RouteRequest(
            dataset_id=CUSTOMERS, operation=STORE, candidates=[US, "gcp:europe-west6", FRANKFURT]
        )
    )
    assert response.region == "gcp:europe-west6"
    assert response.decision.outcome == ALLOW and response.decision.region == "gcp:europe-west6"

    none = await residency.residency.Route(
        residency_pb2.RouteRequest(dataset_id=CUSTOMERS, operation=STORE, candidates=[US, MUMBAI])
    )
    assert none.region == "" and none.decision.outcome == DENY and none.decision.region == US

    details = await expect_error(
        residency.residency.Route(
            residency_pb2.RouteRequest(dataset_id=CUSTOMERS, operation=STORE, candidates=[US, "x:y"])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["candidates[1]"]
    details = await expect_error(
        residency.residency.Route(residency_pb2.RouteRequest(dataset_id=CUSTOMERS, operation=STORE)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["candidates"]


async def test_check_job_applies_inherited_constraints_and_declassifiers(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.put(PAYMENTS, classifications=["FINANCIAL.PAYMENT"], origins=["IN"])
    output = "s3://analytics/joined"

    def job(transform: str = "", output_region: str = US, inputs=(CUSTOMERS, PAYMENTS), job: str = ""):
        return residency.residency.CheckJob(
            residency_pb2.CheckJobRequest(
                inputs=list(inputs),
                outputs=[output],
                run_region=FRANKFURT,
                output_region=output_region,
                transform=transform,
                job=job,
            )
        )

    plain = await job()
    assert not plain.allowed
    assert [(d.dataset_id, d.operation, d.outcome) for d in plain.decisions] == [
        (CUSTOMERS, PROCESS, ALLOW),
        (PAYMENTS, PROCESS, ALLOW),
        (output, STORE, DENY),
    ]
    rules = {r.rule_id: list(r.lineage_path) for r in plain.decisions[2].reasons}
    assert rules == {"gdpr-personal-data": [CUSTOMERS, output], "rbi-payment-storage": [PAYMENTS, output]}

    aggregated = await job("aggregate", job="airflow-eu/daily_rollup")
    assert aggregated.allowed and all(d.outcome == ALLOW for d in aggregated.decisions)
    assert aggregated.decisions[2].inherited_only  # the output is not registered
    anonymized = await job("anonymize", output_region=MUMBAI, job="airflow-eu/anonymize_joined")
    assert anonymized.allowed
    # A claimed transform counts only for a job the policy grants it, and never without a job.
    for claimant in ("", "airflow-us/daily_rollup", "daily_rollup"):
        claimed = await job("aggregate", job=claimant)
        assert not claimed.allowed and claimed.decisions[2].outcome == DENY, claimant
    # The job did not run: the output is still unknown to the catalog.
    assert (await residency.decide(output, MUMBAI)).reasons[0].code == "UNKNOWN_DATASET"

    unknown_input = await job(inputs=("s3://nowhere/x",), output_region=FRANKFURT)
    assert not unknown_input.allowed
    assert unknown_input.decisions[0].reasons[0].code == "UNKNOWN_DATASET"
    # The output would derive from undescribed data: its store decision fails closed too.
    assert unknown_input.decisions[1].outcome == DENY
    assert unknown_input.decisions[1].reasons[0].code == "UNKNOWN_DATASET"
    assert list(unknown_input.decisions[1].reasons[0].lineage_path) == ["s3://nowhere/x", output]

    details = await expect_error(
        residency.residency.CheckJob(residency_pb2.CheckJobRequest(inputs=[CUSTOMERS], outputs=[output])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {f for f, _ in details["field_violations"]} == {"run_region", "output_region"}


async def test_explain_shows_each_attribute_with_its_lineage_path(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.put(
        COPY,
        classifications=["INTERNAL"],
        fields=[catalog_pb2.Field(name="iban", classifications=["FINANCIAL.ACCOUNT"])],
    )
    await residency.derive([CUSTOMERS], [COPY])
    response = await residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id=COPY))
    assert {a.value: list(a.lineage_path) for a in response.classifications} == {
        "FINANCIAL.ACCOUNT": [COPY],
        "INTERNAL": [COPY],
        "PII.CONTACT": [CUSTOMERS, COPY],
    }
    assert {a.value: list(a.lineage_path) for a in response.origins} == {"DE": [CUSTOMERS, COPY]}
    assert FRANKFURT in response.store_regions and US not in response.store_regions
    assert response.policy_version == "2026.12.1" and response.catalog_revision > 0
    await expect_error(
        residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id="s3://nowhere/x")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_scan_violations_lists_copies_stored_where_they_may_not_be(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT, US])
    await residency.put(COPY, locations=[US, "onprem:msk-dc1"])
    await residency.put("s3://fine/x", locations=[US])
    response = await residency.residency.ScanViolations(residency_pb2.ScanViolationsRequest())
    found = [(v.dataset_id, v.region, [r.rule_id for r in v.decision.reasons]) for v in response.violations]
    assert found == [
        (CUSTOMERS, US, ["gdpr-personal-data"]),
        (COPY, "onprem:msk-dc1", ["sanctioned-locations"]),
    ]
    assert all(v.decision.outcome == DENY and v.decision.decision_id for v in response.violations)


async def test_list_violations_reads_what_a_scan_finds_and_logs_nothing(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT, US])
    await residency.put(COPY, locations=[US, "onprem:msk-dc1"])
    await residency.put("s3://fine/x", locations=[US])
    log_status = residency_pb2.GetDecisionLogStatusRequest()
    lines_before = (await residency.residency.GetDecisionLogStatus(log_status)).head_line

    listed = await residency.residency.ListViolations(residency_pb2.ListViolationsRequest())
    assert [(v.dataset_id, v.region, [r.rule_id for r in v.reasons]) for v in listed.violations] == [
        (CUSTOMERS, US, ["gdpr-personal-data"]),
        (COPY, "onprem:msk-dc1", ["sanctioned-locations"]),
    ]
    assert list(listed.violations[0].reasons[0].lineage_path) == [CUSTOMERS]
    assert FRANKFURT in listed.violations[0].allowed_regions and US not in listed.violations[0].allowed_regions
    assert listed.total == 2 and not listed.next_page_token
    assert [(r.region, r.violations) for r in listed.regions] == [(US, 1), ("onprem:msk-dc1", 1)]
    assert listed.policy_version == "2026.12.1" and listed.catalog_revision == residency.router.catalog_revision
    await residency.router.flush_decision_log()
    assert (await residency.residency.GetDecisionLogStatus(log_status)).head_line == lines_before

    first = await residency.residency.ListViolations(residency_pb2.ListViolationsRequest(page_size=1))
    assert [v.dataset_id for v in first.violations] == [CUSTOMERS] and first.next_page_token
    second = await residency.residency.ListViolations(
        residency_pb2.ListViolationsRequest(page_size=1, page_token=first.next_page_token)
    )
    assert [v.dataset_id for v in second.violations] == [COPY] and not second.next_page_token
    in_us = await residency.residency.ListViolations(residency_pb2.ListViolationsRequest(region=US))
    assert [v.dataset_id for v in in_us.violations] == [CUSTOMERS] and in_us.total == 1 and len(in_us.regions) == 2
    details = await expect_error(
        residency.residency.ListViolations(
            residency_pb2.ListViolationsRequest(region=FRANKFURT, page_token=first.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["page_token"]


async def test_listed_violations_follow_the_catalog_its_lineage_and_the_policy(residency):
    derived = "s3://analytics/derived"
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[US])
    await residency.derive([CUSTOMERS], [derived])
    await residency.put(derived, locations=[US])

    async def listed() -> list[tuple[str, str]]:
        response = await residency.residency.ListViolations(residency_pb2.ListViolationsRequest())
        return [(v.dataset_id, v.region) for v in response.violations]

    assert await listed() == [(derived, US), (CUSTOMERS, US)]  # by dataset id
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    assert await listed() == [(derived, US)]  # moved: only the copy downstream is left
    await residency.put(CUSTOMERS, locations=[FRANKFURT])
    assert await listed() == []  # the label is gone upstream, so downstream too
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    assert await listed() == [(derived, US)]
    new_policy = EXAMPLE_POLICY.read_text("utf-8").replace('version: "2026.12.1"', 'version: "2026.12.2"')
    new_policy = new_policy.replace("store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: ['*']}")
    assert (await residency.policy.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=new_policy))).applied
    assert await listed() == []
    await residency.catalog.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=derived))
    scan = await residency.residency.ScanViolations(residency_pb2.ScanViolationsRequest())
    assert await listed() == [(v.dataset_id, v.region) for v in scan.violations] == []


async def test_residency_states_now_and_as_of_a_past_time(residency):
    from datetime import UTC, datetime

    from domicile.timeconv import to_timestamp

    root, derived = "s3://nobody/described", "s3://lake/derived-only"
    before_anything = datetime.now(UTC)
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    await residency.derive([CUSTOMERS], [derived])
    await residency.derive([root], [COPY])
    when_allowed = datetime.now(UTC)
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT, US])
    ids = [derived, COPY, CUSTOMERS, root, "s3://never/mentioned"]

    def states(response) -> list[tuple[str, str, list[str]]]:
        return [
            (s.dataset_id, residency_pb2.ResidencyState.Name(s.state), list(s.violating_regions))
            for s in response.states
        ]

    now = await residency.residency.GetResidencyStates(residency_pb2.GetResidencyStatesRequest(dataset_ids=ids))
    assert states(now) == [
        (derived, "RESIDENCY_STATE_DERIVED", []),
        (COPY, "RESIDENCY_STATE_UNDESCRIBED", []),
        (CUSTOMERS, "RESIDENCY_STATE_VIOLATION", [US]),
        (root, "RESIDENCY_STATE_UNDESCRIBED", []),
        ("s3://never/mentioned", "RESIDENCY_STATE_UNKNOWN", []),
    ]
    assert list(now.states[2].locations) == [FRANKFURT, US]
    assert now.catalog_revision == residency.router.catalog_revision and now.policy_version == "2026.12.1"

    then = await residency.residency.GetResidencyStates(
        residency_pb2.GetResidencyStatesRequest(dataset_ids=ids, as_of=to_timestamp(when_allowed))
    )
    assert [s[1] for s in states(then)][:3] == [
        "RESIDENCY_STATE_DERIVED",
        "RESIDENCY_STATE_UNDESCRIBED",
        "RESIDENCY_STATE_ALLOWED",
    ]
    assert list(then.states[2].locations) == [FRANKFURT] and then.catalog_revision == 0
    earlier = await residency.residency.GetResidencyStates(
        residency_pb2.GetResidencyStatesRequest(dataset_ids=[CUSTOMERS], as_of=to_timestamp(before_anything))
    )
    assert states(earlier) == [(CUSTOMERS, "RESIDENCY_STATE_UNKNOWN", [])]

    details = await expect_error(
        residency.residency.GetResidencyStates(residency_pb2.GetResidencyStatesRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["dataset_ids"]
    details = await expect_error(
        residency.residency.GetResidencyStates(residency_pb2.GetResidencyStatesRequest(dataset_ids=[CUSTOMERS, " x"])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details["field_violations"]] == ["dataset_ids[1]"]


async def test_get_decision_and_replay_against_the_catalog_and_policy_of_its_time(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.derive([CUSTOMERS], [COPY])
    await residency.put(COPY)  # described, not a lineage placeholder
    decision = await residency.decide(COPY, US)
    assert decision.outcome == DENY

    got = await residency.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=decision.decision_id))
    assert got.decision == decision

    # The catalog and the policy change afterwards; the replay still sees the old ones.
    await residency.put(CUSTOMERS)
    assert (await residency.decide(COPY, US)).outcome == ALLOW
    new_policy = EXAMPLE_POLICY.read_text("utf-8").replace('version: "2026.12.1"', 'version: "2026.12.2"')
    new_policy = new_policy.replace("store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: ['*']}")
    assert (await residency.policy.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=new_policy))).applied

    replay = await residency.residency.ReplayDecision(
        residency_pb2.ReplayDecisionRequest(decision_id=decision.decision_id)
    )
    assert replay.matches, (replay.original, replay.replayed)
    assert replay.original == decision
    assert replay.replayed.outcome == DENY and replay.replayed.reasons[0].rule_id == "gdpr-personal-data"
    assert list(replay.replayed.reasons[0].lineage_path) == [CUSTOMERS, COPY]

    job = await residency.residency.CheckJob(
        residency_pb2.CheckJobRequest(
            inputs=[COPY], outputs=["s3://x/out"], run_region=FRANKFURT, output_region=US, transform="anonymize"
        )
    )
    output_decision = job.decisions[-1]
    replay = await residency.residency.ReplayDecision(
        residency_pb2.ReplayDecisionRequest(decision_id=output_decision.decision_id)
    )
    assert replay.matches and replay.replayed.dataset_id == "s3://x/out"

    await expect_error(
        residency.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id="nope")), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        residency.residency.ReplayDecision(residency_pb2.ReplayDecisionRequest(decision_id="nope")),
        grpc.StatusCode.NOT_FOUND,
    )
    details = await expect_error(
        residency.residency.GetDecision(residency_pb2.GetDecisionRequest()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [f for f, _ in details["field_violations"]] == ["decision_id"]


async def test_placeholders_and_data_derived_from_them_fail_closed(residency):
    """A dataset known only from lineage, and whatever derives from it, is DENY everywhere
    (UNKNOWN_DATASET naming the path), until someone describes it."""
    await residency.derive(["s3://mystery/raw"], [COPY], transform="anonymize", job="airflow-eu/anonymize_raw")
    await residency.put(COPY)
    for dataset_id in ("s3://mystery/raw", COPY):
        decision = await residency.decide(dataset_id, US)
        assert decision.outcome == DENY
        assert [r.code for r in decision.reasons] == ["UNKNOWN_DATASET"]
    assert list((await residency.decide(COPY, US)).reasons[0].lineage_path) == ["s3://mystery/raw", COPY]
    await residency.put("s3://mystery/raw", classifications=["PII.CONTACT"], origins=["DE"])
    assert (await residency.decide(COPY, US)).outcome == ALLOW  # anonymized EU data


async def test_deleting_a_source_does_not_declassify_its_copies(residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.derive([CUSTOMERS], [COPY])
    await residency.put(COPY)
    assert [r.rule_id for r in (await residency.decide(COPY, US)).reasons] == ["gdpr-personal-data"]
    await residency.catalog.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=CUSTOMERS))
    decision = await residency.decide(COPY, US)
    assert decision.outcome == DENY and [r.code for r in decision.reasons] == ["UNKNOWN_DATASET"]
    assert list(decision.reasons[0].lineage_path) == [CUSTOMERS, COPY]
