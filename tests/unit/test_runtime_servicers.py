"""The servicers' protobuf encoding of decisions (router/convert.py). That every RPC is
implemented is checked for all services in tests/unit/test_rpc_coverage.py."""

from __future__ import annotations

from datetime import UTC, datetime

from domicile.router.convert import DecisionEncoder
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
    # The hand-written wire format of a BatchDecide answer parses to the same messages.
    expected_batch = residency_pb2.BatchDecideResponse(decisions=[encoder.to_proto(d) for d in decisions])
    assert residency_pb2.BatchDecideResponse.FromString(encoder.encode_batch(decisions)) == expected_batch


def test_the_batch_wire_format_holds_long_and_non_ascii_strings():
    """Lengths of 128 bytes and more take multi-byte varints; ids and texts may be UTF-8."""
    when = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)
    many = tuple(f"private:région-{n:03d}" for n in range(300))  # > 16 KB of allowed regions
    long_path = tuple(f"s3://bank/ü/{'x' * 150}/{n}" for n in range(12))
    reason = Reason(ReasonCode.RULE_DENIED, "m" * 200 + " ✓", rule_id="r" * 130, citation="", lineage_path=long_path)
    decisions = [
        Decision(
            "é" * 70,
            Outcome.DENY,
            "d" * 300,
            Operation.PROCESS,
            "private:région-001",
            many,
            (reason,),
            "v" * 129,
            2**62,
            when,
            "caller",
        ),
        Decision("", Outcome.ALLOW, "", Operation.STORE, "r", (), (), "", 0, when),
    ]
    encoder = DecisionEncoder()
    expected = residency_pb2.BatchDecideResponse(decisions=[encoder.to_proto(d) for d in decisions])
    for _ in range(2):  # cold, then from the caches
        assert residency_pb2.BatchDecideResponse.FromString(encoder.encode_batch(decisions)) == expected
    assert residency_pb2.BatchDecideResponse.FromString(encoder.encode_batch([])) == residency_pb2.BatchDecideResponse()


def test_one_decision_encoded_as_a_batch_is_its_decide_response():
    """Decide is served with `encode_batch([decision])` (router/service.py): a DecideResponse
    and a BatchDecideResponse both hold the Decision as field 1, so those bytes are the
    DecideResponse (with the Decision's fields in another order than protobuf's own
    serialization, which every parser accepts)."""
    when = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)
    reason = Reason(ReasonCode.RULE_DENIED, "rule r: ...", rule_id="r", citation="GDPR", lineage_path=("a", "b"))
    encoder = DecisionEncoder()
    for decision in (
        Decision("d1", Outcome.ALLOW, "b", Operation.STORE, "aws:eu-west-1", ("aws:eu-west-1",), (), "v1", 7, when),
        Decision("d2", Outcome.DENY, "b", Operation.PROCESS, "aws:us-east-1", (), (reason, reason), "v1", 7, when),
        Decision("d3", Outcome.DENY, "", Operation.STORE, "", (), (), "", 0, when),
        Decision("d4", Outcome.ALLOW, "p", Operation.STORE, "aws:eu-west-1", (), (), "v1", 7, when, "", True),
    ):
        expected = residency_pb2.DecideResponse(decision=encoder.to_proto(decision))
        assert residency_pb2.DecideResponse.FromString(encoder.encode_batch([decision])) == expected
        assert expected.decision.inherited_only == decision.inherited_only
