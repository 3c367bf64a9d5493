"""Translation between residency/policy protobuf messages and router domain values (no grpc).

Most of a Decision message's bytes are `allowed_regions`, which is the same tuple for every
dataset of a kind (the engine hands out one tuple per allowed set). So the parts of a decision
that repeat -- outcome with allowed regions, and policy version with catalog revision and
decide time -- are serialized once and merged into each message from bytes, which upb does in
C; only the per-decision strings are set from Python. Merging is exact: the fragments hold
distinct fields, so the result equals a message built field by field. (BatchDecide's answers
are encoded by the residency engine itself.)
"""

from __future__ import annotations

from datetime import datetime

from domicile.router.decision_log import Proof
from domicile.router.policy import PolicyError
from domicile.router.policy_proposals import Proposal, ProposalState
from domicile.router.runtime import Explanation, Violation
from domicile.router.types import Decision, DecisionFields, Operation, Outcome, PolicyChange, Reason
from domicile.router.violations import ResidencyState, ResidencyStates, ViolationPage
from domicile.timeconv import to_timestamp
from domicile.v1 import policy_pb2, residency_pb2

OPERATION_FROM_PROTO: dict[int, Operation] = {
    residency_pb2.OPERATION_STORE: Operation.STORE,
    residency_pb2.OPERATION_PROCESS: Operation.PROCESS,
}
OPERATION_TO_PROTO: dict[Operation, residency_pb2.Operation] = {
    Operation.STORE: residency_pb2.OPERATION_STORE,
    Operation.PROCESS: residency_pb2.OPERATION_PROCESS,
}
OUTCOME_TO_PROTO: dict[Outcome, residency_pb2.Outcome] = {
    Outcome.ALLOW: residency_pb2.OUTCOME_ALLOW,
    Outcome.DENY: residency_pb2.OUTCOME_DENY,
}
OUTCOME_FROM_PROTO: dict[int, Outcome] = {value: outcome for outcome, value in OUTCOME_TO_PROTO.items()}

# Fragment caches are bounded; clearing only costs re-serializing a few fragments.
_FRAGMENT_LIMIT = 4096


class DecisionEncoder:
    """Builds Decision messages, reusing serialized fragments across decisions.

    One encoder per servicer; not thread-safe (the servicer runs on one event loop).
    """

    def __init__(self) -> None:
        # (outcome, id(allowed_regions)) -> (the tuple itself, fragment). Keeping the tuple
        # alive guarantees its id is not reused for another tuple while cached.
        self._verdicts: dict[tuple[str, int], tuple[tuple[str, ...], bytes]] = {}
        self._context_key: tuple[str, int, datetime] | None = None
        self._context: bytes = b""

    def fill(self, message: residency_pb2.Decision, decision: DecisionFields) -> residency_pb2.Decision:
        """Set every field of the (empty) `message` from `decision`; returns `message`."""
        message.decision_id = decision.decision_id
        message.dataset_id = decision.dataset_id
        message.operation = OPERATION_TO_PROTO[decision.operation]
        message.region = decision.region
        message.MergeFromString(self._verdict_fragment(decision.outcome, decision.allowed_regions))
        message.MergeFromString(self._context_fragment(decision))
        message.inherited_only = decision.inherited_only
        if decision.reasons:
            add = message.reasons.add
            for reason in decision.reasons:
                add(
                    code=reason.code.value,
                    rule_id=reason.rule_id,
                    message=reason.message,
                    lineage_path=reason.lineage_path,
                    citation=reason.citation,
                )
        return message

    def to_proto(self, decision: Decision) -> residency_pb2.Decision:
        return self.fill(residency_pb2.Decision(), decision)

    def _verdict_fragment(self, outcome: Outcome, allowed: tuple[str, ...]) -> bytes:
        # Keyed by the outcome's value: an Enum member hashes in Python, a str does not.
        key = (outcome._value_, id(allowed))
        cached = self._verdicts.get(key)
        if cached is not None and cached[0] is allowed:
            return cached[1]
        fragment = residency_pb2.Decision(
            outcome=OUTCOME_TO_PROTO[outcome], allowed_regions=allowed
        ).SerializeToString()
        if len(self._verdicts) >= _FRAGMENT_LIMIT:
            self._verdicts.clear()
        self._verdicts[key] = (allowed, fragment)
        return fragment

    def _context_fragment(self, decision: DecisionFields) -> bytes:
        # Decisions of one call share version, revision and time (the same objects): a
        # one-entry cache suffices, checked by identity first.
        key = self._context_key
        if (
            key is not None
            and decision.decide_time is key[2]
            and decision.policy_version is key[0]
            and decision.catalog_revision is key[1]
        ):
            return self._context
        key = (decision.policy_version, decision.catalog_revision, decision.decide_time)
        if key != self._context_key:
            self._context = residency_pb2.Decision(
                policy_version=decision.policy_version,
                catalog_revision=decision.catalog_revision,
                decide_time=to_timestamp(decision.decide_time),
            ).SerializeToString()
            self._context_key = key
        return self._context


def explanation_to_proto(explanation: Explanation) -> residency_pb2.ExplainResponse:
    attrs = explanation.attributes
    return residency_pb2.ExplainResponse(
        inherited_only=attrs.inherited_only,
        unapproved_declassifications=[
            residency_pb2.UnapprovedDeclassification(
                input=u.input, output=u.output, job=u.job, transform=u.transform, classifications=u.classifications
            )
            for u in explanation.unapproved
        ],
        classifications=[
            residency_pb2.EffectiveAttribute(value=v, lineage_path=p) for v, p in attrs.classifications.items()
        ],
        origins=[residency_pb2.EffectiveAttribute(value=v, lineage_path=p) for v, p in attrs.origins.items()],
        store_regions=explanation.store_regions,
        process_regions=explanation.process_regions,
        policy_version=explanation.policy_version,
        catalog_revision=explanation.catalog_revision,
    )


def proof_to_proto(proof: Proof) -> residency_pb2.DecisionProof:
    message = residency_pb2.DecisionProof(replica_id=proof.replica, line_seq=proof.line_seq, line_hash=proof.line_hash)
    checkpoint = proof.checkpoint
    if checkpoint is not None:
        message.checkpoint_verified = True
        message.checkpoint_seq = checkpoint.signed_seq
        message.checkpoint_hash = checkpoint.signed_hash
        message.checkpoint_time.CopyFrom(to_timestamp(datetime.fromisoformat(checkpoint.time)))
        message.checkpoint_key_id = checkpoint.key_id
    return message


def violation_to_proto(violation: Violation, encoder: DecisionEncoder) -> residency_pb2.Violation:
    return residency_pb2.Violation(
        dataset_id=violation.dataset_id, region=violation.region, decision=encoder.to_proto(violation.decision)
    )


def reason_to_proto(reason: Reason) -> residency_pb2.Reason:
    return residency_pb2.Reason(
        code=reason.code.value,
        rule_id=reason.rule_id,
        message=reason.message,
        lineage_path=reason.lineage_path,
        citation=reason.citation,
    )


def violation_page_to_proto(page: ViolationPage) -> residency_pb2.ListViolationsResponse:
    return residency_pb2.ListViolationsResponse(
        violations=[
            residency_pb2.LocationViolation(
                dataset_id=v.dataset_id,
                region=v.region,
                allowed_regions=v.verdict.allowed_regions,
                reasons=[reason_to_proto(r) for r in v.verdict.reasons],
                inherited_only=v.inherited_only,
            )
            for v in page.violations
        ],
        next_page_token=page.next_page_token,
        total=page.total,
        regions=[residency_pb2.RegionViolations(region=r, violations=n) for r, n in sorted(page.by_region.items())],
        policy_version=page.policy_version,
        catalog_revision=page.catalog_revision,
        datasets_to_judge=page.datasets_to_judge,
    )


_STATE_TO_PROTO = {
    ResidencyState.ALLOWED: residency_pb2.RESIDENCY_STATE_ALLOWED,
    ResidencyState.VIOLATION: residency_pb2.RESIDENCY_STATE_VIOLATION,
    ResidencyState.DERIVED: residency_pb2.RESIDENCY_STATE_DERIVED,
    ResidencyState.UNDESCRIBED: residency_pb2.RESIDENCY_STATE_UNDESCRIBED,
    ResidencyState.UNKNOWN: residency_pb2.RESIDENCY_STATE_UNKNOWN,
}


def residency_states_to_proto(states: ResidencyStates) -> residency_pb2.GetResidencyStatesResponse:
    return residency_pb2.GetResidencyStatesResponse(
        states=[
            residency_pb2.DatasetResidency(
                dataset_id=s.dataset_id,
                state=_STATE_TO_PROTO[s.state],
                locations=s.locations,
                violating_regions=s.violating_regions,
            )
            for s in states.states
        ],
        policy_version=states.policy_version,
        catalog_revision=states.catalog_revision,
    )


def policy_error_to_proto(error: PolicyError) -> policy_pb2.PolicyError:
    return policy_pb2.PolicyError(line=error.line, column=error.column, path=error.path, message=error.message)


def policy_change_to_proto(change: PolicyChange) -> policy_pb2.PolicyChange:
    return policy_pb2.PolicyChange(
        dataset_id=change.dataset_id,
        operation=OPERATION_TO_PROTO[change.operation],
        added_regions=change.added_regions,
        removed_regions=change.removed_regions,
        new_violations=change.new_violations,
    )


PROPOSAL_STATE_TO_PROTO: dict[ProposalState, policy_pb2.ProposalState] = {
    ProposalState.PENDING: policy_pb2.PROPOSAL_STATE_PENDING,
    ProposalState.APPROVED: policy_pb2.PROPOSAL_STATE_APPROVED,
    ProposalState.REJECTED: policy_pb2.PROPOSAL_STATE_REJECTED,
}


def proposal_to_proto(proposal: Proposal) -> policy_pb2.PolicyProposal:
    return policy_pb2.PolicyProposal(
        proposal_id=proposal.proposal_id,
        version=proposal.version,
        policy_yaml=proposal.yaml,
        content_hash=proposal.content_hash,
        state=PROPOSAL_STATE_TO_PROTO[proposal.state],
        proposed_by=proposal.proposed_by,
        propose_time=to_timestamp(proposal.propose_time),
        changes=[policy_change_to_proto(c) for c in proposal.changes],
        decided_by=proposal.decided_by,
        decide_time=to_timestamp(proposal.decide_time) if proposal.decide_time is not None else None,
        comment=proposal.comment,
    )
