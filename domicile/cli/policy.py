"""`domicile policy check|test FILE`: validate a policy file, run its inline tests.

Both exit 0 on success and 1 otherwise; errors are printed one per line as
`FILE:LINE:COL: path: message` so editors and CI annotate the right line.
"""

from __future__ import annotations

from datetime import datetime

import click

from domicile.router.engine import CompiledPolicy, compile_policy
from domicile.router.policy import PolicyInvalid, load_policy, policy_warnings
from domicile.router.policy_tests import run_policy_tests

policy = click.Group(
    "policy", help="Residency policy: `check` and `test` files offline; `set`, `get` and `impact` on the server."
)


def _compile(path: str) -> CompiledPolicy:
    """The compiled policy in `path`, or print its errors and exit 1."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return compile_policy(load_policy(text))
    except PolicyInvalid as exc:
        for error in exc.errors:
            click.echo(error.format(path), err=True)
        click.echo(f"{path}: {len(exc.errors)} error(s)", err=True)
        raise SystemExit(1) from None


@policy.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def check(file: str) -> None:
    """Validate FILE; print OK with its version, or every error with its line. Warnings (a
    declassifier granted to every job) are printed too, and do not fail the check."""
    compiled = _compile(file)
    for warning in policy_warnings(compiled.loaded):
        click.echo(f"{file}:{warning.line}:{warning.column}: warning: {warning.path}: {warning.message}", err=True)
    document = compiled.loaded.document
    click.echo(
        f"OK {file}: policy {document.metadata.name} version {compiled.version} "
        f"(sha256 {compiled.content_hash[:12]}; rules: {len(document.rules)}, "
        f"exemptions: {len(document.exemptions)}, tests: {len(document.tests)})"
    )


def _aware(_ctx: click.Context, _param: click.Parameter, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise click.BadParameter("give a timezone, e.g. 2026-12-01T00:00:00+00:00")
    return value


@policy.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--now",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z"]),
    callback=_aware,
    help="Evaluate tests without their own `now` at this time (default: the current time).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also print the reasons of passing tests.")
def test(file: str, now: datetime | None, verbose: bool) -> None:
    """Run FILE's inline tests: one PASS/FAIL line each, then a summary."""
    compiled = _compile(file)
    results = run_policy_tests(compiled, now)
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        got = result.verdict.outcome.value
        click.echo(f"{status}: {result.name} ({file}:{result.line}): want {result.want.value}, got {got}")
        if verbose or not result.passed:
            for reason in result.verdict.reasons:
                path = " -> ".join(reason.lineage_path)
                click.echo(f"    {reason.code.value}: {reason.message}" + (f" [{path}]" if path else ""))
    failed = sum(1 for r in results if not r.passed)
    if not results:
        click.echo(f"{file}: no tests")
        return
    summary = f"{len(results) - failed}/{len(results)} passed" + (f", {failed} failed" if failed else "")
    click.echo(("FAIL: " if failed else "PASS: ") + summary)
    if failed:
        raise SystemExit(1)
