"""Faults: a write or fsync that fails, a full disk, the disk-space floor. The log refuses
decisions meanwhile (fail closed), names the problem in `failure()` (what health reports), and
resumes by itself."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from pathlib import Path

import pytest

from domicile.errors import DomicileError, ErrorCode
from domicile.security.events import SecurityEventLog
from tests.small_disk import fill
from tests.small_disk import small_disk as mounted
from tests.unit.decision_log_helpers import decision, open_log, row_ids, verify, write_one_per_line

# Generous against a loaded machine: only a log that never resumes misses it.
RESUME_DEADLINE = 30.0


async def eventually(condition, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + RESUME_DEADLINE
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {RESUME_DEADLINE}s: {what}"
        await asyncio.sleep(0.02)


async def test_a_write_error_refuses_decisions_until_the_writer_resumes_by_itself(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, retry_initial=0.01, retry_max=0.05)
    real = os.dup(log._file._fd)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        await write_one_per_line(log, (1,))
        os.dup2(full, log._file._fd)  # every write now fails with ENOSPC, like a full disk
        log.append(decision(2))
        with pytest.raises(DomicileError) as info:
            await log.flush()
        assert info.value.code is ErrorCode.UNAVAILABLE and info.value.reason == "DECISION_LOG_UNWRITABLE"
        assert info.value.retry_after is not None and "No space left" in log.failure()
        with pytest.raises(DomicileError) as refused:
            log.append(decision(3))  # refused at once while the log cannot write
        assert refused.value.reason == "DECISION_LOG_UNWRITABLE"
        os.dup2(real, log._file._fd)  # space again
        await eventually(lambda: log.failure() == "", "the writer resumes")
        log.append(decision(4))
        await log.flush()
    finally:
        os.close(full)
        os.close(real)
        await log.close()
    # Decision 2 was queued before the fault: written once it cleared. Decision 3 was refused.
    assert row_ids(path) == [decision(n).decision_id for n in (1, 2, 4)]
    assert verify(path).ok


async def test_a_failed_fsync_rewrites_the_lines_instead_of_trusting_them(tmp_path, monkeypatch) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, retry_initial=0.01, retry_max=0.05)
    failures = [3]  # the next three syncs fail, as after an I/O error
    lock = threading.Lock()
    real_writev = os.writev

    def writev(fd: int, buffers) -> int:
        # The log's writes are synced (O_DSYNC): a failed sync fails the write after its bytes
        # went into the file.
        written = real_writev(fd, buffers)
        with lock:
            if failures[0]:
                failures[0] -= 1
                raise OSError(errno.EIO, "Input/output error")
        return written

    try:
        await write_one_per_line(log, (1,))
        monkeypatch.setattr("domicile.appendfile.os.writev", writev)
        log.append(decision(2))
        with pytest.raises(DomicileError) as info:
            await log.flush()
        assert info.value.reason == "DECISION_LOG_UNWRITABLE" and "Input/output error" in str(info.value)
        await eventually(lambda: log.failure() == "", "the writer resumes")
        await write_one_per_line(log, (3,))
    finally:
        await log.close()
    assert row_ids(path) == [decision(n).decision_id for n in (1, 2, 3)]  # each once: cut back, written again
    assert verify(path).ok


async def test_below_the_disk_space_floor_decisions_are_refused_and_an_event_recorded(tmp_path) -> None:
    events = SecurityEventLog(tmp_path / "security.jsonl")
    log = await open_log(tmp_path / "decisions.jsonl", min_free_bytes=2**62, events=events)
    try:
        with pytest.raises(DomicileError) as info:
            log.append(decision(1))
        assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED and info.value.reason == "DISK_SPACE_LOW"
        with pytest.raises(DomicileError):
            log.append_many([decision(2)])
        assert "below the floor" in log.failure() and not log.healthy
    finally:
        await log.close()
        events.close()
    (event,) = [json.loads(line) for line in (tmp_path / "security.jsonl").read_bytes().splitlines()]
    assert event["event"] == "disk_space_low" and event["detail"]["floor_bytes"] == 2**62


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root; skipped otherwise)."""
    with mounted(tmp_path, "2m") as mount_point:
        yield mount_point


async def test_a_full_disk_then_freed_decisions_resume_without_a_restart(small_disk: Path) -> None:
    path = small_disk / "decisions.jsonl"
    log = await open_log(path, min_free_bytes=0, retry_initial=0.01, retry_max=0.2)
    try:
        await write_one_per_line(log, (1,))
        filler = fill(small_disk)
        log.append(decision(2, dataset_id="s3://" + "x" * 8192))  # more than the space left
        with pytest.raises(DomicileError) as info:
            await log.flush()
        assert info.value.code is ErrorCode.UNAVAILABLE and "No space left" in log.failure()
        with pytest.raises(DomicileError):
            log.append(decision(3))
        filler.unlink()
        await eventually(lambda: log.failure() == "", "decisions resume once space is freed")
        await write_one_per_line(log, (4,))
    finally:
        await log.close()
    assert row_ids(path) == [decision(n).decision_id for n in (1, 2, 4)] and verify(path).ok


async def test_the_floor_lifts_when_space_is_freed(small_disk: Path, tmp_path) -> None:
    events = SecurityEventLog(tmp_path / "security.jsonl")
    log = await open_log(small_disk / "decisions.jsonl", events=events, min_free_bytes=2**20)
    try:
        await write_one_per_line(log, (1,))
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (1536 * 1024))  # leaves less than 1 MiB free
        await eventually(lambda: "below the floor" in log.failure(), "the floor is noticed")
        with pytest.raises(DomicileError) as info:
            log.append(decision(2))
        assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
        filler.unlink()
        await eventually(lambda: log.failure() == "", "the floor lifts")
        await write_one_per_line(log, (3,))
    finally:
        await log.close()
        events.close()
    assert row_ids(small_disk / "decisions.jsonl") == [decision(n).decision_id for n in (1, 3)]
