"""`domicile audit ...`: offline checks an auditor runs on the files the server keeps."""

from __future__ import annotations

from pathlib import Path

import click

from domicile.cli.base import EXIT_ERROR, EXIT_USAGE, DomicileGroup, fail
from domicile.cli.client import emit_data, explicit_data_dir
from domicile.connection import server_data_dir
from domicile.router.decision_log import verify as verify_log

audit = DomicileGroup(
    "audit",
    help="Audit the decision log: `verify` its hash chain offline; `get` and `replay` a decision on the server.",
)


@audit.command("verify")
@click.option(
    "--log",
    "log_path",
    envvar="DOMICILE_DECISION_LOG",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Decision log file (default: DATA_DIR/decisions.jsonl, DATA_DIR from --data-dir, DOMICILE_HOME or .domicile).",
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
    path = log_path or server_data_dir(explicit_data_dir(ctx)) / "decisions.jsonl"
    try:
        result = verify_log(path, expected_head=expected_head)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", code="UNREADABLE", exit_code=EXIT_USAGE)
    if not result.ok:
        fail(f"{path}: {result.message}", code="VERIFICATION_FAILED", exit_code=EXIT_ERROR)
    emit_data(
        ctx,
        {"ok": True, "log": str(path), "message": result.message, "head": result.head_hash},
        f"OK: {result.message}\nhead: {result.head_hash}",
    )
