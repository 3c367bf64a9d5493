"""`domicile access show|actor|anomalies` and `domicile violations --observed` against a real
server: tables for people, `--json` for scripts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from domicile.cli.main import cli
from domicile.v1 import lineage_pb2

CUSTOMERS = "s3://bank-eu-lake/customers"
PAYMENTS = "s3://bank-in-lake/card-payments"
IRELAND, US = "aws:eu-west-1", "aws:us-east-1"


@pytest.fixture
def run(residency):
    runner = CliRunner()

    async def invoke(*args: str):
        root_args = ["--insecure", "--server", f"127.0.0.1:{residency.port}"]
        if args and args[0] == "--json":
            root_args.append("--json")
            args = args[1:]
        return await asyncio.to_thread(runner.invoke, cli, [*root_args, *args])

    return invoke


async def record(residency, run_id, region, inputs, *, at=None, job="airflow-eu/rollup"):
    request = lineage_pb2.RecordLineageRequest(job=job, run_id=run_id, run_region=region, inputs=inputs)
    if at is not None:
        request.event_time.FromDatetime(at)
    return await residency.lineage.RecordLineage(request)


async def test_access_show_and_actor(run, residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await record(residency, "r1", IRELAND, [CUSTOMERS])
    await record(residency, "r2", IRELAND, [CUSTOMERS], at=datetime.now(UTC) - timedelta(days=3))

    result = await run("access", "show", CUSTOMERS)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ACTOR", "COUNT", "FIRST", "SEEN", "LAST", "SEEN", "ACCESSES"]
    assert any(line.startswith("airflow-eu/rollup ") and f"read {IRELAND} x2" in line for line in lines)
    assert any(line.startswith("(unauthenticated) ") and "catalog-write - x1" in line for line in lines)

    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = await run("--json", "access", "show", CUSTOMERS, "--since", since)
    actors = {a["actor"]: a for a in json.loads(result.output)["actors"]}
    assert actors["airflow-eu/rollup"]["total_count"] == 1

    result = await run("access", "actor", "airflow-eu/rollup")
    assert result.exit_code == 0, result.output
    assert CUSTOMERS in result.output and "r1" in result.output and "r2" in result.output
    result = await run("access", "show", CUSTOMERS, "--since", "yesterday")
    assert result.exit_code == 2 and "ISO 8601" in result.output


async def test_violations_observed_and_anomalies(run, residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    response = await record(residency, "r1", US, [CUSTOMERS])
    (violation,) = response.observed_violations

    result = await run("violations", "--observed")
    assert result.exit_code == 3, result.output  # found some, as `violations` does
    assert "POLICY_DENIED" in result.output and "gdpr-personal-data" in result.output
    assert f"process {CUSTOMERS}" in result.output and "1 observed violation(s)" in result.output
    result = await run("--json", "violations", "--observed", "--exit-zero")
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.output)["violations"]
    assert listed["violation_id"] == violation.violation_id
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = await run("violations", "--observed", "--since", future)
    assert result.exit_code == 0 and "no observed violations" in result.output
    result = await run("violations", "--since", future)
    assert result.exit_code == 2 and "--observed" in result.output

    result = await run("access", "anomalies")
    assert result.exit_code == 0 and "no anomalies" in result.output
