"""The CLI client's credentials against a `--dev` server over mTLS."""

from __future__ import annotations

import asyncio

import click
import pytest
from click.testing import CliRunner

from domicile.cli.client import ClientOptions
from domicile.cli.main import cli
from domicile.security.dev_credentials import client_credentials_for, dev_paths, mint_dev_token
from domicile.server import create_server
from tests.e2e.test_security import dev_settings


@pytest.fixture
async def server(tmp_path):
    running = await create_server(dev_settings(tmp_path))
    yield running
    await running.stop(0)


async def run_cli(*args: str):
    # The client blocks; the server answers on this event loop, so the CLI runs in a thread.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)


async def test_cli_finds_dev_credentials_in_the_data_dir(server, tmp_path):
    result = await run_cli("--server", f"127.0.0.1:{server.port}", "--data-dir", str(tmp_path), "regions")
    assert result.exit_code == 0, result.output
    assert "aws:eu-central-1" in result.output


async def test_cli_reports_a_missing_scope(server, tmp_path):
    token = mint_dev_token(tmp_path, scopes=["lineage:read"])
    result = await run_cli(
        "--server", f"127.0.0.1:{server.port}", "--data-dir", str(tmp_path), "--token", token, "regions"
    )
    assert result.exit_code == 1
    assert "PERMISSION_DENIED" in result.output and "catalog:read" in result.output


async def test_explicit_files_override_the_dev_directory(server, tmp_path):
    paths = dev_paths(tmp_path)
    token = mint_dev_token(tmp_path, scopes=["catalog:read"])
    result = await run_cli(
        "--server",
        f"127.0.0.1:{server.port}",
        "--data-dir",
        str(tmp_path / "elsewhere"),
        "--ca-cert",
        str(paths.ca_cert),
        "--cert",
        str(paths.client_cert),
        "--key",
        str(paths.client_key),
        "--token",
        token,
        "regions",
    )
    assert result.exit_code == 0, result.output
    # Without a client certificate the mTLS handshake fails: UNAVAILABLE, exit 1.
    result = await run_cli(
        "--server",
        f"127.0.0.1:{server.port}",
        "--timeout",
        "3",
        "--data-dir",
        str(tmp_path / "elsewhere"),
        "--ca-cert",
        str(paths.ca_cert),
        "--token",
        token,
        "regions",
    )
    assert result.exit_code == 1 and "UNAVAILABLE" in result.output


def test_dev_option_without_credentials_is_a_usage_error(tmp_path):
    with pytest.raises(click.UsageError, match="dev init"):
        client_credentials_for(ClientOptions(dev=True, data_dir=tmp_path))
    with pytest.raises(click.UsageError, match="together"):
        client_credentials_for(ClientOptions(data_dir=tmp_path, client_cert=tmp_path / "c.pem"))
