"""`domicile audit verify` over a real decision log file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from domicile.cli.audit import audit
from domicile.cli.main import cli
from domicile.router.decision_log import DecisionLog
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode


@pytest.fixture
async def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, durable=True)  # flushed one by one: one line each
    for n in range(3):
        log.append(
            Decision(
                decision_id=f"d{n}",
                outcome=Outcome.DENY,
                dataset_id=f"s3://bank-in/payments-{n}",
                operation=Operation.STORE,
                region="aws:eu-central-1",
                allowed_regions=("azure:centralindia",),
                reasons=(
                    Reason(ReasonCode.RULE_DENIED, "Indian payment data is stored in India", "rbi-payment-storage"),
                ),
                policy_version="2026.11.1",
                catalog_revision=n,
                decide_time=datetime(2026, 11, 30, tzinfo=UTC),
            )
        )
        await log.flush()
    await log.close()
    return path


def test_verify_reports_an_intact_chain(log_file: Path) -> None:
    result = CliRunner().invoke(audit, ["verify", "--log", str(log_file)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "OK: 3 decisions in 3 lines, chain intact"


def test_verify_names_the_line_where_one_byte_was_changed(log_file: Path) -> None:
    data = bytearray(log_file.read_bytes())
    second_line = data.index(b"\n") + 1
    position = data.index(b"payments-1", second_line) + len(b"payments-")
    data[position] = ord("7")  # one byte of line 2
    log_file.write_bytes(bytes(data))
    result = CliRunner().invoke(audit, ["verify", "--log", str(log_file)])
    assert result.exit_code == 1
    assert "line 2:" in result.output and "modified" in result.output


def test_verify_detects_a_truncated_log_against_the_head_printed_earlier(log_file: Path) -> None:
    first = CliRunner().invoke(audit, ["verify", "--log", str(log_file)])
    head = first.output.splitlines()[1].removeprefix("head: ")
    log_file.write_bytes(b"".join(log_file.read_bytes().splitlines(keepends=True)[:2]))
    result = CliRunner().invoke(audit, ["verify", "--log", str(log_file), "--expected-head", head])
    assert result.exit_code == 1 and "expected head" in result.output


def test_verify_defaults_to_the_data_dir_of_the_root_command(log_file: Path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(log_file.parent), "audit", "verify"])
    assert result.exit_code == 0 and "OK: 3 decisions" in result.output
    # DOMICILE_HOME names the data directory when --data-dir does not.
    result = CliRunner(env={"DOMICILE_HOME": str(log_file.parent)}).invoke(cli, ["audit", "verify", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["head"]


def test_verify_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(audit, ["verify", "--log", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "cannot read" in result.output
