"""A decision log written by the release before format 4 keeps working, with no operator step.

tests/fixtures/decision_log_format3 holds what that release wrote (see generate.py there): a
series of two files of format-3 lines, its policy history and its catalog, and the public key of
the development key that signed its checkpoints. Started on them, the current release continues
the active file with format-4 lines -- one chain, format-3 lines then format-4 lines, in one
file and across the next rotation -- and every reader reads both: `domicile audit verify`,
GetDecision with its proof, ReplayDecision, decision search and backup.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from domicile.app import App
from domicile.backup import backup
from domicile.catalog.stores import open_store
from domicile.cli.main import cli
from domicile.config import load_settings
from domicile.errors import DomicileError
from domicile.router.decision_log import decisions_of_line
from domicile.router.decision_log.assembly import DEV_CHECKPOINT_KEY
from domicile.router.decision_log.checkpoints import CheckpointSigner, public_pem
from domicile.router.decision_search import DecisionQuery
from domicile.router.runtime import Router
from domicile.router.types import Operation

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "decision_log_format3"
LOG_FILES = ("decisions.000001.jsonl", "decisions.jsonl")
CUSTOMERS = "s3://bank-eu/customers"
JOINED = "s3://bank-eu/joined"


def fixture_decisions() -> dict[str, object]:
    """Every decision of the fixture's log by id, as its format-3 lines hold it."""
    return {
        logged.decision.decision_id: logged.decision
        for name in LOG_FILES
        for line in (FIXTURE / name).read_bytes().splitlines(keepends=True)
        for logged in decisions_of_line(line)
    }


def line_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def settings_for(data_dir: Path, **audit):
    return load_settings(
        store=f"sqlite:///{data_dir / 'catalog.db'}",
        data_dir=data_dir,
        insecure=True,
        # The fixture's checkpoints were signed with a development key that is not kept: its
        # public key is trusted as an earlier key (a key rotation); the server signs with its own.
        audit={"checkpoint_public_key_files": [str(FIXTURE / "checkpoint.pub")], **audit},
    )


@pytest.fixture
async def data_dir(tmp_path) -> Path:
    """A data directory holding the fixture's catalog (imported), policy history and log."""
    store = await open_store(settings_for(tmp_path).store)

    async def records():
        with (FIXTURE / "catalog.jsonl").open(encoding="utf-8") as source:
            for line in source:
                yield json.loads(line)

    await store.import_history(records())
    await store.close()
    for name in ("policies.jsonl", *LOG_FILES):
        shutil.copy(FIXTURE / name, tmp_path / name)
    return tmp_path


async def started(data_dir: Path, **audit) -> App:
    settings = settings_for(data_dir, **audit)
    app = App(settings=settings, store=await open_store(settings.store))
    app.router = await Router.start(app)
    return app


async def stopped(app: App) -> None:
    await app.router.close()
    await app.store.close()


async def decide_every_way(router: Router) -> list[str]:
    """Decisions of every path that writes the log: Decide, Route and CheckJob (the engine's
    lane), BatchDecide (entries the engine renders), ScanViolations (rendered from Python
    decisions); the ids of all but the last."""
    made = [router.decide(CUSTOMERS, Operation.STORE, "aws:us-east-1").decision_id]
    batch = await router.batch_decide(
        [(JOINED, Operation.PROCESS, "aws:us-east-1"), (CUSTOMERS, Operation.STORE, "aws:eu-central-1")]
    )
    made += [d.decision_id for d in batch]
    made.append(
        (await router.route(JOINED, Operation.STORE, ["aws:us-east-1", "aws:eu-central-1"])).decision.decision_id
    )
    check = await router.check_job([CUSTOMERS], ["s3://bank-eu/planned"], "aws:eu-central-1", "aws:us-east-1")
    made += [d.decision_id for d in check.decisions]
    await router.scan_violations()
    await router.flush_decision_log()
    return made


def audit_verify(data_dir: Path) -> str:
    """`domicile audit verify` on the data directory with the old and the current public key."""
    current = data_dir / "current.pub"
    current.write_bytes(public_pem(CheckpointSigner.from_file(data_dir / DEV_CHECKPOINT_KEY).public_key))
    keys = ["--public-key", str(FIXTURE / "checkpoint.pub"), "--public-key", str(current)]
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "audit", "verify", *keys])
    assert result.exit_code == 0, result.output
    return result.output


async def test_format_4_lines_continue_the_format_3_file_and_the_chain_verifies(data_dir: Path) -> None:
    old = fixture_decisions()
    old_active = (FIXTURE / "decisions.jsonl").read_bytes()
    app = await started(data_dir)
    try:
        new = await decide_every_way(app.router)
    finally:
        await stopped(app)
    active = (data_dir / "decisions.jsonl").read_bytes()
    assert active.startswith(old_active)  # continued, not rewritten or moved aside
    added = line_records(data_dir / "decisions.jsonl")[len(old_active.splitlines()) :]
    assert {record["format"] for record in added} == {4} and added[-1]["type"] == "checkpoint"
    assert added[0]["prev"] == json.loads(old_active.splitlines()[-1])["hash"]
    entries = [entry for record in added if record["type"] == "decisions" for entry in record["entries"]]
    assert {entry["kind"] for entry in entries} == {"decide", "batch_decide", "route", "check_job", "scan_violations"}
    assert all("reason_texts" in entry for entry in entries)
    out = audit_verify(data_dir)
    assert "2 files" in out and "chain intact" in out
    assert int(out.split(" decisions, chain intact")[0].rsplit(" ", 1)[1]) > len(old) + len(new)  # (+ violations)


async def test_decisions_of_both_formats_are_found_proven_replayed_and_searched(data_dir: Path) -> None:
    old = fixture_decisions()
    app = await started(data_dir, checkpoint_every_lines=1)
    try:
        new = await decide_every_way(app.router)
    finally:
        await stopped(app)
    app = await started(data_dir)  # the start verifies the file of both formats
    try:
        router = app.router
        for decision_id, decision in old.items():
            found = await router.get_decision(decision_id)
            assert found.decision == decision and found.proof.checkpoint is not None
            replay = await router.replay(decision_id)
            assert replay.matches, (replay.original, replay.replayed)
        for decision_id in new:
            found = await router.get_decision(decision_id)
            assert found.decision.decision_id == decision_id and found.proof.checkpoint is not None
            assert (await router.replay(decision_id)).matches
        page = await router.search_decisions(DecisionQuery(dataset_id=CUSTOMERS, rule_id="gdpr-personal-data"), 100)
        ids = {logged.decision.decision_id for logged in page.decisions}
        assert ids & set(new) and ids & set(old)  # read from format-4 and format-3 lines
        assert all(any(r.rule_id == "gdpr-personal-data" for r in d.decision.reasons) for d in page.decisions)
        report = await backup(app.settings, data_dir / "backup")  # while the server runs
        assert report.log_head_seq == router.decision_log_head()[0]
    finally:
        await stopped(app)


async def test_the_file_of_both_formats_rotates_and_the_chain_continues(data_dir: Path) -> None:
    app = await started(data_dir)
    try:
        await decide_every_way(app.router)
    finally:
        await stopped(app)
    app = await started(data_dir, rotate_seconds=0.5)  # the file is older than that: the next line rotates it
    try:
        await decide_every_way(app.router)
    finally:
        await stopped(app)
    rotated = line_records(data_dir / "decisions.000002.jsonl")
    assert {(record["format"], record["type"]) for record in rotated} >= {(3, "decisions"), (4, "decisions")}
    first = line_records(data_dir / "decisions.jsonl")[0]
    assert first["previous"] == {
        "file": "decisions.000002.jsonl",
        "format": 4,
        "seq": rotated[-1]["seq"],
        "hash": rotated[-1]["hash"],
    }
    assert "3 files" in audit_verify(data_dir)


async def test_a_file_of_the_old_format_rotated_before_any_new_line_is_named_with_its_format(
    data_dir: Path,
) -> None:
    """The fixture's active file ends with a format-3 checkpoint: rotated before anything is
    written to it, the next file's `previous` says format 3, as the file's last line does (the
    same rule as a log opened after a crash between a rotation's rename and its new file)."""
    app = await started(data_dir, rotate_seconds=0.5)  # the file is older than that
    try:
        await decide_every_way(app.router)
    finally:
        await stopped(app)
    rotated = line_records(data_dir / "decisions.000002.jsonl")
    assert rotated == line_records(FIXTURE / "decisions.jsonl")  # nothing was added to it
    first = line_records(data_dir / "decisions.jsonl")[0]
    assert first["previous"] == {
        "file": "decisions.000002.jsonl",
        "format": 3,
        "seq": rotated[-1]["seq"],
        "hash": rotated[-1]["hash"],
    }
    assert "3 files" in audit_verify(data_dir)


async def test_a_format_3_line_changed_in_the_continued_file_is_refused(data_dir: Path) -> None:
    app = await started(data_dir)
    try:
        await decide_every_way(app.router)
    finally:
        await stopped(app)
    path = data_dir / "decisions.jsonl"
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"deny"', b'"allw"', 1))  # in a format-3 line
    with pytest.raises(DomicileError) as info:
        await started(data_dir)
    assert info.value.reason == "DECISION_LOG_CORRUPT" and "decisions.jsonl line 2" in str(info.value)
