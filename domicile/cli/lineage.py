"""Lineage client commands: `domicile lineage record|show|export|end`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from domicile.cli.base import ISO_TIME, DomicileGroup
from domicile.cli.client import call, emit, emit_note
from domicile.client import Direction, LineageGraph, LineageRecorded
from domicile.lineage.render import render_tree, to_dot, to_json_text

lineage = DomicileGroup("lineage", help="Record, end, show and export lineage (output DERIVED_FROM input).")


@lineage.command("record")
@click.option("--job", required=True, help="Job name, e.g. airflow-eu/daily.customer_rollup.")
@click.option("--run-id", required=True, help="Run id; recording the same (job, run id) again creates nothing.")
@click.option("--run-region", default="", help="Region id where the run executed.")
@click.option("-i", "--input", "inputs", multiple=True, help="Input dataset id (repeatable).")
@click.option("-o", "--output", "outputs", multiple=True, help="Output dataset id (repeatable).")
@click.option(
    "--transform", default="", help="Transform kind, e.g. anonymize or aggregate (empty for copies and joins)."
)
@click.option("--event-time", type=ISO_TIME, help="When the run happened (ISO 8601); kept with the run for audit.")
@click.pass_context
def record(ctx, job, run_id, run_region, inputs, outputs, transform, event_time) -> None:
    """Record that a run of JOB derived every --output from every --input."""
    recorded = call(
        ctx,
        lambda client: client.record_lineage(
            job,
            run_id,
            inputs=inputs,
            outputs=outputs,
            run_region=run_region,
            transform=transform,
            event_time=event_time,
        ),
    )

    def render(r: LineageRecorded) -> str:
        lines = [f"{r.edges_created} edge(s) created (catalog revision {r.catalog_revision})"]
        if r.late:
            lines.append("late event: judged against the policy and catalog of now")
        for v in r.observed_violations:
            lines.append(f"OBSERVED VIOLATION: {v.message}")
            if v.decision is not None:
                lines.append(f"  decision {v.decision.decision_id}")
        return "\n".join(lines)

    emit(ctx, recorded, render)


@lineage.command("end")
@click.option("--job", required=True, help="The job whose edges end.")
@click.option("-i", "--input", "inputs", multiple=True, required=True, help="Input dataset id (repeatable).")
@click.option("-o", "--output", "outputs", multiple=True, required=True, help="Output dataset id (repeatable).")
@click.option("--at", "end_time", type=ISO_TIME, help="When the lineage stopped being true (ISO 8601; default now).")
@click.pass_context
def end(ctx, job, inputs, outputs, end_time) -> None:
    """End the edges of JOB between every --input and every --output (history keeps them)."""
    ended = call(ctx, lambda client: client.end_lineage(job, inputs=inputs, outputs=outputs, end_time=end_time))
    emit(ctx, ended, lambda r: f"{r.edges_ended} edge(s) ended (catalog revision {r.catalog_revision})")


def _traversal_options(function):
    function = click.option("--as-of", type=ISO_TIME, help="The lineage as it was at this ISO 8601 time.")(function)
    function = click.option(
        "--depth", "max_depth", type=int, default=0, help="Maximum depth, 1..50 (default: the server's, 10)."
    )(function)
    function = click.option("--both", "direction", flag_value="both", help="Both ways.")(function)
    function = click.option(
        "--downstream", "direction", flag_value="downstream", help="What was derived from DATASET."
    )(function)
    function = click.option(
        "--upstream", "direction", flag_value="upstream", default=True, help="Where DATASET came from (default)."
    )(function)
    return click.argument("dataset_id")(function)


def _get_lineage(ctx, dataset_id: str, direction: str, max_depth: int, as_of: datetime | None) -> LineageGraph:
    return call(
        ctx,
        lambda client: client.get_lineage(dataset_id, direction, max_depth=max_depth, as_of=as_of),
        dataset_id=dataset_id,
    )


@lineage.command("show")
@_traversal_options
@click.pass_context
def show(ctx, dataset_id, direction, max_depth, as_of) -> None:
    """Show the lineage of DATASET_ID as a tree (upstream by default); --json prints the
    lineage graph."""
    graph = _get_lineage(ctx, dataset_id, direction, max_depth, as_of)

    def render(r: LineageGraph) -> str:
        return render_tree(r.traversal, dataset_id, Direction(direction), r.unapproved_declassifications)

    emit(ctx, graph, render)


@lineage.command("export")
@_traversal_options
@click.option(
    "--format",
    "format_",
    type=click.Choice(["json", "dot"]),
    default="json",
    show_default=True,
    help="json: nodes and edges; dot: Graphviz (render with `dot -Tsvg`).",
)
@click.option(
    "-O",
    "--output-file",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.pass_context
def export(ctx, dataset_id, direction, max_depth, as_of, format_, output_file) -> None:
    """Export the lineage subgraph around DATASET_ID as JSON or Graphviz DOT."""
    traversal = _get_lineage(ctx, dataset_id, direction, max_depth, as_of).traversal
    render = to_dot if format_ == "dot" else to_json_text
    text = render(traversal, dataset_id, Direction(direction), as_of)
    if output_file is None:
        click.echo(text)
    else:
        output_file.write_text(text + "\n", encoding="utf-8")
        note = "" if traversal.complete else f" (INCOMPLETE: {traversal.incomplete_reason})"
        emit_note(
            ctx,
            {
                "file": str(output_file),
                "datasets": len(traversal.nodes),
                "edges": len(traversal.edges),
                "complete": traversal.complete,
                "incomplete_reason": traversal.incomplete_reason,
            },
            f"wrote {len(traversal.nodes)} datasets and {len(traversal.edges)} edges to {output_file}{note}",
        )
