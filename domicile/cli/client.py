"""The client commands' use of the SDK (`domicile.client`): one `Client` per invocation,
turning a failed call into one reported error, and printing results (`--json`: the SDK's
values as JSON, `domicile.client.jsonable`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from domicile.catalog.validation import MAX_PAGE_SIZE
from domicile.cli.base import EXIT_ERROR, EXIT_UNKNOWN_DATASET, EXIT_USAGE, CommandError, json_output
from domicile.client import Client, DomicileRpcError, InvalidArgument, NotFound, Page, jsonable
from domicile.connection import ConnectionConfigError, ConnectionSettings
from domicile.errors import violations_suffix
from domicile.suggest import closest, did_you_mean

T = TypeVar("T")

# Suggestions cost a few ListDatasets calls per unknown id: only for the first few.
_MAX_HINTED_IDS = 5


@dataclass
class ClientOptions:
    """The root command's options: the connection, and room for commands to share state."""

    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    extra: dict[str, Any] = field(default_factory=dict)


def options_of(ctx: click.Context) -> ClientOptions:
    """The root command's options (defaults when a group runs on its own, as in tests)."""
    options = ctx.find_root().obj
    return options if isinstance(options, ClientOptions) else ClientOptions()


def explicit_data_dir(ctx: click.Context) -> Path | None:
    """--data-dir (or DOMICILE_DATA_DIR) when given."""
    return options_of(ctx).connection.data_dir


def client_of(ctx: click.Context) -> Client:
    """This invocation's client (made once: credentials are resolved and a dev token minted
    once), closed when the command ends."""
    options = options_of(ctx)
    client = options.extra.get("client")
    if client is None:
        try:
            client = Client(options.connection)
        except ConnectionConfigError as exc:
            raise CommandError(str(exc), code="CONNECTION", exit_code=EXIT_USAGE) from None
        options.extra["client"] = client
        ctx.find_root().call_on_close(client.close)
    return client


def call(ctx: click.Context, invoke: Callable[[Client], T], *, dataset_id: str | None = None) -> T:
    """`invoke(client)`; a failed call raises CommandError (exit 1, 2 for INVALID_ARGUMENT)
    with the status, its field violations, and for a transport failure its likely cause.
    With `dataset_id`, NOT_FOUND means that dataset is unknown: exit 4, naming the closest
    known ids."""
    client = client_of(ctx)
    try:
        return invoke(client)
    except NotFound as error:
        if dataset_id is None:
            fail_rpc(client, error)
        raise CommandError(
            error.message or f"dataset {dataset_id!r} not found",
            code="NOT_FOUND",
            exit_code=EXIT_UNKNOWN_DATASET,
            hint=did_you_mean(closest_dataset_ids(client, dataset_id)).lstrip("; "),
        ) from None
    except DomicileRpcError as error:
        fail_rpc(client, error)


def closest_dataset_ids(client: Client, dataset_id: str) -> list[str]:
    """The known dataset ids most like `dataset_id`, from at most three pages of
    ListDatasets: datasets whose id, name or description contain its name part, those of its
    namespace, and the first page of all. Empty when the caller may not list datasets."""
    namespace, _, name = dataset_id.rpartition("/")
    candidates: set[str] = set()
    for query in dict.fromkeys((name, namespace.lower(), "")):
        try:
            page = client.list_datasets(query=query, page_size=MAX_PAGE_SIZE)
        except DomicileRpcError:  # suggestions are a courtesy
            return []
        candidates.update(d.id for d in page.items)
    if namespace:
        return closest(dataset_id, candidates)
    # A bare name (`customers`) is compared with the names of the candidates too.
    return closest(dataset_id, candidates, keys=lambda c: (c, c.rpartition("/")[2]))


def unknown_dataset_hints(ctx: click.Context, dataset_ids: Iterable[str]) -> list[str]:
    """One line per distinct unknown dataset id (at most a few): the closest known ids."""
    client = client_of(ctx)
    return [
        f"hint: dataset {dataset_id!r} is not in the catalog{did_you_mean(closest_dataset_ids(client, dataset_id))}"
        for dataset_id in list(dict.fromkeys(dataset_ids))[:_MAX_HINTED_IDS]
    ]


def fail_rpc(client: Client, error: DomicileRpcError) -> NoReturn:
    message = error.message
    violations = [(v.field, v.description) for v in error.field_violations]
    suffix = violations_suffix(violations) if violations else ""
    if suffix and message.endswith(suffix):
        message = message[: -len(suffix)]  # the violations are listed one per line below
    hint = ""
    diagnosis = client.diagnose(error)
    if diagnosis is not None:
        message = diagnosis
    elif error.retry_after:
        hint = f"retry after {error.retry_after:.1f}s"
    extra: dict[str, Any] = {}
    if error.reason:
        extra["reason"] = error.reason
    if error.metadata:
        extra["metadata"] = dict(error.metadata)
    raise CommandError(
        message,
        code=error.code.name,
        exit_code=EXIT_USAGE if isinstance(error, InvalidArgument) else EXIT_ERROR,
        field_violations=violations,
        hint=hint,
        extra=extra,
    )


def emit(ctx: click.Context, value: Any, render: Callable[[Any], str], key: str = "") -> None:
    """Print a result with `render` for humans, or as JSON (--json): an object, so `key` names
    a result that is not one (`{"decision": ...}`); a page is `{key: [...], "next_page_token":
    ...}`."""
    if not json_output(ctx):
        _echo(render(value))
    elif isinstance(value, Page):
        emit_data(ctx, {key: jsonable(value.items), "next_page_token": value.next_page_token}, "")
    else:
        emit_data(ctx, {key: jsonable(value)} if key else jsonable(value), "")


def emit_data(ctx: click.Context, data: Any, text: str) -> None:
    """Print `data` (JSON data) as JSON (--json), else `text`."""
    if json_output(ctx):
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        _echo(text)


def _echo(text: str) -> None:
    if text:
        click.echo(text)


def emit_note(ctx: click.Context, data: Any, text: str) -> None:
    """Print a note about a result written elsewhere (a file, or standard output as data) on
    standard error: `data` as JSON (--json), else `text`."""
    click.echo(json.dumps(data, sort_keys=True) if json_output(ctx) else text, err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def when(value: Any) -> str:
    """A time for tables: `2026-11-30T10:00:00Z`, or `-` when there is none."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "-"
