"""The residency, policy-client and audit client commands of `domicile` against a real server."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from domicile.cli.main import cli
from tests.e2e.residency_harness import (
    COPY,
    CUSTOMERS,
    EXAMPLE_POLICY,
    FRANKFURT,
    US,
)


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


async def test_a_derived_dataset_is_decided_and_explained_by_inheritance(run, residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    derived = "s3://lake/fraud-scores"
    await residency.derive([CUSTOMERS], [derived], transform="anonymize", job="airflow-us/anonymize_customers")
    result = await run("decide", derived, "--op", "store", "-r", US)
    assert result.exit_code == 3, result.output
    assert "(not registered: judged by what it inherits along lineage)" in result.output
    assert "gdpr-personal-data" in result.output
    result = await run("explain", derived)
    assert result.exit_code == 0, result.output
    assert "not registered: known only from lineage, judged by what it inherits" in result.output
    assert (
        f"not honoured: job airflow-us/anonymize_customers claimed anonymize on {CUSTOMERS} -> {derived}, "
        "which the policy does not grant it (PII.CONTACT passed through)"
    ) in result.output
    result = await run("lineage", "show", derived)
    assert "airflow-us/anonymize_customers [anonymize, not granted]" in result.output, result.output


async def test_decide_route_check_job_explain_violations(run, residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT, US])
    await residency.derive([CUSTOMERS], [COPY])
    await residency.put(COPY)

    result = await run("decide", COPY, "--op", "store", "-r", US)
    assert result.exit_code == 3, result.output
    assert "DENY  store" in result.output and "gdpr-personal-data" in result.output
    assert f"lineage: {CUSTOMERS} -> {COPY}" in result.output
    result = await run("--json", "decide", COPY, "--op", "process", "-r", FRANKFURT)
    assert result.exit_code == 0, result.output
    decision_id = json.loads(result.output)["decision"]["decision_id"]

    result = await run("route", COPY, US, FRANKFURT, "--op", "store")
    assert result.exit_code == 0 and f"route: {FRANKFURT}" in result.output
    result = await run("route", COPY, US, "--op", "store")
    assert result.exit_code == 3 and "no candidate is allowed" in result.output

    result = await run(
        "check-job",
        "-i",
        CUSTOMERS,
        "-o",
        "s3://out",
        "--run-region",
        FRANKFURT,
        "--output-region",
        US,
        "--transform",
        "anonymize",
        "--job",
        "airflow-eu/anonymize_customers",
    )
    assert result.exit_code == 0 and "job allowed" in result.output, result.output
    assert "(not registered: judged by what it inherits along lineage)" in result.output
    result = await run("check-job", "-i", CUSTOMERS, "-o", "s3://out", "--run-region", FRANKFURT, "--output-region", US)
    assert result.exit_code == 3 and "job NOT allowed" in result.output

    result = await run("explain", COPY)
    assert result.exit_code == 0, result.output
    assert f"PII.CONTACT              via {CUSTOMERS} -> {COPY}" in result.output

    result = await run("violations")
    assert result.exit_code == 3 and CUSTOMERS in result.output and "1 violation(s)" in result.output
    result = await run("violations", "--exit-zero")
    assert result.exit_code == 0 and "1 violation(s)" in result.output

    result = await run("audit", "get", decision_id)
    assert result.exit_code == 0 and decision_id in result.output and "ALLOW" in result.output
    logged = json.loads((await run("--json", "audit", "get", decision_id)).output)["decision"]
    assert logged["decision_id"] == decision_id and logged["context"] == {}
    result = await run("audit", "replay", decision_id)
    assert result.exit_code == 0 and "replay MATCHES" in result.output, result.output
    result = await run("decide", COPY, "--op", "store", "-r", "aws:nowhere-1")
    assert result.exit_code == 2 and "region" in result.output


async def test_batch_decide_reads_questions_from_a_file_or_stdin(run, residency, tmp_path):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    questions = tmp_path / "questions.txt"
    questions.write_text(
        f"# pre-flight of tonight's copies\n{CUSTOMERS} store {FRANKFURT}\n\n{CUSTOMERS}  store   {US}\n", "utf-8"
    )
    result = await run("batch-decide", str(questions))
    assert result.exit_code == 3, result.output
    assert result.output.index(f"ALLOW  store {CUSTOMERS} in {FRANKFURT}") < result.output.index(
        f"DENY  store {CUSTOMERS} in {US}"
    )
    assert "2 decision(s): 1 ALLOW, 1 DENY" in result.output
    result = await run("--json", "batch-decide", str(questions))
    decisions = json.loads(result.output)["decisions"]
    assert [(d["outcome"], d["region"]) for d in decisions] == [("allow", FRANKFURT), ("deny", US)]
    # From standard input (the default), all allowed: exit 0.
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["--insecure", "--server", f"127.0.0.1:{residency.port}", "batch-decide"],
        input=f"{CUSTOMERS} store {FRANKFURT}\n{CUSTOMERS} process {FRANKFURT}\n",
    )
    assert result.exit_code == 0 and "2 decision(s): 2 ALLOW, 0 DENY" in result.output, result.output
    # Bad input is refused with the line that is wrong, before any call.
    for text, message in (
        (f"{CUSTOMERS} keep {US}\n", "line 1: operation 'keep'"),
        (f"\n{CUSTOMERS} store\n", "line 2"),
        ("# nothing\n", "no questions"),
        (f"{CUSTOMERS} store {US}\n" * 10_001, "10001 questions; at most 10,000 per call"),
    ):
        questions.write_text(text, "utf-8")
        result = await run("batch-decide", str(questions))
        assert result.exit_code == 2 and message in result.output, result.output
    questions.write_text(f"{CUSTOMERS} store aws:nowhere-1\n", "utf-8")  # the server's check
    result = await run("batch-decide", str(questions))
    assert result.exit_code == 2 and "requests[0].region" in result.output, result.output


async def test_policy_set_get_impact(run, tmp_path):
    result = await run("policy", "get")
    assert result.exit_code == 0 and "# version 2026.12.1" in result.output and "bank-residency" in result.output

    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE_POLICY.read_text("utf-8").replace("exemptible: false", "exemptable: false", 1), "utf-8")
    result = await run("policy", "set", str(broken))
    assert result.exit_code == 1 and f"{broken}:" in result.output and "exemptable" in result.output
    assert "the active policy is unchanged" in result.output

    candidate = tmp_path / "next.yaml"
    candidate.write_text(
        EXAMPLE_POLICY.read_text("utf-8")
        .replace('version: "2026.12.1"', 'version: "2026.12.2"')
        .replace("store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: [EEA]}"),
        "utf-8",
    )
    result = await run("policy", "impact", str(candidate))
    assert result.exit_code == 0 and "policy 2026.12.2" in result.output, result.output
    result = await run("policy", "set", "--dry-run", str(candidate))
    assert result.exit_code == 0 and "dry run" in result.output
    result = await run("policy", "set", str(candidate))
    assert result.exit_code == 0 and "policy 2026.12.2 is active" in result.output
    output = tmp_path / "active.yaml"
    result = await run("policy", "get", "-O", str(output))
    assert result.exit_code == 0 and output.read_text("utf-8") == candidate.read_text("utf-8")


async def test_history_and_search_commands(run, residency):
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    await residency.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE", "FR"], locations=[FRANKFURT])
    await residency.decide(CUSTOMERS, US)

    result = await run("audit", "decisions", "--dataset", CUSTOMERS, "--outcome", "deny")
    assert result.exit_code == 0, result.output
    assert "DENY" in result.output and "gdpr-personal-data" in result.output
    result = await run("--json", "audit", "decisions", "--since", "not a time")
    assert result.exit_code == 2
    result = await run("audit", "rate")
    assert result.exit_code == 0 and "DENY" in result.output, result.output
    result = await run("audit", "head")
    assert result.exit_code == 0 and "writer healthy" in result.output
    result = await run("audit", "events")
    assert result.exit_code == 1 and "security event log" in result.output  # --insecure keeps none
    # An event type is one the log writes (a misspelt one would list nothing, silently).
    result = await run("audit", "events", "--event", "observed-violation")
    assert result.exit_code == 2 and "observed_violation" in result.output and "access_anomaly" in result.output

    result = await run("dataset", "history", CUSTOMERS)
    assert result.exit_code == 0 and "updated" in result.output and "created" in result.output
    result = await run("dataset", "summary")
    assert result.exit_code == 0 and "PII.CONTACT" in result.output
    await residency.put(COPY, locations=["onprem:msk-dc1"])
    result = await run("audit", "violations")
    assert result.exit_code == 0 and COPY in result.output and "sanctioned-locations" in result.output
    assert "1 violation(s)" in result.output, result.output
    result = await run("dataset", "residency", CUSTOMERS, COPY, "s3://never/seen")
    assert result.exit_code == 0, result.output
    states = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[2:5]}
    assert states == {CUSTOMERS: "allowed", COPY: "VIOLATION", "s3://never/seen": "unknown"}, result.output

    result = await run("policy", "history")
    assert result.exit_code == 0 and "in force" in result.output
    version = json.loads((await run("--json", "policy", "get")).output)["version"]
    result = await run("policy", "get", "--version", version)
    assert result.exit_code == 0 and f"# version {version}" in result.output
    result = await run("explain", CUSTOMERS, "--as-of", "2000-01-01T00:00:00Z")
    assert result.exit_code == 4 and "not in the catalog" in result.output  # unknown dataset (then)
