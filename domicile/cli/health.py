"""`domicile health`: ask the server's grpc.health.v1 service."""

from __future__ import annotations

import click

from domicile.cli.base import EXIT_ERROR, command
from domicile.cli.client import call, emit_data
from domicile.client import ServingStatus


@command("health")
@click.option("--service", default="", help="A service name, e.g. domicile.v1.ResidencyService (default: the server).")
@click.pass_context
def health(ctx, service: str) -> None:
    """Print SERVING / NOT_SERVING; exit 1 unless SERVING."""
    status = call(ctx, lambda client: client.health(service))
    emit_data(ctx, {"status": status.value}, status.value)
    if status is not ServingStatus.SERVING:
        ctx.exit(EXIT_ERROR)
