"""`domicile dev init|token`: local development credentials (see docs/security.md)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from domicile.security.dev_credentials import (
    DEV_SUBJECT,
    dev_paths,
    ensure_dev_credentials,
    issue_certificate,
    mint_dev_token,
    write_private_file,
)
from domicile.security.scopes import ALL_SCOPES

dev = click.Group("dev", help="Local development credentials: a dev CA, certificates and a JWT signing key.")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `8h`, `1d` → seconds; click.BadParameter otherwise."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 300, 15m, 8h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dev.command("init")
@click.option("--force", is_flag=True, help="Replace existing dev credentials.")
@click.pass_obj
def init(options, force: bool) -> None:
    """Create the dev CA, server and client certificates and JWT key under DATA_DIR/dev."""
    paths, created = ensure_dev_credentials(options.data_dir, force=force)
    if created:
        click.echo(f"created development credentials in {paths.root}")
    else:
        click.echo(f"development credentials already exist in {paths.root} (--force replaces them)")
    click.echo(f"  CA certificate:     {paths.ca_cert}")
    click.echo(f"  client certificate: {paths.client_cert} (key {paths.client_key})")
    click.echo(f"  JWT keys (JWKS):    {paths.jwks}")


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
@click.pass_obj
def token(options, scopes: tuple[str, ...], ttl: str, subject: str, actors: tuple[str, ...], bind_cert: bool) -> None:
    """Print a token signed with the dev key (for --token, grpcurl or curl)."""
    granted = [scope for value in scopes for scope in value.split()] or list(ALL_SCOPES)
    unknown = sorted(set(granted) - set(ALL_SCOPES))
    if unknown:
        raise click.BadParameter(
            f"unknown scope(s) {', '.join(unknown)}; known: {' '.join(ALL_SCOPES)}", param_hint="--scope"
        )
    if not dev_paths(options.data_dir).exists():
        raise click.ClickException(f"no dev credentials in {dev_paths(options.data_dir).root}; run `domicile dev init`")
    click.echo(
        mint_dev_token(
            options.data_dir,
            scopes=granted,
            ttl_seconds=parse_duration(ttl),
            subject=subject,
            actors=actors,
            bind_client_certificate=bind_cert,
        )
    )


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
@click.pass_obj
def cert(options, common_name: str, server: bool, out_dir: Path) -> None:
    """Issue another certificate from the dev CA (a second client identity, or a new server
    certificate to try rotation)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", common_name):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (at most 64)", param_hint="COMMON_NAME")
    if not dev_paths(options.data_dir).exists():
        raise click.ClickException(f"no dev credentials in {dev_paths(options.data_dir).root}; run `domicile dev init`")
    certificate, key = issue_certificate(options.data_dir, common_name, server=server)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_file(out_dir / f"{common_name}-key.pem", key)
    (out_dir / f"{common_name}.pem").write_bytes(certificate)
    click.echo(f"wrote {out_dir / common_name}.pem and {common_name}-key.pem (0600)")
