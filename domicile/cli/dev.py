"""`domicile dev init|token|console-link|cert`: local development credentials (see docs/security.md)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from domicile.cli.base import EXIT_USAGE, DomicileGroup, fail
from domicile.cli.client import emit_data, explicit_data_dir
from domicile.connection import credential_homes, find_dev_credentials, server_data_dir, user_config_dir
from domicile.security.dev_credentials import (
    DEV_SUBJECT,
    DevPaths,
    dev_paths,
    ensure_dev_credentials,
    install_client_credentials,
    issue_certificate,
    mint_console_link_token,
    mint_dev_token,
    write_private_file,
)
from domicile.security.scopes import ALL_SCOPES

dev = DomicileGroup("dev", help="Local development credentials: a dev CA, certificates and a JWT signing key.")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The longest duration `parse_duration` accepts (a server refuses tokens living longer than its
# auth.max_token_lifetime, 24 h by default, anyway).
_MAX_DURATION_SECONDS = 366 * 86400


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `8h`, `1d` → seconds (more than 0, at most 366 days);
    click.BadParameter otherwise."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 300, 15m, 8h or 1d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > _MAX_DURATION_SECONDS:
        raise click.BadParameter(f"{text!r} is longer than 366 days")
    return seconds


@dev.command("init")
@click.option("--force", is_flag=True, help="Replace existing dev credentials.")
@click.option(
    "--install-client",
    is_flag=True,
    help="Also copy the client side (CA, client certificate and key, token signing key) to "
    "$XDG_CONFIG_HOME/domicile/dev (~/.config/domicile/dev), where client commands in any directory find it.",
)
@click.pass_context
def init(ctx: click.Context, force: bool, install_client: bool) -> None:
    """Create the dev CA, server and client certificates and JWT key under DATA_DIR/dev
    (DATA_DIR: --data-dir, else DOMICILE_HOME, else ./.domicile), unless they exist."""
    data_dir = server_data_dir(explicit_data_dir(ctx))
    paths, created = ensure_dev_credentials(data_dir, force=force)
    installed = install_client_credentials(paths, user_config_dir()) if install_client else None
    lines = [
        f"created development credentials in {paths.root}"
        if created
        else f"development credentials already exist in {paths.root} (--force replaces them)",
        f"  CA certificate:     {paths.ca_cert}",
        f"  client certificate: {paths.client_cert} (key {paths.client_key})",
        f"  JWT keys (JWKS):    {paths.jwks}",
    ]
    if installed is not None:
        lines.append(f"installed the client credentials in {installed.root} (client commands anywhere use them)")
    emit_data(
        ctx,
        {
            "created": created,
            "directory": str(paths.root),
            "ca_certificate": str(paths.ca_cert),
            "client_certificate": str(paths.client_cert),
            "client_key": str(paths.client_key),
            "jwks": str(paths.jwks),
            "installed_client_credentials": str(installed.root) if installed else None,
        },
        "\n".join(lines),
    )


def _credentials(ctx: click.Context, *, signing_ca: bool = False) -> DevPaths:
    """The dev credentials to sign with, found as client commands find them (the CA key is
    only in the server's data directory, not in an installed client copy)."""
    data_dir = explicit_data_dir(ctx)
    if signing_ca:
        paths = dev_paths(server_data_dir(data_dir))
        if paths.exists() and paths.ca_key.is_file():
            return paths
        fail(
            f"no dev CA in {paths.root}; give the server's data directory with --data-dir or DOMICILE_HOME",
            code="NO_CREDENTIALS",
            exit_code=EXIT_USAGE,
        )
    home = find_dev_credentials(data_dir)
    if home is None:
        searched = ", ".join(h.describe() for h in credential_homes(data_dir))
        fail(
            f"no dev credentials in {searched}; give the `--dev` server's data directory with --data-dir or "
            "DOMICILE_HOME (`domicile dev init` creates a new set, which a running server does not trust)",
            code="NO_CREDENTIALS",
            exit_code=EXIT_USAGE,
        )
    return home.dev


@dev.command("token")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help=f"Scope to grant (repeatable, or space-separated); default all: {' '.join(ALL_SCOPES)}.",
)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: seconds or 15m, 8h, 1d.")
@click.option("--subject", default=DEV_SUBJECT, show_default=True, help="The token's `sub`.")
@click.option(
    "--actor", "actors", multiple=True, help="Delegation chain (`act` claim), current actor first (repeatable)."
)
@click.option("--bind-cert", is_flag=True, help="Bind the token to the dev client certificate (cnf.x5t#S256).")
@click.pass_context
def token(
    ctx: click.Context, scopes: tuple[str, ...], ttl: str, subject: str, actors: tuple[str, ...], bind_cert: bool
) -> None:
    """Print a token signed with the dev key (for --token, grpcurl or curl)."""
    granted = [scope for value in scopes for scope in value.split()] or list(ALL_SCOPES)
    unknown = sorted(set(granted) - set(ALL_SCOPES))
    if unknown:
        raise click.BadParameter(
            f"unknown scope(s) {', '.join(unknown)}; known: {' '.join(ALL_SCOPES)}", param_hint="--scope"
        )
    lifetime = parse_duration(ttl)
    paths = _credentials(ctx)
    minted = mint_dev_token(
        paths.root.parent,
        scopes=granted,
        ttl_seconds=lifetime,
        subject=subject,
        actors=actors,
        bind_client_certificate=bind_cert,
    )
    emit_data(ctx, {"token": minted}, minted)


@dev.command("console-link")
@click.option(
    "--scope", "scopes", multiple=True, help="Scope of the session (repeatable, or space-separated); default all."
)
@click.option("--ttl", default="1h", show_default=True, help="How long the link can be used: 300, 15m, 8h, 1d.")
@click.option("--console-url", default="http://127.0.0.1:8081", show_default=True, help="Where the console is served.")
@click.pass_context
def console_link(ctx: click.Context, scopes: tuple[str, ...], ttl: str, console_url: str) -> None:
    """Print a one-time sign-in link to the console of a `--dev` server, for the dev principal
    (docs/console.md)."""
    granted = [scope for value in scopes for scope in value.split()] or list(ALL_SCOPES)
    unknown = sorted(set(granted) - set(ALL_SCOPES))
    if unknown:
        raise click.BadParameter(
            f"unknown scope(s) {', '.join(unknown)}; known: {' '.join(ALL_SCOPES)}", param_hint="--scope"
        )
    lifetime = parse_duration(ttl)
    paths = _credentials(ctx)
    link = f"{console_url.rstrip('/')}/signin?token={mint_console_link_token(paths.root.parent, scopes=granted, ttl_seconds=lifetime)}"
    emit_data(ctx, {"link": link}, link)


@dev.command("cert")
@click.argument("common_name")
@click.option(
    "--server", is_flag=True, help="A server certificate (localhost, 127.0.0.1, ::1) instead of a client one."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Directory for COMMON_NAME.pem and COMMON_NAME-key.pem.",
)
@click.pass_context
def cert(ctx: click.Context, common_name: str, server: bool, out_dir: Path) -> None:
    """Issue another certificate from the dev CA (a second client identity, or a new server
    certificate to try rotation)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", common_name):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (at most 64)", param_hint="COMMON_NAME")
    paths = _credentials(ctx, signing_ca=True)
    certificate, key = issue_certificate(paths.root.parent, common_name, server=server)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_file(out_dir / f"{common_name}-key.pem", key)
    (out_dir / f"{common_name}.pem").write_bytes(certificate)
    emit_data(
        ctx,
        {"certificate": str(out_dir / f"{common_name}.pem"), "key": str(out_dir / f"{common_name}-key.pem")},
        f"wrote {out_dir / common_name}.pem and {common_name}-key.pem (0600)",
    )
