"""Shared client plumbing for CLI subcommands: channel creation, calls, error and output
rendering."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import grpc
from google.protobuf import json_format

from domicile.grpc_errors import details_of


@dataclass
class ClientOptions:
    """Connection options from the root command (flags or DOMICILE_* environment)."""

    server: str = "127.0.0.1:50051"
    insecure: bool = False
    dev: bool = False
    data_dir: Path = Path(".domicile")
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    token: str | None = None
    json_output: bool = False
    timeout: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)


def channel_credentials(options: ClientOptions) -> tuple[grpc.ChannelCredentials | None, str | None]:
    """(credentials, bearer token) for the options; (None, None) means plaintext.

    --dev reads the CA, client certificate/key and a fresh token from DATA_DIR/dev (created by
    `domicile dev init`); explicit --ca-cert/--cert/--key/--token override.
    """
    if options.insecure:
        return None, None
    from domicile.security.dev_credentials import client_credentials_for

    return client_credentials_for(options)


def open_channel(options: ClientOptions) -> grpc.Channel:
    credentials, token = channel_credentials(options)
    channel_options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if credentials is None:
        channel = grpc.insecure_channel(options.server, options=channel_options)
    else:
        if token:
            credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
        channel = grpc.secure_channel(options.server, credentials, options=channel_options)
    return channel


def call(ctx: click.Context, stub_class: type, method: str, request: Any) -> Any:
    """Call `method` on a stub over a channel built from the root options; on failure print
    the status (with field violations) to stderr and exit 1 (2 for INVALID_ARGUMENT)."""
    options: ClientOptions = ctx.obj
    with open_channel(options) as channel:
        stub = stub_class(channel)
        try:
            return getattr(stub, method)(request, timeout=options.timeout)
        except grpc.RpcError as error:
            fail_rpc(error)


def fail_rpc(error: grpc.RpcError) -> None:
    code = error.code()
    message = error.details()
    click.echo(f"error: {code.name}: {message}", err=True)
    try:
        details = details_of(error)
    except Exception:  # details are a courtesy; never hide the status itself
        details = {"field_violations": [], "retry_after": None}
    for field_path, description in details["field_violations"]:
        click.echo(f"  {field_path}: {description}", err=True)
    if details.get("retry_after"):
        click.echo(f"  retry after {details['retry_after']:.1f}s", err=True)
    sys.exit(2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1)


def emit(ctx: click.Context, message: Any, render: Callable[[Any], str]) -> None:
    """Print a response as JSON (--json) or with `render` for humans."""
    options: ClientOptions = ctx.obj
    if options.json_output:
        click.echo(
            json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2, sort_keys=True)
        )
    else:
        text = render(message)
        if text:
            click.echo(text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
