"""The servicers' protobuf encoding of decisions (router/convert.py), and BatchDecide's answers
from the engine against the decisions it logs. That every RPC is served is checked for all
services in tests/unit/test_rpc_coverage.py."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from domicile.catalog.model import Dataset, Edge
from domicile.errors import DomicileError
from domicile.router import _engine
from domicile.router.convert import DecisionEncoder
from domicile.router.decision_log.format import ZERO_HASH, decisions_line, decisions_of_line
from domicile.router.engine import Engine, compile_policy
from domicile.router.policy import load_policy
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode
from domicile.timeconv import to_timestamp
from domicile.v1 import residency_pb2


def test_decision_encoder_builds_the_same_message_as_field_by_field():
    when = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)
    allowed = ("aws:eu-central-1", "aws:eu-west-1")
    reason = Reason(ReasonCode.RULE_DENIED, "rule r: ...", rule_id="r", citation="GDPR", lineage_path=("a", "b"))
    decisions = [
        Decision("d1", Outcome.ALLOW, "b", Operation.STORE, "aws:eu-west-1", allowed, (), "v1", 7, when),
        Decision("d2", Outcome.DENY, "b", Operation.PROCESS, "aws:us-east-1", allowed, (reason,), "v1", 7, when),
        Decision("d3", Outcome.DENY, "c", Operation.STORE, "aws:us-east-1", (), (reason, reason), "v2", 8, when),
    ]
    encoder = DecisionEncoder()
    for decision in [*decisions, *decisions]:  # the second round is served from the caches
        expected = residency_pb2.Decision(
            decision_id=decision.decision_id,
            outcome={Outcome.ALLOW: residency_pb2.OUTCOME_ALLOW, Outcome.DENY: residency_pb2.OUTCOME_DENY}[
                decision.outcome
            ],
            dataset_id=decision.dataset_id,
            operation={
                Operation.STORE: residency_pb2.OPERATION_STORE,
                Operation.PROCESS: residency_pb2.OPERATION_PROCESS,
            }[decision.operation],
            region=decision.region,
            allowed_regions=decision.allowed_regions,
            reasons=[
                residency_pb2.Reason(
                    code=r.code.value,
                    rule_id=r.rule_id,
                    message=r.message,
                    lineage_path=r.lineage_path,
                    citation=r.citation,
                )
                for r in decision.reasons
            ],
            policy_version=decision.policy_version,
            catalog_revision=decision.catalog_revision,
            decide_time=to_timestamp(decision.decide_time),
        )
        assert encoder.to_proto(decision) == expected


POLICY = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata: {name: wire, version: "2026.11.1"}
rules:
  - {id: gdpr, citation: "GDPR Art. 44", match: {classifications: [PII], origins: [EEA]}, store: {allow: [EEA]}}
"""


def test_a_batch_answer_holds_the_decisions_the_log_is_given():
    """BatchDecide's answer is encoded by the engine; the decisions handed to the decision log
    and the metrics (a DecisionBatch, built on demand) are exactly the ones it answers --
    long and non-ASCII strings included."""
    when = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)
    long_id = "s3://bank/ü/" + "x" * 300
    engine = Engine(compile_policy(load_policy(POLICY)))
    engine.add(
        [
            Dataset.create(long_id, classifications=["PII.CONTACT"], origins=["DE"]),
            Dataset.create("s3://dérivé", placeholder=True),
        ],
        [Edge(input=long_id, output="s3://dérivé", job="etl/copy", run_id="r")],
    )
    questions = [
        (long_id, residency_pb2.OPERATION_STORE, "aws:us-east-1"),
        ("s3://dérivé", residency_pb2.OPERATION_STORE, "aws:us-east-1"),
        ("s3://dérivé", residency_pb2.OPERATION_PROCESS, "aws:eu-west-1"),
        ("s3://nowhere", residency_pb2.OPERATION_STORE, "aws:eu-west-1"),
    ]
    request = residency_pb2.BatchDecideRequest(
        requests=[residency_pb2.DecideRequest(dataset_id=d, operation=o, region=r) for d, o, r in questions]
    )
    lane = _engine.LogLane("0123456789ab", 100, 10_000, lambda: None)
    lane.take_ids(40)
    answer, decisions = engine.batch_decide_wire(request.SerializeToString(), when, None, 7, lane, 100, "alice")
    encoder = DecisionEncoder()
    assert residency_pb2.BatchDecideResponse.FromString(answer) == residency_pb2.BatchDecideResponse(
        decisions=[encoder.to_proto(d) for d in decisions]
    )
    assert [d.decision_id for d in decisions] == [f"0123456789ab{n:010x}" for n in range(41, 45)]
    assert {(d.caller, d.catalog_revision, d.decide_time, d.policy_version) for d in decisions} == {
        ("alice", 7, when, "2026.11.1")
    }
    assert decisions.policy_hash == engine.policy.content_hash
    assert lane.next_id() == 45
    assert [d.inherited_only for d in decisions] == [False, True, True, False]
    assert decisions[-1] == decisions[3] and list(decisions[1:3]) == [decisions[1], decisions[2]]
    assert len(decisions[4:]) == 0
    by_outcome, by_reason = decisions.counts()
    assert sum(by_outcome.values()) == 4
    assert by_outcome == dict(Counter((d.operation, d.outcome) for d in decisions))
    assert by_reason == dict(Counter((r.code.value, r.rule_id) for d in decisions for r in d.reasons))
    tally = _engine.IntentTally(("intent_store", "intent_process"), "(unauthenticated)")
    decisions[1:].count_intents(tally, 1_000_000)
    assert Counter({(a, ds, op, r): n for a, ds, op, r, n, *_ in tally.take()}) == Counter(
        (d.caller, d.dataset_id, f"intent_{d.operation.value}", d.region) for d in decisions[1:]
    )
    # The decision log's entries, rendered by the engine, read back as the batch's decisions.
    for part in (decisions, decisions[1:3]):
        entries = part.log_entries({"ticket": "é"}, "batch_decide", "ab" * 32, 3)
        assert [list(ids) for _, ids in entries] == [
            [d.decision_id for d in part[i : i + 3]] for i in range(0, len(part), 3)
        ]
        line, _ = decisions_line(1, ZERO_HASH, [data for data, _ in entries])
        logged = decisions_of_line(line)
        assert [entry.decision for entry in logged] == list(part)
        assert {(entry.kind, entry.policy_hash, tuple((entry.context or {}).items())) for entry in logged} == {
            ("batch_decide", "ab" * 32, (("ticket", "é"),))
        }


def test_batch_calls_on_several_threads_take_their_own_decision_ids():
    """The batch calls draw their ids from the lane once they know how many they need, so calls
    made on several threads at once (the router decides large batches off its event loop)
    never share one, and a refused request takes none."""
    engine = Engine(compile_policy(load_policy(POLICY)))
    engine.add(
        [Dataset.create(f"s3://bank/{n}", classifications=["PII.CONTACT"], origins=["DE"]) for n in range(50)], []
    )
    when = datetime(2026, 11, 30, 4, 0, 0, tzinfo=UTC)
    lane = _engine.LogLane("p:", 100, 10_000, lambda: None)
    request = residency_pb2.BatchDecideRequest(
        requests=[
            residency_pb2.DecideRequest(dataset_id=f"s3://bank/{n}", operation=1, region="aws:us-east-1")
            for n in range(50)
        ]
    ).SerializeToString()

    def wire(_: int) -> list[str]:
        return [d.decision_id for d in engine.batch_decide_wire(request, when, None, 1, lane, 100, "a")[1]]

    def listed(_: int) -> list[str]:
        questions = [(f"s3://bank/{n}", Operation.STORE, "aws:us-east-1") for n in range(50)]
        return [d.decision_id for d in engine.batch_decide(questions, when, None, 1, lane, "a")]

    with ThreadPoolExecutor(4) as pool:
        batches = [*pool.map(wire, range(40)), *pool.map(listed, range(40))]
    ids = [decision_id for batch in batches for decision_id in batch]
    assert len(set(ids)) == len(ids) == 80 * 50
    assert all(ids == sorted(ids) for ids in batches)  # each call's ids are consecutive
    with pytest.raises(DomicileError):
        engine.batch_decide_wire(b"\xff", when, None, 1, lane, 100, "a")
    assert lane.next_id() == 1 + 80 * 50
