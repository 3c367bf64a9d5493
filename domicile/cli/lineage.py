"""Lineage client commands: `domicile lineage record|show|export|end`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from domicile.catalog.model import Direction, EdgeKey
from domicile.cli.base import ISO_TIME, DomicileGroup
from domicile.cli.client import call, emit
from domicile.lineage.convert import DIRECTION_TO_PROTO, traversal_from_proto
from domicile.lineage.render import render_tree, to_dot, to_json_text
from domicile.timeconv import to_timestamp
from domicile.v1 import lineage_pb2, lineage_pb2_grpc

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
    request = lineage_pb2.RecordLineageRequest(
        job=job, run_id=run_id, run_region=run_region, inputs=inputs, outputs=outputs, transform=transform
    )
    if event_time:
        request.event_time.CopyFrom(to_timestamp(event_time))
    response = call(ctx, lineage_pb2_grpc.LineageServiceStub, "RecordLineage", request)

    def render(r: lineage_pb2.RecordLineageResponse) -> str:
        lines = [f"{r.edges_created} edge(s) created (catalog revision {r.catalog_revision})"]
        if r.late:
            lines.append("late event: judged against the policy and catalog of now")
        for v in r.observed_violations:
            lines.append(f"OBSERVED VIOLATION: {v.message}")
            if v.decision.decision_id:
                lines.append(f"  decision {v.decision.decision_id}")
        return "\n".join(lines)

    emit(ctx, response, render)


@lineage.command("end")
@click.option("--job", required=True, help="The job whose edges end.")
@click.option("-i", "--input", "inputs", multiple=True, required=True, help="Input dataset id (repeatable).")
@click.option("-o", "--output", "outputs", multiple=True, required=True, help="Output dataset id (repeatable).")
@click.option("--at", "end_time", type=ISO_TIME, help="When the lineage stopped being true (ISO 8601; default now).")
@click.pass_context
def end(ctx, job, inputs, outputs, end_time) -> None:
    """End the edges of JOB between every --input and every --output (history keeps them)."""
    request = lineage_pb2.EndLineageRequest(job=job, inputs=inputs, outputs=outputs)
    if end_time:
        request.end_time.CopyFrom(to_timestamp(end_time))
    response = call(ctx, lineage_pb2_grpc.LineageServiceStub, "EndLineage", request)
    emit(ctx, response, lambda r: f"{r.edges_ended} edge(s) ended (catalog revision {r.catalog_revision})")


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


def _get_lineage(
    ctx, dataset_id: str, direction: str, max_depth: int, as_of: datetime | None
) -> lineage_pb2.GetLineageResponse:
    request = lineage_pb2.GetLineageRequest(
        dataset_id=dataset_id, direction=DIRECTION_TO_PROTO[Direction(direction)], max_depth=max_depth
    )
    if as_of:
        request.as_of.CopyFrom(to_timestamp(as_of))
    return call(ctx, lineage_pb2_grpc.LineageServiceStub, "GetLineage", request, dataset_id=dataset_id)


@lineage.command("show")
@_traversal_options
@click.pass_context
def show(ctx, dataset_id, direction, max_depth, as_of) -> None:
    """Show the lineage of DATASET_ID as a tree (upstream by default); --json prints the
    GetLineage response."""
    response = _get_lineage(ctx, dataset_id, direction, max_depth, as_of)

    def render(r: lineage_pb2.GetLineageResponse) -> str:
        unapproved = {EdgeKey(e.input, e.output, e.job) for e in r.edges if e.unapproved_declassification}
        return render_tree(traversal_from_proto(r), dataset_id, Direction(direction), unapproved)

    emit(ctx, response, render)


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
    response = _get_lineage(ctx, dataset_id, direction, max_depth, as_of)
    traversal = traversal_from_proto(response)
    render = to_dot if format_ == "dot" else to_json_text
    text = render(traversal, dataset_id, Direction(direction), as_of)
    if output_file is None:
        click.echo(text)
    else:
        output_file.write_text(text + "\n", encoding="utf-8")
        note = "" if traversal.complete else f" (INCOMPLETE: {traversal.incomplete_reason})"
        click.echo(
            f"wrote {len(traversal.nodes)} datasets and {len(traversal.edges)} edges to {output_file}{note}", err=True
        )
