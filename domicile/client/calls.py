"""Each RPC once: the request a method's arguments make, the domain value its response gives,
and whether it is safe to retry. `Client` and `AsyncClient` only carry these calls over a
channel, so both offer the same methods with the same meaning.

Retryable (see `domicile.client.retries`): reads; residency questions (Decide, BatchDecide,
Route, CheckJob: they change nothing but add a line to the decision log, so a retry after a
lost answer logs the question twice); RecordLineage (idempotent per job and run id);
UpsertDataset and DeleteDataset with an `expected_revision` (a retry after a lost success
fails ABORTED instead of writing twice); SetPolicy with `dry_run`. Not retried: unconditional
writes, EndLineage, ApprovePolicy and RejectPolicy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.protobuf import json_format, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from domicile.access.model import (
    AccessOperation,
    Anomaly,
    AnomalyKind,
    FindingKind,
    ObservedViolation,
    RunAccess,
    RunRecord,
)
from domicile.catalog.convert import dataset_to_proto
from domicile.catalog.model import (
    Dataset,
    DatasetRevision,
    Direction,
    EdgeKey,
    Field,
    Protection,
    RevisionChange,
)
from domicile.catalog.regions import Region
from domicile.client.types import (
    AccessSummary,
    ActorAccess,
    ActorActivity,
    DatasetAccess,
    DecisionLogStatus,
    DecisionProof,
    DecisionRecord,
    DecisionSummary,
    LineageEnded,
    LineageGraph,
    LineageRecorded,
    LoggedDecision,
    Page,
    PolicyActivation,
    PolicyDecisionResult,
    PolicyProposal,
    PolicySetResult,
    ProposalState,
    Question,
    SecurityEvent,
    ServingStatus,
)
from domicile.lineage.convert import DIRECTION_TO_PROTO, traversal_from_proto
from domicile.router.convert import OPERATION_FROM_PROTO, OPERATION_TO_PROTO, OUTCOME_FROM_PROTO, OUTCOME_TO_PROTO
from domicile.router.decision_search import DecisionBucket
from domicile.router.policy import PolicyError
from domicile.router.runtime import (
    ActivePolicy,
    DatasetSummary,
    Explanation,
    JobCheck,
    PolicyImpact,
    ReplayResult,
    RouteResult,
    UnapprovedDeclassification,
    Violation,
)
from domicile.router.types import (
    Decision,
    EffectiveAttributes,
    Operation,
    Outcome,
    PolicyChange,
    Reason,
    ReasonCode,
    Verdict,
)
from domicile.router.violations import (
    DatasetResidency,
    LocationViolation,
    ResidencyState,
    ResidencyStates,
    ViolationPage,
)
from domicile.timeconv import from_timestamp, to_timestamp
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

T = TypeVar("T")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]
SERVICES = tuple(
    service
    for module in (catalog_pb2, lineage_pb2, residency_pb2, policy_pb2, audit_pb2, access_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)
_METHODS = {method.full_name: method for service in (*SERVICES, HEALTH_SERVICE) for method in service.methods}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One RPC to make: `path` is its HTTP/2 path (`/domicile.v1.CatalogService/GetDataset`)."""

    path: str
    request: Message
    response_type: type[Message]
    parse: Callable[[Any], T]
    retryable: bool


def _call(method: str, request: Message, parse: Callable[[Any], T], *, retryable: bool) -> Call[T]:
    descriptor = _METHODS[method]
    assert descriptor.input_type is request.DESCRIPTOR, f"{method} takes {descriptor.input_type.full_name}"
    service, _, name = method.rpartition(".")
    return Call(
        f"/{service}/{name}",
        request,
        message_factory.GetMessageClass(descriptor.output_type),
        parse,
        retryable,
    )


# ---- shared conversions --------------------------------------------------------------------


def _when(message: Message, name: str) -> datetime | None:
    return from_timestamp(getattr(message, name)) if message.HasField(name) else None


def _operation(value: Operation | str) -> residency_pb2.Operation:
    try:
        return OPERATION_TO_PROTO[Operation(value)]
    except ValueError:
        raise ValueError(f"operation must be 'store' or 'process', not {value!r}") from None


def _set_time(request: Message, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(request, name).CopyFrom(to_timestamp(value))


def _strings(values: Iterable[str] | str, name: str) -> list[str]:
    if isinstance(values, str):  # a lone id would otherwise become a list of its characters
        raise TypeError(f"{name} must be a list of strings, not a string")
    return list(values)


def dataset_from_message(m: catalog_pb2.Dataset) -> Dataset:
    return Dataset(
        id=m.id,
        name=m.name,
        owner=m.owner,
        description=m.description,
        classifications=tuple(m.classifications),
        origins=tuple(m.origins),
        locations=tuple(m.locations),
        tags=dict(m.tags),
        fields=tuple(Field(f.name, tuple(f.classifications)) for f in m.fields),
        protection=Protection(
            encrypted_at_rest=m.protection.encrypted_at_rest,
            field_level_encrypted=m.protection.field_level_encrypted,
            tokenized=m.protection.tokenized,
        ),
        revision=m.revision,
        create_time=_when(m, "create_time"),
        update_time=_when(m, "update_time"),
        placeholder=m.placeholder,
        updated_by=m.updated_by,
    )


def reason_from_message(m: residency_pb2.Reason, text: residency_pb2.Reason | None = None) -> Reason:
    """`text`: the reason's text (code, message, rule id, citation) from its answer's
    `reason_texts` (compact BatchDecide answers); otherwise the reason's own."""
    text = m if text is None else text
    return Reason(
        code=ReasonCode(text.code),
        message=text.message,
        rule_id=text.rule_id,
        citation=text.citation,
        lineage_path=tuple(m.lineage_path),
    )


def decision_from_message(
    m: residency_pb2.Decision,
    allowed_regions: tuple[str, ...] | None = None,
    reason_texts: Sequence[residency_pb2.Reason] = (),
) -> Decision:
    """`allowed_regions`: the decision's set from its answer's `region_sets`, `reason_texts` the
    answer's (compact BatchDecide answers); otherwise the decision's own list and texts."""
    return Decision(
        decision_id=m.decision_id,
        outcome=OUTCOME_FROM_PROTO[m.outcome],
        dataset_id=m.dataset_id,
        operation=OPERATION_FROM_PROTO[m.operation],
        region=m.region,
        allowed_regions=tuple(m.allowed_regions) if allowed_regions is None else allowed_regions,
        reasons=tuple(reason_from_message(r, reason_texts[r.text] if reason_texts else None) for r in m.reasons),
        policy_version=m.policy_version,
        catalog_revision=m.catalog_revision,
        decide_time=from_timestamp(m.decide_time),
        inherited_only=m.inherited_only,
    )


def _policy_errors(errors: Iterable[policy_pb2.PolicyError]) -> tuple[PolicyError, ...]:
    return tuple(PolicyError(e.line, e.column, e.path, e.message) for e in errors)


def _policy_change(m: policy_pb2.PolicyChange) -> PolicyChange:
    return PolicyChange(
        dataset_id=m.dataset_id,
        operation=OPERATION_FROM_PROTO[m.operation],
        added_regions=tuple(m.added_regions),
        removed_regions=tuple(m.removed_regions),
        new_violations=tuple(m.new_violations),
    )


_PROPOSAL_STATES = {
    policy_pb2.PROPOSAL_STATE_PENDING: ProposalState.PENDING,
    policy_pb2.PROPOSAL_STATE_APPROVED: ProposalState.APPROVED,
    policy_pb2.PROPOSAL_STATE_REJECTED: ProposalState.REJECTED,
}


def _proposal(m: policy_pb2.PolicyProposal) -> PolicyProposal:
    return PolicyProposal(
        proposal_id=m.proposal_id,
        version=m.version,
        policy_yaml=m.policy_yaml,
        content_hash=m.content_hash,
        state=_PROPOSAL_STATES[m.state],
        proposed_by=m.proposed_by,
        propose_time=_when(m, "propose_time"),
        changes=tuple(_policy_change(c) for c in m.changes),
        decided_by=m.decided_by,
        decide_time=_when(m, "decide_time"),
        comment=m.comment,
    )


_ACCESS_OPERATIONS = {
    access_pb2.ACCESS_OPERATION_READ: AccessOperation.READ,
    access_pb2.ACCESS_OPERATION_WRITE: AccessOperation.WRITE,
    access_pb2.ACCESS_OPERATION_CATALOG_WRITE: AccessOperation.CATALOG_WRITE,
    access_pb2.ACCESS_OPERATION_INTENT_STORE: AccessOperation.INTENT_STORE,
    access_pb2.ACCESS_OPERATION_INTENT_PROCESS: AccessOperation.INTENT_PROCESS,
}
_FINDING_KINDS = {
    access_pb2.OBSERVED_VIOLATION_KIND_POLICY_DENIED: FindingKind.POLICY_DENIED,
    access_pb2.OBSERVED_VIOLATION_KIND_UNKNOWN_RUN_REGION: FindingKind.UNKNOWN_RUN_REGION,
    access_pb2.OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION: FindingKind.UNKNOWN_OUTPUT_LOCATION,
    access_pb2.OBSERVED_VIOLATION_KIND_NOT_JUDGED: FindingKind.NOT_JUDGED,
}
_ANOMALY_KINDS = {
    access_pb2.ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR: AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR,
    access_pb2.ACCESS_ANOMALY_KIND_NEW_REGION_FOR_ACTOR: AnomalyKind.NEW_REGION_FOR_ACTOR,
    access_pb2.ACCESS_ANOMALY_KIND_ACCESS_BURST: AnomalyKind.ACCESS_BURST,
}


def observed_violation_from_message(m: access_pb2.ObservedViolation) -> ObservedViolation:
    return ObservedViolation(
        violation_id=m.violation_id,
        kind=_FINDING_KINDS[m.kind],
        job=m.job,
        run_id=m.run_id,
        producer=m.producer,
        principal=m.principal,
        dataset_id=m.dataset_id,
        operation=OPERATION_FROM_PROTO[m.operation],
        region=m.region,
        event_time=from_timestamp(m.event_time),
        observe_time=from_timestamp(m.observe_time),
        late=m.late,
        decision=decision_from_message(m.decision) if m.HasField("decision") else None,
        message=m.message,
    )


def _summaries(messages: Iterable[access_pb2.AccessSummary]) -> tuple[AccessSummary, ...]:
    return tuple(
        AccessSummary(_ACCESS_OPERATIONS[a.operation], a.region, a.count, _when(a, "first_seen"), _when(a, "last_seen"))
        for a in messages
    )


# ---- CatalogService ------------------------------------------------------------------------


def upsert_dataset(dataset: Dataset, expected_revision: int = 0) -> Call[Dataset]:
    request = catalog_pb2.UpsertDatasetRequest(dataset=dataset_to_proto(dataset), expected_revision=expected_revision)
    # Output-only fields are ignored by the server; sent empty, they cannot mislead a reader of the request.
    for name in ("revision", "create_time", "update_time", "placeholder", "updated_by"):
        request.dataset.ClearField(name)
    return _call(
        "domicile.v1.CatalogService.UpsertDataset",
        request,
        lambda r: dataset_from_message(r.dataset),
        retryable=expected_revision > 0,
    )


def get_dataset(dataset_id: str, as_of: datetime | None = None) -> Call[Dataset]:
    request = catalog_pb2.GetDatasetRequest(id=dataset_id)
    _set_time(request, "as_of", as_of)
    return _call(
        "domicile.v1.CatalogService.GetDataset", request, lambda r: dataset_from_message(r.dataset), retryable=True
    )


def list_datasets(
    *,
    classification: str = "",
    origin: str = "",
    region: str = "",
    owner: str = "",
    query: str = "",
    as_of: datetime | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Call[Page[Dataset]]:
    request = catalog_pb2.ListDatasetsRequest(
        classification=classification,
        origin=origin,
        region=region,
        owner=owner,
        query=query,
        page_size=page_size,
        page_token=page_token,
    )
    _set_time(request, "as_of", as_of)
    return _call(
        "domicile.v1.CatalogService.ListDatasets",
        request,
        lambda r: Page(tuple(dataset_from_message(d) for d in r.datasets), r.next_page_token),
        retryable=True,
    )


def delete_dataset(dataset_id: str, expected_revision: int = 0) -> Call[None]:
    return _call(
        "domicile.v1.CatalogService.DeleteDataset",
        catalog_pb2.DeleteDatasetRequest(id=dataset_id, expected_revision=expected_revision),
        lambda r: None,
        retryable=expected_revision > 0,
    )


def list_regions() -> Call[tuple[Region, ...]]:
    return _call(
        "domicile.v1.CatalogService.ListRegions",
        catalog_pb2.ListRegionsRequest(),
        lambda r: tuple(Region(x.id, x.country, x.display_name, x.private) for x in r.regions),
        retryable=True,
    )


_REVISION_CHANGES = {
    catalog_pb2.REVISION_CHANGE_CREATED: RevisionChange.CREATED,
    catalog_pb2.REVISION_CHANGE_UPDATED: RevisionChange.UPDATED,
    catalog_pb2.REVISION_CHANGE_DELETED: RevisionChange.DELETED,
}


def list_dataset_revisions(dataset_id: str, *, page_size: int = 0, page_token: str = "") -> Call[Page[DatasetRevision]]:
    def parse(r: catalog_pb2.ListDatasetRevisionsResponse) -> Page[DatasetRevision]:
        revisions = tuple(
            DatasetRevision(
                revision=x.revision,
                time=from_timestamp(x.time),
                principal=x.principal,
                change=_REVISION_CHANGES[x.change],
                dataset=dataset_from_message(x.dataset) if x.HasField("dataset") else None,
            )
            for x in r.revisions
        )
        return Page(revisions, r.next_page_token)

    return _call(
        "domicile.v1.CatalogService.ListDatasetRevisions",
        catalog_pb2.ListDatasetRevisionsRequest(id=dataset_id, page_size=page_size, page_token=page_token),
        parse,
        retryable=True,
    )


# ---- LineageService ------------------------------------------------------------------------


def record_lineage(
    job: str,
    run_id: str,
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    run_region: str = "",
    transform: str = "",
    event_time: datetime | None = None,
    producer: str = "",
) -> Call[LineageRecorded]:
    request = lineage_pb2.RecordLineageRequest(
        job=job,
        run_id=run_id,
        run_region=run_region,
        inputs=_strings(inputs, "inputs"),
        outputs=_strings(outputs, "outputs"),
        transform=transform,
        producer=producer,
    )
    _set_time(request, "event_time", event_time)
    return _call(
        "domicile.v1.LineageService.RecordLineage",
        request,
        lambda r: LineageRecorded(
            r.edges_created,
            r.catalog_revision,
            tuple(observed_violation_from_message(v) for v in r.observed_violations),
            r.late,
        ),
        retryable=True,
    )


def get_lineage(
    dataset_id: str,
    direction: Direction | str = Direction.UPSTREAM,
    *,
    max_depth: int = 0,
    as_of: datetime | None = None,
) -> Call[LineageGraph]:
    request = lineage_pb2.GetLineageRequest(
        dataset_id=dataset_id, direction=DIRECTION_TO_PROTO[Direction(direction)], max_depth=max_depth
    )
    _set_time(request, "as_of", as_of)

    def parse(r: lineage_pb2.GetLineageResponse) -> LineageGraph:
        traversal = traversal_from_proto(r)
        unapproved = frozenset(EdgeKey(e.input, e.output, e.job) for e in r.edges if e.unapproved_declassification)
        return LineageGraph(
            traversal.nodes, traversal.edges, traversal.complete, traversal.incomplete_reason, unapproved
        )

    return _call("domicile.v1.LineageService.GetLineage", request, parse, retryable=True)


def end_lineage(
    job: str, *, inputs: Iterable[str], outputs: Iterable[str], end_time: datetime | None = None
) -> Call[LineageEnded]:
    request = lineage_pb2.EndLineageRequest(
        job=job, inputs=_strings(inputs, "inputs"), outputs=_strings(outputs, "outputs")
    )
    _set_time(request, "end_time", end_time)
    return _call(
        "domicile.v1.LineageService.EndLineage",
        request,
        lambda r: LineageEnded(r.edges_ended, r.catalog_revision),
        retryable=False,
    )


# ---- ResidencyService ----------------------------------------------------------------------


def _decide_request(
    dataset_id: str, operation: Operation | str, region: str, context: Mapping[str, str] | None = None
) -> residency_pb2.DecideRequest:
    return residency_pb2.DecideRequest(
        dataset_id=dataset_id, operation=_operation(operation), region=region, context=dict(context or {})
    )


def decide(
    dataset_id: str, operation: Operation | str, region: str, context: Mapping[str, str] | None = None
) -> Call[Decision]:
    return _call(
        "domicile.v1.ResidencyService.Decide",
        _decide_request(dataset_id, operation, region, context),
        lambda r: decision_from_message(r.decision),
        retryable=True,
    )


def batch_decide(questions: Iterable[Question | tuple[str, Operation | str, str]]) -> Call[tuple[Decision, ...]]:
    request = residency_pb2.BatchDecideRequest(
        requests=[_decide_request(*q) for q in questions], shared_region_sets=True, shared_reason_texts=True
    )
    return _call("domicile.v1.ResidencyService.BatchDecide", request, batch_decisions_from_message, retryable=True)


def batch_decisions_from_message(m: residency_pb2.BatchDecideResponse) -> tuple[Decision, ...]:
    """The decisions of a BatchDecide answer of any shape: compact (each list of allowed regions
    once, in `region_sets`; each reason text once, in `reason_texts`) or not (a server that
    predates `shared_region_sets` or `shared_reason_texts` ignores the request's field and puts
    them in every decision)."""
    sets = [tuple(s.regions) for s in m.region_sets]
    texts = list(m.reason_texts)
    return tuple(decision_from_message(d, sets[d.allowed_regions_set] if sets else None, texts) for d in m.decisions)


def route(dataset_id: str, operation: Operation | str, candidates: Iterable[str]) -> Call[RouteResult]:
    request = residency_pb2.RouteRequest(
        dataset_id=dataset_id, operation=_operation(operation), candidates=_strings(candidates, "candidates")
    )
    return _call(
        "domicile.v1.ResidencyService.Route",
        request,
        lambda r: RouteResult(r.region, decision_from_message(r.decision)),
        retryable=True,
    )


def check_job(
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    run_region: str = "",
    output_region: str = "",
    transform: str = "",
    job: str = "",
    context: Mapping[str, str] | None = None,
) -> Call[JobCheck]:
    request = residency_pb2.CheckJobRequest(
        inputs=_strings(inputs, "inputs"),
        outputs=_strings(outputs, "outputs"),
        run_region=run_region,
        output_region=output_region,
        transform=transform,
        job=job,
        context=dict(context or {}),
    )
    return _call(
        "domicile.v1.ResidencyService.CheckJob",
        request,
        lambda r: JobCheck(r.allowed, tuple(decision_from_message(d) for d in r.decisions)),
        retryable=True,
    )


def explain(dataset_id: str, as_of: datetime | None = None) -> Call[Explanation]:
    request = residency_pb2.ExplainRequest(dataset_id=dataset_id)
    _set_time(request, "as_of", as_of)

    def parse(r: residency_pb2.ExplainResponse) -> Explanation:
        attributes = EffectiveAttributes(
            dataset_id,
            classifications={a.value: tuple(a.lineage_path) for a in r.classifications},
            origins={a.value: tuple(a.lineage_path) for a in r.origins},
            inherited_only=r.inherited_only,
        )
        unapproved = tuple(
            UnapprovedDeclassification(u.input, u.output, u.job, u.transform, tuple(u.classifications))
            for u in r.unapproved_declassifications
        )
        return Explanation(
            attributes,
            tuple(r.store_regions),
            tuple(r.process_regions),
            r.policy_version,
            r.catalog_revision,
            unapproved,
        )

    return _call("domicile.v1.ResidencyService.Explain", request, parse, retryable=True)


def scan_violations() -> Call[tuple[Violation, ...]]:
    return _call(
        "domicile.v1.ResidencyService.ScanViolations",
        residency_pb2.ScanViolationsRequest(),
        lambda r: tuple(Violation(v.dataset_id, v.region, decision_from_message(v.decision)) for v in r.violations),
        retryable=True,
    )


def list_violations(*, region: str = "", page_size: int = 0, page_token: str = "") -> Call[ViolationPage]:
    def parse(r: residency_pb2.ListViolationsResponse) -> ViolationPage:
        return ViolationPage(
            [
                LocationViolation(
                    v.dataset_id,
                    v.region,
                    Verdict(Outcome.DENY, tuple(v.allowed_regions), tuple(reason_from_message(x) for x in v.reasons)),
                    v.inherited_only,
                )
                for v in r.violations
            ],
            r.next_page_token,
            r.total,
            {x.region: x.violations for x in r.regions},
            r.policy_version,
            r.catalog_revision,
            r.datasets_to_judge,
        )

    return _call(
        "domicile.v1.ResidencyService.ListViolations",
        residency_pb2.ListViolationsRequest(region=region, page_size=page_size, page_token=page_token),
        parse,
        retryable=True,
    )


_STATE_FROM_PROTO = {
    residency_pb2.RESIDENCY_STATE_ALLOWED: ResidencyState.ALLOWED,
    residency_pb2.RESIDENCY_STATE_VIOLATION: ResidencyState.VIOLATION,
    residency_pb2.RESIDENCY_STATE_DERIVED: ResidencyState.DERIVED,
    residency_pb2.RESIDENCY_STATE_UNDESCRIBED: ResidencyState.UNDESCRIBED,
    residency_pb2.RESIDENCY_STATE_UNKNOWN: ResidencyState.UNKNOWN,
}


def get_residency_states(dataset_ids: Iterable[str], *, as_of: datetime | None = None) -> Call[ResidencyStates]:
    request = residency_pb2.GetResidencyStatesRequest(dataset_ids=list(dataset_ids))
    _set_time(request, "as_of", as_of)
    return _call(
        "domicile.v1.ResidencyService.GetResidencyStates",
        request,
        lambda r: ResidencyStates(
            tuple(
                DatasetResidency(
                    s.dataset_id, _STATE_FROM_PROTO[s.state], tuple(s.locations), tuple(s.violating_regions)
                )
                for s in r.states
            ),
            r.policy_version,
            r.catalog_revision,
        ),
        retryable=True,
    )


def proof_from_message(m: residency_pb2.DecisionProof) -> DecisionProof:
    return DecisionProof(
        m.replica_id,
        m.line_seq,
        m.line_hash,
        m.checkpoint_verified,
        m.checkpoint_seq,
        m.checkpoint_hash,
        _when(m, "checkpoint_time"),
        m.checkpoint_key_id,
    )


def get_decision(decision_id: str) -> Call[DecisionRecord]:
    return _call(
        "domicile.v1.ResidencyService.GetDecision",
        residency_pb2.GetDecisionRequest(decision_id=decision_id),
        lambda r: DecisionRecord(
            decision_from_message(r.decision), dict(r.decision.context), proof_from_message(r.proof)
        ),
        retryable=True,
    )


def replay_decision(decision_id: str) -> Call[ReplayResult]:
    return _call(
        "domicile.v1.ResidencyService.ReplayDecision",
        residency_pb2.ReplayDecisionRequest(decision_id=decision_id),
        lambda r: ReplayResult(
            decision_from_message(r.original), decision_from_message(r.replayed), r.matches, proof_from_message(r.proof)
        ),
        retryable=True,
    )


def list_decisions(
    *,
    dataset_id: str = "",
    caller: str = "",
    outcome: Outcome | str | None = None,
    rule_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Call[Page[LoggedDecision]]:
    request = residency_pb2.ListDecisionsRequest(
        dataset_id=dataset_id,
        caller=caller,
        outcome=OUTCOME_TO_PROTO[Outcome(outcome)] if outcome is not None else residency_pb2.OUTCOME_UNSPECIFIED,
        rule_id=rule_id,
        page_size=page_size,
        page_token=page_token,
    )
    _set_time(request, "start_time", since)
    _set_time(request, "end_time", until)

    def parse(r: residency_pb2.ListDecisionsResponse) -> Page[LoggedDecision]:
        decisions = tuple(
            LoggedDecision(
                decision_from_message(d.decision), d.caller, d.kind, d.line, d.line_hash, dict(d.decision.context)
            )
            for d in r.decisions
        )
        return Page(decisions, r.next_page_token, r.complete)

    return _call("domicile.v1.ResidencyService.ListDecisions", request, parse, retryable=True)


def summarize_decisions(
    *, since: datetime | None = None, until: datetime | None = None, bucket_seconds: int = 0
) -> Call[DecisionSummary]:
    request = residency_pb2.SummarizeDecisionsRequest(bucket_seconds=bucket_seconds)
    _set_time(request, "start_time", since)
    _set_time(request, "end_time", until)
    return _call(
        "domicile.v1.ResidencyService.SummarizeDecisions",
        request,
        lambda r: DecisionSummary(
            tuple(DecisionBucket(from_timestamp(b.start_time), b.allow, b.deny) for b in r.buckets), r.complete
        ),
        retryable=True,
    )


def summarize_datasets() -> Call[DatasetSummary]:
    return _call(
        "domicile.v1.ResidencyService.SummarizeDatasets",
        residency_pb2.SummarizeDatasetsRequest(),
        lambda r: DatasetSummary(
            datasets=r.datasets,
            classifications={c.value: c.datasets for c in r.classifications},
            origins={c.value: c.datasets for c in r.origins},
            regions={x.region: (x.datasets, x.classified) for x in r.regions},
            catalog_revision=r.catalog_revision,
        ),
        retryable=True,
    )


def get_decision_log_status() -> Call[DecisionLogStatus]:
    return _call(
        "domicile.v1.ResidencyService.GetDecisionLogStatus",
        residency_pb2.GetDecisionLogStatusRequest(),
        lambda r: DecisionLogStatus(r.head_line, r.head_hash, r.chain_ok),
        retryable=True,
    )


# ---- PolicyService -------------------------------------------------------------------------


def set_policy(policy_yaml: str, *, dry_run: bool = False, break_glass_reason: str = "") -> Call[PolicySetResult]:
    return _call(
        "domicile.v1.PolicyService.SetPolicy",
        policy_pb2.SetPolicyRequest(policy_yaml=policy_yaml, dry_run=dry_run, break_glass_reason=break_glass_reason),
        lambda r: PolicySetResult(
            r.version,
            _policy_errors(r.errors),
            r.applied,
            _proposal(r.proposal) if r.HasField("proposal") else None,
        ),
        retryable=dry_run,
    )


def get_policy(version: str = "") -> Call[ActivePolicy]:
    return _call(
        "domicile.v1.PolicyService.GetPolicy",
        policy_pb2.GetPolicyRequest(version=version),
        lambda r: ActivePolicy(r.policy_yaml, r.version, r.content_hash),
        retryable=True,
    )


def policy_impact(policy_yaml: str) -> Call[PolicyImpact]:
    return _call(
        "domicile.v1.PolicyService.PolicyImpact",
        policy_pb2.PolicyImpactRequest(policy_yaml=policy_yaml),
        lambda r: PolicyImpact(r.version, tuple(_policy_change(c) for c in r.changes), _policy_errors(r.errors)),
        retryable=True,
    )


def list_policy_versions() -> Call[tuple[PolicyActivation, ...]]:
    return _call(
        "domicile.v1.PolicyService.ListPolicyVersions",
        policy_pb2.ListPolicyVersionsRequest(),
        lambda r: tuple(
            PolicyActivation(
                a.version,
                a.content_hash,
                _when(a, "activated_time"),
                a.active,
                a.activated_by,
                a.break_glass_reason,
                a.proposal_id,
                a.proposed_by,
            )
            for a in r.activations
        ),
        retryable=True,
    )


def list_policy_proposals(*, include_closed: bool = False) -> Call[tuple[PolicyProposal, ...]]:
    return _call(
        "domicile.v1.PolicyService.ListPolicyProposals",
        policy_pb2.ListPolicyProposalsRequest(include_closed=include_closed),
        lambda r: tuple(_proposal(p) for p in r.proposals),
        retryable=True,
    )


def approve_policy(proposal_id: str, comment: str = "") -> Call[PolicyDecisionResult]:
    return _call(
        "domicile.v1.PolicyService.ApprovePolicy",
        policy_pb2.ApprovePolicyRequest(proposal_id=proposal_id, comment=comment),
        lambda r: PolicyDecisionResult(_proposal(r.proposal), r.applied, _policy_errors(r.errors)),
        retryable=False,
    )


def reject_policy(proposal_id: str, reason: str) -> Call[PolicyDecisionResult]:
    return _call(
        "domicile.v1.PolicyService.RejectPolicy",
        policy_pb2.RejectPolicyRequest(proposal_id=proposal_id, reason=reason),
        lambda r: PolicyDecisionResult(_proposal(r.proposal)),
        retryable=False,
    )


# ---- AuditService --------------------------------------------------------------------------


def list_security_events(
    *,
    event: str = "",
    principal: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Call[Page[SecurityEvent]]:
    request = audit_pb2.ListSecurityEventsRequest(
        event=event, principal=principal, page_size=page_size, page_token=page_token
    )
    _set_time(request, "start_time", since)
    _set_time(request, "end_time", until)

    def parse(r: audit_pb2.ListSecurityEventsResponse) -> Page[SecurityEvent]:
        events = tuple(
            SecurityEvent(
                time=_when(e, "time"),
                event=e.event,
                outcome=e.outcome,
                principal=e.principal,
                method=e.method,
                peer=e.peer,
                trace_id=e.trace_id,
                reason=e.reason,
                detail=json_format.MessageToDict(e.detail) if e.HasField("detail") else {},
            )
            for e in r.events
        )
        return Page(events, r.next_page_token)

    return _call("domicile.v1.AuditService.ListSecurityEvents", request, parse, retryable=True)


# ---- AccessService -------------------------------------------------------------------------


def get_access_patterns(
    dataset_id: str, *, since: datetime | None = None, until: datetime | None = None
) -> Call[tuple[ActorAccess, ...]]:
    request = access_pb2.GetAccessPatternsRequest(dataset_id=dataset_id)
    _set_time(request, "since", since)
    _set_time(request, "until", until)
    return _call(
        "domicile.v1.AccessService.GetAccessPatterns",
        request,
        lambda r: tuple(
            ActorAccess(a.actor, _summaries(a.accesses), a.total_count, _when(a, "first_seen"), _when(a, "last_seen"))
            for a in r.actors
        ),
        retryable=True,
    )


def list_actor_access(
    actor: str, *, since: datetime | None = None, until: datetime | None = None, max_runs: int = 0
) -> Call[ActorActivity]:
    request = access_pb2.ListActorAccessRequest(actor=actor, max_runs=max_runs)
    _set_time(request, "since", since)
    _set_time(request, "until", until)

    def parse(r: access_pb2.ListActorAccessResponse) -> ActorActivity:
        datasets = tuple(
            DatasetAccess(
                d.dataset_id, _summaries(d.accesses), d.total_count, _when(d, "first_seen"), _when(d, "last_seen")
            )
            for d in r.datasets
        )
        runs = tuple(
            RunRecord(
                job=run.job,
                run_id=run.run_id,
                producer=run.producer,
                principal=run.principal,
                run_region=run.run_region,
                event_time=from_timestamp(run.event_time),
                last_event_time=from_timestamp(run.last_event_time),
                record_time=from_timestamp(run.record_time),
                accesses=tuple(
                    RunAccess(a.dataset_id, _ACCESS_OPERATIONS[a.operation], a.region) for a in run.accesses
                ),
            )
            for run in r.runs
        )
        return ActorActivity(datasets, runs)

    return _call("domicile.v1.AccessService.ListActorAccess", request, parse, retryable=True)


def list_observed_violations(
    *, since: datetime | None = None, until: datetime | None = None, page_size: int = 0, page_token: str = ""
) -> Call[Page[ObservedViolation]]:
    request = access_pb2.ListObservedViolationsRequest(page_size=page_size, page_token=page_token)
    _set_time(request, "since", since)
    _set_time(request, "until", until)
    return _call(
        "domicile.v1.AccessService.ListObservedViolations",
        request,
        lambda r: Page(tuple(observed_violation_from_message(v) for v in r.violations), r.next_page_token),
        retryable=True,
    )


def list_access_anomalies(
    *, since: datetime | None = None, until: datetime | None = None, page_size: int = 0, page_token: str = ""
) -> Call[Page[Anomaly]]:
    request = access_pb2.ListAccessAnomaliesRequest(page_size=page_size, page_token=page_token)
    _set_time(request, "since", since)
    _set_time(request, "until", until)

    def parse(r: access_pb2.ListAccessAnomaliesResponse) -> Page[Anomaly]:
        anomalies = tuple(
            Anomaly(
                anomaly_id=a.anomaly_id,
                kind=_ANOMALY_KINDS[a.kind],
                actor=a.actor,
                dataset_ids=tuple(a.dataset_ids),
                value=a.value,
                detect_time=from_timestamp(a.detect_time),
                baseline_since=from_timestamp(a.baseline_since),
                baseline=tuple(a.baseline),
                baseline_daily_mean=a.baseline_daily_mean,
                threshold=a.threshold,
                message=a.message,
            )
            for a in r.anomalies
        )
        return Page(anomalies, r.next_page_token)

    return _call("domicile.v1.AccessService.ListAccessAnomalies", request, parse, retryable=True)


# ---- grpc.health.v1 ------------------------------------------------------------------------


def health(service: str = "") -> Call[ServingStatus]:
    return _call(
        "grpc.health.v1.Health.Check",
        health_pb2.HealthCheckRequest(service=service),
        lambda r: ServingStatus(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)),
        retryable=True,
    )
