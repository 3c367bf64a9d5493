"""Observed-flow drift: a run that already happened, judged against the policy in force.

When a run is ingested (OpenLineage HTTP or RecordLineage), after its lineage and dataset
facts are written, each of its accesses that was not recorded for the run before is decided
by the router as it sees the catalog at that moment (so what the event itself reported
counts): `process` for every input in the run's region, `store` for every output in each
location the event declares for it (or, when it declares none, the catalog's locations).
Each run is judged once: a later event of the same run (START then COMPLETE) only judges
accesses it adds. A DENY is an observed violation; a run that read data without a known
region is UNKNOWN_RUN_REGION, an output without any location UNKNOWN_OUTPUT_LOCATION, and a
stale router view NOT_JUDGED. A late event (older than `access.late_event_seconds`) is
judged the same way, against the policy and catalog now, and its findings are flagged late.
The decisions are logged (kind `observed_flow`, with the job and run id as context); the
answer waits for them to be durable only when one is a DENY (`Router.judge_observed`).
Ingestion never fails because of a finding: the run happened and is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from domicile.access.model import (
    AccessOperation,
    FindingKind,
    ObservedViolation,
    RunAccess,
    RunRecord,
)
from domicile.access.recorder import AccessRecorder, StoredRun
from domicile.catalog.model import qualified_job
from domicile.router.types import Decision, Operation, ReasonCode
from domicile.security.context import current_principal

if TYPE_CHECKING:
    from domicile.router.runtime import Router

# Decision-log context keys of observed-flow decisions.
CONTEXT_JOB = "observed_job"
CONTEXT_RUN = "observed_run_id"


@dataclass(frozen=True)
class ObservedRun:
    """What an ingested event says happened. `outputs` maps each output to the locations
    the event declares for it (empty: none declared). `reads` / `writes` say whether the
    event's inputs were read and its outputs written (a START event only announces outputs)."""

    job: str
    run_id: str
    run_region: str
    event_time: datetime | None
    inputs: Sequence[str] = ()
    outputs: Mapping[str, Iterable[str]] = field(default_factory=dict)
    producer: str = ""
    principal: str = ""
    writes: bool = True


@dataclass(frozen=True)
class DriftResult:
    violations: tuple[ObservedViolation, ...] = ()
    late: bool = False


async def observe_run(
    run: ObservedRun,
    *,
    router: Router,
    recorder: AccessRecorder,
    late_after: timedelta,
    now: datetime,
    on_violations: Callable[[Sequence[ObservedViolation]], Awaitable[None]] | None = None,
    stored: StoredRun | None = None,
) -> DriftResult:
    """Record `run`'s accesses and judge the new ones (see the module docstring). The actor is
    the job as `namespace/name` (a job without `/` is `default/<job>`, as policies name it).
    `stored`: the run's stored accesses as the caller read them (`AccessRecorder.stored_run`)."""
    job = qualified_job(run.job)
    if job != run.job:
        run = replace(run, job=job)
    event_time = run.event_time or now
    late = now - event_time > late_after
    known_regions = router.regions()
    accesses: list[RunAccess] = []
    findings: list[tuple[FindingKind, RunAccess, str]] = []
    run_region = run.run_region if run.run_region in known_regions else ""
    for dataset_id in dict.fromkeys(run.inputs):
        accesses.append(RunAccess(dataset_id, AccessOperation.READ, run_region))
    if run.writes:
        for dataset_id, declared in run.outputs.items():
            locations = [r for r in dict.fromkeys(declared) if r in known_regions] or list(
                router.locations_of(dataset_id)
            )
            accesses += [RunAccess(dataset_id, AccessOperation.WRITE, region) for region in locations]
            if not locations:
                accesses.append(RunAccess(dataset_id, AccessOperation.WRITE, ""))
    seen = await recorder.run_accesses(run.job, run.run_id, stored)
    new = [a for a in dict.fromkeys(accesses) if a not in seen]
    questions = []
    for access in new:
        if not access.region:
            kind = (
                FindingKind.UNKNOWN_RUN_REGION
                if access.operation is AccessOperation.READ
                else FindingKind.UNKNOWN_OUTPUT_LOCATION
            )
            message = (
                f"run {run.run_id} of {run.job} read {access.dataset_id} without a known run region"
                if kind is FindingKind.UNKNOWN_RUN_REGION
                else f"run {run.run_id} of {run.job} wrote {access.dataset_id}, whose location is unknown"
            )
            findings.append((kind, access, message))
        else:
            questions.append(access)
    denials = await router.judge_observed(
        [(a.dataset_id, _OPERATION[a.operation], a.region) for a in questions],
        {CONTEXT_JOB: run.job, CONTEXT_RUN: run.run_id},
        caller=current_principal(),
    )
    violations = [
        _finding(run, kind, access, event_time, now, late, None, message) for kind, access, message in findings
    ]
    for decision in denials:
        access = RunAccess(decision.dataset_id, _ACCESS[decision.operation], decision.region)
        stale = any(r.code is ReasonCode.STALE_CATALOG for r in decision.reasons)
        kind = FindingKind.NOT_JUDGED if stale else FindingKind.POLICY_DENIED
        violations.append(_finding(run, kind, access, event_time, now, late, decision, _message(run, decision)))
    recorder.record_run(
        RunRecord(
            run.job, run.run_id, run.producer, run.principal, run_region, event_time, event_time, now, tuple(accesses)
        ),
        new,
    )
    if violations:
        await recorder.record_violations(violations)
        if on_violations is not None:
            await on_violations(violations)
    return DriftResult(tuple(violations), late)


_OPERATION = {AccessOperation.READ: Operation.PROCESS, AccessOperation.WRITE: Operation.STORE}
_ACCESS = {operation: access for access, operation in _OPERATION.items()}


def _message(run: ObservedRun, decision: Decision) -> str:
    verb = "processed" if decision.operation is Operation.PROCESS else "stored"
    rules = ", ".join(dict.fromkeys(r.rule_id or r.code.value for r in decision.reasons))
    return (
        f"run {run.run_id} of {run.job} {verb} {decision.dataset_id} in {decision.region}, "
        f"which the policy does not allow ({rules})"
    )


def _finding(
    run: ObservedRun,
    kind: FindingKind,
    access: RunAccess,
    event_time: datetime,
    now: datetime,
    late: bool,
    decision: Decision | None,
    message: str,
) -> ObservedViolation:
    return ObservedViolation(
        violation_id=uuid.uuid4().hex,
        kind=kind,
        job=run.job,
        run_id=run.run_id,
        producer=run.producer,
        principal=run.principal,
        dataset_id=access.dataset_id,
        operation=_OPERATION[access.operation],
        region=access.region,
        event_time=event_time,
        observe_time=now,
        late=late,
        decision=decision,
        message=message,
    )
