"""Residency client commands.

Top-level commands: `decide`, `batch-decide`, `route`, `check-job`, `explain`, `violations`
(`--observed`: see `domicile.cli.access`).
Commands for existing groups: `policy_set`, `policy_get`, `policy_impact`,
`policy_proposals`, `policy_approve`, `policy_reject` (attach to the `policy` group as `set`
-- also `propose` --, `get`, `impact`, `proposals`, `approve`, `reject`) and `audit_get`,
`audit_replay` (attach to the `audit` group as `get`, `replay`); `POLICY_COMMANDS` /
`AUDIT_COMMANDS` list them.

Human-readable output by default, `--json` prints the result (docs/sdk.md has its fields). `decide`,
`batch-decide`, `route` and `check-job` exit 3 when the answer is negative (a DENY, no allowed
candidate, job not allowed) and 4 when a dataset they ask about is unknown (the message names
the closest known ids), `violations` 3 when it finds any, so scripts and pipelines can branch
on the exit status; RPC errors exit 1 (2 for INVALID_ARGUMENT).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from domicile.cli.base import EXIT_NEGATIVE, EXIT_UNKNOWN_DATASET, ISO_TIME, command, json_output
from domicile.cli.client import call, emit, emit_data, table, unknown_dataset_hints
from domicile.cli.policy import fail_policy
from domicile.client import (
    Decision,
    DecisionFields,
    DecisionProof,
    Explanation,
    JobCheck,
    Operation,
    Outcome,
    PolicyChange,
    PolicyProposal,
    PolicySetResult,
    Question,
    ReasonCode,
    ReplayResult,
    RouteResult,
    Violation,
    jsonable,
)

_OPERATIONS = {operation.value: operation for operation in Operation}
# Long allowed-region lists are cut in human output (--json has them all).
_SHOWN_REGIONS = 12

_operation_option = click.option(
    "--op",
    "--operation",
    "operation",
    type=click.Choice(sorted(_OPERATIONS)),
    required=True,
    help="store: keep a copy in the region; process: compute on it there.",
)


def _regions_text(regions) -> str:
    regions = list(regions)
    if not regions:
        return "none"
    shown = ", ".join(regions[:_SHOWN_REGIONS])
    more = len(regions) - _SHOWN_REGIONS
    return f"{shown}, ... ({more} more, {len(regions)} in all)" if more > 0 else shown


def render_decision(d: DecisionFields, indent: str = "") -> str:
    """A decision as a few lines: outcome and question, reasons with lineage paths, audit ids."""
    lines = [f"{indent}{d.outcome.name}  {d.operation.value} {d.dataset_id} in {d.region or '-'}"]
    if d.inherited_only:
        lines.append(f"{indent}  (not registered: judged by what it inherits along lineage)")
    for reason in d.reasons:
        rule = f" {reason.rule_id}" if reason.rule_id else ""
        lines.append(f"{indent}  {reason.code.value}{rule}: {reason.message}")
        if len(reason.lineage_path) > 1:
            lines.append(f"{indent}    lineage: {' -> '.join(reason.lineage_path)}")
    lines.append(f"{indent}  allowed regions: {_regions_text(d.allowed_regions)}")
    when = d.decide_time.isoformat().replace("+00:00", "Z")
    lines.append(
        f"{indent}  decision {d.decision_id}  policy {d.policy_version}  catalog revision {d.catalog_revision}  at {when}"
    )
    return "\n".join(lines)


def _exit_with(ctx: click.Context, decisions: Iterable[DecisionFields], negative: bool) -> None:
    """Exit 4 when a decision is about an unknown dataset (after naming the closest known
    ids), else 3 when the answer is `negative`, else carry on (exit 0)."""
    unknown = [d.dataset_id for d in decisions if any(r.code is ReasonCode.UNKNOWN_DATASET for r in d.reasons)]
    if unknown:
        if not json_output(ctx):
            for hint in unknown_dataset_hints(ctx, unknown):
                click.echo(hint, err=True)
        ctx.exit(EXIT_UNKNOWN_DATASET)
    if negative:
        ctx.exit(EXIT_NEGATIVE)


@command("decide")
@click.argument("dataset_id")
@_operation_option
@click.option("-r", "--region", required=True, help="Region id, e.g. aws:eu-central-1.")
@click.pass_context
def decide(ctx, dataset_id, operation, region) -> None:
    """May DATASET_ID be stored/processed in REGION? Exit 0 on ALLOW, 3 on DENY, 4 when the
    dataset is not in the catalog."""
    decision = call(ctx, lambda client: client.decide(dataset_id, operation, region))
    emit(ctx, decision, render_decision, key="decision")
    _exit_with(ctx, [decision], decision.outcome is not Outcome.ALLOW)


def _read_questions(source) -> list[Question]:
    """`batch-decide`'s input: one `DATASET_ID OPERATION REGION` per line, split on the last two
    runs of whitespace (an id may contain spaces); blank lines and lines starting with # skipped.
    More than the server takes in one call is refused before the call."""
    from domicile.router.service import MAX_BATCH  # (here: only this command needs the router's modules)

    requests = []
    for number, line in enumerate(source, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.rsplit(None, 2)
        if len(fields) != 3:
            raise click.BadParameter(
                f"line {number}: expected DATASET_ID OPERATION REGION, got {text!r}", param_hint="QUESTIONS"
            )
        dataset_id, operation, region = fields
        if operation not in _OPERATIONS:
            raise click.BadParameter(
                f"line {number}: operation {operation!r} is not one of {', '.join(sorted(_OPERATIONS))}",
                param_hint="QUESTIONS",
            )
        requests.append(Question(dataset_id, _OPERATIONS[operation], region))
    if not requests:
        raise click.BadParameter("no questions (one DATASET_ID OPERATION REGION per line)", param_hint="QUESTIONS")
    if len(requests) > MAX_BATCH:
        raise click.BadParameter(f"{len(requests)} questions; at most {MAX_BATCH:,} per call", param_hint="QUESTIONS")
    return requests


@command("batch-decide")
@click.argument("questions", type=click.File("r", encoding="utf-8"), default="-")
@click.pass_context
def batch_decide(ctx, questions) -> None:
    """Decide many questions in one call (BatchDecide). QUESTIONS is a file (default: - for
    standard input) with one `DATASET_ID OPERATION REGION` per line, e.g.
    `s3://bank-eu/customers store aws:us-east-1` (# starts a comment line); at most 10,000.
    Answers in the same order. Exit 0 when every answer is ALLOW, 3 when any is DENY, 4 when
    a dataset is not in the catalog."""
    asked = _read_questions(questions)
    decisions = call(ctx, lambda client: client.batch_decide(asked))

    def render(answers: tuple[Decision, ...]) -> str:
        denied = sum(1 for d in answers if d.outcome is not Outcome.ALLOW)
        lines = [render_decision(d) for d in answers]
        lines.append(f"{len(answers)} decision(s): {len(answers) - denied} ALLOW, {denied} DENY")
        return "\n".join(lines)

    emit(ctx, decisions, render, key="decisions")
    _exit_with(ctx, decisions, any(d.outcome is not Outcome.ALLOW for d in decisions))


@command("route")
@click.argument("dataset_id")
@click.argument("candidates", nargs=-1, required=True)
@_operation_option
@click.pass_context
def route(ctx, dataset_id, candidates, operation) -> None:
    """The first of CANDIDATES (region ids, most preferred first) where the operation on
    DATASET_ID is allowed. Exit 3 when none is, 4 when the dataset is not in the catalog."""
    result = call(ctx, lambda client: client.route(dataset_id, operation, candidates))

    def render(r: RouteResult) -> str:
        head = f"route: {r.region}" if r.region else "route: no candidate is allowed"
        return f"{head}\n{render_decision(r.decision, '  ')}"

    emit(ctx, result, render)
    _exit_with(ctx, [result.decision], not result.region)


@command("check-job")
@click.option("-i", "--input", "inputs", multiple=True, help="Dataset the job reads (repeatable).")
@click.option("-o", "--output", "outputs", multiple=True, help="Dataset the job writes (repeatable).")
@click.option("--run-region", default="", help="Where the job runs (needed with inputs).")
@click.option("--output-region", default="", help="Where the outputs are written (needed with outputs).")
@click.option("--transform", default="", help="Transform kind the job claims, e.g. anonymize.")
@click.option(
    "--job",
    default="",
    help="Job id namespace/name; the claimed transform counts only when the policy grants it to this job.",
)
@click.pass_context
def check_job(ctx, inputs, outputs, run_region, output_region, transform, job) -> None:
    """Pre-flight residency check of a pipeline job. Exit 0 when allowed, 3 when not, 4 when
    a dataset is not in the catalog."""
    check = call(
        ctx,
        lambda client: client.check_job(
            inputs=inputs,
            outputs=outputs,
            run_region=run_region,
            output_region=output_region,
            transform=transform,
            job=job,
        ),
    )

    def render(r: JobCheck) -> str:
        lines = ["job allowed" if r.allowed else "job NOT allowed"]
        lines.extend(render_decision(d, "  ") for d in r.decisions)
        return "\n".join(lines)

    emit(ctx, check, render)
    _exit_with(ctx, check.decisions, not check.allowed)


@command("explain")
@click.argument("dataset_id")
@click.option("--as-of", type=ISO_TIME, help="As it was at this ISO 8601 time, under the policy in force then.")
@click.pass_context
def explain(ctx, dataset_id, as_of) -> None:
    """DATASET_ID's effective classifications and origins, each with the lineage path that
    brought it, and where the active policy lets it be stored and processed. Exit 4 when
    the dataset is not in the catalog."""
    explanation = call(ctx, lambda client: client.explain(dataset_id, as_of=as_of), dataset_id=dataset_id)

    def attribute_lines(title: str, attributes) -> list[str]:
        lines = [f"{title}:"]
        if not attributes:
            lines.append("  (none)")
        for value, path in attributes.items():
            source = "own" if len(path) <= 1 else "via " + " -> ".join(path)
            lines.append(f"  {value:<24} {source}")
        return lines

    def render(r: Explanation) -> str:
        lines = [f"dataset {dataset_id}  (policy {r.policy_version}, catalog revision {r.catalog_revision})"]
        if r.attributes.inherited_only:
            lines.append("not registered: known only from lineage, judged by what it inherits")
        lines += attribute_lines("classifications", r.attributes.classifications)
        lines += attribute_lines("origins", r.attributes.origins)
        for u in r.unapproved:
            lines.append(
                f"not honoured: job {u.job} claimed {u.transform} on {u.input} -> {u.output}, which the policy "
                f"does not grant it ({', '.join(u.classifications)} passed through)"
            )
        lines.append(f"store allowed in:   {_regions_text(r.store_regions)}")
        lines.append(f"process allowed in: {_regions_text(r.process_regions)}")
        return "\n".join(lines)

    emit(ctx, explanation, render)


@command("violations")
@click.option("--observed", is_flag=True, help="Flows runs already made where the policy forbids them (drift).")
@click.option("--since", type=ISO_TIME, help="With --observed: from this event time (ISO 8601).")
@click.option("--until", type=ISO_TIME, help="With --observed: before this event time (ISO 8601).")
@click.option(
    "--limit", type=click.IntRange(1), default=1000, show_default=True, help="With --observed: at most this many."
)
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are violations.")
@click.pass_context
def violations(ctx, observed: bool, since, until, limit: int, exit_zero: bool) -> None:
    """Every dataset stored in a region where the policy does not allow storing it; with
    --observed, every run that processed or stored data where the policy forbids it. Exit 3
    when there is any (as linters do; --exit-zero: 0)."""
    if observed:
        from domicile.cli.access import observed_violations

        if observed_violations(ctx, since, until, limit) and not exit_zero:
            ctx.exit(EXIT_NEGATIVE)
        return
    if since or until:
        raise click.UsageError("--since and --until need --observed")
    found = call(ctx, lambda client: client.scan_violations())

    def render(violations: tuple[Violation, ...]) -> str:
        if not violations:
            return "no violations"
        rows = [
            (
                v.dataset_id,
                v.region,
                "; ".join(x.rule_id or x.code.value for x in v.decision.reasons),
                v.decision.decision_id,
            )
            for v in violations
        ]
        return table(("DATASET", "REGION", "RULES", "DECISION"), rows) + f"\n{len(violations)} violation(s)"

    emit(ctx, found, render, key="violations")
    if found and not exit_zero:
        ctx.exit(EXIT_NEGATIVE)


# ---- policy group --------------------------------------------------------------------------


def _read_policy(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}") from None


@command("set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate on the server without activating or proposing.")
@click.option(
    "--break-glass",
    "break_glass_reason",
    default="",
    metavar="REASON",
    help="Activate at once although the server requires approval (an emergency; logged and flagged).",
)
@click.pass_context
def policy_set(ctx, file, dry_run, break_glass_reason) -> None:
    """Make the policy in FILE the server's active policy -- or, when the server requires
    approval of policy changes, propose it for another policy admin to approve (`policy
    approve`). --dry-run only validates. Exit 1 with every error (FILE:LINE:COL) when the
    server rejects it."""
    text = _read_policy(file)
    result = call(ctx, lambda client: client.set_policy(text, dry_run=dry_run, break_glass_reason=break_glass_reason))
    if result.errors:
        fail_policy(str(file), result.errors, "rejected, the active policy is unchanged")

    def render(r: PolicySetResult) -> str:
        if r.applied:
            return f"policy {r.version} is active" + (" (break glass)" if break_glass_reason else "")
        if r.proposal is not None:
            return (
                f"policy {r.version} proposed as {r.proposal.proposal_id}: it becomes active when another "
                f"policy admin approves it (domicile policy approve {r.proposal.proposal_id})\n"
                + _changes_text(r.proposal.changes, r.version)
            )
        return f"policy {r.version} is valid (dry run, not applied)"

    emit(ctx, result, render)


@command("proposals")
@click.option("--all", "include_closed", is_flag=True, help="Also the approved and rejected proposals.")
@click.pass_context
def policy_proposals(ctx, include_closed) -> None:
    """Policy proposals waiting for approval (with --all, the decided ones too)."""
    proposals = call(ctx, lambda client: client.list_policy_proposals(include_closed=include_closed))

    def render(found: tuple[PolicyProposal, ...]) -> str:
        if not found:
            return "no pending policy proposals" if not include_closed else "no policy proposals"
        rows = [
            (p.proposal_id, p.version, p.state.value, p.proposed_by or "-", p.decided_by or "-", len(p.changes))
            for p in found
        ]
        return table(("PROPOSAL", "VERSION", "STATE", "PROPOSED BY", "DECIDED BY", "CHANGES"), rows)

    emit(ctx, proposals, render, key="proposals")


@command("approve")
@click.argument("proposal_id")
@click.option("--comment", default="", help="Why it is approved (kept with the proposal).")
@click.pass_context
def policy_approve(ctx, proposal_id, comment) -> None:
    """Activate the proposed policy PROPOSAL_ID. The approver must be another principal than
    the one who proposed it. Exit 1 when it could not be activated (it stays pending)."""
    result = call(ctx, lambda client: client.approve_policy(proposal_id, comment=comment))
    if result.errors:
        fail_policy(proposal_id, result.errors, "not activated, the proposal stays pending")
    emit(ctx, result, lambda r: f"proposal {proposal_id} approved: policy {r.proposal.version} is active")


@command("reject")
@click.argument("proposal_id")
@click.option("--reason", required=True, help="Why it is rejected (kept with the proposal).")
@click.pass_context
def policy_reject(ctx, proposal_id, reason) -> None:
    """Close the proposal PROPOSAL_ID without activating it."""
    result = call(ctx, lambda client: client.reject_policy(proposal_id, reason=reason))
    emit(ctx, result, lambda r: f"proposal {proposal_id} rejected: policy {r.proposal.version} was not activated")


@command("get")
@click.option("--version", default="", help="A version from the policy history (default: the active policy).")
@click.option(
    "-O",
    "--output-file",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the policy YAML to this file instead of standard output.",
)
@click.pass_context
def policy_get(ctx, version, output) -> None:
    """The server's active policy (YAML as set), or a past version, with its version and content hash."""
    policy = call(ctx, lambda client: client.get_policy(version))
    if output is not None:
        output.write_text(policy.yaml, "utf-8")

    def render(r) -> str:
        head = f"# version {r.version}, sha256 {r.content_hash}"
        return head if output is not None else f"{head}\n{r.yaml.rstrip()}"

    emit(ctx, policy, render)


@command("impact")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def policy_impact(ctx, file) -> None:
    """What activating the policy in FILE would change: per dataset and operation, regions
    added and removed, and stored copies that would become violations."""
    text = _read_policy(file)
    impact = call(ctx, lambda client: client.policy_impact(text))
    if impact.errors:
        fail_policy(str(file), impact.errors, "not a valid policy")

    emit(ctx, impact, lambda r: _changes_text(r.changes, r.version))


def _changes_text(changes: tuple[PolicyChange, ...], version: str) -> str:
    """A policy's impact as a table and a summary line."""
    if not changes:
        return f"policy {version}: no change for any dataset"
    rows = [
        (
            c.dataset_id,
            c.operation.value,
            _regions_text(c.added_regions) if c.added_regions else "-",
            _regions_text(c.removed_regions) if c.removed_regions else "-",
            ", ".join(c.new_violations) or "-",
        )
        for c in changes
    ]
    new = sum(len(c.new_violations) for c in changes)
    return (
        table(("DATASET", "OP", "ADDED", "REMOVED", "NEW VIOLATIONS"), rows)
        + f"\npolicy {version}: {len(changes)} change(s), {new} new violation(s)"
    )


# ---- audit group ---------------------------------------------------------------------------


@command("get")
@click.argument("decision_id")
@click.pass_context
def audit_get(ctx, decision_id) -> None:
    """A logged decision by id, with the context its asker logged with it and how the server
    verified the log line it was read from."""
    record = call(ctx, lambda client: client.get_decision(decision_id))
    if json_output(ctx):
        decision = {**jsonable(record.decision), "context": dict(record.context)}
        emit_data(ctx, {"decision": decision, "proof": jsonable(record.proof)}, "")
        return
    lines = [render_decision(record.decision)]
    lines.extend(f"  context {key}: {value}" for key, value in sorted(record.context.items()))
    if record.proof is not None:
        lines.append(render_proof(record.proof))
    click.echo("\n".join(lines))


def render_proof(proof: DecisionProof) -> str:
    """How a decision read back was verified, in one or two lines."""
    line = f"logged: replica {proof.replica_id}, line {proof.line_seq} ({proof.line_hash[:16]}...)"
    if proof.checkpoint_verified and proof.checkpoint_time is not None:
        when = proof.checkpoint_time.isoformat(timespec="seconds")
        return f"{line}\nverified: chained to the checkpoint of line {proof.checkpoint_seq}, signed {when} by key {proof.checkpoint_key_id}"
    return f"{line}\nverified: against the server's live chain (no checkpoint covers it yet)"


@command("replay")
@click.argument("decision_id")
@click.pass_context
def audit_replay(ctx, decision_id) -> None:
    """Re-evaluate a logged decision against the policy version and catalog of its time.
    Exit 0 when the replay matches the original, 3 when it does not."""
    replay = call(ctx, lambda client: client.replay_decision(decision_id))

    def render(r: ReplayResult) -> str:
        verdict = "MATCHES" if r.matches else "DIFFERS"
        return (
            f"replay {verdict}\noriginal:\n{render_decision(r.original, '  ')}\n{render_proof(r.proof) if r.proof else ''}\n"
            f"replayed:\n{render_decision(r.replayed, '  ')}"
        )

    emit(ctx, replay, render)
    if not replay.matches:
        ctx.exit(EXIT_NEGATIVE)


RESIDENCY_COMMANDS = (decide, batch_decide, route, check_job, explain, violations)
POLICY_COMMANDS = (policy_set, policy_get, policy_impact, policy_proposals, policy_approve, policy_reject)
AUDIT_COMMANDS = (audit_get, audit_replay)
