"""Translation between access domain values and `domicile.v1` access messages (no grpc)."""

from __future__ import annotations

from collections.abc import Iterable

from domicile.access.model import (
    AccessOperation,
    AccessTotals,
    Anomaly,
    AnomalyKind,
    FindingKind,
    ObservedViolation,
    RunRecord,
)
from domicile.router._engine import access_patterns_wire, actor_datasets_wire
from domicile.router.convert import OPERATION_TO_PROTO, DecisionEncoder
from domicile.timeconv import to_timestamp
from domicile.v1 import access_pb2

OPERATION_TO_PROTO_ACCESS = {
    AccessOperation.READ: access_pb2.ACCESS_OPERATION_READ,
    AccessOperation.WRITE: access_pb2.ACCESS_OPERATION_WRITE,
    AccessOperation.CATALOG_WRITE: access_pb2.ACCESS_OPERATION_CATALOG_WRITE,
    AccessOperation.INTENT_STORE: access_pb2.ACCESS_OPERATION_INTENT_STORE,
    AccessOperation.INTENT_PROCESS: access_pb2.ACCESS_OPERATION_INTENT_PROCESS,
}
KIND_TO_PROTO = {
    FindingKind.POLICY_DENIED: access_pb2.OBSERVED_VIOLATION_KIND_POLICY_DENIED,
    FindingKind.UNKNOWN_RUN_REGION: access_pb2.OBSERVED_VIOLATION_KIND_UNKNOWN_RUN_REGION,
    FindingKind.UNKNOWN_OUTPUT_LOCATION: access_pb2.OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION,
    FindingKind.NOT_JUDGED: access_pb2.OBSERVED_VIOLATION_KIND_NOT_JUDGED,
}
ANOMALY_TO_PROTO = {
    AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR: access_pb2.ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR,
    AnomalyKind.NEW_REGION_FOR_ACTOR: access_pb2.ACCESS_ANOMALY_KIND_NEW_REGION_FOR_ACTOR,
    AnomalyKind.ACCESS_BURST: access_pb2.ACCESS_ANOMALY_KIND_ACCESS_BURST,
}


# Each operation value's number in the answers (the engine encodes them).
_OPERATION_NUMBERS = {op.value: number for op, number in OPERATION_TO_PROTO_ACCESS.items()}


def patterns_wire(totals: AccessTotals) -> bytes:
    """A dataset's GetAccessPatternsResponse, serialized: one ActorAccess per actor, by actor,
    with a summary per total and their sum, first and last seen. Encoded by the engine from the
    store's packed totals (ten thousand actors' messages built field by field in Python cost
    more than reading them)."""
    return access_patterns_wire(totals.rows, _OPERATION_NUMBERS)


def actor_access_to_proto(totals: AccessTotals, runs: Iterable[RunRecord]) -> access_pb2.ListActorAccessResponse:
    """One DatasetAccess per dataset, by dataset, summarised as `patterns_wire` summarises
    actors; then the runs, latest first."""
    response = access_pb2.ListActorAccessResponse.FromString(actor_datasets_wire(totals.rows, _OPERATION_NUMBERS))
    for run in runs:
        response.runs.append(
            access_pb2.AccessRun(
                job=run.job,
                run_id=run.run_id,
                producer=run.producer,
                principal=run.principal,
                run_region=run.run_region,
                event_time=to_timestamp(run.event_time),
                last_event_time=to_timestamp(run.last_event_time),
                record_time=to_timestamp(run.record_time),
                accesses=[
                    access_pb2.RunDatasetAccess(
                        dataset_id=a.dataset_id, operation=OPERATION_TO_PROTO_ACCESS[a.operation], region=a.region
                    )
                    for a in run.accesses
                ],
            )
        )
    return response


def violation_to_proto(v: ObservedViolation, encoder: DecisionEncoder) -> access_pb2.ObservedViolation:
    message = access_pb2.ObservedViolation(
        violation_id=v.violation_id,
        kind=KIND_TO_PROTO[v.kind],
        job=v.job,
        run_id=v.run_id,
        producer=v.producer,
        principal=v.principal,
        dataset_id=v.dataset_id,
        operation=OPERATION_TO_PROTO[v.operation],
        region=v.region,
        event_time=to_timestamp(v.event_time),
        observe_time=to_timestamp(v.observe_time),
        late=v.late,
        message=v.message,
    )
    if v.decision is not None:
        message.decision.CopyFrom(encoder.to_proto(v.decision))
    return message


def anomaly_to_proto(a: Anomaly) -> access_pb2.AccessAnomaly:
    return access_pb2.AccessAnomaly(
        anomaly_id=a.anomaly_id,
        kind=ANOMALY_TO_PROTO[a.kind],
        actor=a.actor,
        dataset_ids=list(a.dataset_ids),
        value=a.value,
        detect_time=to_timestamp(a.detect_time),
        baseline_since=to_timestamp(a.baseline_since),
        baseline=list(a.baseline),
        baseline_daily_mean=a.baseline_daily_mean,
        threshold=a.threshold,
        message=a.message,
    )
