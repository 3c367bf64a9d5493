"""Access client commands: `domicile access show|actor|anomalies` and what
`domicile violations --observed` prints. Tables by default, `--json` the response messages.
`--since` / `--until` take ISO 8601 times (`2026-11-30T10:00:00Z`, or a date: midnight UTC)."""

from __future__ import annotations

from datetime import datetime

import click
from google.protobuf.timestamp_pb2 import Timestamp

from domicile.cli.base import ISO_TIME, DomicileGroup
from domicile.cli.client import call, emit, table
from domicile.timeconv import to_timestamp
from domicile.v1 import access_pb2, access_pb2_grpc

_OPERATION_NAMES = {
    access_pb2.ACCESS_OPERATION_READ: "read",
    access_pb2.ACCESS_OPERATION_WRITE: "write",
    access_pb2.ACCESS_OPERATION_CATALOG_WRITE: "catalog-write",
    access_pb2.ACCESS_OPERATION_INTENT_STORE: "asked-store",
    access_pb2.ACCESS_OPERATION_INTENT_PROCESS: "asked-process",
}
_KIND_NAMES = {
    value: name.removeprefix("OBSERVED_VIOLATION_KIND_") for name, value in access_pb2.ObservedViolationKind.items()
}
_ANOMALY_NAMES = {
    value: name.removeprefix("ACCESS_ANOMALY_KIND_") for name, value in access_pb2.AccessAnomalyKind.items()
}
# Pages fetched per listing command (the server's largest page).
_PAGE = 1000


def _time(value: datetime | None) -> Timestamp | None:
    return None if value is None else to_timestamp(value)


def range_options(command):
    command = click.option("--until", type=ISO_TIME, help="Up to this time (exclusive; default now): read as of then.")(
        command
    )
    return click.option("--since", type=ISO_TIME, help="From this time (inclusive).")(command)


def _when(stamp) -> str:
    return stamp.ToJsonString() if stamp.seconds or stamp.nanos else "-"


def _summaries(accesses) -> str:
    return ", ".join(f"{_OPERATION_NAMES.get(a.operation, '?')} {a.region or '-'} x{a.count}" for a in accesses)


@click.group("access", cls=DomicileGroup)
def access() -> None:
    """Who touched which dataset, from where (AccessService)."""


@access.command("show")
@click.argument("dataset_id")
@range_options
@click.pass_context
def show(ctx, dataset_id, since, until) -> None:
    """Who touched DATASET_ID: per actor, operations, regions, counts, first and last seen."""
    request = access_pb2.GetAccessPatternsRequest(dataset_id=dataset_id, since=_time(since), until=_time(until))
    response = call(ctx, access_pb2_grpc.AccessServiceStub, "GetAccessPatterns", request)

    def render(r: access_pb2.GetAccessPatternsResponse) -> str:
        if not r.actors:
            return "no recorded access"
        rows = [
            (a.actor, a.total_count, _when(a.first_seen), _when(a.last_seen), _summaries(a.accesses)) for a in r.actors
        ]
        return table(("ACTOR", "COUNT", "FIRST SEEN", "LAST SEEN", "ACCESSES"), rows)

    emit(ctx, response, render)


@access.command("actor")
@click.argument("name")
@range_options
@click.option("--runs", "max_runs", type=click.IntRange(0, 1000), default=20, show_default=True, help="Runs to list.")
@click.pass_context
def actor(ctx, name, since, until, max_runs) -> None:
    """The datasets NAME (a job namespace/name, or a principal) touched, and its latest runs."""
    request = access_pb2.ListActorAccessRequest(actor=name, since=_time(since), until=_time(until), max_runs=max_runs)
    response = call(ctx, access_pb2_grpc.AccessServiceStub, "ListActorAccess", request)

    def render(r: access_pb2.ListActorAccessResponse) -> str:
        if not r.datasets:
            return "no recorded access"
        rows = [
            (d.dataset_id, d.total_count, _when(d.first_seen), _when(d.last_seen), _summaries(d.accesses))
            for d in r.datasets
        ]
        text = table(("DATASET", "COUNT", "FIRST SEEN", "LAST SEEN", "ACCESSES"), rows)
        if r.runs:
            runs = [
                (run.run_id, run.run_region or "-", _when(run.event_time), len(run.accesses), run.producer)
                for run in r.runs
            ]
            text += "\n\n" + table(("RUN", "REGION", "EVENT TIME", "DATASETS", "PRODUCER"), runs)
        return text

    emit(ctx, response, render)


@access.command("anomalies")
@range_options
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="At most this many.")
@click.pass_context
def anomalies(ctx, since, until, limit) -> None:
    """Actors that left their baseline (new classification, new region, access burst)."""
    response = access_pb2.ListAccessAnomaliesResponse()
    request = access_pb2.ListAccessAnomaliesRequest(since=_time(since), until=_time(until), page_size=min(limit, _PAGE))
    while True:
        page = call(ctx, access_pb2_grpc.AccessServiceStub, "ListAccessAnomalies", request)
        response.anomalies.extend(page.anomalies[: limit - len(response.anomalies)])
        if not page.next_page_token or len(response.anomalies) >= limit:
            response.next_page_token = page.next_page_token if len(response.anomalies) >= limit else ""
            break
        request.page_token = page.next_page_token

    def render(r: access_pb2.ListAccessAnomaliesResponse) -> str:
        if not r.anomalies:
            return "no anomalies"
        rows = [
            (
                _when(a.detect_time),
                _ANOMALY_NAMES.get(a.kind, "?"),
                a.actor,
                a.value,
                ", ".join(a.dataset_ids),
                a.message,
            )
            for a in r.anomalies
        ]
        return (
            table(("DETECTED", "KIND", "ACTOR", "VALUE", "DATASETS", "WHY"), rows)
            + f"\n{len(r.anomalies)} anomaly(ies)"
        )

    emit(ctx, response, render)


def observed_violations(ctx: click.Context, since: datetime | None, until: datetime | None, limit: int) -> int:
    """`domicile violations --observed`: flows that already happened where the policy forbids
    them; returns how many were listed."""
    response = access_pb2.ListObservedViolationsResponse()
    request = access_pb2.ListObservedViolationsRequest(
        since=_time(since), until=_time(until), page_size=min(limit, _PAGE)
    )
    while True:
        page = call(ctx, access_pb2_grpc.AccessServiceStub, "ListObservedViolations", request)
        response.violations.extend(page.violations[: limit - len(response.violations)])
        if not page.next_page_token or len(response.violations) >= limit:
            response.next_page_token = page.next_page_token if len(response.violations) >= limit else ""
            break
        request.page_token = page.next_page_token

    def render(r: access_pb2.ListObservedViolationsResponse) -> str:
        if not r.violations:
            return "no observed violations"
        rows = [
            (
                _when(v.event_time) + (" (late)" if v.late else ""),
                _KIND_NAMES.get(v.kind, "?"),
                v.job,
                v.run_id,
                f"{'process' if v.operation == 2 else 'store'} {v.dataset_id}",
                v.region or "-",
                "; ".join(x.rule_id or x.code for x in v.decision.reasons) or "-",
                v.decision.decision_id or "-",
            )
            for v in r.violations
        ]
        return (
            table(("EVENT TIME", "KIND", "JOB", "RUN", "FLOW", "REGION", "RULES", "DECISION"), rows)
            + f"\n{len(r.violations)} observed violation(s)"
        )

    emit(ctx, response, render)
    return len(response.violations)
