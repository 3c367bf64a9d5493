"""The CLI client's credentials against a real `--dev` server over mTLS: where the `domicile`
command finds them (--data-dir, DOMICILE_HOME, the XDG config directory, ./.domicile), and
what it says when the connection cannot work. Most tests run the installed `domicile` command
in a directory outside the repository, with a home directory of their own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from domicile.cli.main import cli
from domicile.connection import (
    ConnectionConfigError,
    ConnectionSettings,
    credential_homes,
    find_dev_credentials,
    resolve_credentials,
    user_config_dir,
)
from domicile.security.dev_credentials import dev_paths, ensure_dev_credentials, mint_dev_token
from domicile.server import create_server
from tests.e2e.conftest import insecure_settings
from tests.e2e.test_security import dev_settings

DOMICILE = str(Path(sys.executable).with_name("domicile"))


@pytest.fixture
async def server(tmp_path):
    running = await create_server(dev_settings(tmp_path / "server"))
    yield running
    await running.stop(0)


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory outside the repository, with no credentials in it."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose home is `home`: no DOMICILE_* or XDG settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOMICILE_", "XDG_"))}
    env.update(HOME=str(home), **extra)
    return env


async def domicile(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The `domicile` command, run like a user runs it (the server answers on this loop)."""
    return await asyncio.to_thread(
        subprocess.run, [DOMICILE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def run_cli(*args: str):
    # The client blocks; the server answers on this event loop, so the CLI runs in a thread.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)


async def test_cli_finds_dev_credentials_in_the_data_dir(server, tmp_path):
    result = await run_cli("--server", f"127.0.0.1:{server.port}", "--data-dir", str(tmp_path / "server"), "regions")
    assert result.exit_code == 0, result.output
    assert "aws:eu-central-1" in result.output


async def test_cli_reports_a_missing_scope(server, tmp_path):
    token = mint_dev_token(tmp_path / "server", scopes=["lineage:read"])
    result = await run_cli(
        "--server", f"127.0.0.1:{server.port}", "--data-dir", str(tmp_path / "server"), "--token", token, "regions"
    )
    assert result.exit_code == 1
    assert "PERMISSION_DENIED" in result.output and "catalog:read" in result.output


async def test_explicit_files_override_the_dev_directory(server, tmp_path):
    paths = dev_paths(tmp_path / "server")
    token = mint_dev_token(tmp_path / "server", scopes=["catalog:read"])
    common = ("--server", f"127.0.0.1:{server.port}", "--data-dir", str(tmp_path / "elsewhere"))
    result = await run_cli(
        *common,
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
    result = await run_cli(*common, "--timeout", "3", "--ca-cert", str(paths.ca_cert), "--token", token, "regions")
    assert result.exit_code == 1 and "UNAVAILABLE" in result.output


def test_where_credentials_are_searched(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    environ = {"HOME": str(home)}
    assert [h.path for h in credential_homes(None, environ)] == [home / ".config" / "domicile", Path(".domicile")]
    assert (
        user_config_dir({"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "domicile"
    )
    assert user_config_dir({"HOME": str(home), "XDG_CONFIG_HOME": "relative"}) == home / ".config" / "domicile"
    # An explicit choice is the only place searched.
    assert [h.path for h in credential_homes(tmp_path / "d", environ)] == [tmp_path / "d"]
    assert [h.path for h in credential_homes(None, {**environ, "DOMICILE_HOME": "/srv/x"})] == [Path("/srv/x")]

    assert find_dev_credentials(None, environ) is None
    ensure_dev_credentials(Path(".domicile"))  # where `make run` keeps them: the current directory
    assert find_dev_credentials(None, environ).origin == "current directory"
    ensure_dev_credentials(home / ".config" / "domicile")
    assert find_dev_credentials(None, environ).origin == "XDG config directory"  # before ./.domicile


def test_missing_or_half_given_credentials_are_configuration_errors(tmp_path):
    with pytest.raises(ConnectionConfigError) as info:
        resolve_credentials(ConnectionSettings(dev=True), {"HOME": str(tmp_path)})
    message = str(info.value)
    assert str(tmp_path / ".config" / "domicile" / "dev") in message and ".domicile/dev" in message
    assert "DOMICILE_HOME" in message and "--install-client" in message
    with pytest.raises(ConnectionConfigError, match="together"):
        resolve_credentials(ConnectionSettings(data_dir=tmp_path, client_cert=tmp_path / "c.pem"))
    with pytest.raises(ConnectionConfigError, match="cannot read"):
        resolve_credentials(ConnectionSettings(ca_cert=tmp_path / "absent.pem"))


async def test_installed_client_credentials_work_from_any_directory(server, tmp_path, outside):
    home = tmp_path / "home"
    address = f"127.0.0.1:{server.port}"
    # Nothing found: the message says where it looked and what to do, in one line.
    result = await domicile("--server", address, "regions", cwd=outside, env=clean_env(home))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "not signed by any of the system's CA certificates" in result.stderr
    assert str(home / ".config" / "domicile" / "dev") in result.stderr and "DOMICILE_HOME" in result.stderr

    # DOMICILE_HOME names the server's data directory.
    env = clean_env(home, DOMICILE_HOME=str(tmp_path / "server"))
    result = await domicile("--server", address, "regions", "--country", "DE", cwd=outside, env=env)
    assert result.returncode == 0, result.stderr
    assert "aws:eu-central-1" in result.stdout

    # `dev init --install-client` copies the client side to ~/.config/domicile once.
    result = await domicile(
        "--data-dir", str(tmp_path / "server"), "dev", "init", "--install-client", cwd=outside, env=clean_env(home)
    )
    assert result.returncode == 0, result.stderr
    assert "already exist" in result.stdout and str(home / ".config" / "domicile" / "dev") in result.stdout
    installed = home / ".config" / "domicile" / "dev"
    assert sorted(p.name for p in installed.iterdir()) == [
        "ca.pem",
        "client-key.pem",
        "client.pem",
        "jwt-key.pem",
        "jwt-public.pem",
    ]
    assert installed.stat().st_mode & 0o777 == 0o700 and (installed / "client-key.pem").stat().st_mode & 0o777 == 0o600
    result = await domicile("--server", address, "health", cwd=outside, env=clean_env(home))
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr
    result = await domicile("dev", "token", "--scope", "catalog:read", cwd=outside, env=clean_env(home))
    assert result.returncode == 0 and result.stdout.count(".") == 2  # a JWT, signed with the installed key


async def test_a_server_with_other_credentials_is_named_with_the_ca_file(server, tmp_path, outside):
    other = tmp_path / "other"
    ensure_dev_credentials(other)  # a CA the running server does not trust
    result = await domicile(
        "--server",
        f"127.0.0.1:{server.port}",
        "--data-dir",
        str(other),
        "regions",
        cwd=outside,
        env=clean_env(tmp_path / "home"),
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"not signed by the CA in {other / 'dev' / 'ca.pem'}" in result.stderr
    assert "likely cause: the server uses other credentials" in result.stderr


async def test_tls_against_plaintext_and_plaintext_against_tls_are_one_line(server, tmp_path, outside):
    plaintext = await create_server(insecure_settings(tmp_path / "plain"))
    try:
        env = clean_env(tmp_path / "home", DOMICILE_HOME=str(tmp_path / "server"))
        result = await domicile("--server", f"127.0.0.1:{plaintext.port}", "regions", cwd=outside, env=env)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "speaks plaintext (a server started with --insecure?) but this client used TLS" in result.stderr
        assert "add --insecure" in result.stderr

        result = await domicile("--server", f"127.0.0.1:{server.port}", "--insecure", "regions", cwd=outside, env=env)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "speaks TLS but this client connected in plaintext (--insecure)" in result.stderr
    finally:
        await plaintext.stop(0)
