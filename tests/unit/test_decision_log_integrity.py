"""Tamper evidence: the log is verified at open, checkpoints are signed, reads are proven, and a
log cut short or resealed fails against its checkpoints -- each case as an attacker would try it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domicile.errors import DomicileError
from domicile.router.decision_log import CheckpointSigner, FileSink, TrustedKeys, read_anchors
from domicile.router.decision_log.format import LineError, parse_line, record_line
from tests.unit.decision_log_helpers import (
    SIGNER,
    decision,
    lines,
    open_log,
    records,
    reseal,
    verify,
    write_one_per_line,
)


@pytest.fixture
async def six_decisions(tmp_path) -> Path:
    """A log of a file line, six decision lines and a checkpoint after every third line."""
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, checkpoint_lines=3)
    await write_one_per_line(log, range(1, 7))
    await log.close()
    return path


def kinds(path: Path) -> list[str]:
    return [record["type"] for record in records(path)]


def line_of(path: Path, decision_number: int) -> int:
    """The 0-based index of the line holding `decision(decision_number)`."""
    wanted = decision(decision_number).decision_id
    return next(i for i, line in enumerate(lines(path)) if wanted.encode() in line)


def test_checkpoints_sign_the_line_before_them(six_decisions: Path) -> None:
    # After every 3 lines not yet covered (the file line counts), and at close.
    assert kinds(six_decisions) == ["file", "decisions", "decisions", "checkpoint"] + ["decisions"] * 3 + [
        "checkpoint",
        "decisions",
        "checkpoint",
    ]
    all_lines = records(six_decisions)
    for number, record in enumerate(all_lines):
        if record["type"] == "checkpoint":
            assert (record["signed_seq"], record["signed_hash"]) == (
                all_lines[number - 1]["seq"],
                all_lines[number - 1]["hash"],
            )
    report = verify(six_decisions)
    assert report.ok and report.checkpoints == 3 and report.last_checkpoint.signed_seq == report.state.seq - 1


async def test_a_mid_file_edit_with_its_hash_recomputed_is_refused_at_open(six_decisions: Path) -> None:
    data = lines(six_decisions)
    target = line_of(six_decisions, 2)
    body = json.loads(data[target])
    body["entries"][0]["decisions"][0][4] = "allow"  # deny -> allow
    data[target] = reseal(data[target], entries=body["entries"])
    six_decisions.write_bytes(b"".join(data))
    with pytest.raises(DomicileError) as info:
        await open_log(six_decisions)
    assert info.value.reason == "DECISION_LOG_CORRUPT"
    assert f"line {target + 2}" in str(info.value) and "prev does not match" in str(info.value)
    assert not verify(six_decisions).ok and verify(six_decisions).bad_line == target + 2


def retext(entry: dict) -> None:
    entry["reason_texts"][0][2] = "a-rule-that-allows"  # the rule a shared reason text names


def renumber(entry: dict) -> None:
    entry["reason_texts"].append(["DEFAULT_DENIED", "no rule applies", "", ""])
    entry["reason_sets"][0][0][0] = 1  # the reason now names another text


@pytest.mark.parametrize("edit", [retext, renumber])
async def test_an_edited_reason_text_or_text_number_is_refused(six_decisions: Path, edit) -> None:
    data = lines(six_decisions)
    target = line_of(six_decisions, 3)
    body = json.loads(data[target])
    edit(body["entries"][0])
    data[target] = reseal(data[target], entries=body["entries"])
    parse_line(data[target])  # well formed: only the chain tells
    six_decisions.write_bytes(b"".join(data))
    with pytest.raises(DomicileError) as info:
        await open_log(six_decisions)
    assert info.value.reason == "DECISION_LOG_CORRUPT" and f"line {target + 2}" in str(info.value)
    report = verify(six_decisions)
    assert not report.ok and report.bad_line == target + 2 and "prev does not match" in report.problem


async def test_a_resealed_chain_breaks_at_the_next_checkpoint(six_decisions: Path) -> None:
    # The forger rewrites a line and every line after it up to the checkpoint -- but cannot sign.
    data = lines(six_decisions)
    target = line_of(six_decisions, 2)
    checkpoint = kinds(six_decisions).index("checkpoint")
    body = json.loads(data[target])
    body["entries"][0]["decisions"][0][4] = "allow"
    data[target] = reseal(data[target], entries=body["entries"])
    for number in range(target + 1, checkpoint):
        data[number] = reseal(data[number], prev=json.loads(data[number - 1])["hash"])
    data[checkpoint] = reseal(data[checkpoint], prev=json.loads(data[checkpoint - 1])["hash"])
    six_decisions.write_bytes(b"".join(data))
    with pytest.raises(DomicileError) as info:
        await open_log(six_decisions)
    assert f"line {checkpoint + 1}" in str(info.value) and "lines before it were rewritten" in str(info.value)


async def test_a_forger_signing_with_another_key_is_refused(six_decisions: Path) -> None:
    data = lines(six_decisions)
    checkpoint = kinds(six_decisions).index("checkpoint")
    record = json.loads(data[checkpoint])
    forged = CheckpointSigner(Ed25519PrivateKey.generate()).sign(
        record["replica"],
        record["signed_seq"],
        record["signed_hash"],
        record["time"],
        decisions=2,
        max_catalog_revision=9,
    )
    data[checkpoint] = record_line(record["seq"], record["prev"], "checkpoint", forged.members())[0]
    six_decisions.write_bytes(b"".join(data[: checkpoint + 1]))
    with pytest.raises(DomicileError) as info:
        await open_log(six_decisions)
    assert "not among the trusted keys" in str(info.value)


async def test_garbage_in_a_middle_line_is_refused_naming_it(six_decisions: Path) -> None:
    data = lines(six_decisions)
    data[2] = b"\x00\xff garbage \x13\n"
    six_decisions.write_bytes(b"".join(data))
    with pytest.raises(DomicileError) as info:
        await open_log(six_decisions)
    assert info.value.reason == "DECISION_LOG_CORRUPT" and "line 3" in str(info.value)


@pytest.mark.parametrize(
    ("tamper", "bad_line"),
    [
        pytest.param(
            lambda ls: [*ls[:2], ls[2].replace(b"aws:us-east-1", b"aws:us-east-2"), *ls[3:]], 3, id="modified"
        ),
        pytest.param(lambda ls: [*ls[:2], ls[2].replace(b'":', b'": ', 1), *ls[3:]], 3, id="reformatted"),
        pytest.param(lambda ls: ls[:1] + ls[2:], 2, id="deleted"),
        pytest.param(lambda ls: ls[:2] + ls[1:2] + ls[2:], 3, id="inserted"),
        pytest.param(lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, id="reordered"),
        pytest.param(lambda ls: ls[1:], 1, id="first-deleted"),
        pytest.param(lambda ls: [*ls[:4], b"{}\n", *ls[5:]], 5, id="not-a-record"),
        pytest.param(lambda ls: [*ls[:4], ls[4][:-1], *ls[5:]], 5, id="newline-missing-mid-file"),
    ],
)
def test_verify_names_the_first_bad_line(six_decisions: Path, tamper, bad_line: int) -> None:
    six_decisions.write_bytes(b"".join(tamper(lines(six_decisions))))
    report = verify(six_decisions)
    assert not report.ok and report.bad_line == bad_line
    assert report.problem.startswith(f"decisions.jsonl line {bad_line}:")


async def test_only_a_torn_last_line_is_repaired(six_decisions: Path) -> None:
    data = lines(six_decisions)
    six_decisions.write_bytes(b"".join(data) + data[1][:40])  # a crash in the middle of a write
    assert verify(six_decisions).ok and "incomplete last line" in verify(six_decisions).notes[0]
    log = await open_log(six_decisions)
    try:
        assert six_decisions.read_bytes() == b"".join(data)
        log.append(decision(7))
        await log.flush()
    finally:
        await log.close()
    assert verify(six_decisions).ok


async def test_a_truncated_log_fails_against_anchored_checkpoints(tmp_path) -> None:
    path, anchors = tmp_path / "decisions.jsonl", tmp_path / "elsewhere" / "anchors.jsonl"
    log = await open_log(path, checkpoint_lines=2, sinks=[FileSink(anchors)])
    await write_one_per_line(log, range(1, 7))
    await log.close()
    kept = read_anchors(anchors)
    assert len(kept) == len([k for k in kinds(path) if k == "checkpoint"]) and verify(path, anchors=kept).ok
    cut = kinds(path).index("checkpoint") + 2  # the first checkpoint and a line after it survive
    path.write_bytes(b"".join(lines(path)[:cut]))
    assert verify(path).ok  # the chain alone cannot tell
    report = verify(path, anchors=kept)
    assert not report.ok and "lines were cut off the end" in report.problem


async def test_a_rewritten_log_fails_against_anchored_checkpoints(tmp_path) -> None:
    # Someone holding the key re-signs a rewritten log: the checkpoints kept elsewhere disagree.
    path, anchors = tmp_path / "decisions.jsonl", tmp_path / "anchors.jsonl"
    log = await open_log(path, checkpoint_lines=100, sinks=[FileSink(anchors)])
    await write_one_per_line(log, range(1, 3))
    await log.close()
    kept = read_anchors(anchors)
    shutil.move(path, tmp_path / "original.jsonl")
    log = await open_log(path)  # a fresh chain of other decisions, signed with the same key
    await write_one_per_line(log, range(5, 7))
    await log.close()
    assert verify(path).ok
    report = verify(path, anchors=kept)
    assert not report.ok and "was rewritten" in report.problem


async def test_checkpoints_are_also_written_after_some_seconds(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, checkpoint_lines=1000, checkpoint_seconds=0.2)
    try:
        await write_one_per_line(log, (1,))
        for _ in range(200):
            found = await log.get(decision(1).decision_id)
            if found.proof.checkpoint is not None:
                break
            await asyncio.sleep(0.05)
        assert kinds(path) == ["file", "decisions", "checkpoint"]
        assert found.proof.checkpoint.signed_seq == 2
    finally:
        await log.close()
    assert kinds(path)[-1] == "checkpoint"  # nothing after it: close added none


async def test_a_rotated_key_stays_trusted_when_its_public_key_is_given(six_decisions: Path) -> None:
    new_key = CheckpointSigner(Ed25519PrivateKey.generate())
    with pytest.raises(DomicileError) as info:
        await open_log(six_decisions, signer=new_key)  # the old checkpoints' key is not trusted
    assert info.value.reason == "DECISION_LOG_CORRUPT" and SIGNER.key_id in str(info.value)
    log = await open_log(six_decisions, signer=new_key, trusted_keys=TrustedKeys([SIGNER.public_key]))
    await write_one_per_line(log, (7,))
    await log.close()
    signers = {r["key_id"] for r in records(six_decisions) if r["type"] == "checkpoint"}
    assert signers == {SIGNER.key_id, new_key.key_id}
    assert verify_with(six_decisions, TrustedKeys([SIGNER.public_key, new_key.public_key])).ok
    assert not verify_with(six_decisions, TrustedKeys([new_key.public_key])).ok


def verify_with(path: Path, keys: TrustedKeys):
    from domicile.router.decision_log import Series, verify_series

    return verify_series(Series(path).files(), keys)


async def test_get_refuses_a_line_changed_on_disk_after_it_was_verified(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, recent_capacity=1)
    try:
        await write_one_per_line(log, range(1, 4))
        data = lines(path)
        target = line_of(path, 1)
        changed = data[target].replace(b"aws:us-east-1", b"aws:us-east-2")
        data[target] = reseal(changed, entries=json.loads(changed)["entries"])
        path.write_bytes(b"".join(data))  # (the same length, so every other line is where it was)
        with pytest.raises(DomicileError) as info:
            await log.get(decision(1).decision_id)
        assert info.value.reason == "DECISION_LOG_CORRUPT" and "changed on disk" in str(info.value)
        assert (await log.get(decision(2).decision_id)).decision == decision(2)  # untouched lines still read
    finally:
        await log.close()


def test_a_line_hashes_exactly_the_bytes_before_its_hash(six_decisions: Path) -> None:
    for line in lines(six_decisions):
        prefix, _, tail = line.rpartition(b',"hash":"')
        assert hashlib.sha256(prefix).hexdigest().encode() == tail[:64] and tail[64:] == b'"}\n'
    with pytest.raises(LineError):
        parse_line(lines(six_decisions)[1].replace(b'"format":4', b'"format": 4'))
