"""A log as a series of files: rotation by size and age, retention and archiving, a crash in the
middle of a rotation, and a log written before format 3 (format 2)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path

import orjson
import pytest

from domicile.errors import DomicileError
from domicile.router.decision_log import Series, verify_series
from tests.unit.decision_log_helpers import KEYS, decision, lines, open_log, records, verify, write_one_per_line

FORMAT2_LOG = Path(__file__).parent / "fixtures" / "decisions-format2.jsonl"


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("decisions"))


async def test_rotation_by_size_continues_the_chain_across_files(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, rotate_bytes=2000, recent_capacity=1, index_capacity=1)
    try:
        await write_one_per_line(log, range(1, 13))
        files = Series(path).files()
        assert len(files) >= 3 and files[-1] == path
        for older, newer in itertools.pairwise(files):
            assert records(older)[-1]["type"] == "checkpoint"  # every rotated file ends signed
            first = records(newer)[0]
            assert first["type"] == "file" and first["previous"] == {
                "file": older.name,
                "format": 4,
                "seq": records(older)[-1]["seq"],
                "hash": records(older)[-1]["hash"],
            }
        found = await log.get(decision(1).decision_id)  # in the oldest file: proven up to its checkpoint
        assert found.decision == decision(1) and found.proof.checkpoint is not None
        assert found.proof.checkpoint.signed_seq >= found.seq
    finally:
        await log.close()
    report = verify(path)
    assert report.ok and report.state.decisions == 12 and report.files == len(files)
    log = await open_log(path)  # reopened: continues the last file
    await write_one_per_line(log, (13,))
    await log.close()
    assert verify(path).ok


async def test_rotation_by_age(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, rotate_seconds=0.2)
    try:
        await write_one_per_line(log, (1,))
        await asyncio.sleep(0.3)
        await write_one_per_line(log, (2,))  # the file is old enough: rotated before this line
    finally:
        await log.close()
    assert names(tmp_path) == ["decisions.000001.jsonl", "decisions.jsonl"] and verify(path).ok


async def test_the_file_a_rotation_begins_syncs_every_write_as_the_first_did(tmp_path, monkeypatch) -> None:
    """Durable answers rely on every write of the active file being synced (O_DSYNC): the file a
    rotation begins is opened as the log's first one was."""
    path = tmp_path / "decisions.jsonl"
    writes: list[tuple[str, bool]] = []  # (file, synced) of each write to the log's files
    real_write, real_writev = os.write, os.writev

    def record(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith("decisions"):
            writes.append((Path(name).name, bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DSYNC)))

    monkeypatch.setattr("domicile.appendfile.os.write", lambda fd, data: (record(fd), real_write(fd, data))[1])
    monkeypatch.setattr("domicile.appendfile.os.writev", lambda fd, views: (record(fd), real_writev(fd, views))[1])
    log = await open_log(path, rotate_seconds=0.2)
    try:
        await write_one_per_line(log, (1,))
        await asyncio.sleep(0.3)
        await write_one_per_line(log, (2,))  # rotated before this line: a new active file
    finally:
        await log.close()
    assert names(tmp_path) == ["decisions.000001.jsonl", "decisions.jsonl"] and verify(path).ok
    assert len(writes) >= 3 and all(synced for _, synced in writes), writes


async def test_retention_archives_older_files_and_verify_follows_them(tmp_path) -> None:
    path, archive = tmp_path / "decisions.jsonl", tmp_path / "archive"
    log = await open_log(path, rotate_bytes=1500, keep_files=1, archive_dir=archive)
    try:
        await write_one_per_line(log, range(1, 13))
        await asyncio.sleep(0.2)  # (retention runs beside the writer)
        local = Series(path).rotated()
        assert len(local) <= 2 and len(Series(path).rotated(archive)) >= 2
        assert (await log.get(decision(1).decision_id)).decision == decision(1)  # found in the archive
    finally:
        await log.close()
    assert verify_series(Series(path).files(archive), KEYS).ok
    alone = verify(path)  # without the archive: checked from the first file kept, noted
    assert alone.ok and any("which was not given" in note for note in alone.notes)


async def test_without_an_archive_retention_deletes(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, rotate_bytes=1500, keep_files=1)
    await write_one_per_line(log, range(1, 13))
    await log.close()
    assert len(Series(path).rotated()) <= 2 and verify(path).ok


async def test_a_crash_between_renaming_and_the_new_file_is_continued(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path)
    await write_one_per_line(log, (1, 2))
    await log.close()  # ends with a checkpoint, as a rotation's first step leaves it
    path.rename(tmp_path / "decisions.000001.jsonl")  # ... and the crash came before the new file
    log = await open_log(path)
    await write_one_per_line(log, (3,))
    await log.close()
    assert records(path)[0]["number"] == 2 and verify(path).ok and verify(path).state.decisions == 3


def format2_hash(line: bytes) -> str:
    """A format-2 line's hash, recomputed the way that format defines it."""
    body = orjson.loads(line)
    del body["hash"]
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def test_a_format_2_log_is_verified_moved_aside_and_continued(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    shutil.copy(FORMAT2_LOG, path)
    old_lines = lines(path)
    log = await open_log(path)
    try:
        (aside,) = tmp_path.glob("decisions.jsonl.format2-*")
        assert aside.read_bytes() == FORMAT2_LOG.read_bytes()  # kept byte for byte
        first = records(path)[0]
        head = format2_hash(old_lines[-1])
        assert first["previous"] == {"file": aside.name, "format": 2, "seq": 3, "hash": head}
        assert (first["seq"], first["prev"], first["decisions"]) == (4, head, 8)
        assert log.max_catalog_revision == 15  # the highest revision the old log named
        await write_one_per_line(log, (1,))
    finally:
        await log.close()
    report = verify(path)  # the series begins with the format-2 file
    assert report.ok and report.state.decisions == 9 and "format 2" in report.notes[0]


async def test_decisions_of_a_format_2_log_are_still_found_and_proven(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    shutil.copy(FORMAT2_LOG, path)
    log = await open_log(path, checkpoint_lines=1)
    try:
        await write_one_per_line(log, (1,))
        old = await log.get("f2-0003")  # decided by a format-2 release, in a batch
        assert old is not None and old.decision.dataset_id == "s3://bank-eu/customers-3" and old.seq == 2
        assert old.proof.checkpoint is not None  # the checkpoint after the line recording its head
        (aside,) = tmp_path.glob("decisions.jsonl.format2-*")
        aside.write_bytes(aside.read_bytes().replace(b"customers-3", b"customers-9"))
        with pytest.raises(DomicileError) as info:
            await log.get("f2-0003")
        assert info.value.reason == "DECISION_LOG_CORRUPT" and "format 2" in str(info.value)
    finally:
        await log.close()


async def test_a_damaged_log_of_the_previous_release_is_refused(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    data = lines(FORMAT2_LOG)
    data[1] = data[1].replace(b'"outcome":"deny"', b'"outcome":"allow"', 1)
    path.write_bytes(b"".join(data))
    with pytest.raises(DomicileError) as info:
        await open_log(path)
    assert info.value.reason == "DECISION_LOG_CORRUPT" and "line 2" in str(info.value) and "format-2" in str(info.value)
    assert path.read_bytes() == b"".join(data)  # left where it was


def test_the_fixture_is_what_the_previous_release_wrote() -> None:
    # decisions-format2.jsonl was written by DecisionLog of the release before format 3 (commit
    # 6db6782): three lines, eight decisions, its own chain.
    prev = "0" * 64
    for number, line in enumerate(lines(FORMAT2_LOG), start=1):
        record = json.loads(line)
        assert (record["seq"], record["prev_hash"], record["hash"]) == (number, prev, format2_hash(line))
        prev = record["hash"]
