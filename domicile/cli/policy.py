"""`domicile policy check|test FILE`: validate a policy file, run its inline tests.

Both exit 0 on success and 1 otherwise; errors are printed one per line as
`FILE:LINE:COL: path: message` so editors and CI annotate the right line (with --json, as
the `errors` of the JSON error).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn, Protocol

import click

from domicile.cli.base import EXIT_ERROR, EXIT_NEGATIVE, ISO_TIME, DomicileGroup, fail, json_output
from domicile.cli.client import emit_data
from domicile.router.engine import CompiledPolicy, compile_policy
from domicile.router.policy import PolicyInvalid, load_policy, policy_warnings
from domicile.router.policy_tests import run_policy_tests

policy = DomicileGroup(
    "policy",
    help="Residency policy: `check` and `test` files offline; `set` (or `propose`), `get`, `impact`, "
    "`proposals`, `approve` and `reject` on the server.",
)


class _LocatedError(Protocol):
    """A policy error as the offline checker and the server (PolicyError message) give it."""

    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def message(self) -> str: ...


def fail_policy(filename: str, errors: Sequence[_LocatedError], summary: str) -> NoReturn:
    """Fail (exit 1) listing every error of a policy as `FILE:LINE:COL: path: message`."""
    fail(
        f"{filename}: {summary}, {len(errors)} error(s)",
        code="POLICY_INVALID",
        exit_code=EXIT_ERROR,
        listing=[f"{filename}:{e.line}:{e.column}: " + (f"{e.path}: " if e.path else "") + e.message for e in errors],
        extra={
            "errors": [
                {"file": filename, "line": e.line, "column": e.column, "path": e.path, "message": e.message}
                for e in errors
            ]
        },
    )


def _compile(path: str) -> CompiledPolicy:
    """The compiled policy in `path`, or fail with its errors."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return compile_policy(load_policy(text))
    except PolicyInvalid as exc:
        fail_policy(path, exc.errors, "not a valid policy")


@policy.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def check(ctx: click.Context, file: str) -> None:
    """Validate FILE; print OK with its version, or every error with its line. Warnings (a
    declassifier granted to every job) are printed too, and do not fail the check."""
    compiled = _compile(file)
    warnings = policy_warnings(compiled.loaded)
    if not json_output(ctx):
        for warning in warnings:
            click.echo(f"{file}:{warning.line}:{warning.column}: warning: {warning.path}: {warning.message}", err=True)
    document = compiled.loaded.document
    emit_data(
        ctx,
        {
            "file": file,
            "warnings": [{"line": w.line, "column": w.column, "path": w.path, "message": w.message} for w in warnings],
            "name": document.metadata.name,
            "version": compiled.version,
            "sha256": compiled.content_hash,
            "rules": len(document.rules),
            "exemptions": len(document.exemptions),
            "tests": len(document.tests),
        },
        f"OK {file}: policy {document.metadata.name} version {compiled.version} "
        f"(sha256 {compiled.content_hash[:12]}; rules: {len(document.rules)}, "
        f"exemptions: {len(document.exemptions)}, tests: {len(document.tests)})",
    )


@policy.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--now",
    type=ISO_TIME,
    help="Evaluate tests without their own `now` at this ISO 8601 time (default: the current time).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also print the reasons of passing tests.")
@click.pass_context
def test(ctx: click.Context, file: str, now: datetime | None, verbose: bool) -> None:
    """Run FILE's inline tests: one PASS/FAIL line each, then a summary. Exit 3 when any fails
    (1 when FILE is not a valid policy)."""
    compiled = _compile(file)
    results = run_policy_tests(compiled, now)
    failed = sum(1 for r in results if not r.passed)
    lines = []
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        got = result.verdict.outcome.value
        lines.append(f"{status}: {result.name} ({file}:{result.line}): want {result.want.value}, got {got}")
        if verbose or not result.passed:
            for reason in result.verdict.reasons:
                path = " -> ".join(reason.lineage_path)
                lines.append(f"    {reason.code.value}: {reason.message}" + (f" [{path}]" if path else ""))
    if not results:
        lines.append(f"{file}: no tests")
    else:
        summary = f"{len(results) - failed}/{len(results)} passed" + (f", {failed} failed" if failed else "")
        lines.append(("FAIL: " if failed else "PASS: ") + summary)
    emit_data(
        ctx,
        {
            "file": file,
            "passed": len(results) - failed,
            "failed": failed,
            "tests": [
                {
                    "name": r.name,
                    "line": r.line,
                    "passed": r.passed,
                    "want": r.want.value,
                    "got": r.verdict.outcome.value,
                    "reasons": [
                        {"code": x.code.value, "message": x.message, "lineage_path": list(x.lineage_path)}
                        for x in r.verdict.reasons
                    ],
                }
                for r in results
            ],
        },
        "\n".join(lines),
    )
    if failed:
        ctx.exit(EXIT_NEGATIVE)
