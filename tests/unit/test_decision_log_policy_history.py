"""PolicyHistory: the policy texts that decisions name, kept so decisions can be replayed."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domicile.errors import DomicileError
from domicile.router.policy import content_hash
from domicile.router.policy_history import POLICIES_FILE, PolicyHistory

T0 = datetime(2026, 11, 1, tzinfo=UTC)
V1 = "metadata: {name: p, version: '1'}\n"
V2 = "metadata: {name: p, version: '2'}\n"


async def test_activations_are_kept_and_survive_a_reopen(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    assert await history.latest() is None and await history.get("1") is None
    first = await history.record("1", V1, at=T0)
    await history.record("2", V2, at=T0 + timedelta(days=1))
    await history.record("1", V1, at=T0 + timedelta(days=2))  # back to version 1
    history.close()

    reopened = await PolicyHistory.open(tmp_path)
    assert reopened.versions() == history.versions()
    assert [(a.version, a.activated_time) for a in reopened.versions()] == [
        ("1", T0),
        ("2", T0 + timedelta(days=1)),
        ("1", T0 + timedelta(days=2)),
    ]
    assert first.hash == content_hash(V1)
    assert await reopened.get("2") == V2
    latest = await reopened.latest()
    assert latest is not None and latest.version == "1" and latest[1] == V1


async def test_active_at_answers_which_policy_was_in_force(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", V1, at=T0)
    await history.record("2", V2, at=T0 + timedelta(hours=1))
    assert history.active_at(T0 - timedelta(seconds=1)) is None
    assert history.active_at(T0).version == "1"
    assert history.active_at(T0 + timedelta(minutes=59)).version == "1"
    assert history.active_at(T0 + timedelta(hours=2)).version == "2"


async def test_a_version_names_one_text(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", V1, at=T0)
    with pytest.raises(DomicileError) as info:
        await history.record("1", V1 + "# changed\n")
    assert info.value.reason == "POLICY_VERSION_CONFLICT"


async def test_recording_the_active_version_again_writes_nothing(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    first = await history.record("1", V1, at=T0)
    assert await history.record("1", V1, at=T0 + timedelta(days=1)) == first
    assert len((tmp_path / POLICIES_FILE).read_bytes().splitlines()) == 1


async def test_activation_times_never_go_back(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", V1, at=T0)
    second = await history.record("2", V2, at=T0 - timedelta(hours=1))  # the clock stepped back
    assert second.activated_time == T0
    assert history.active_at(T0).version == "2"


async def test_open_cuts_a_torn_last_line(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", V1, at=T0)
    history.close()
    path = tmp_path / POLICIES_FILE
    path.write_bytes(path.read_bytes() + b'{"activated_time":"2026-')
    reopened = await PolicyHistory.open(tmp_path)
    assert [a.version for a in reopened.versions()] == ["1"]
    assert path.read_bytes().endswith(b"}\n")


async def test_open_refuses_a_text_that_does_not_match_its_hash(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", V1, at=T0)
    history.close()
    path = tmp_path / POLICIES_FILE
    record = json.loads(path.read_bytes())
    record["yaml"] = V1.replace("p", "q")
    path.write_text(json.dumps(record) + "\n", "utf-8")
    with pytest.raises(DomicileError) as info:
        await PolicyHistory.open(tmp_path)
    assert info.value.reason == "POLICY_HISTORY_CORRUPT" and "line 1" in str(info.value)


async def test_one_process_owns_the_history(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    try:
        with pytest.raises(DomicileError) as info:
            await PolicyHistory.open(tmp_path)
        assert info.value.reason == "POLICY_HISTORY_IN_USE"
    finally:
        history.close()
    (await PolicyHistory.open(tmp_path)).close()  # released by close


async def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", V1, at=T0)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, history._file._fd)  # writes now fail with ENOSPC, like a full disk
        with pytest.raises(OSError):
            await history.record("2", V2, at=T0 + timedelta(days=1))
    finally:
        os.close(full)
        history.close()
    assert [a.version for a in (await PolicyHistory.open(tmp_path)).versions()] == ["1"]
