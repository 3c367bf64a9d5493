"""Offline administration: `domicile export` / `domicile import` move a whole catalog, with
its history, between stores (e.g. SQLite → Neo4j) as JSON Lines; `domicile backup` /
`domicile restore` copy a server's catalog, policy history and decision log together
(`domicile.backup`).

These open the store directly (not through the server): run them against a store no server
is writing to, or accept that an export is a consistent snapshot of one instant.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click

from domicile.catalog.stores import open_configured_store
from domicile.cli.base import EXIT_USAGE, command, fail
from domicile.cli.client import emit_data, emit_note, explicit_data_dir
from domicile.config import Settings, SettingsError, load_settings
from domicile.errors import DomicileError

STORE_HELP = "sqlite:///PATH, bolt://HOST:PORT or neo4j://HOST:PORT"


def _open(store: str, user: str | None, password: str | None):
    """The store, opened with the same settings (file, environment, these flags) as a server."""
    neo4j = {k: v for k, v in (("user", user), ("password", password)) if v}
    try:
        settings = load_settings(store=store, neo4j=neo4j or None)
    except SettingsError as exc:
        fail(str(exc), code="INVALID_CONFIGURATION", exit_code=EXIT_USAGE)
    return open_configured_store(settings)


@command("export")
@click.option("--store", required=True, envvar="DOMICILE_STORE", help=STORE_HELP)
@click.option("--neo4j-user", help="Neo4j user (default: DOMICILE_NEO4J__USER / the config).")
@click.option("--neo4j-password", help="Neo4j password (default: DOMICILE_NEO4J__PASSWORD / the config).")
@click.option(
    "-O",
    "--output-file",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
@click.pass_context
def export_command(ctx: click.Context, store: str, neo4j_user, neo4j_password, output: Path | None) -> None:
    """Write the whole catalog, history included, as JSON Lines."""

    async def run() -> int:
        graph = await _open(store, neo4j_user, neo4j_password)
        count = 0
        try:
            sink = output.open("w", encoding="utf-8") if output else sys.stdout
            try:
                async for record in graph.export_history():
                    sink.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
                    count += 1
            finally:
                if output:
                    sink.close()
        finally:
            await graph.close()
        return count

    try:
        count = asyncio.run(run())
    except DomicileError as exc:
        fail(str(exc), code=exc.reason or exc.code.value)
    emit_note(ctx, {"exported": count}, f"exported {count} records")


@command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store", required=True, envvar="DOMICILE_STORE", help=STORE_HELP + " (must be empty)")
@click.option("--neo4j-user", help="Neo4j user (default: DOMICILE_NEO4J__USER / the config).")
@click.option("--neo4j-password", help="Neo4j password (default: DOMICILE_NEO4J__PASSWORD / the config).")
@click.pass_context
def import_command(ctx: click.Context, source: Path, store: str, neo4j_user, neo4j_password) -> None:
    """Load a `domicile export` file into an EMPTY store (all or nothing)."""

    async def records() -> AsyncIterator[dict]:
        with source.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    fail(f"{source}:{number}: not JSON: {exc.msg}", code="INVALID_ARGUMENT", exit_code=EXIT_USAGE)

    async def run() -> int:
        graph = await _open(store, neo4j_user, neo4j_password)
        try:
            return await graph.import_history(records())
        finally:
            await graph.close()

    try:
        count = asyncio.run(run())
    except DomicileError as exc:
        fail(str(exc), code=exc.reason or exc.code.value)
    emit_note(ctx, {"imported": count}, f"imported {count} records")


def _server_settings(ctx: click.Context, config_file: Path | None, store: str | None) -> Settings:
    """The settings `domicile serve` would run with: the config file, the environment, --store
    and the root --data-dir."""
    try:
        return load_settings(config_file, store=store, data_dir=explicit_data_dir(ctx))
    except SettingsError as exc:
        fail(str(exc), code="INVALID_CONFIGURATION", exit_code=EXIT_USAGE)


_CONFIG = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The server's settings file: its store, data directory (or the root --data-dir) and decision log.",
)
_SERVER_STORE = click.option(
    "--store", envvar="DOMICILE_STORE", help="sqlite:///PATH (default: the one `domicile serve` would use)."
)


@command("backup")
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@_CONFIG
@_SERVER_STORE
@click.pass_context
def backup_command(ctx: click.Context, destination: Path, config_file: Path | None, store: str | None) -> None:
    """Copy the decision log, the policy history and the SQLite catalog, consistently, into
    DESTINATION (a new or empty directory). Safe while the server runs (docs/audit.md)."""
    from domicile.backup import backup

    try:
        report = asyncio.run(backup(_server_settings(ctx, config_file, store), destination))
    except DomicileError as exc:
        fail(str(exc), code=exc.reason or exc.code.value)
    emit_data(
        ctx,
        {
            "directory": str(report.directory),
            "files": report.files,
            "log_head_seq": report.log_head_seq,
            "log_max_catalog_revision": report.log_max_catalog_revision,
            "catalog_revision": report.catalog_revision,
        },
        f"backed up {report.files} files to {report.directory}: decision log up to line {report.log_head_seq} "
        f"(catalog revisions up to {report.log_max_catalog_revision}), catalog at revision {report.catalog_revision}",
    )


@command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_CONFIG
@_SERVER_STORE
@click.pass_context
def restore_command(ctx: click.Context, source: Path, config_file: Path | None, store: str | None) -> None:
    """Put a `domicile backup` in place (the server must be stopped). What was there is moved to
    DATA_DIR/pre-restore-<time>/, not deleted."""
    from domicile.backup import restore

    try:
        aside = restore(_server_settings(ctx, config_file, store), source)
    except DomicileError as exc:
        fail(str(exc), code=exc.reason or exc.code.value)
    emit_data(
        ctx, {"restored": str(source), "moved_aside": str(aside)}, f"restored {source}; what was there is in {aside}"
    )
