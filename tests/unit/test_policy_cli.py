"""`domicile policy check|test FILE`, through click's runner on the `policy` group."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from domicile.cli.policy import policy
from domicile.router.policy import MAX_POLICY_BYTES
from tests.unit.test_policy import KEY_BOMB

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FAILING = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata: {name: t, version: "3"}
rules:
  - {id: us-only, match: {classifications: [PII]}, store: {allow: [US]}}
exemptions:
  - {id: EX, dataset: "s3://x", operation: store, regions: [DE], expires: "2027-01-01T00:00:00Z", approved_by: me}
tests:
  - {name: pii goes to the us, dataset: {classifications: [PII]}, operation: store, region: "aws:us-east-1",
     want: allow}
  - {name: pii goes to frankfurt, dataset: {classifications: [PII]}, operation: store, region: "aws:eu-central-1",
     want: allow}
  - {name: exemption before expiry, dataset: {id: "s3://x", classifications: [PII]}, operation: store,
     region: "aws:eu-central-1", want: allow, now: "2026-12-01T00:00:00Z"}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_check_ok_prints_the_version(runner: CliRunner) -> None:
    result = runner.invoke(policy, ["check", str(EXAMPLES / "policy.yaml")])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "version 2026.12.1" in result.output
    assert "warning" not in result.stderr


def test_check_warns_of_a_declassifier_granted_to_every_job(runner: CliRunner, tmp_path: Path) -> None:
    text = (EXAMPLES / "policy.yaml").read_text().replace('jobs: ["airflow-eu/anonymize_*"]', 'jobs: ["*"]')
    path = write(tmp_path, text)
    result = runner.invoke(policy, ["check", path])
    assert result.exit_code == 0 and "OK" in result.output
    (line,) = [line for line in result.stderr.splitlines() if "warning" in line]
    assert (
        line.startswith(f"{path}:") and ": warning: declassifiers[0].jobs[0]: '*' grants transform 'anonymize'" in line
    )


def test_check_refuses_a_declassifier_without_jobs(runner: CliRunner, tmp_path: Path) -> None:
    text = (EXAMPLES / "policy.yaml").read_text().replace(', jobs: ["airflow-in/tokenize_*"]', "")
    path = write(tmp_path, text)
    result = runner.invoke(policy, ["check", path])
    assert result.exit_code == 1
    assert "declassifiers[2]: declassifier 'tokenize' needs 'jobs'" in result.stderr


def test_check_prints_each_error_with_file_line_and_column(runner: CliRunner) -> None:
    path = str(EXAMPLES / "broken-policy.yaml")
    result = runner.invoke(policy, ["check", path])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert f"{path}:25:5: rules[0].proces: unknown key 'proces'" in lines
    assert f"{path}:27:5: rules[1].id: duplicate rule id 'gdpr-personal-data'" in lines
    assert lines[-1].endswith("error(s)")
    assert len(lines) >= 11


def test_check_missing_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(policy, ["check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2


def test_test_passes_on_the_example(runner: CliRunner) -> None:
    result = runner.invoke(policy, ["test", str(EXAMPLES / "policy.yaml"), "--now", "2026-12-01T00:00:00+00:00"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(line.startswith("PASS: ") for line in lines)
    assert lines[-1].startswith("PASS: ") and "passed" in lines[-1] and "failed" not in lines[-1]


def test_test_reports_failures_with_reasons(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, FAILING)
    result = runner.invoke(policy, ["test", path, "--now", "2026-06-01T00:00:00+00:00"])
    assert result.exit_code == 3  # a negative answer, as a DENY; 1 is for errors
    lines = result.output.splitlines()
    assert lines[0] == f"PASS: pii goes to the us ({path}:9): want allow, got allow"
    assert lines[1] == f"FAIL: pii goes to frankfurt ({path}:11): want allow, got deny"
    assert lines[2].strip().startswith("RULE_DENIED: rule us-only")
    assert lines[3].startswith("PASS: exemption before expiry")
    assert lines[-1] == "FAIL: 2/3 passed, 1 failed"


def test_test_uses_each_test_now_over_the_option(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, FAILING)
    # After the exemption expired, only the test with its own `now` still sees it.
    result = runner.invoke(policy, ["test", path, "--now", "2030-01-01T00:00:00+00:00"])
    assert "PASS: exemption before expiry" in result.output


def test_now_is_an_iso_8601_time_utc_without_offset(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, FAILING)
    with_offset = runner.invoke(policy, ["test", path, "--now", "2026-06-01T00:00:00+00:00"])
    without = runner.invoke(policy, ["test", path, "--now", "2026-06-01T00:00:00"])
    assert without.exit_code == with_offset.exit_code == 3 and without.output == with_offset.output
    result = runner.invoke(policy, ["test", path, "--now", "yesterday"])
    assert result.exit_code == 2
    assert "'yesterday' is not an ISO 8601 time such as 2026-11-30T10:00:00Z" in result.stderr
    assert "%Y" not in runner.invoke(policy, ["test", "--help"]).output


def test_test_of_an_invalid_policy_prints_errors(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, FAILING.replace("[US]", "[USA]"))
    result = runner.invoke(policy, ["test", path])
    assert result.exit_code == 1
    assert f"{path}:5:" in result.stderr and "unknown location 'USA'" in result.stderr


def test_test_without_tests(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, FAILING.split("tests:")[0])
    result = runner.invoke(policy, ["test", path])
    assert result.exit_code == 0
    assert "no tests" in result.output


def test_verbose_shows_reasons_of_passing_tests(runner: CliRunner) -> None:
    result = runner.invoke(policy, ["test", "-v", str(EXAMPLES / "policy.yaml"), "--now", "2026-12-01T00:00:00+00:00"])
    assert "RULE_DENIED: rule gdpr-personal-data (GDPR Art. 44-45)" in result.output
    assert "EXEMPTION_APPLIED: exemption EX-2026-041" in result.output


def test_check_applies_the_servers_size_limit(runner: CliRunner, tmp_path: Path) -> None:
    """The finding: `policy check` passed a 10 MB policy that SetPolicy refuses."""
    valid = (EXAMPLES / "policy.yaml").read_text()
    path = write(tmp_path, valid + "# padding\n" * (10 * 1024 * 1024 // 10))
    result = runner.invoke(policy, ["check", path])
    assert result.exit_code == 1
    assert f"{path}:1:1: the policy is larger than {MAX_POLICY_BYTES} bytes" in result.output


def test_check_refuses_a_key_alias_bomb_with_a_short_message(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(policy, ["check", write(tmp_path, KEY_BOMB)])
    assert result.exit_code == 1
    assert "a key must be a string, not a list" in result.output
    assert len(result.output) < 1000
