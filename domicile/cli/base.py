"""What every `domicile` command shares: `--json` anywhere on the command line, one way to
report an error (text or JSON, always on standard error, always once), the exit statuses and
the parameter types for times.

Commands are declared with `command` / `group` from here (or on a group made by `group`),
which gives each one the `--json` flag; a command reports failure by raising `CommandError`
(or any click exception, which is reported the same way).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn

import click

from domicile.timeconv import parse_time

EXIT_OK = 0
EXIT_ERROR = 1  # the server refused or failed, or it cannot be reached
EXIT_USAGE = 2  # bad usage or an invalid argument (click's own status for usage errors)
EXIT_NEGATIVE = 3  # a negative answer: DENY, no allowed route, job not allowed, violations, failed policy test, ...
EXIT_UNKNOWN_DATASET = 4  # a dataset the question names is not in the catalog

EXIT_STATUS_HELP = (
    "Exit status: 0 success; 1 error (refused, failed or unreachable server); 2 bad usage or invalid "
    "argument; 3 a negative answer (DENY, no allowed route, job not allowed, violations found, replay "
    "differs, a policy test fails); 4 a dataset asked about is unknown (UNKNOWN_DATASET)."
)

ISO_TIME_EXAMPLE = "2026-11-30T10:00:00Z"


class CommandError(click.ClickException):
    """A failure to report: `code` is a short machine-readable cause (a gRPC status name such
    as NOT_FOUND, or USAGE_ERROR, ...), `field_violations` (field, description) pairs, `hint`
    what to do about it, `extra` more members of the JSON error. `listing` lines (such as
    `FILE:LINE:COL: message`, which editors read) come first, as they are, in text output."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "ERROR",
        exit_code: int = EXIT_ERROR,
        field_violations: Sequence[tuple[str, str]] = (),
        hint: str = "",
        extra: dict[str, Any] | None = None,
        listing: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance too
        self.field_violations = list(field_violations)
        self.hint = hint
        self.extra = extra or {}
        self.listing = list(listing)
        self.json_output = False

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field_violations:
            error["field_violations"] = [{"field": f, "description": d} for f, d in self.field_violations]
        if self.hint:
            error["hint"] = self.hint
        error.update(self.extra)
        return {"error": error}

    def show(self, file: Any = None) -> None:
        if self.json_output:
            click.echo(json.dumps(self.as_json(), indent=2, sort_keys=True), err=True)
            return
        for line in self.listing:
            click.echo(line, err=True)
        prefix = "" if self.code in ("ERROR", "USAGE_ERROR") else f"{self.code}: "
        click.echo(f"error: {prefix}{self.message}", err=True)
        for field, description in self.field_violations:
            click.echo(f"  {field}: {description}", err=True)
        if self.hint:
            click.echo(f"  {self.hint}", err=True)


def fail(message: str, **kwargs: Any) -> NoReturn:
    """Raise a CommandError (see its arguments)."""
    raise CommandError(message, **kwargs)


def _as_command_error(error: click.ClickException) -> CommandError:
    if isinstance(error, CommandError):
        return error
    message = error.format_message()
    if isinstance(error, click.UsageError):
        context = error.ctx
        hint = f"see '{context.command_path} --help'" if context is not None else ""
        return CommandError(message, code="USAGE_ERROR", exit_code=error.exit_code, hint=hint)
    return CommandError(message, exit_code=error.exit_code)


def _json_requested(args: Sequence[str]) -> bool:
    """Whether `--json` is among the command-line words (before a `--`): errors found while
    parsing them are reported in JSON too."""
    for word in args:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


class JsonState:
    """Whether this invocation prints JSON, shared by every context of one command line."""

    def __init__(self, requested: bool) -> None:
        self.on = requested


def json_output(ctx: click.Context) -> bool:
    state = ctx.find_root().meta.get("domicile.json")
    return bool(state and state.on)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().meta.setdefault("domicile.json", JsonState(True)).on = True


def _json_option() -> click.Option:
    return click.Option(
        ["--json"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help="Print the result, and any error, as JSON (anywhere on the command line).",
    )


class DomicileCommand(click.Command):
    """A command with the shared `--json` flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_json_option())


class DomicileGroup(click.Group):
    """A group whose commands and sub-groups share `--json` and the error reporting."""

    command_class = DomicileCommand
    group_class = type  # sub-groups are of this class too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_json_option())

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if parent is None:
            requested = _json_requested(args)
            try:
                ctx = super().make_context(info_name, args, parent, **extra)
            except click.ClickException as error:
                raise _reported(error, requested) from None
            ctx.meta.setdefault("domicile.json", JsonState(requested))
            return ctx
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is not None:
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            raise _reported(error, json_output(ctx)) from None


def _reported(error: click.ClickException, as_json: bool) -> CommandError:
    reported = _as_command_error(error)
    reported.json_output = as_json
    return reported


def command(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], DomicileCommand]:
    """`click.command` for a command that is not declared on a group."""
    return click.command(name, cls=DomicileCommand, **kwargs)


def group(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], DomicileGroup]:
    """`click.group` for a group that is not declared on another group."""
    return click.group(name, cls=DomicileGroup, **kwargs)


class IsoTime(click.ParamType):
    """An ISO 8601 time, e.g. 2026-11-30T10:00:00Z or 2026-11-30T11:00:00+01:00 (UTC when it
    has no offset; a bare date is midnight UTC), converted to aware UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as {ISO_TIME_EXAMPLE}", param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TIME"


ISO_TIME = IsoTime()
