"""The installed `domicile` command, run as a user runs it, against a real server with the
demo catalog and the example policy (or none, for `policy test`): exit statuses, JSON output
and errors, suggestions for mistyped values, and one clean line when an address is taken."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path

import pytest

from domicile.server import create_server
from tests.e2e.conftest import insecure_settings
from tests.e2e.test_security_cli import DOMICILE, clean_env
from tests.unit.test_policy_cli import FAILING

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CUSTOMERS = "s3://bank-eu-lake/customers"


@pytest.fixture
async def demo(tmp_path):
    running = await create_server(insecure_settings(tmp_path, demo=True, policy=EXAMPLES / "policy.yaml"))
    yield running
    await running.stop(0)


@pytest.fixture
def run(demo, tmp_path):
    async def domicile(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(
            subprocess.run,
            [DOMICILE, "--insecure", "--server", f"127.0.0.1:{demo.port}", *args],
            cwd=tmp_path,
            env=clean_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return domicile


async def test_json_before_or_after_the_command(run):
    before = await run("--json", "dataset", "get", CUSTOMERS)
    after = await run("dataset", "get", CUSTOMERS, "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(after.stdout)["dataset"]["id"] == CUSTOMERS


async def test_an_unknown_dataset_has_its_own_exit_status_and_the_closest_ids(run):
    result = await run("decide", "customers", "--op", "store", "-r", "aws:eu-west-1")
    assert result.returncode == 4, result.stderr
    assert "UNKNOWN_DATASET" in result.stdout
    assert result.stderr == f"hint: dataset 'customers' is not in the catalog; did you mean '{CUSTOMERS}'?\n"
    # A real DENY stays 3.
    denied = await run("decide", CUSTOMERS, "--op", "store", "-r", "aws:us-east-1")
    assert denied.returncode == 3 and "DENY" in denied.stdout and denied.stderr == ""
    result = await run("dataset", "get", "s3://bank-eu-lake/custmers")
    assert result.returncode == 4
    assert result.stderr.splitlines() == [
        "error: NOT_FOUND: dataset 's3://bank-eu-lake/custmers' not found",
        f"  did you mean '{CUSTOMERS}'?",
    ]
    result = await run("--json", "explain", "s3://bank-eu-lake/custmers")
    assert result.returncode == 4 and result.stdout == ""
    assert json.loads(result.stderr)["error"]["hint"] == f"did you mean '{CUSTOMERS}'?"


async def test_rpc_errors_are_printed_once_and_as_json_under_json(run):
    result = await run("decide", CUSTOMERS, "--op", "store", "-r", "eu-west-1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: INVALID_ARGUMENT: invalid request",
        "  region: unknown region 'eu-west-1'; did you mean 'aws:eu-west-1'? (see `domicile regions`)",
    ]
    result = await run("decide", CUSTOMERS, "--op", "store", "-r", "eu-west-1", "--json")
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and result.stdout == ""
    assert error["field_violations"] == [
        {
            "field": "region",
            "description": "unknown region 'eu-west-1'; did you mean 'aws:eu-west-1'? (see `domicile regions`)",
        }
    ]


async def test_violations_exit_non_zero_unless_exit_zero(run):
    result = await run("violations")
    assert result.returncode == 3 and "violation(s)" in result.stdout
    assert (await run("violations", "--exit-zero")).returncode == 0
    listed = json.loads((await run("violations", "--json", "--exit-zero")).stdout)["violations"]
    assert {v["dataset_id"] for v in listed} >= {"s3://bank-global-analytics/customer-payments-joined"}


async def test_unknown_countries_and_regions_are_refused_with_suggestions(run):
    result = await run("regions", "--country", "XX")
    assert result.returncode == 2 and result.stdout == ""
    result = await run("regions", "--country", "uk")
    assert result.returncode == 2 and "did you mean 'GB'?" in result.stderr
    result = await run("regions", "--country", "IN")
    assert result.returncode == 0 and "aws:ap-south-1" in result.stdout
    result = await run("route", CUSTOMERS, "--op", "store", "eu-central-1", "aws:eu-west-1")
    assert (
        result.returncode == 2
        and "candidates[0]: unknown region 'eu-central-1'; did you mean 'aws:eu-central-1'?" in result.stderr
    )


def test_a_failing_policy_test_is_a_negative_answer(tmp_path):
    def policy_test(text: str, *options: str) -> subprocess.CompletedProcess:
        (tmp_path / "policy.yaml").write_text(text)
        return subprocess.run(
            [DOMICILE, "policy", "test", "policy.yaml", "--now", "2026-06-01T00:00:00Z", *options],
            cwd=tmp_path,
            env=clean_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = policy_test(FAILING)
    assert result.returncode == 3 and result.stdout.splitlines()[-1] == "FAIL: 2/3 passed, 1 failed", result.stderr
    result = policy_test(FAILING, "--json")
    assert result.returncode == 3 and json.loads(result.stdout)["failed"] == 1
    assert policy_test((EXAMPLES / "policy.yaml").read_text()).returncode == 0
    result = policy_test(FAILING.replace("[US]", "[USA]"))  # not a policy: an error
    assert result.returncode == 1 and "unknown location 'USA'" in result.stderr


def _taken_port() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


@pytest.mark.parametrize("which", ["gRPC", "HTTP", "console", "ops HTTP", "gRPC health"])
async def test_an_address_in_use_is_one_line_naming_it(tmp_path, which):
    with _taken_port() as taken:
        port = taken.getsockname()[1]
        addresses = {
            name: f"127.0.0.1:{_free_port()}" for name in ("gRPC", "HTTP", "console", "ops HTTP", "gRPC health")
        }
        addresses[which] = f"127.0.0.1:{port}"
        env = clean_env(tmp_path / "home") | {"DOMICILE_HEALTH_LISTEN": addresses["gRPC health"]}
        result = await asyncio.to_thread(
            subprocess.run,
            [
                DOMICILE,
                "serve",
                "--dev",
                "--store",
                f"sqlite:///{tmp_path / 'c.db'}",
                "--data-dir",
                str(tmp_path / "data"),
                "--listen",
                addresses["gRPC"],
                "--http-listen",
                addresses["HTTP"],
                "--console-listen",
                addresses["console"],
                "--ops-listen",
                addresses["ops HTTP"],
                "--log-level",
                "ERROR",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert (
        result.stderr == f"error: cannot start: cannot listen on 127.0.0.1:{port} ({which}): address already in use\n"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_dataset_ids_are_checked_and_normalised(run):
    result = await run("dataset", "put", "not a dataset")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: INVALID_ARGUMENT: invalid dataset",
        "  dataset.id: must not contain whitespace (write a space as %20)",
    ]
    result = await run("dataset", "put", "s3://bank-eu-lake/loans/")
    assert result.returncode == 2 and "dataset.id: must not end with '/'" in result.stderr
    result = await run("--json", "dataset", "put", "S3://Bank-EU-Lake/Loans")
    assert result.returncode == 0 and json.loads(result.stdout)["dataset"]["id"] == "s3://bank-eu-lake/Loans"
    result = await run("dataset", "get", "S3://BANK-EU-LAKE/Loans", "--json")
    assert json.loads(result.stdout)["dataset"]["id"] == "s3://bank-eu-lake/Loans"
