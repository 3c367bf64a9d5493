"""JSON bodies of access records, shared by every store backend (both keep observed
violations, anomalies and run accesses as these documents, with times in microseconds)."""

from __future__ import annotations

from typing import Any

import orjson

from domicile.access.model import (
    AccessOperation,
    Anomaly,
    AnomalyKind,
    FindingKind,
    ObservedViolation,
    RunAccess,
)
from domicile.catalog.model import from_micros, to_micros
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode


def encode(document: dict[str, Any]) -> str:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()


def decision_document(d: Decision) -> dict[str, Any]:
    return {
        "decision_id": d.decision_id,
        "outcome": d.outcome.value,
        "dataset_id": d.dataset_id,
        "operation": d.operation.value,
        "region": d.region,
        "allowed_regions": list(d.allowed_regions),
        "reasons": [
            {
                "code": r.code.value,
                "message": r.message,
                "rule_id": r.rule_id,
                "citation": r.citation,
                "lineage_path": list(r.lineage_path),
            }
            for r in d.reasons
        ],
        "policy_version": d.policy_version,
        "catalog_revision": d.catalog_revision,
        "decide_time": to_micros(d.decide_time),
        "caller": d.caller,
        "inherited_only": d.inherited_only,
    }


def decision_from_document(doc: dict[str, Any]) -> Decision:
    return Decision(
        decision_id=doc["decision_id"],
        outcome=Outcome(doc["outcome"]),
        dataset_id=doc["dataset_id"],
        operation=Operation(doc["operation"]),
        region=doc["region"],
        allowed_regions=tuple(doc["allowed_regions"]),
        reasons=tuple(
            Reason(ReasonCode(r["code"]), r["message"], r["rule_id"], r["citation"], tuple(r["lineage_path"]))
            for r in doc["reasons"]
        ),
        policy_version=doc["policy_version"],
        catalog_revision=doc["catalog_revision"],
        decide_time=from_micros(doc["decide_time"]),
        caller=doc["caller"],
        inherited_only=doc.get("inherited_only", False),
    )


def violation_body(v: ObservedViolation) -> str:
    return encode(
        {
            "violation_id": v.violation_id,
            "kind": v.kind.value,
            "job": v.job,
            "run_id": v.run_id,
            "producer": v.producer,
            "principal": v.principal,
            "dataset_id": v.dataset_id,
            "operation": v.operation.value,
            "region": v.region,
            "event_time": to_micros(v.event_time),
            "observe_time": to_micros(v.observe_time),
            "late": v.late,
            "decision": None if v.decision is None else decision_document(v.decision),
            "message": v.message,
        }
    )


def violation_from_body(body: str) -> ObservedViolation:
    doc = orjson.loads(body)
    return ObservedViolation(
        violation_id=doc["violation_id"],
        kind=FindingKind(doc["kind"]),
        job=doc["job"],
        run_id=doc["run_id"],
        producer=doc["producer"],
        principal=doc["principal"],
        dataset_id=doc["dataset_id"],
        operation=Operation(doc["operation"]),
        region=doc["region"],
        event_time=from_micros(doc["event_time"]),
        observe_time=from_micros(doc["observe_time"]),
        late=doc["late"],
        decision=None if doc["decision"] is None else decision_from_document(doc["decision"]),
        message=doc["message"],
    )


def anomaly_body(a: Anomaly) -> str:
    return encode(
        {
            "anomaly_id": a.anomaly_id,
            "kind": a.kind.value,
            "actor": a.actor,
            "dataset_ids": list(a.dataset_ids),
            "value": a.value,
            "detect_time": to_micros(a.detect_time),
            "baseline_since": to_micros(a.baseline_since),
            "baseline": list(a.baseline),
            "baseline_daily_mean": a.baseline_daily_mean,
            "threshold": a.threshold,
            "message": a.message,
        }
    )


def anomaly_from_body(body: str) -> Anomaly:
    doc = orjson.loads(body)
    return Anomaly(
        anomaly_id=doc["anomaly_id"],
        kind=AnomalyKind(doc["kind"]),
        actor=doc["actor"],
        dataset_ids=tuple(doc["dataset_ids"]),
        value=doc["value"],
        detect_time=from_micros(doc["detect_time"]),
        baseline_since=from_micros(doc["baseline_since"]),
        baseline=tuple(doc["baseline"]),
        baseline_daily_mean=float(doc["baseline_daily_mean"]),
        threshold=float(doc["threshold"]),
        message=doc["message"],
    )


def accesses_document(accesses: Any) -> list[list[str]]:
    """Run accesses as sorted [dataset, operation, region] triples."""
    return sorted([a.dataset_id, a.operation.value, a.region] for a in accesses)


def encode_accesses(accesses: Any) -> str:
    """`accesses_document` as JSON text."""
    return orjson.dumps(accesses_document(accesses)).decode()


def accesses_from_document(doc: list[list[str]]) -> tuple[RunAccess, ...]:
    return tuple(RunAccess(d, AccessOperation(op), region) for d, op, region in doc)
