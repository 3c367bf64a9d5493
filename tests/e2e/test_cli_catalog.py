"""The catalog CLI against a real server (SQLite store)."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from domicile.cli.main import cli


@pytest.fixture
def run(server):
    runner = CliRunner()

    async def invoke(*args: str):
        return await asyncio.to_thread(
            runner.invoke, cli, ["--insecure", "--server", f"127.0.0.1:{server.port}", *args]
        )

    return invoke


pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


async def test_put_get_list_delete_round_trip(run):
    result = await run(
        "dataset",
        "put",
        "s3://bank-eu-lake/loans",
        "--name",
        "Loan book",
        "--owner",
        "credit@bank.example",
        "-c",
        "PII.IDENTITY",
        "-g",
        "DE",
        "-g",
        "AT",
        "-l",
        "aws:eu-central-1",
        "-t",
        "domain=credit",
        "-f",
        "borrower_email:PII.CONTACT",
    )
    assert result.exit_code == 0, result.output
    assert "s3://bank-eu-lake/loans" in result.output and "AT, DE" in result.output

    result = await run("--json", "dataset", "get", "s3://bank-eu-lake/loans")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["dataset"]
    assert data["origins"] == ["AT", "DE"] and data["fields"][0]["classifications"] == ["PII.CONTACT"]

    result = await run("dataset", "list", "-c", "PII")
    assert result.exit_code == 0 and "s3://bank-eu-lake/loans" in result.output

    result = await run("dataset", "put", "s3://bank-eu-lake/loans", "--name", "stale", "--expected-revision", "999")
    assert result.exit_code == 1 and "ABORTED" in result.output

    result = await run("dataset", "delete", "s3://bank-eu-lake/loans")
    assert result.exit_code == 0
    result = await run("dataset", "get", "s3://bank-eu-lake/loans")
    assert result.exit_code == 4 and "NOT_FOUND" in result.output


async def test_validation_errors_are_printed_per_field(run):
    result = await run("dataset", "put", "s3://x/y", "-l", "aws:nowhere", "-l", "eu-west-1")
    assert result.exit_code == 2
    assert "dataset.locations[0]" in result.output
    assert "dataset.locations[1]: unknown region 'eu-west-1'; did you mean 'aws:eu-west-1'?" in result.output
    # Countries are checked before the call, with the code probably meant.
    result = await run("dataset", "put", "s3://x/y", "-g", "DE", "-g", "Deutschland")
    assert result.exit_code == 2 and "'Deutschland' is not an ISO 3166-1 alpha-2 country code" in result.output
    result = await run("dataset", "list", "--origin", "uk")
    assert result.exit_code == 2 and "did you mean 'GB'?" in result.output


async def test_put_from_file(run, tmp_path):
    spec = tmp_path / "ds.yaml"
    spec.write_text(
        "id: s3://bank-in-lake/upi\nname: UPI payments\nclassifications: [FINANCIAL.PAYMENT]\norigins: [IN]\n"
        "locations: ['aws:ap-south-1']\n"
    )
    result = await run("dataset", "put", "--file", str(spec))
    assert result.exit_code == 0, result.output
    result = await run("dataset", "list", "--origin", "IN")
    assert "s3://bank-in-lake/upi" in result.output


async def test_regions(run):
    result = await run("regions", "--country", "IN")
    assert result.exit_code == 0
    assert "aws:ap-south-1" in result.output and "azure:centralindia" in result.output
    assert "aws:eu-central-1" not in result.output


async def test_health(run):
    result = await run("health")
    assert result.exit_code == 0 and result.output.strip() == "SERVING"
    result = await run("health", "--service", "domicile.v1.ResidencyService")
    assert result.exit_code == 0 and result.output.strip() == "SERVING"
