"""Client commands for the read RPCs an auditor browses with (the console's data):
`audit decisions|rate|head|events|violations`, `policy history`, `dataset history|summary|residency`.

Human-readable tables by default, `--json` prints the result (docs/sdk.md has its fields). Times are ISO 8601
(`2026-11-30T10:00:00Z`).
"""

from __future__ import annotations

import click

from domicile.cli.base import ISO_TIME, command
from domicile.cli.client import call, emit, table, when
from domicile.client import (
    DatasetRevision,
    DatasetSummary,
    DecisionSummary,
    LoggedDecision,
    Outcome,
    Page,
    PolicyActivation,
    ResidencyState,
    ResidencyStates,
    SecurityEvent,
    ViolationPage,
)
from domicile.security.events import EVENT_TYPES


def _more(token: str) -> str:
    return f"\nmore: --page-token {token}" if token else ""


@command("decisions")
@click.option("--dataset", "dataset_id", help="Decisions on this dataset id.")
@click.option("--caller", help="Decisions asked for by this principal.")
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]), help="Only ALLOW or only DENY decisions.")
@click.option("--rule", "rule_id", help="Decisions with a reason naming this rule id.")
@click.option("--since", type=ISO_TIME, help="Decided at or after this ISO 8601 time.")
@click.option("--until", type=ISO_TIME, help="Decided before this ISO 8601 time.")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (1..1000).")
@click.option("--page-token", default="", help="From a previous answer, to go on with older decisions.")
@click.pass_context
def audit_decisions(ctx, dataset_id, caller, outcome, rule_id, since, until, limit, page_token) -> None:
    """Search the decision log, newest first (ListDecisions)."""
    page = call(
        ctx,
        lambda client: client.list_decisions(
            dataset_id=dataset_id or "",
            caller=caller or "",
            outcome=outcome,
            rule_id=rule_id or "",
            since=since,
            until=until,
            page_size=limit,
            page_token=page_token,
        ),
    )

    def render(r: Page[LoggedDecision]) -> str:
        rows = [
            (
                when(d.decision.decide_time),
                d.decision.outcome.name,
                d.decision.dataset_id,
                d.decision.region,
                ", ".join(sorted({x.rule_id or x.code.value for x in d.decision.reasons})) or "-",
                d.caller or "-",
                d.decision.decision_id,
            )
            for d in r.items
        ]
        note = "" if r.complete else "\n(stopped at the scan budget: more may match)"
        return (
            table(("TIME", "OUTCOME", "DATASET", "REGION", "RULES", "CALLER", "DECISION"), rows)
            + note
            + _more(r.next_page_token)
        )

    emit(ctx, page, render, key="decisions")


@command("rate")
@click.option("--since", type=ISO_TIME, help="Start, an ISO 8601 time (default: an hour before --until).")
@click.option("--until", type=ISO_TIME, help="End, an ISO 8601 time (default: now).")
@click.option("--bucket", "bucket_seconds", type=int, default=60, show_default=True, help="Seconds per bucket.")
@click.pass_context
def audit_rate(ctx, since, until, bucket_seconds) -> None:
    """ALLOW/DENY decisions per time bucket (SummarizeDecisions)."""
    summary = call(
        ctx, lambda client: client.summarize_decisions(since=since, until=until, bucket_seconds=bucket_seconds)
    )

    def render(r: DecisionSummary) -> str:
        rows = [(when(b.start), b.allow, b.deny) for b in r.buckets if b.allow or b.deny]
        note = "" if r.complete else "\n(the log was too large to count it all: the oldest buckets are undercounted)"
        return (table(("FROM", "ALLOW", "DENY"), rows) if rows else "no decisions in the range") + note

    emit(ctx, summary, render)


@command("head")
@click.pass_context
def audit_head(ctx) -> None:
    """The decision log's head: line count and hash of the last line (GetDecisionLogStatus)."""
    status = call(ctx, lambda client: client.get_decision_log_status())
    emit(
        ctx,
        status,
        lambda r: f"line {r.head_line}  hash {r.head_hash}  writer {'healthy' if r.chain_ok else 'FAILED'}",
    )


@command("events")
@click.option(
    "--event",
    type=click.Choice(sorted(EVENT_TYPES)),
    metavar="TYPE",
    help=f"Events of this type: {', '.join(sorted(EVENT_TYPES))}.",
)
@click.option("--principal", help="Events of this principal.")
@click.option("--since", type=ISO_TIME, help="At or after this ISO 8601 time.")
@click.option("--until", type=ISO_TIME, help="Before this ISO 8601 time.")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (1..10000).")
@click.option("--page-token", default="", help="From a previous answer, to go on with older events.")
@click.pass_context
def audit_events(ctx, event, principal, since, until, limit, page_token) -> None:
    """The security event log, newest first (ListSecurityEvents)."""
    page = call(
        ctx,
        lambda client: client.list_security_events(
            event=event or "",
            principal=principal or "",
            since=since,
            until=until,
            page_size=limit,
            page_token=page_token,
        ),
    )

    def render(r: Page[SecurityEvent]) -> str:
        rows = [
            (when(e.time), e.event, e.reason or "-", e.principal or "-", e.method or "-", e.peer or "-")
            for e in r.items
        ]
        return table(("TIME", "EVENT", "REASON", "PRINCIPAL", "METHOD", "PEER"), rows) + _more(r.next_page_token)

    emit(ctx, page, render, key="events")


@command("history")
@click.pass_context
def policy_history(ctx) -> None:
    """Every activation of a policy, newest first (ListPolicyVersions); `policy get --version V`
    prints one."""
    activations = call(ctx, lambda client: client.list_policy_versions())

    def render(found: tuple[PolicyActivation, ...]) -> str:
        rows = [(when(a.activated_time), a.version, a.content_hash[:12], "in force" if a.active else "") for a in found]
        return table(("ACTIVATED", "VERSION", "SHA256", ""), rows)

    emit(ctx, activations, render, key="activations")


@command("history")
@click.argument("dataset_id")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (1..1000).")
@click.option("--page-token", default="", help="From a previous answer, to go on with older revisions.")
@click.pass_context
def dataset_history(ctx, dataset_id, limit, page_token) -> None:
    """DATASET_ID's revisions, newest first: who changed it, when, and how (ListDatasetRevisions)."""
    page = call(ctx, lambda client: client.list_dataset_revisions(dataset_id, page_size=limit, page_token=page_token))

    def render(r: Page[DatasetRevision]) -> str:
        rows = [
            (
                x.revision,
                when(x.time),
                x.principal or "-",
                x.change.value,
                ", ".join(x.dataset.classifications) if x.dataset is not None else "-",
                ", ".join(x.dataset.locations) if x.dataset is not None else "-",
            )
            for x in r.items
        ]
        return table(("REVISION", "TIME", "BY", "CHANGE", "CLASSIFICATIONS", "LOCATIONS"), rows) + _more(
            r.next_page_token
        )

    emit(ctx, page, render, key="revisions")


@command("summary")
@click.pass_context
def dataset_summary(ctx) -> None:
    """Described datasets counted by effective classification, origin and region (SummarizeDatasets)."""
    summary = call(ctx, lambda client: client.summarize_datasets())

    def render(r: DatasetSummary) -> str:
        parts = [f"{r.datasets} datasets judged (described or derived; catalog revision {r.catalog_revision})"]
        parts.append(table(("CLASSIFICATION", "DATASETS"), list(r.classifications.items())))
        parts.append(table(("ORIGIN", "DATASETS"), list(r.origins.items())))
        parts.append(
            table(
                ("REGION", "DATASETS", "CLASSIFIED"),
                [(region, stored, classified) for region, (stored, classified) in r.regions.items()],
            )
        )
        return "\n\n".join(parts)

    emit(ctx, summary, render)


@command("violations")
@click.option("--region", default="", help="Only the violations in this region.")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (1..1000).")
@click.option("--page-token", default="", help="Continue from a previous page.")
@click.pass_context
def audit_violations(ctx, region, limit, page_token) -> None:
    """The copies stored where the policy forbids it, as the router keeps them (ListViolations):
    decides and logs nothing, unlike `domicile violations`."""
    page = call(ctx, lambda client: client.list_violations(region=region, page_size=limit, page_token=page_token))

    def render(r: ViolationPage) -> str:
        rows = [
            (v.dataset_id, v.region, "; ".join(x.rule_id or x.code.value for x in v.verdict.reasons))
            for v in r.violations
        ]
        listing = table(("DATASET", "REGION", "RULES"), rows) if rows else "no violations"
        summary = f"{r.total} violation(s) under policy {r.policy_version}, catalog revision {r.catalog_revision}"
        if r.datasets_to_judge:
            summary += f"\njudging in progress: {r.datasets_to_judge} dataset(s) not judged yet, run again for more"
        return f"{listing}\n{summary}{_more(r.next_page_token)}"

    emit(ctx, page, render)


@command("residency")
@click.argument("dataset_ids", nargs=-1, required=True)
@click.option("--as-of", type=ISO_TIME, help="As the catalog and the policy were at this ISO 8601 time.")
@click.pass_context
def dataset_residency(ctx, dataset_ids, as_of) -> None:
    """Where each dataset stands against the policy: allowed, VIOLATION, derived, undescribed or
    unknown (GetResidencyStates)."""
    states = call(ctx, lambda client: client.get_residency_states(dataset_ids, as_of=as_of))

    def render(r: ResidencyStates) -> str:
        rows = [
            (
                s.dataset_id,
                "VIOLATION" if s.state is ResidencyState.VIOLATION else s.state.value,
                ", ".join(s.locations) or "-",
                ", ".join(s.violating_regions) or "-",
            )
            for s in r.states
        ]
        return table(("DATASET", "STATE", "LOCATIONS", "VIOLATING"), rows) + f"\npolicy {r.policy_version}"

    emit(ctx, states, render)


AUDIT_COMMANDS = (audit_decisions, audit_rate, audit_head, audit_events, audit_violations)
POLICY_COMMANDS = (policy_history,)
DATASET_COMMANDS = (dataset_history, dataset_summary, dataset_residency)
