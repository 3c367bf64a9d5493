"""BatchDecide through the residency engine's wire boundary (`Engine.batch_decide_wire`).

- answers parse (with the generated Python protobuf code) into the decisions the engine makes
  one by one, with their ids, policy version, catalog revision and time; compact answers
  (`shared_region_sets`, `shared_reason_texts`) name each decision's allowed regions in the
  answer's `region_sets` and each reason's text in its `reason_texts`;
- requests are checked as the servicer checks a Decide: the id rules are
  `catalog.validation.check_id`'s, named field by field;
- arbitrary bytes never crash the engine: they are answered or refused as malformed or invalid,
  and whatever the engine accepts, protobuf reads as the same questions.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domicile.catalog.dataset_ids import lookup_form
from domicile.catalog.model import to_micros
from domicile.catalog.validation import check_id
from domicile.client.calls import batch_decisions_from_message
from domicile.errors import FieldErrors
from domicile.router._engine import Engine, InvalidRequest, LogLane, MalformedRequest
from domicile.router.policy import load_policy
from domicile.timeconv import to_timestamp
from domicile.v1 import residency_pb2
from tests import engine_harness as harness
from tests.unit.test_residency_engine_oracle import NODES

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
POLICY = load_policy(
    """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata: {name: wire, version: "2026.11.1"}
rules:
  - {id: gdpr, citation: "GDPR Art. 44", match: {classifications: [PII], origins: [EEA]}, store: {allow: [EEA]}}
  - {id: sanctions, exemptible: false, match: {}, store: {deny: [RU]}, process: {deny: [RU]}}
"""
)
OPERATIONS = [residency_pb2.OPERATION_STORE, residency_pb2.OPERATION_PROCESS]
REGIONS = ("aws:us-east-1", "aws:eu-central-1", "aws:ap-south-1", "gcp:europe-west6")


@pytest.fixture(scope="module")
def engine() -> Engine:
    engine = Engine(harness.document(POLICY))
    engine.apply(
        [
            harness.described(NODES[0], ["PII.CONTACT"], ["DE"], ["aws:us-east-1"]),
            ("placeholder", NODES[1]),
            ("placeholder", NODES[2]),
            ("placeholder", "s3://root/undescribed"),
            harness.edge(NODES[0], NODES[1], "copy"),
            harness.edge("s3://root/undescribed", NODES[2], "copy"),
        ]
    )
    return engine


def lane(id_prefix: str) -> LogLane:
    """A lane of its own: the decision ids of a batch call, counted from 1."""
    return LogLane(id_prefix, 100, 10_000, lambda: None)


def batch(engine: Engine, request: residency_pb2.BatchDecideRequest, stale: str | None = None):
    wire, decided = engine.batch_decide_wire(
        request.SerializeToString(), to_micros(NOW), stale, 17, lane("0123456789ab"), 10_000
    )
    return residency_pb2.BatchDecideResponse.FromString(wire), len(decided)


questions = st.lists(
    st.tuples(st.sampled_from([*NODES, "s3://never"]), st.sampled_from(OPERATIONS), st.sampled_from(REGIONS)),
    max_size=20,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=questions, compact=st.booleans(), shared_texts=st.booleans())
def test_answers_are_the_engine_decisions(engine: Engine, items: list, compact: bool, shared_texts: bool) -> None:
    request = residency_pb2.BatchDecideRequest(
        requests=[residency_pb2.DecideRequest(dataset_id=d, operation=o, region=r) for d, o, r in items],
        shared_region_sets=compact,
        shared_reason_texts=shared_texts,
    )
    answer, count = batch(engine, request)
    assert count == len(items) == len(answer.decisions)
    if compact:
        sets = [tuple(s.regions) for s in answer.region_sets]
        assert len(set(sets)) == len(sets)  # each list once
        assert all(not d.allowed_regions for d in answer.decisions)
        allowed = [sets[d.allowed_regions_set] for d in answer.decisions]
    else:
        assert not answer.region_sets
        allowed = [tuple(d.allowed_regions) for d in answer.decisions]
    if shared_texts:
        texts = [(t.code, t.rule_id, t.message, t.citation) for t in answer.reason_texts]
        assert len(set(texts)) == len(texts)  # each text once
        assert all(not t.lineage_path for t in answer.reason_texts)
        assert all(not (r.code or r.rule_id or r.message or r.citation) for d in answer.decisions for r in d.reasons)
        reasons = [[(*texts[r.text], tuple(r.lineage_path)) for r in d.reasons] for d in answer.decisions]
    else:
        assert not answer.reason_texts
        reasons = [
            [(r.code, r.rule_id, r.message, r.citation, tuple(r.lineage_path)) for r in d.reasons]
            for d in answer.decisions
        ]
    read = batch_decisions_from_message(answer)
    assert tuple(d.allowed_regions for d in read) == tuple(allowed)
    assert [
        [(r.code.value, r.rule_id, r.message, r.citation, r.lineage_path) for r in d.reasons] for d in read
    ] == reasons
    for n, ((dataset, operation, region), decision) in enumerate(zip(items, answer.decisions, strict=True)):
        verdict, _ = harness.verdict(engine.decide(dataset, OPERATIONS.index(operation), region, to_micros(NOW)))
        assert decision.decision_id == f"0123456789ab{n + 1:010x}"
        assert (decision.dataset_id, decision.operation, decision.region) == (dataset, operation, region)
        assert decision.outcome == (
            residency_pb2.OUTCOME_ALLOW if verdict.outcome.value == "allow" else residency_pb2.OUTCOME_DENY
        )
        assert allowed[n] == verdict.allowed_regions
        assert reasons[n] == [(r.code.value, r.rule_id, r.message, r.citation, r.lineage_path) for r in verdict.reasons]
        assert (decision.policy_version, decision.catalog_revision) == ("2026.11.1", 17)
        assert decision.decide_time == to_timestamp(NOW)


def test_a_stale_view_answers_every_question_with_the_fail_closed_deny(engine: Engine) -> None:
    request = residency_pb2.BatchDecideRequest(
        requests=[residency_pb2.DecideRequest(dataset_id=NODES[0], operation=1, region="aws:eu-central-1")] * 2
    )
    answer, _ = batch(engine, request, stale="fail closed: the view is stale")
    for decision in answer.decisions:
        assert decision.outcome == residency_pb2.OUTCOME_DENY
        assert not decision.allowed_regions
        assert [(r.code, r.message) for r in decision.reasons] == [("STALE_CATALOG", "fail closed: the view is stale")]
    request.shared_region_sets = True
    answer, _ = batch(engine, request, stale="fail closed: the view is stale")
    assert [list(s.regions) for s in answer.region_sets] == [[]]
    assert [d.allowed_regions_set for d in answer.decisions] == [0, 0]


def python_violations(dataset_id: str) -> list[tuple[str, str]]:
    errors = FieldErrors()
    check_id(errors, "requests[0].dataset_id", dataset_id)
    return [(v.field, v.description) for v in errors.violations]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dataset_id=st.text(st.characters(codec="utf-8"), max_size=12) | st.text(min_size=2040, max_size=2060))
@example(dataset_id=" s3://x")
@example(dataset_id="s3://x\x1f")
@example(dataset_id="\x85s3://x")
@example(dataset_id="é" * 1025)
def test_dataset_ids_are_checked_as_check_id_checks_them(engine: Engine, dataset_id: str) -> None:
    request = residency_pb2.BatchDecideRequest(
        requests=[residency_pb2.DecideRequest(dataset_id=dataset_id, operation=1, region="aws:eu-central-1")]
    )
    want = python_violations(dataset_id)
    if not want:
        batch(engine, request)
        return
    with pytest.raises(InvalidRequest) as raised:
        batch(engine, request)
    assert raised.value.args[0] == want


def test_every_problem_of_a_request_is_named(engine: Engine) -> None:
    request = residency_pb2.BatchDecideRequest(
        requests=[
            residency_pb2.DecideRequest(dataset_id=NODES[0], operation=1, region="aws:eu-central-1"),
            residency_pb2.DecideRequest(dataset_id="", operation=0, region="mars:base-1"),
            residency_pb2.DecideRequest(dataset_id="ok", operation=7, region=""),
        ]
    )
    with pytest.raises(InvalidRequest) as raised:
        batch(engine, request)
    assert raised.value.args[0] == [
        ("requests[1].dataset_id", "must not be empty"),
        ("requests[1].operation", "must be OPERATION_STORE or OPERATION_PROCESS"),
        ("requests[1].region", "unknown region 'mars:base-1' (see `domicile regions`)"),
        ("requests[2].operation", "must be OPERATION_STORE or OPERATION_PROCESS"),
        ("requests[2].region", "must not be empty"),
    ]
    too_many = residency_pb2.BatchDecideRequest(requests=list(request.requests[:1]) * 3)
    with pytest.raises(InvalidRequest) as raised:
        engine.batch_decide_wire(too_many.SerializeToString(), 0, None, 0, lane("p"), 2)
    assert raised.value.args[0] == [("requests", "at most 2 requests per batch")]


def _valid_request() -> bytes:
    return residency_pb2.BatchDecideRequest(
        requests=[
            residency_pb2.DecideRequest(dataset_id=NODES[1], operation=1, region="aws:us-east-1"),
            residency_pb2.DecideRequest(dataset_id=NODES[2], operation=2, region="aws:eu-central-1"),
        ]
    ).SerializeToString()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_valid_request())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64) | mutated())
def test_malformed_bytes_are_refused_never_a_crash(engine: Engine, data: bytes) -> None:
    try:
        wire, decided = engine.batch_decide_wire(data, to_micros(NOW), None, 1, lane("p"), 10_000)
        count = len(decided)
    except MalformedRequest as exc:
        refusal = ("malformed", exc.args[0])
    except InvalidRequest as exc:
        refusal = ("invalid", exc.args[0])
    else:
        refusal = None
    if refusal is not None:
        kind, detail = refusal
        if kind == "malformed":
            assert detail.startswith("not a valid BatchDecideRequest")
        else:
            assert detail
            assert all(isinstance(f, str) and isinstance(d, str) for f, d in detail)
        return
    # Accepted: protobuf reads the same questions, and the answer parses.
    try:
        request = residency_pb2.BatchDecideRequest.FromString(data)
    except DecodeError:
        pytest.fail(f"the engine accepted bytes protobuf refuses: {data!r}")
    answer = residency_pb2.BatchDecideResponse.FromString(wire)
    assert count == len(request.requests) == len(answer.decisions)
    # (Decisions name a dataset by the normal form of the id asked, as Decide does.)
    assert [(d.dataset_id, d.operation, d.region) for d in answer.decisions] == [
        (lookup_form(r.dataset_id), r.operation, r.region) for r in request.requests
    ]
