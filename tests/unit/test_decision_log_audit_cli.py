"""`domicile audit verify` and `audit keygen` over real decision log files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from domicile.cli.audit import audit
from domicile.cli.main import cli
from domicile.router.decision_log import CheckpointSigner, FileSink
from domicile.router.decision_log.assembly import DEV_CHECKPOINT_KEY
from domicile.router.decision_log.checkpoints import SecurityEventSink, ensure_key, load_public_key, public_pem
from domicile.security.events import SecurityEventLog
from tests.unit.decision_log_helpers import SIGNER, lines, open_log, write_one_per_line


@pytest.fixture
def public_key(tmp_path) -> Path:
    path = tmp_path / "checkpoint.pub"
    path.write_bytes(public_pem(SIGNER.public_key))
    return path


@pytest.fixture
async def log_file(tmp_path) -> Path:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, checkpoint_lines=2)
    await write_one_per_line(log, range(3))
    await log.close()
    return path


def run(*args: str):
    return CliRunner().invoke(audit, ["verify", *args])


def test_verify_reports_the_chain_and_the_last_verified_checkpoint(log_file: Path, public_key: Path) -> None:
    result = run("--log", str(log_file), "--public-key", str(public_key))
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    # The file line, decision 0, a checkpoint, decisions 1 and 2, a checkpoint.
    assert out[0] == f"OK: {log_file} (replica replica-a): 1 file, 6 lines, 3 decisions, chain intact"
    assert out[1].startswith("  last verified checkpoint: line 5 signed ") and SIGNER.key_id in out[1]
    assert out[-1].startswith("head: ") and out[-1].endswith("(line 6)")


def test_verify_names_the_line_where_one_byte_was_changed(log_file: Path, public_key: Path) -> None:
    data = bytearray(log_file.read_bytes())
    position = data.index(b"customers-1") + len(b"customers-")  # in line 4
    data[position] = ord("7")
    log_file.write_bytes(bytes(data))
    result = run("--log", str(log_file), "--public-key", str(public_key))
    assert result.exit_code == 1
    assert "decisions.jsonl line 4:" in result.output and "modified" in result.output


def test_verify_detects_a_truncated_log_against_the_security_event_log(tmp_path: Path, public_key: Path) -> None:
    async def write() -> None:
        events = SecurityEventLog(tmp_path / "security.jsonl")
        log = await open_log(tmp_path / "decisions.jsonl", checkpoint_lines=2, sinks=[SecurityEventSink(events)])
        await write_one_per_line(log, range(4))
        await log.close()
        events.close()

    asyncio.run(write())
    log_file = tmp_path / "decisions.jsonl"
    assert (
        run(
            "--log", str(log_file), "--public-key", str(public_key), "--anchors", str(tmp_path / "security.jsonl")
        ).exit_code
        == 0
    )
    log_file.write_bytes(b"".join(lines(log_file)[:4]))
    result = run("--log", str(log_file), "--public-key", str(public_key), "--anchors", str(tmp_path / "security.jsonl"))
    assert result.exit_code == 1 and "lines were cut off the end" in result.output


async def test_verify_takes_several_series(tmp_path: Path, public_key: Path) -> None:
    paths = []
    for replica in ("eu-1", "eu-2"):
        path = tmp_path / replica / "decisions.jsonl"
        log = await open_log(path, replica=replica)
        await write_one_per_line(log, range(2))
        await log.close()
        paths.append(path)
    result = run("--log", str(paths[0]), "--log", str(paths[1]), "--public-key", str(public_key))
    assert result.exit_code == 0, result.output
    assert "(replica eu-1)" in result.output and "(replica eu-2)" in result.output
    result = run("--log", str(paths[0]), "--log", str(paths[0]), "--public-key", str(public_key))
    assert result.exit_code == 1 and "decision ids would be ambiguous" in result.output


def test_verify_needs_a_key_or_says_it_skips_signatures(log_file: Path) -> None:
    result = run("--log", str(log_file))
    assert result.exit_code == 2 and "--public-key" in result.output
    result = run("--log", str(log_file), "--skip-signatures")
    assert result.exit_code == 0 and "NOT checked (--skip-signatures)" in result.output


def test_verify_with_the_wrong_key_fails(log_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    CliRunner().invoke(audit, ["keygen", str(other)])
    result = run("--log", str(log_file), "--public-key", str(other.with_name("other.pem.pub")))
    assert result.exit_code == 1 and "not among the trusted keys" in result.output


def test_verify_defaults_to_the_data_dir_and_its_development_key(tmp_path: Path) -> None:
    async def write() -> None:
        signer = CheckpointSigner.from_file(ensure_key(tmp_path / DEV_CHECKPOINT_KEY))
        log = await open_log(tmp_path / "decisions.jsonl", signer=signer)
        await write_one_per_line(log, range(3))
        await log.close()

    asyncio.run(write())
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "audit", "verify"])
    assert result.exit_code == 0 and "3 decisions, chain intact" in result.output
    # DOMICILE_HOME names the data directory when --data-dir does not.
    result = CliRunner(env={"DOMICILE_HOME": str(tmp_path)}).invoke(cli, ["audit", "verify", "--json"])
    assert result.exit_code == 0
    (series,) = json.loads(result.output)["series"]
    assert series["ok"] and series["decisions"] == 3 and series["last_verified_checkpoint"]["key_id"]


def test_verify_of_a_missing_log_exits_2(tmp_path: Path, public_key: Path) -> None:
    result = run("--log", str(tmp_path / "missing.jsonl"), "--public-key", str(public_key))
    assert result.exit_code == 2 and "no decision log there" in result.output


def test_keygen_makes_a_key_and_its_public_half_and_keeps_an_existing_one(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "checkpoint.pem"
    result = CliRunner().invoke(audit, ["keygen", str(key)])
    assert result.exit_code == 0 and "created" in result.output
    assert key.stat().st_mode & 0o777 == 0o600
    signer = CheckpointSigner.from_file(key)
    assert public_pem(load_public_key(key.with_name("checkpoint.pem.pub"))) == public_pem(signer.public_key)
    before = key.read_bytes()
    assert "kept" in CliRunner().invoke(audit, ["keygen", str(key)]).output and key.read_bytes() == before


async def test_an_anchor_file_is_read_like_the_security_log(tmp_path: Path, public_key: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    log = await open_log(tmp_path / "decisions.jsonl", checkpoint_lines=2, sinks=[FileSink(anchors)])
    await write_one_per_line(log, range(4))
    await log.close()
    result = run("--log", str(tmp_path / "decisions.jsonl"), "--public-key", str(public_key), "--anchors", str(anchors))
    assert result.exit_code == 0 and "anchored checkpoints agree with the log" in result.output
