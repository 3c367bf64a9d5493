"""The root `domicile` command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from domicile import __version__
from domicile.cli import admin as admin_commands
from domicile.cli import catalog as catalog_commands
from domicile.cli import history as history_commands
from domicile.cli import residency as residency_commands
from domicile.cli.access import access as access_commands
from domicile.cli.audit import audit as audit_commands
from domicile.cli.base import EXIT_STATUS_HELP, EXIT_USAGE, DomicileGroup, fail
from domicile.cli.client import ClientOptions
from domicile.cli.dev import dev as dev_commands
from domicile.cli.health import health as health_command
from domicile.cli.lineage import lineage as lineage_commands
from domicile.cli.policy import policy as policy_commands
from domicile.config import SettingsError, load_settings
from domicile.connection import (
    CA_CERT_ENV,
    CLIENT_CERT_ENV,
    CLIENT_KEY_ENV,
    DATA_DIR_ENV,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT_SECONDS,
    DEV_ENV,
    INSECURE_ENV,
    SERVER_ENV,
    TIMEOUT_ENV,
    TOKEN_ENV,
    ConnectionSettings,
)
from domicile.errors import DomicileError
from domicile.telemetry.logs import configure_logging

ROOT_EPILOG = f"""\b
Credentials: with --insecure none (plaintext). Otherwise --ca-cert, --cert/--key and --token
when given; else the development credentials (`domicile dev init`) in the dev/ directory of:
--data-dir if given, else DOMICILE_HOME if set, else the first of $XDG_CONFIG_HOME/domicile
(~/.config/domicile; `domicile dev init --install-client` copies them there) and ./.domicile.

\b
Environment: DOMICILE_SERVER, DOMICILE_INSECURE, DOMICILE_DEV, DOMICILE_DATA_DIR, DOMICILE_HOME,
DOMICILE_CA_CERT, DOMICILE_CLIENT_CERT, DOMICILE_CLIENT_KEY, DOMICILE_TOKEN, DOMICILE_TIMEOUT,
XDG_CONFIG_HOME (client commands); DOMICILE_CONFIG and DOMICILE_<SETTING> (serve, see its help).

{EXIT_STATUS_HELP}
"""


@click.group(
    cls=DomicileGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=ROOT_EPILOG,
)
@click.version_option(__version__, prog_name="domicile")
@click.option(
    "--server",
    envvar=SERVER_ENV,
    show_envvar=True,
    default=DEFAULT_SERVER,
    show_default=True,
    metavar="HOST:PORT",
    help="Server address for client commands.",
)
@click.option(
    "--insecure",
    "client_insecure",
    is_flag=True,
    envvar=INSECURE_ENV,
    show_envvar=True,
    help="Plaintext, no credentials (for a server started with --insecure).",
)
@click.option(
    "--dev",
    "client_dev",
    is_flag=True,
    envvar=DEV_ENV,
    show_envvar=True,
    help="Require development credentials (an error naming where they were looked for when missing).",
)
@click.option(
    "--data-dir",
    envvar=DATA_DIR_ENV,
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The server's data directory: its dev credentials (dev/) and, for `audit verify`, its decision log. "
    "Default: DOMICILE_HOME, else searched (see below).",
)
@click.option(
    "--ca-cert",
    envvar=CA_CERT_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA certificate (PEM) the server's certificate must be signed by (default: the system's CAs).",
)
@click.option(
    "--cert",
    "client_cert",
    envvar=CLIENT_CERT_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Client certificate (PEM) for mutual TLS; with --key.",
)
@click.option(
    "--key",
    "client_key",
    envvar=CLIENT_KEY_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key (PEM) of --cert.",
)
@click.option("--token", envvar=TOKEN_ENV, show_envvar=True, help="Bearer token (JWT) sent with every call.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    envvar=TIMEOUT_ENV,
    show_envvar=True,
    help="RPC deadline in seconds.",
)
@click.pass_context
def cli(ctx, server, client_insecure, client_dev, data_dir, ca_cert, client_cert, client_key, token, timeout) -> None:
    """Domicile: data catalog and residency router.

    Client commands talk to the server over gRPC, with TLS and the credentials described
    below, or in plaintext with --insecure.
    """
    ctx.obj = ClientOptions(
        ConnectionSettings(
            server=server,
            insecure=client_insecure,
            dev=client_dev,
            data_dir=data_dir,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            token=token,
            timeout=timeout,
        )
    )


SERVE_EPILOG = """\b
Settings come from, lowest precedence first: defaults, the YAML file (--config or
DOMICILE_CONFIG; examples/domicile.yaml shows every setting), environment variables
(DOMICILE_<SETTING>, `__` between nested names, e.g. DOMICILE_ROUTER__STALENESS_BOUND_SECONDS=2;
JSON for lists and maps) and these options.
"""


@cli.command(epilog=SERVE_EPILOG)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="DOMICILE_CONFIG",
    show_envvar=True,
    help="YAML settings file (every setting: examples/domicile.yaml).",
)
@click.option(
    "--store",
    metavar="URI",
    help="sqlite:///PATH (default sqlite:///.domicile/catalog.db) or bolt://HOST:PORT / neo4j://HOST:PORT.",
)
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Residency policy YAML.")
@click.option(
    "--require-approval/--no-require-approval",
    default=None,
    help="Policy changes become active only when a second policy admin approves them "
    "(default: on, off with --dev and --insecure).",
)
@click.option("--listen", metavar="HOST:PORT", help="gRPC address (default 127.0.0.1:50051).")
@click.option(
    "--http-listen", metavar="HOST:PORT", help="OpenLineage HTTP address (default 127.0.0.1:8080; '' disables)."
)
@click.option(
    "--console-listen", metavar="HOST:PORT", help="Browser console address (default 127.0.0.1:8081; '' disables)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Decision and security logs, dev credentials (default .domicile).",
)
@click.option("--insecure", is_flag=True, default=None, help="Plaintext, no authentication; loopback addresses only.")
@click.option("--dev", is_flag=True, default=None, help="TLS + JWT with local dev credentials (created if missing).")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server certificate chain (PEM); with --tls-key.",
)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Private key (PEM) of --tls-cert.")
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
@click.option("--jwt-issuer", help="Required `iss` of every token.")
@click.option("--jwt-audience", help="Required `aud` of every token.")
@click.option("--demo", is_flag=True, default=None, help="Load the demo catalog into an empty store.")
@click.option("--init", is_flag=True, default=None, help="Accept a 0-byte SQLite catalog file as a new catalog.")
@click.option(
    "--allow-catalog-rollback",
    is_flag=True,
    default=None,
    help="Start although the store is behind the decision log (recorded; see docs/audit.md). For one start.",
)
@click.option("--replica-id", help="This server's replica id, part of every decision id (default: the host name).")
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Server log level (default INFO)."
)
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Server log: text (default) or JSON lines.")
@click.option("--ops-listen", help="Plaintext HOST:PORT for /metrics, /livez, /readyz without authentication.")
def serve(
    config_file,
    store,
    policy,
    require_approval,
    listen,
    http_listen,
    console_listen,
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
    init,
    allow_catalog_rollback,
    replica_id,
    log_level,
    log_format,
    ops_listen,
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
            policy={k: v for k, v in (("file", policy), ("require_approval", require_approval)) if v is not None}
            or None,
            listen=listen,
            http_listen=http_listen,
            data_dir=data_dir,
            insecure=insecure,
            dev=dev,
            demo=demo,
            init=init,
            allow_catalog_rollback=allow_catalog_rollback,
            audit={"replica_id": replica_id} if replica_id else None,
            log_level=log_level,
            log_format=log_format,
            ops_listen=ops_listen,
            tls=tls or None,
            auth=auth or None,
            console={"listen": console_listen} if console_listen is not None else None,
        )
    except SettingsError as exc:
        fail(str(exc), code="INVALID_CONFIGURATION", exit_code=EXIT_USAGE)
    configure_logging(settings.log_level, settings.log_format)
    from domicile.eventloop import new_event_loop
    from domicile.server import serve as run_server

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(run_server(settings))
    except DomicileError as exc:
        fail(f"cannot start: {exc}", code=exc.reason or exc.code.value)
    except OSError as exc:
        fail(f"cannot start: {exc}")


cli.add_command(catalog_commands.dataset)
cli.add_command(catalog_commands.regions)
cli.add_command(admin_commands.export_command)
cli.add_command(dev_commands)
cli.add_command(policy_commands)
cli.add_command(audit_commands)
cli.add_command(health_command)
cli.add_command(lineage_commands)
cli.add_command(access_commands)
for command in residency_commands.RESIDENCY_COMMANDS:
    cli.add_command(command)
for command in residency_commands.POLICY_COMMANDS:
    policy_commands.add_command(command)
# Where changes need approval, setting a policy proposes it: both names say what it does.
policy_commands.add_command(residency_commands.policy_set, "propose")
for command in residency_commands.AUDIT_COMMANDS:
    audit_commands.add_command(command)
for command in history_commands.AUDIT_COMMANDS:
    audit_commands.add_command(command)
for command in history_commands.POLICY_COMMANDS:
    policy_commands.add_command(command)
for command in history_commands.DATASET_COMMANDS:
    catalog_commands.dataset.add_command(command)
cli.add_command(admin_commands.import_command)
cli.add_command(admin_commands.backup_command)
cli.add_command(admin_commands.restore_command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="domicile")
