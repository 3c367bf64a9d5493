"""`domicile audit ...`: offline checks an auditor runs on the files the server keeps."""

from __future__ import annotations

from pathlib import Path

import click

from domicile.router.decision_log import verify as verify_log

DEFAULT_DATA_DIR = Path(".domicile")


@click.group("audit")
def audit() -> None:
    """Audit the decision log: `verify` its hash chain offline; `get` and `replay` a decision on the server."""


@audit.command("verify")
@click.option(
    "--log",
    "log_path",
    envvar="DOMICILE_DECISION_LOG",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Decision log file (default: DATA_DIR/decisions.jsonl).",
)
@click.option(
    "--expected-head",
    metavar="HASH",
    help="Hash of the last line as recorded elsewhere earlier; detects lines cut off the end.",
)
@click.pass_context
def verify_command(ctx: click.Context, log_path: Path | None, expected_head: str | None) -> None:
    """Check the decision log's hash chain.

    Exit status 0 when every line is intact and chained, 1 naming the first line that is not
    (modified, inserted, deleted, reordered or truncated), 2 when the file cannot be read.
    """
    path = log_path or _data_dir(ctx) / "decisions.jsonl"
    try:
        result = verify_log(path, expected_head=expected_head)
    except OSError as exc:
        click.echo(f"ERROR: cannot read {path}: {exc.strerror}", err=True)
        ctx.exit(2)
    if not result.ok:
        click.echo(f"FAILED: {path}: {result.message}", err=True)
        ctx.exit(1)
    click.echo(f"OK: {result.message}")
    click.echo(f"head: {result.head_hash}")


def _data_dir(ctx: click.Context) -> Path:
    """The root command's --data-dir when `audit` runs under it, else the default."""
    data_dir = getattr(ctx.find_root().obj, "data_dir", None)
    return Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
