"""`domicile health`: ask the server's grpc.health.v1 service."""

from __future__ import annotations

import click
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domicile.cli.base import EXIT_ERROR, command
from domicile.cli.client import call, emit_data


@command("health")
@click.option("--service", default="", help="A service name, e.g. domicile.v1.ResidencyService (default: the server).")
@click.pass_context
def health(ctx, service: str) -> None:
    """Print SERVING / NOT_SERVING; exit 1 unless SERVING."""
    response = call(ctx, health_pb2_grpc.HealthStub, "Check", health_pb2.HealthCheckRequest(service=service))
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    emit_data(ctx, {"status": status}, status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        ctx.exit(EXIT_ERROR)
