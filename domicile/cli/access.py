"""Access client commands: `domicile access show|actor|anomalies` and what
`domicile violations --observed` prints. Tables by default, `--json` the response messages.
`--since` / `--until` take ISO 8601 times (`2026-11-30T10:00:00Z`, or a date: midnight UTC)."""

from __future__ import annotations

from datetime import datetime
from functools import partial

import click

from domicile.cli.base import ISO_TIME, DomicileGroup
from domicile.cli.client import call, emit, table, when
from domicile.client import AccessOperation, AccessSummary, ActorAccess, ActorActivity, Anomaly, ObservedViolation, Page

_OPERATION_NAMES = {
    AccessOperation.READ: "read",
    AccessOperation.WRITE: "write",
    AccessOperation.CATALOG_WRITE: "catalog-write",
    AccessOperation.INTENT_STORE: "asked-store",
    AccessOperation.INTENT_PROCESS: "asked-process",
}
# Pages fetched per listing command (the server's largest page).
_PAGE = 1000


def range_options(command):
    command = click.option("--until", type=ISO_TIME, help="Up to this time (exclusive; default now): read as of then.")(
        command
    )
    return click.option("--since", type=ISO_TIME, help="From this time (inclusive).")(command)


def _summaries(accesses: tuple[AccessSummary, ...]) -> str:
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
    actors = call(ctx, lambda client: client.get_access_patterns(dataset_id, since=since, until=until))

    def render(found: tuple[ActorAccess, ...]) -> str:
        if not found:
            return "no recorded access"
        rows = [(a.actor, a.total_count, when(a.first_seen), when(a.last_seen), _summaries(a.accesses)) for a in found]
        return table(("ACTOR", "COUNT", "FIRST SEEN", "LAST SEEN", "ACCESSES"), rows)

    emit(ctx, actors, render, key="actors")


@access.command("actor")
@click.argument("name")
@range_options
@click.option("--runs", "max_runs", type=click.IntRange(0, 1000), default=20, show_default=True, help="Runs to list.")
@click.pass_context
def actor(ctx, name, since, until, max_runs) -> None:
    """The datasets NAME (a job namespace/name, or a principal) touched, and its latest runs."""
    activity = call(ctx, lambda client: client.list_actor_access(name, since=since, until=until, max_runs=max_runs))

    def render(r: ActorActivity) -> str:
        if not r.datasets:
            return "no recorded access"
        rows = [
            (d.dataset_id, d.total_count, when(d.first_seen), when(d.last_seen), _summaries(d.accesses))
            for d in r.datasets
        ]
        text = table(("DATASET", "COUNT", "FIRST SEEN", "LAST SEEN", "ACCESSES"), rows)
        if r.runs:
            runs = [
                (run.run_id, run.run_region or "-", when(run.event_time), len(run.accesses), run.producer)
                for run in r.runs
            ]
            text += "\n\n" + table(("RUN", "REGION", "EVENT TIME", "DATASETS", "PRODUCER"), runs)
        return text

    emit(ctx, activity, render)


@access.command("anomalies")
@range_options
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="At most this many.")
@click.pass_context
def anomalies(ctx, since, until, limit) -> None:
    """Actors that left their baseline (new classification, new region, access burst)."""
    found = _collect(
        ctx,
        lambda client, token: client.list_access_anomalies(
            since=since, until=until, page_size=min(limit, _PAGE), page_token=token
        ),
        limit,
    )

    def render(r: Page[Anomaly]) -> str:
        if not r.items:
            return "no anomalies"
        rows = [
            (when(a.detect_time), a.kind.value, a.actor, a.value, ", ".join(a.dataset_ids), a.message) for a in r.items
        ]
        return table(("DETECTED", "KIND", "ACTOR", "VALUE", "DATASETS", "WHY"), rows) + f"\n{len(r.items)} anomaly(ies)"

    emit(ctx, found, render, key="anomalies")


def _collect(ctx: click.Context, fetch, limit: int) -> Page:
    """Up to `limit` items of a listing, page after page; the token goes on from the last."""
    items: list = []
    token = ""
    while True:
        page = call(ctx, partial(fetch, token=token))
        items.extend(page.items[: limit - len(items)])
        if not page.next_page_token or len(items) >= limit:
            return Page(tuple(items), page.next_page_token if len(items) >= limit else "")
        token = page.next_page_token


def observed_violations(ctx: click.Context, since: datetime | None, until: datetime | None, limit: int) -> int:
    """`domicile violations --observed`: flows that already happened where the policy forbids
    them; returns how many were listed."""
    found = _collect(
        ctx,
        lambda client, token: client.list_observed_violations(
            since=since, until=until, page_size=min(limit, _PAGE), page_token=token
        ),
        limit,
    )

    def render(r: Page[ObservedViolation]) -> str:
        if not r.items:
            return "no observed violations"
        rows = [
            (
                when(v.event_time) + (" (late)" if v.late else ""),
                v.kind.value,
                v.job,
                v.run_id,
                f"{v.operation.value} {v.dataset_id}",
                v.region or "-",
                "; ".join(x.rule_id or x.code.value for x in v.decision.reasons) if v.decision else "-",
                v.decision.decision_id if v.decision else "-",
            )
            for v in r.items
        ]
        return (
            table(("EVENT TIME", "KIND", "JOB", "RUN", "FLOW", "REGION", "RULES", "DECISION"), rows)
            + f"\n{len(r.items)} observed violation(s)"
        )

    emit(ctx, found, render, key="violations")
    return len(found.items)
