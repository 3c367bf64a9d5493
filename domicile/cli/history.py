"""Client commands for the read RPCs an auditor browses with (the console's data):
`audit decisions|rate|head|events`, `policy history`, `dataset history|summary`.

Human-readable tables by default, `--json` prints the response message. Times are ISO 8601
(`2026-11-30T10:00:00Z`).
"""

from __future__ import annotations

import click

from domicile.cli.base import command
from domicile.cli.client import call, emit, table
from domicile.timeconv import parse_time, to_timestamp
from domicile.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)

_OUTCOMES = {"allow": residency_pb2.OUTCOME_ALLOW, "deny": residency_pb2.OUTCOME_DENY}
_OUTCOME_NAMES = {value: name.upper() for name, value in _OUTCOMES.items()}
_CHANGES = {
    catalog_pb2.REVISION_CHANGE_CREATED: "created",
    catalog_pb2.REVISION_CHANGE_UPDATED: "updated",
    catalog_pb2.REVISION_CHANGE_DELETED: "deleted",
}


def _times(request, **fields: str | None) -> None:
    """Set Timestamp fields of `request` from ISO 8601 option values."""
    for name, value in fields.items():
        if value:
            try:
                getattr(request, name).CopyFrom(to_timestamp(parse_time(value)))
            except ValueError:
                raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as 2026-11-30T10:00:00Z") from None


def _when(ts) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") if ts.seconds or ts.nanos else "-"


def _more(token: str) -> str:
    return f"\nmore: --page-token {token}" if token else ""


@command("decisions")
@click.option("--dataset", "dataset_id", help="Decisions on this dataset id.")
@click.option("--caller", help="Decisions asked for by this principal.")
@click.option("--outcome", type=click.Choice(sorted(_OUTCOMES)), help="Only ALLOW or only DENY decisions.")
@click.option("--rule", "rule_id", help="Decisions with a reason naming this rule id.")
@click.option("--since", help="Decided at or after this time.")
@click.option("--until", help="Decided before this time.")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (1..1000).")
@click.option("--page-token", default="", help="From a previous answer, to go on with older decisions.")
@click.pass_context
def audit_decisions(ctx, dataset_id, caller, outcome, rule_id, since, until, limit, page_token) -> None:
    """Search the decision log, newest first (ListDecisions)."""
    request = residency_pb2.ListDecisionsRequest(
        dataset_id=dataset_id or "",
        caller=caller or "",
        outcome=_OUTCOMES[outcome] if outcome else residency_pb2.OUTCOME_UNSPECIFIED,
        rule_id=rule_id or "",
        page_size=limit,
        page_token=page_token,
    )
    _times(request, start_time=since, end_time=until)
    response = call(ctx, residency_pb2_grpc.ResidencyServiceStub, "ListDecisions", request)

    def render(r: residency_pb2.ListDecisionsResponse) -> str:
        rows = [
            (
                _when(d.decision.decide_time),
                _OUTCOME_NAMES.get(d.decision.outcome, "?"),
                d.decision.dataset_id,
                d.decision.region,
                ", ".join(sorted({x.rule_id or x.code for x in d.decision.reasons})) or "-",
                d.caller or "-",
                d.decision.decision_id,
            )
            for d in r.decisions
        ]
        note = "" if r.complete else "\n(stopped at the scan budget: more may match)"
        return (
            table(("TIME", "OUTCOME", "DATASET", "REGION", "RULES", "CALLER", "DECISION"), rows)
            + note
            + _more(r.next_page_token)
        )

    emit(ctx, response, render)


@command("rate")
@click.option("--since", help="Start (default: an hour before --until).")
@click.option("--until", help="End (default: now).")
@click.option("--bucket", "bucket_seconds", type=int, default=60, show_default=True, help="Seconds per bucket.")
@click.pass_context
def audit_rate(ctx, since, until, bucket_seconds) -> None:
    """ALLOW/DENY decisions per time bucket (SummarizeDecisions)."""
    request = residency_pb2.SummarizeDecisionsRequest(bucket_seconds=bucket_seconds)
    _times(request, start_time=since, end_time=until)
    response = call(ctx, residency_pb2_grpc.ResidencyServiceStub, "SummarizeDecisions", request)

    def render(r: residency_pb2.SummarizeDecisionsResponse) -> str:
        rows = [(_when(b.start_time), b.allow, b.deny) for b in r.buckets if b.allow or b.deny]
        note = "" if r.complete else "\n(the log was too large to count it all: the oldest buckets are undercounted)"
        return (table(("FROM", "ALLOW", "DENY"), rows) if rows else "no decisions in the range") + note

    emit(ctx, response, render)


@command("head")
@click.pass_context
def audit_head(ctx) -> None:
    """The decision log's head: line count and hash of the last line (GetDecisionLogStatus)."""
    response = call(
        ctx,
        residency_pb2_grpc.ResidencyServiceStub,
        "GetDecisionLogStatus",
        residency_pb2.GetDecisionLogStatusRequest(),
    )
    emit(
        ctx,
        response,
        lambda r: f"line {r.head_line}  hash {r.head_hash}  writer {'healthy' if r.chain_ok else 'FAILED'}",
    )


@command("events")
@click.option("--event", help="auth_failure, authz_denied, rate_limited, policy_change, cert_reload, keys_reload.")
@click.option("--principal", help="Events of this principal.")
@click.option("--since", help="At or after this time.")
@click.option("--until", help="Before this time.")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (1..10000).")
@click.option("--page-token", default="", help="From a previous answer, to go on with older events.")
@click.pass_context
def audit_events(ctx, event, principal, since, until, limit, page_token) -> None:
    """The security event log, newest first (ListSecurityEvents)."""
    request = audit_pb2.ListSecurityEventsRequest(
        event=event or "", principal=principal or "", page_size=limit, page_token=page_token
    )
    _times(request, start_time=since, end_time=until)
    response = call(ctx, audit_pb2_grpc.AuditServiceStub, "ListSecurityEvents", request)

    def render(r: audit_pb2.ListSecurityEventsResponse) -> str:
        rows = [
            (_when(e.time), e.event, e.reason or "-", e.principal or "-", e.method or "-", e.peer or "-")
            for e in r.events
        ]
        return table(("TIME", "EVENT", "REASON", "PRINCIPAL", "METHOD", "PEER"), rows) + _more(r.next_page_token)

    emit(ctx, response, render)


@command("history")
@click.pass_context
def policy_history(ctx) -> None:
    """Every activation of a policy, newest first (ListPolicyVersions); `policy get --version V`
    prints one."""
    response = call(
        ctx, policy_pb2_grpc.PolicyServiceStub, "ListPolicyVersions", policy_pb2.ListPolicyVersionsRequest()
    )

    def render(r: policy_pb2.ListPolicyVersionsResponse) -> str:
        rows = [
            (_when(a.activated_time), a.version, a.content_hash[:12], "in force" if a.active else "")
            for a in r.activations
        ]
        return table(("ACTIVATED", "VERSION", "SHA256", ""), rows)

    emit(ctx, response, render)


@command("history")
@click.argument("dataset_id")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (1..1000).")
@click.option("--page-token", default="", help="From a previous answer, to go on with older revisions.")
@click.pass_context
def dataset_history(ctx, dataset_id, limit, page_token) -> None:
    """DATASET_ID's revisions, newest first: who changed it, when, and how (ListDatasetRevisions)."""
    response = call(
        ctx,
        catalog_pb2_grpc.CatalogServiceStub,
        "ListDatasetRevisions",
        catalog_pb2.ListDatasetRevisionsRequest(id=dataset_id, page_size=limit, page_token=page_token),
    )

    def render(r: catalog_pb2.ListDatasetRevisionsResponse) -> str:
        rows = [
            (
                x.revision,
                _when(x.time),
                x.principal or "-",
                _CHANGES.get(x.change, "?"),
                ", ".join(x.dataset.classifications) if x.HasField("dataset") else "-",
                ", ".join(x.dataset.locations) if x.HasField("dataset") else "-",
            )
            for x in r.revisions
        ]
        return table(("REVISION", "TIME", "BY", "CHANGE", "CLASSIFICATIONS", "LOCATIONS"), rows) + _more(
            r.next_page_token
        )

    emit(ctx, response, render)


@command("summary")
@click.pass_context
def dataset_summary(ctx) -> None:
    """Described datasets counted by effective classification, origin and region (SummarizeDatasets)."""
    response = call(
        ctx, residency_pb2_grpc.ResidencyServiceStub, "SummarizeDatasets", residency_pb2.SummarizeDatasetsRequest()
    )

    def render(r: residency_pb2.SummarizeDatasetsResponse) -> str:
        parts = [f"{r.datasets} datasets judged (described or derived; catalog revision {r.catalog_revision})"]
        parts.append(table(("CLASSIFICATION", "DATASETS"), [(c.value, c.datasets) for c in r.classifications]))
        parts.append(table(("ORIGIN", "DATASETS"), [(c.value, c.datasets) for c in r.origins]))
        parts.append(
            table(("REGION", "DATASETS", "CLASSIFIED"), [(x.region, x.datasets, x.classified) for x in r.regions])
        )
        return "\n\n".join(parts)

    emit(ctx, response, render)


AUDIT_COMMANDS = (audit_decisions, audit_rate, audit_head, audit_events)
POLICY_COMMANDS = (policy_history,)
DATASET_COMMANDS = (dataset_history, dataset_summary)
