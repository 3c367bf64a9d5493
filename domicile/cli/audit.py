"""`domicile audit ...`: offline checks an auditor runs on the files the server keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from domicile.cli.base import EXIT_ERROR, EXIT_USAGE, DomicileGroup, fail
from domicile.cli.client import emit_data, explicit_data_dir
from domicile.connection import server_data_dir
from domicile.errors import DomicileError
from domicile.router.decision_log import Checkpoint, Series, SeriesReport, TrustedKeys, read_anchors, verify_series
from domicile.router.decision_log.assembly import DEV_CHECKPOINT_KEY
from domicile.router.decision_log.checkpoints import ensure_key, load_public_key, public_pem

audit = DomicileGroup(
    "audit",
    help="Audit the decision log: `verify` its files offline; `get` and `replay` a decision on the server.",
)


@audit.command("verify")
@click.option(
    "--log",
    "logs",
    multiple=True,
    envvar="DOMICILE_DECISION_LOG",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A replica's decision log (its current file; the rotated files beside it are found). Repeat it, once "
    "per replica. Default: DATA_DIR/decisions.jsonl, DATA_DIR from --data-dir, DOMICILE_HOME or .domicile.",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key (PEM) checkpoints may be signed with; repeat it for older keys and other replicas' keys. "
    f"Default: the development key DATA_DIR/{DEV_CHECKPOINT_KEY}, if there.",
)
@click.option(
    "--anchors",
    "anchor_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Checkpoints kept elsewhere: an anchor file (audit.anchor_file) or a security event log. Repeatable. "
    "Default: DATA_DIR/security.jsonl, if there.",
)
@click.option(
    "--archive-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where retention moved older files (audit.archive_dir): they are checked too.",
)
@click.option("--expected-head", metavar="HASH", help="Hash the last line must have (a head kept elsewhere).")
@click.option("--skip-signatures", is_flag=True, help="Check the chain without checking checkpoint signatures.")
@click.pass_context
def verify_command(
    ctx: click.Context,
    logs: tuple[Path, ...],
    public_keys: tuple[Path, ...],
    anchor_files: tuple[Path, ...],
    archive_dir: Path | None,
    expected_head: str | None,
    skip_signatures: bool,
) -> None:
    """Check decision logs: every line, the hash chain across each replica's files, every
    checkpoint's signature, and the log against checkpoints kept elsewhere (anchors).

    Exit status 0 when every series is intact; 1 naming the first bad line (modified, inserted,
    deleted, reordered, resealed without the key, or cut off before an anchored checkpoint); 2
    when a file cannot be read or no public key is at hand.
    """
    data_dir = server_data_dir(explicit_data_dir(ctx))
    logs = logs or (data_dir / "decisions.jsonl",)
    keys = _keys(data_dir, public_keys, skip_signatures)
    anchors = _anchors(data_dir, anchor_files)
    replicas: dict[str, Path] = {}
    reports: list[tuple[Path, SeriesReport, int]] = []
    for path in logs:
        files = Series(path).files(archive_dir)
        if not files:
            fail(f"{path}: no decision log there", code="UNREADABLE", exit_code=EXIT_USAGE)
        try:
            report = verify_series(files, keys, anchors)
        except OSError as exc:
            fail(f"cannot read {exc.filename}: {exc.strerror}", code="UNREADABLE", exit_code=EXIT_USAGE)
        if report.ok and expected_head is not None and report.state.head != expected_head:
            report.fail(f"the last line's hash is not the expected head {expected_head} (lines cut off the end?)")
        replica = report.state.replica
        if report.ok and replica in replicas:
            report.fail(
                f"replica {replica!r} is also the replica of {replicas[replica]}: decision ids would be ambiguous"
            )
        replicas.setdefault(replica, path)
        reports.append((path, report, len(files)))
    emit_data(
        ctx,
        {"ok": all(r.ok for _, r, _ in reports), "series": [_as_json(p, r, n) for p, r, n in reports]},
        "\n".join(_as_text(p, r, n) for p, r, n in reports),
    )
    failed = [f"{path}: {report.problem}" for path, report, _ in reports if not report.ok]
    if failed:
        fail("; ".join(failed), code="VERIFICATION_FAILED", exit_code=EXIT_ERROR)


def _as_text(path: Path, report: SeriesReport, files: int) -> str:
    state = report.state
    lines = [
        f"OK: {path} (replica {state.replica}): {_count(files, 'file')}, {_count(report.lines, 'line')}, "
        f"{_count(state.decisions, 'decision')}, chain intact"
        if report.ok
        else f"FAILED: {path}: {report.problem}"
    ]
    checkpoint = report.last_checkpoint
    if checkpoint is not None:
        uncovered = state.seq - checkpoint.signed_seq - 1 if report.ok else 0
        after = f", {_count(uncovered, 'line')} after it" if uncovered else ""
        lines.append(
            f"  last verified checkpoint: line {checkpoint.signed_seq} signed {checkpoint.time} by key "
            f"{checkpoint.key_id}{after}"
        )
    elif report.unsigned_checkpoints:
        lines.append(f"  {_count(report.unsigned_checkpoints, 'checkpoint')} NOT checked (--skip-signatures)")
    else:
        lines.append("  no checkpoint yet: nothing signed vouches for these lines")
    if report.anchors_checked:
        lines.append(f"  {_count(report.anchors_checked, 'anchored checkpoint')} agree with the log")
    lines += [f"  note: {note}" for note in report.notes]
    if report.ok:
        lines.append(f"head: {state.head} (line {state.seq})")
    return "\n".join(lines)


def _as_json(path: Path, report: SeriesReport, files: int) -> dict[str, Any]:
    checkpoint = report.last_checkpoint
    return {
        "log": str(path),
        "ok": report.ok,
        "problem": report.problem,
        "bad_file": report.bad_file,
        "bad_line": report.bad_line,
        "replica": report.state.replica,
        "files": files,
        "lines": report.lines,
        "decisions": report.state.decisions,
        "head": report.state.head,
        "head_seq": report.state.seq,
        "last_verified_checkpoint": checkpoint.members() if checkpoint else None,
        "unchecked_checkpoints": report.unsigned_checkpoints,
        "anchors_checked": report.anchors_checked,
        "notes": report.notes,
    }


def _keys(data_dir: Path, files: tuple[Path, ...], skip: bool) -> TrustedKeys | None:
    if skip:
        return None
    dev_key = data_dir / DEV_CHECKPOINT_KEY
    if not files and dev_key.is_file():
        files = (dev_key,)
    if not files:
        fail(
            "no public key to check checkpoint signatures with",
            code="NO_PUBLIC_KEY",
            exit_code=EXIT_USAGE,
            hint="pass --public-key FILE (the public half of audit.checkpoint_key_file), "
            "or --skip-signatures to check the chain alone",
        )
    try:
        return TrustedKeys.load(files)
    except DomicileError as exc:
        fail(str(exc), code="BAD_PUBLIC_KEY", exit_code=EXIT_USAGE)


def _anchors(data_dir: Path, files: tuple[Path, ...]) -> list[Checkpoint]:
    default = data_dir / "security.jsonl"
    if not files and default.is_file():
        files = (default,)
    found: list[Checkpoint] = []
    for path in files:
        try:
            found += read_anchors(path)
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}", code="UNREADABLE", exit_code=EXIT_USAGE)
    return found


@audit.command("keygen")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def keygen_command(ctx: click.Context, key_file: Path) -> None:
    """Create an Ed25519 key for signing checkpoints (audit.checkpoint_key_file), 0600, and its
    public key beside it (KEY_FILE with .pub), which verifiers need. Keeps an existing key."""
    existed = key_file.exists()
    ensure_key(key_file)
    public = key_file.with_name(key_file.name + ".pub")
    public.write_bytes(public_pem(load_public_key(key_file)))
    emit_data(
        ctx,
        {"key": str(key_file), "public_key": str(public), "created": not existed},
        f"{'kept' if existed else 'created'} {key_file}; public key: {public}",
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
