"""DecisionLog: round trips, the hash chain, recovery at open, failure, and `verify`."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import DomicileError, ErrorCode
from domicile.router import decision_log
from domicile.router.decision_log import ZERO_HASH, DecisionLog, verify
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

T0 = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=timezone.utc)


def decision(n: int, **changes) -> Decision:
    fields = dict(
        decision_id=f"d{n:04d}",
        outcome=Outcome.DENY,
        dataset_id=f"s3://bank-eu/customers-{n}",
        operation=Operation.STORE,
        region="aws:us-east-1",
        allowed_regions=("aws:eu-central-1", "aws:eu-west-1"),
        reasons=(
            Reason(
                ReasonCode.RULE_DENIED, "EU personal data stays in the EU", "gdpr-personal-data", "GDPR Art. 44-45",
                ("s3://bank-eu/raw", f"s3://bank-eu/customers-{n}"),
            ),
        ),
        policy_version="2026.11.1",
        catalog_revision=7 + n,
        decide_time=T0 + timedelta(seconds=n),
        caller="spiffe://bank/pipeline",
    )
    fields.update(changes)
    return Decision(**fields)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


async def test_appended_decisions_round_trip_with_their_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path)
    try:
        first = decision(1)
        allowed = decision(2, outcome=Outcome.ALLOW, allowed_regions=(), reasons=(), caller="")
        assert log.append(first, policy_hash="ab" * 32) == 1
        assert log.append(allowed, {"check_job_inputs": "s3://a\ns3://b"}, kind="check_job") == 2
        await log.flush()
        one, two = await log.get("d0001"), await log.get("d0002")
        assert one is not None and two is not None
        assert one.decision == first and one.seq == 1 and one.kind == "decide" and one.policy_hash == "ab" * 32
        assert one.context is None and one.prev_hash == ZERO_HASH
        assert two.decision == allowed and two.kind == "check_job"
        assert dict(two.context or {}) == {"check_job_inputs": "s3://a\ns3://b"}
        assert two.prev_hash == one.hash
        assert log.head() == (2, two.hash)
        assert await log.get("nope") is None
    finally:
        await log.close()
    record = json.loads(lines(path)[0])
    assert record["request"] == {
        "dataset_id": "s3://bank-eu/customers-1", "kind": "decide", "operation": "store", "region": "aws:us-east-1",
    }
    assert record["time"] == "2026-11-30T04:00:01.123456Z" and record["outcome"] == "deny"
    assert verify(path).ok


async def test_a_queued_decision_is_flushed_when_asked_for(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", flush_interval=60)
    try:
        log.append(decision(1))
        entry = await log.get("d0001")
        assert entry is not None and entry.decision == decision(1)
        assert len(lines(tmp_path / "decisions.jsonl")) == 1
    finally:
        await log.close()


async def test_flush_makes_everything_appended_durable_in_durable_mode(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, durable=True)
    try:
        for n in range(1, 251):
            log.append(decision(n))
        await log.flush()
        assert len(lines(path)) == 250 and verify(path).lines == 250
    finally:
        await log.close()


async def test_concurrent_durable_callers_each_get_their_line_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, durable=True)

    async def answer(n: int) -> int:
        seq = log.append(decision(n))
        await log.flush()
        return seq

    try:
        seqs = await asyncio.gather(*(answer(n) for n in range(1, 51)))
        assert sorted(seqs) == list(range(1, 51))
        assert verify(path).lines == 50  # every flush returned after its own line was written
    finally:
        await log.close()


async def test_reopening_continues_the_chain_and_finds_old_decisions(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, recent_capacity=1)
    for n in range(1, 4):
        log.append(decision(n))
    await log.close()  # close drains the queue
    log = await DecisionLog.open(path, recent_capacity=1)
    try:
        before = log.head()
        assert before[0] == 3
        log.append(decision(4))
        await log.flush()
        fourth = await log.get("d0004")
        assert fourth is not None and fourth.seq == 4 and fourth.prev_hash == before[1]
        second = await log.get("d0002")  # read back from the file
        assert second is not None and second.decision == decision(2) and second.seq == 2
    finally:
        await log.close()
    result = verify(path, expected_head=fourth.hash)
    assert result.ok and result.lines == 4 and result.message == "4 decisions, chain intact"


async def test_ids_older_than_the_bounded_index_are_found_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, recent_capacity=1, index_capacity=2, durable=True)
    for n in range(1, 8):
        log.append(decision(n))
        await log.flush()  # one write per decision, so the writer trims its index as it goes
    assert len(log._offsets) < 7
    await log.close()
    log = await DecisionLog.open(path, recent_capacity=1, index_capacity=2)
    try:
        assert sorted(log._offsets) == ["d0006", "d0007"]  # open indexes only the last lines
        for n in range(1, 8):
            found = await log.get(f"d{n:04d}")
            assert found is not None and found.decision == decision(n) and found.seq == n
        assert await log.get("d0008") is None
    finally:
        await log.close()


async def test_a_full_queue_blocks_append_until_the_writer_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    # A writer that would wait a minute to fill its batch: only the full queue wakes it.
    log = await DecisionLog.open(path, flush_interval=60, max_queue=2)
    try:
        seqs = [log.append(decision(n)) for n in range(1, 6)]
        assert seqs == [1, 2, 3, 4, 5] and len(log._queue) <= 2
        await log.flush()
        assert verify(path).lines == 5
    finally:
        await log.close()


async def test_append_fails_closed_when_the_queue_stays_full(tmp_path: Path, monkeypatch) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", flush_interval=60, max_queue=1, append_timeout=0.05)
    release = asyncio.Event()
    stuck = __import__("threading").Event()
    write = log._write
    monkeypatch.setattr(log, "_write", lambda batch: (stuck.wait(), write(batch)))
    try:
        log.append(decision(1))  # taken by the writer, which then hangs in `_write`
        await asyncio.sleep(0)
        for _ in range(100):
            if not log._queue:
                break
            await asyncio.sleep(0.01)
        log.append(decision(2))  # fills the queue
        with pytest.raises(DomicileError) as info:
            log.append(decision(3))
        assert info.value.code is ErrorCode.UNAVAILABLE and info.value.reason == "DECISION_LOG_BEHIND"
        assert [q[0] for q in log._queue] == [2]  # nothing was queued for the refused decision
    finally:
        stuck.set()
        release.set()
        await log.close()
    assert verify(tmp_path / "decisions.jsonl").lines == 2


async def test_only_one_writer_owns_a_log(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path)
    try:
        with pytest.raises(DomicileError) as info:
            await DecisionLog.open(path)
        assert info.value.reason == "DECISION_LOG_IN_USE"
    finally:
        await log.close()
    await (await DecisionLog.open(path)).close()  # released by close


async def test_append_after_close_is_refused_and_close_is_idempotent(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl")
    await log.close()
    await log.close()
    with pytest.raises(DomicileError) as info:
        log.append(decision(1))
    assert info.value.code is ErrorCode.UNAVAILABLE


async def test_a_write_failure_fails_waiters_and_refuses_further_decisions(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl")
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, log._fd)  # every write now fails with ENOSPC, like a full disk
        log.append(decision(1))
        with pytest.raises(DomicileError) as info:
            await log.flush()
        assert info.value.code is ErrorCode.UNAVAILABLE and info.value.reason == "DECISION_LOG_FAILED"
        with pytest.raises(DomicileError):
            log.append(decision(2))
    finally:
        os.close(full)
        await log.close()


async def test_open_cuts_a_torn_last_line_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path)
    log.append(decision(1))
    log.append(decision(2))
    await log.close()
    intact = lines(path)
    path.write_bytes(intact[0] + intact[1][:40])  # a crash in the middle of writing line 2
    assert not verify(path).ok
    log = await DecisionLog.open(path)
    try:
        assert log.head()[0] == 1
        log.append(decision(3))
        await log.flush()
    finally:
        await log.close()
    assert verify(path).ok and verify(path).lines == 2


async def test_open_refuses_a_log_whose_last_line_was_tampered_with(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path)
    log.append(decision(1))
    await log.close()
    path.write_bytes(path.read_bytes().replace(b'"outcome":"deny"', b'"outcome":"allow"'))
    with pytest.raises(DomicileError) as info:
        await DecisionLog.open(path)
    assert info.value.reason == "DECISION_LOG_CORRUPT" and "line 1" in str(info.value)


@pytest.fixture
async def five_lines(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path)
    for n in range(1, 6):
        log.append(decision(n))
    await log.close()
    return path


def test_verify_accepts_an_intact_log(five_lines: Path) -> None:
    result = verify(five_lines)
    assert (result.ok, result.lines, result.first_bad_line) == (True, 5, None)


def test_verify_accepts_an_empty_log(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = verify(tmp_path / "empty.jsonl")
    assert result.ok and result.lines == 0 and result.head_hash == ZERO_HASH


@pytest.mark.parametrize(
    ("tamper", "bad_line"),
    [
        pytest.param(lambda ls: ls[:2] + [ls[2].replace(b"aws:us-east-1", b"aws:us-east-2")] + ls[3:], 3, id="modified"),
        pytest.param(lambda ls: ls[:2] + [ls[2].replace(b'":', b'": ', 1)] + ls[3:], 3, id="reformatted"),
        pytest.param(lambda ls: ls[:1] + ls[2:], 2, id="deleted"),
        pytest.param(lambda ls: ls[:1] + ls[0:1] + ls[1:], 2, id="inserted"),
        pytest.param(lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, id="reordered"),
        pytest.param(lambda ls: ls[1:], 1, id="first-deleted"),
        pytest.param(lambda ls: ls[:4] + [b"{}\n"], 5, id="not-a-record"),
        pytest.param(lambda ls: ls[:4] + [ls[4][:-1]], 5, id="no-newline"),
    ],
)
def test_verify_finds_the_first_bad_line(five_lines: Path, tamper, bad_line: int) -> None:
    five_lines.write_bytes(b"".join(tamper(lines(five_lines))))
    result = verify(five_lines)
    assert not result.ok and result.first_bad_line == bad_line
    assert result.message.startswith(f"line {bad_line}:")


def test_verify_detects_lines_cut_off_the_end_against_a_kept_head(five_lines: Path) -> None:
    head = verify(five_lines).head_hash
    five_lines.write_bytes(b"".join(lines(five_lines)[:4]))
    assert verify(five_lines).ok  # the chain alone cannot tell
    result = verify(five_lines, expected_head=head)
    assert not result.ok and "expected head" in result.message


# The hand-written rendering must equal json's canonical encoding, whatever the strings hold.
text = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=100, deadline=None)
@given(
    strings=st.lists(text, min_size=8, max_size=8),
    path=st.lists(text, max_size=3),
    context=st.one_of(st.none(), st.dictionaries(text, text, max_size=3)),
    seq=st.integers(min_value=1, max_value=2**53),
    revision=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_the_written_line_is_the_canonical_json_of_its_record(strings, path, context, seq, revision) -> None:
    caller, decision_id, dataset_id, region, version, message, rule_id, kind = strings
    d = decision(
        1, caller=caller, decision_id=decision_id, dataset_id=dataset_id, region=region, policy_version=version,
        allowed_regions=tuple(path), catalog_revision=revision,
        reasons=(Reason(ReasonCode.DEFAULT_DENIED, message, rule_id, "", tuple(path)),),
    )
    time_text = decision_log._format_time(d.decide_time)
    canonical = decision_log._canonical(seq, d, kind, "ff" * 32, context, ZERO_HASH, time_text)
    assert canonical == decision_log._encoder.encode(json.loads(canonical)).encode("ascii")
    # The writer's rendering through its identity cache (cold, then warm) is the same bytes.
    cache = decision_log._JsonCache()
    for _ in range(2):
        assert decision_log._canonical(seq, d, kind, "ff" * 32, context, ZERO_HASH, time_text, cache) == canonical
    line, _ = decision_log._seal(canonical)
    record, problem = decision_log._check_line(line)
    assert problem == "" and record is not None
    assert decision_log._decision_from(record).decision == d
