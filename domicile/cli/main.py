"""The root `domicile` command."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import click

from domicile import __version__
from domicile.cli import admin as admin_commands
from domicile.cli import catalog as catalog_commands
from domicile.cli import residency as residency_commands
from domicile.cli.audit import audit as audit_commands
from domicile.cli.client import ClientOptions
from domicile.cli.dev import dev as dev_commands
from domicile.cli.health import health as health_command
from domicile.cli.lineage import lineage as lineage_commands
from domicile.cli.policy import policy as policy_commands
from domicile.config import SettingsError, load_settings
from domicile.errors import DomicileError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="domicile")
@click.option(
    "--server",
    envvar="DOMICILE_SERVER",
    default="127.0.0.1:50051",
    show_default=True,
    help="Server address for client commands.",
)
@click.option(
    "--insecure",
    "client_insecure",
    is_flag=True,
    envvar="DOMICILE_INSECURE",
    help="Client commands: plaintext, no credentials (for a server started with --insecure).",
)
@click.option(
    "--dev",
    "client_dev",
    is_flag=True,
    envvar="DOMICILE_DEV",
    help="Client commands: use the dev credentials under --data-dir (error if missing).",
)
@click.option(
    "--data-dir",
    envvar="DOMICILE_DATA_DIR",
    default=".domicile",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where --dev credentials live.",
)
@click.option("--ca-cert", envvar="DOMICILE_CA_CERT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cert", "client_cert", envvar="DOMICILE_CLIENT_CERT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "client_key", envvar="DOMICILE_CLIENT_KEY", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--token", envvar="DOMICILE_TOKEN", help="Bearer token (JWT).")
@click.option("--json", "json_output", is_flag=True, help="Print responses as JSON.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="RPC deadline in seconds.")
@click.pass_context
def cli(
    ctx, server, client_insecure, client_dev, data_dir, ca_cert, client_cert, client_key, token, json_output, timeout
) -> None:
    """Domicile: data catalog and residency router.

    Client commands talk to SERVER over gRPC; by default with the local development
    credentials of `domicile dev init` (under --data-dir), or plaintext with --insecure.
    """
    ctx.obj = ClientOptions(
        server=server,
        insecure=client_insecure,
        dev=client_dev,
        data_dir=data_dir,
        ca_cert=ca_cert,
        client_cert=client_cert,
        client_key=client_key,
        token=token,
        json_output=json_output,
        timeout=timeout,
    )


@cli.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML settings file (see README: Configuration).",
)
@click.option("--store", help="sqlite:///PATH (default .domicile/catalog.db) or bolt://HOST:PORT / neo4j://HOST:PORT.")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Residency policy YAML.")
@click.option("--listen", help="gRPC address HOST:PORT (default 127.0.0.1:50051).")
@click.option("--http-listen", help="HTTP address for OpenLineage ingestion (default 127.0.0.1:8080; '' disables).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Logs and dev credentials.")
@click.option("--insecure", is_flag=True, default=None, help="Plaintext, no authentication; loopback addresses only.")
@click.option("--dev", is_flag=True, default=None, help="TLS + JWT with local dev credentials (created if missing).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Require client certificates signed by this CA (mTLS).",
)
@click.option(
    "--jwt-jwks", type=click.Path(dir_okay=False, path_type=Path), help="JWKS file with token verification keys."
)
@click.option(
    "--jwt-public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="PEM public key (repeatable).",
)
@click.option("--jwt-issuer")
@click.option("--jwt-audience")
@click.option("--demo", is_flag=True, default=None, help="Load the demo catalog into an empty store.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def serve(
    config_file,
    store,
    policy,
    listen,
    http_listen,
    data_dir,
    insecure,
    dev,
    tls_cert,
    tls_key,
    client_ca,
    jwt_jwks,
    jwt_public_key,
    jwt_issuer,
    jwt_audience,
    demo,
    log_level,
) -> None:
    """Run the server (all four services and the OpenLineage HTTP endpoint)."""
    tls = {k: v for k, v in (("cert_file", tls_cert), ("key_file", tls_key), ("client_ca_file", client_ca)) if v}
    auth = {k: v for k, v in (("jwks_file", jwt_jwks), ("issuer", jwt_issuer), ("audience", jwt_audience)) if v}
    if jwt_public_key:
        auth["public_key_files"] = list(jwt_public_key)
    try:
        settings = load_settings(
            config_file,
            store=store,
            policy=policy,
            listen=listen,
            http_listen=http_listen,
            data_dir=data_dir,
            insecure=insecure,
            dev=dev,
            demo=demo,
            log_level=log_level,
            tls=tls or None,
            auth=auth or None,
        )
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from domicile.server import serve as run_server

    try:
        asyncio.run(run_server(settings))
    except DomicileError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None


cli.add_command(catalog_commands.dataset)
cli.add_command(catalog_commands.regions)
cli.add_command(admin_commands.export_command)
cli.add_command(dev_commands)
cli.add_command(policy_commands)
cli.add_command(audit_commands)
cli.add_command(health_command)
cli.add_command(lineage_commands)
for command in residency_commands.RESIDENCY_COMMANDS:
    cli.add_command(command)
for command in residency_commands.POLICY_COMMANDS:
    policy_commands.add_command(command)
for command in residency_commands.AUDIT_COMMANDS:
    audit_commands.add_command(command)
cli.add_command(admin_commands.import_command)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    cli(prog_name="domicile")
