"""Client plumbing for the CLI's RPC commands: the connection (`domicile.connection`), calls,
turning a failed call into one reported error, and printing responses."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click
import grpc
from google.protobuf import json_format

from domicile.catalog.validation import MAX_PAGE_SIZE
from domicile.cli.base import EXIT_ERROR, EXIT_UNKNOWN_DATASET, EXIT_USAGE, CommandError, json_output
from domicile.connection import (
    ConnectionConfigError,
    ConnectionSettings,
    ResolvedCredentials,
    diagnose_failure,
    open_channel,
    resolve_credentials,
)
from domicile.errors import violations_suffix
from domicile.grpc_errors import details_of
from domicile.suggest import closest, did_you_mean
from domicile.v1 import catalog_pb2, catalog_pb2_grpc

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


def credentials(options: ClientOptions) -> ResolvedCredentials:
    """The resolved credentials of this invocation (resolved once: a dev token is minted)."""
    resolved = options.extra.get("credentials")
    if resolved is None:
        try:
            resolved = resolve_credentials(options.connection)
        except ConnectionConfigError as exc:
            raise CommandError(str(exc), code="CONNECTION", exit_code=EXIT_USAGE) from None
        options.extra["credentials"] = resolved
    return resolved


def call(ctx: click.Context, stub_class: type, method: str, request: Any, *, dataset_id: str | None = None) -> Any:
    """Call `method` on a stub over a channel built from the root options; a failed call
    raises CommandError (exit 1, 2 for INVALID_ARGUMENT) with the status, its field
    violations, and for a transport failure its likely cause. With `dataset_id`, NOT_FOUND
    means that dataset is unknown: exit 4, naming the closest known ids."""
    options = options_of(ctx)
    resolved = credentials(options)
    with open_channel(options.connection, resolved) as channel:
        stub = stub_class(channel)
        try:
            return getattr(stub, method)(request, timeout=options.connection.timeout)
        except grpc.RpcError as error:
            if dataset_id is not None and error.code() == grpc.StatusCode.NOT_FOUND:
                raise CommandError(
                    error.details() or f"dataset {dataset_id!r} not found",
                    code="NOT_FOUND",
                    exit_code=EXIT_UNKNOWN_DATASET,
                    hint=did_you_mean(closest_dataset_ids(channel, dataset_id, options.connection.timeout)).lstrip(
                        "; "
                    ),
                ) from None
            fail_rpc(error, options.connection, resolved)


def closest_dataset_ids(channel: grpc.Channel, dataset_id: str, timeout: float) -> list[str]:
    """The known dataset ids most like `dataset_id`, from at most three pages of
    ListDatasets: datasets whose id, name or description contain its name part, those of its
    namespace, and the first page of all. Empty when the caller may not list datasets."""
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    namespace, _, name = dataset_id.rpartition("/")
    candidates: set[str] = set()
    for query in dict.fromkeys((name, namespace.lower(), "")):
        try:
            page = stub.ListDatasets(
                catalog_pb2.ListDatasetsRequest(query=query, page_size=MAX_PAGE_SIZE), timeout=timeout
            )
        except grpc.RpcError:  # suggestions are a courtesy
            return []
        candidates.update(d.id for d in page.datasets)
    if namespace:
        return closest(dataset_id, candidates)
    # A bare name (`customers`) is compared with the names of the candidates too.
    return closest(dataset_id, candidates, keys=lambda c: (c, c.rpartition("/")[2]))


def unknown_dataset_hints(ctx: click.Context, dataset_ids: Iterable[str]) -> list[str]:
    """One line per distinct unknown dataset id (at most a few): the closest known ids."""
    options = options_of(ctx)
    lines = []
    with open_channel(options.connection, credentials(options)) as channel:
        for dataset_id in list(dict.fromkeys(dataset_ids))[:_MAX_HINTED_IDS]:
            suggestion = did_you_mean(closest_dataset_ids(channel, dataset_id, options.connection.timeout))
            lines.append(f"hint: dataset {dataset_id!r} is not in the catalog{suggestion}")
    return lines


def fail_rpc(error: grpc.RpcError, connection: ConnectionSettings, resolved: ResolvedCredentials) -> NoReturn:
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    try:
        details = details_of(error)
    except Exception:  # details are a courtesy; never hide the status itself
        details = {"field_violations": [], "retry_after": None, "reason": "", "metadata": {}}
    hint = ""
    suffix = violations_suffix(details["field_violations"]) if details["field_violations"] else ""
    if suffix and message.endswith(suffix):
        message = message[: -len(suffix)]  # the violations are listed one per line below
    if code == grpc.StatusCode.UNAVAILABLE:
        diagnosis = diagnose_failure(connection, resolved, message)
        if diagnosis is not None:
            message, hint = diagnosis, ""
    elif details.get("retry_after"):
        hint = f"retry after {details['retry_after']:.1f}s"
    extra: dict[str, Any] = {}
    if details.get("reason"):
        extra["reason"] = details["reason"]
    if details.get("metadata"):
        extra["metadata"] = details["metadata"]
    raise CommandError(
        message,
        code=code.name,
        exit_code=EXIT_USAGE if code == grpc.StatusCode.INVALID_ARGUMENT else EXIT_ERROR,
        field_violations=details["field_violations"],
        hint=hint,
        extra=extra,
    )


def message_json(message: Any) -> str:
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2, sort_keys=True)


def emit(ctx: click.Context, message: Any, render: Callable[[Any], str]) -> None:
    """Print a response as JSON (--json) or with `render` for humans."""
    if json_output(ctx):
        click.echo(message_json(message))
    else:
        text = render(message)
        if text:
            click.echo(text)


def emit_data(ctx: click.Context, data: Any, text: str) -> None:
    """Print `data` as JSON (--json), else `text` (for results that are not a message)."""
    if json_output(ctx):
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif text:
        click.echo(text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
