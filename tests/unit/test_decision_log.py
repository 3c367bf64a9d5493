"""DecisionLog: round trips, the hash chain, recovery at open, failure, and `verify`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import DomicileError, ErrorCode
from domicile.router import decision_log
from domicile.router.decision_log import ZERO_HASH, DecisionLog, verify
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

T0 = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)


def decision(n: int, **changes) -> Decision:
    fields = {
        "decision_id": f"d{n:04d}",
        "outcome": Outcome.DENY,
        "dataset_id": f"s3://bank-eu/customers-{n}",
        "operation": Operation.STORE,
        "region": "aws:us-east-1",
        "allowed_regions": ("aws:eu-central-1", "aws:eu-west-1"),
        "reasons": (
            Reason(
                ReasonCode.RULE_DENIED,
                "EU personal data stays in the EU",
                "gdpr-personal-data",
                "GDPR Art. 44-45",
                ("s3://bank-eu/raw", f"s3://bank-eu/customers-{n}"),
            ),
        ),
        "policy_version": "2026.11.1",
        "catalog_revision": 7 + n,
        "decide_time": T0 + timedelta(seconds=n),
        "caller": "spiffe://bank/pipeline",
    }
    fields.update(changes)
    return Decision(**fields)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


async def write_one_per_line(log: DecisionLog, numbers) -> None:
    """Append decisions one line each: a durable log writes what is queued when flushed."""
    assert log.durable
    for n in numbers:
        log.append(decision(n))
        await log.flush()


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
        # Written together: one line holds both, and both name it.
        assert (two.seq, two.prev_hash, two.hash) == (1, ZERO_HASH, one.hash)
        assert log.head() == (1, one.hash)
        assert await log.get("nope") is None
    finally:
        await log.close()
    (line,) = lines(path)
    record = json.loads(line)
    first_request, second_request = record["requests"]  # they share neither caller nor kind
    assert first_request["kind"] == "decide" and second_request["context"] == {"check_job_inputs": "s3://a\ns3://b"}
    (first_entry,), (second_entry,) = first_request["decisions"], second_request["decisions"]
    assert first_entry["time"] == "2026-11-30T04:00:01.123456Z"
    assert {key: first_entry[key] for key in ("dataset_id", "operation", "region", "outcome")} == {
        "dataset_id": "s3://bank-eu/customers-1",
        "operation": "store",
        "region": "aws:us-east-1",
        "outcome": "deny",
    }
    assert record["region_sets"] == [["aws:eu-central-1", "aws:eu-west-1"], []]
    assert (first_entry["allowed_regions"], second_entry["allowed_regions"]) == (0, 1)
    assert verify(path).ok and verify(path).decisions == 2


async def test_a_decision_on_a_derived_dataset_reads_back_as_inherited_only(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path)
    try:
        derived, plain = decision(1, inherited_only=True), decision(2)
        log.append_many([derived, plain])
        await log.flush()
        assert (await log.get("d0001")).decision == derived and (await log.get("d0002")).decision == plain
    finally:
        await log.close()
    (line,) = lines(path)
    entries = [entry for request in json.loads(line)["requests"] for entry in request["decisions"]]
    # Only a true value is written: lines of decisions on described datasets are as they were.
    assert entries[0]["inherited_only"] is True and "inherited_only" not in entries[1]
    assert verify(path).ok


async def test_a_queued_decision_is_flushed_when_asked_for(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", flush_interval=60)
    try:
        log.append(decision(1))
        entry = await log.get("d0001")
        assert entry is not None and entry.decision == decision(1)
        assert len(lines(tmp_path / "decisions.jsonl")) == 1
        assert await log.get("d0001") == entry  # now from the lines kept in memory
    finally:
        await log.close()


async def test_flush_makes_everything_appended_durable_in_durable_mode(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, durable=True)
    try:
        for n in range(1, 251):
            log.append(decision(n))
        await log.flush()
        result = verify(path)
        assert result.ok and result.decisions == 250 and result.lines == len(lines(path))
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
        assert verify(path).decisions == 50  # every flush returned after its own decision was written
    finally:
        await log.close()


async def test_reopening_continues_the_chain_and_finds_old_decisions(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, recent_capacity=1, durable=True)
    await write_one_per_line(log, range(1, 3))
    log.append(decision(3))
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
    assert result.ok and result.lines == 4 and result.message == "4 decisions in 4 lines, chain intact"


async def test_ids_older_than_the_bounded_index_are_found_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, recent_capacity=1, index_capacity=2, durable=True)
    await write_one_per_line(log, range(1, 8))  # the writer trims its index as it goes
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


async def test_the_writer_leaves_indexing_to_get_and_bounds_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, recent_capacity=2, index_capacity=3, durable=True)
    try:
        await write_one_per_line(log, range(1, 11))
        # Nobody asked: nothing indexed, and only what the capacities keep is waiting.
        assert log._offsets == {} and log._recent == {}
        assert [ids for ids, _ in log._unindexed] == [("d0008",), ("d0009",), ("d0010",)]
        assert [ids for ids, _ in log._unindexed_lines] == [("d0009",), ("d0010",)]
        assert log._indexed_from == len(b"".join(lines(path)[:7]))  # lines 1-7: by scanning
        for n in (10, 7, 3, 1):
            found = await log.get(f"d{n:04d}")
            assert found is not None and found.decision == decision(n) and found.seq == n
        assert not log._unindexed and sorted(log._recent) == ["d0009", "d0010"]
        assert sorted(log._offsets) == ["d0008", "d0009", "d0010"]
        await write_one_per_line(log, range(11, 13))
        found = await log.get("d0011")
        assert found is not None and found.seq == 11 and sorted(log._recent) == ["d0011", "d0012"]
    finally:
        await log.close()


async def test_a_get_during_another_gets_indexing_waits_for_it(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", durable=True)

    class SlowList(list):
        def extend(self, items) -> None:  # the first `get`'s indexing, caught halfway
            __import__("time").sleep(0.3)
            super().extend(items)

    try:
        await write_one_per_line(log, range(1, 4))
        log._offsets_order = SlowList(log._offsets_order)
        first = asyncio.create_task(log.get("d0001"))
        await asyncio.sleep(0.1)  # the first get has taken the unindexed lines and is indexing them
        assert not log._unindexed and log._fold_lock.locked()
        found = await log.get("d0002")
        assert found is not None and found.seq == 2
        assert (await first) is not None
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
        assert verify(path).decisions == 5
    finally:
        await log.close()


async def test_append_fails_closed_when_the_queue_stays_full(tmp_path: Path, monkeypatch) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", flush_interval=60, max_queue=1, append_timeout=0.05)
    release = asyncio.Event()
    stuck = __import__("threading").Event()
    write = log._write
    monkeypatch.setattr(log, "_write", lambda batch, last: (stuck.wait(), write(batch, last)))
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
        assert [q[0].decision_id for q in log._queue] == ["d0002"]  # nothing queued for the refused one
    finally:
        stuck.set()
        release.set()
        await log.close()
    assert verify(tmp_path / "decisions.jsonl").decisions == 2


async def test_a_batch_is_one_queue_item_split_only_by_a_full_queue(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, flush_interval=0, max_queue=4, append_timeout=0.05, line_decisions=3)
    stuck = __import__("threading").Event()
    write = log._write
    monkeypatch.setattr(log, "_write", lambda batch, last: (stuck.wait(), write(batch, last)))
    try:
        log.append(decision(1))  # taken by the writer, which then hangs in `_write`
        for _ in range(100):
            if not log._queue:
                break
            await asyncio.sleep(0.01)
        batch = [decision(n) for n in range(2, 5)]
        assert log.append_many(batch) == 4
        batch.append(decision(99))  # the caller's list may change: the log keeps its own tuple
        assert [len(item[0]) for item in log._queue] == [3]
        # Room for one more: the next batch queues its first decision, then waits for the
        # (stuck) writer and fails closed; what was queued stays queued.
        with pytest.raises(DomicileError) as info:
            log.append_many([decision(n) for n in range(5, 8)])
        assert info.value.reason == "DECISION_LOG_BEHIND"
        assert [[d.decision_id for d in item[0]] for item in log._queue] == [["d0002", "d0003", "d0004"], ["d0005"]]
    finally:
        stuck.set()
        await log.close()
    records = [json.loads(line) for line in lines(path)]
    assert [[d["decision_id"] for r in record["requests"] for d in r["decisions"]] for record in records] == [
        ["d0001"],
        ["d0002", "d0003", "d0004"],
        ["d0005"],
    ]


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
    log = await DecisionLog.open(path, durable=True)
    await write_one_per_line(log, (1, 2))
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
    log = await DecisionLog.open(path, durable=True)
    await write_one_per_line(log, range(1, 6))
    await log.close()
    return path


def test_verify_accepts_an_intact_log(five_lines: Path) -> None:
    result = verify(five_lines)
    assert (result.ok, result.lines, result.decisions, result.first_bad_line) == (True, 5, 5, None)


def test_verify_accepts_an_empty_log(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = verify(tmp_path / "empty.jsonl")
    assert result.ok and result.lines == 0 and result.head_hash == ZERO_HASH


@pytest.mark.parametrize(
    ("tamper", "bad_line"),
    [
        pytest.param(
            lambda ls: [*ls[:2], ls[2].replace(b"aws:us-east-1", b"aws:us-east-2"), *ls[3:]], 3, id="modified"
        ),
        pytest.param(lambda ls: [*ls[:2], ls[2].replace(b'":', b'": ', 1), *ls[3:]], 3, id="reformatted"),
        pytest.param(lambda ls: ls[:1] + ls[2:], 2, id="deleted"),
        pytest.param(lambda ls: ls[:1] + ls[0:1] + ls[1:], 2, id="inserted"),
        pytest.param(lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, id="reordered"),
        pytest.param(lambda ls: ls[1:], 1, id="first-deleted"),
        pytest.param(lambda ls: [*ls[:4], b"{}\n"], 5, id="not-a-record"),
        pytest.param(lambda ls: [*ls[:4], b"{not json\n"], 5, id="not-json"),
        pytest.param(lambda ls: [*ls[:4], ls[4][:-1]], 5, id="no-newline"),
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


async def test_a_batch_is_split_into_lines_that_share_region_sets(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await DecisionLog.open(path, line_decisions=10, flush_interval=60)
    eu = ("aws:eu-central-1", "aws:eu-west-1")
    same_request = {"catalog_revision": 7}
    try:
        # Equal region lists held by different tuples share one entry too.
        log.append_many(
            decision(n, allowed_regions=tuple(eu) if n % 2 else ("aws:ap-south-1",), **same_request)
            for n in range(1, 26)
        )
        await log.flush()
        records = [json.loads(line) for line in lines(path)]
        assert [[len(r["decisions"]) for r in record["requests"]] for record in records] == [[10], [10], [5]]
        assert records[0]["region_sets"] == [list(eu), ["aws:ap-south-1"]]
        # Every decision has the same reason text: each line holds it once.
        assert [len(record["reasons"]) for record in records] == [1, 1, 1]
        for n in (1, 10, 11, 25):
            found = await log.get(f"d{n:04d}")
            assert found is not None and found.seq == (n - 1) // 10 + 1
            assert found.decision == decision(n, allowed_regions=eu if n % 2 else ("aws:ap-south-1",), **same_request)
    finally:
        await log.close()
    assert verify(path).message == "25 decisions in 3 lines, chain intact"
    reopened = await DecisionLog.open(path, index_capacity=12)
    try:
        # The index keeps whole lines: the last 12 ids reach into line 2, so all of it is indexed.
        assert sorted(reopened._offsets) == [f"d{n:04d}" for n in range(11, 26)]
        found = await reopened.get("d0003")  # before the index: found by scanning the file
        assert found is not None and found.seq == 1 and found.decision.decision_id == "d0003"
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        pytest.param(lambda body: body.update(region_sets=[]), "refers to a region set", id="region-set"),
        pytest.param(lambda body: body.update(reasons=[]), "refers to a reason", id="reason"),
        pytest.param(lambda body: body["reasons"][0].update(code="MAYBE"), "unknown code", id="reason-code"),
        pytest.param(lambda body: body["requests"][0].pop("kind"), "request 1 of the line is incomplete", id="request"),
        pytest.param(
            lambda body: body["requests"][0].update(decisions=[]),
            "request 1 of the line is incomplete",
            id="no-decisions",
        ),
        pytest.param(
            lambda body: body["requests"][0]["decisions"][0].update(outcome="maybe"), "unknown outcome", id="outcome"
        ),
        pytest.param(
            lambda body: body["requests"][0]["decisions"][0].update(time="yesterday"), "not RFC 3339", id="time"
        ),
        pytest.param(lambda body: body["requests"][0].update(context={"a": 1}), "not text facts", id="context"),
        pytest.param(
            lambda body: body["requests"][0]["decisions"][0].update(inherited_only=False),
            "inherited_only that is not true",
            id="inherited-only",
        ),
    ],
)
def test_a_line_with_a_correct_hash_but_dangling_references_is_refused(tmp_path: Path, damage, problem) -> None:
    builder = decision_log._LineBuilder()
    builder.add(decision(1), None, "decide", "", "2026-11-30T04:00:00.000000Z")
    body = json.loads(decision_log._line(builder.parts(), 1, ZERO_HASH)[0])
    del body["hash"]
    damage(body)
    line, _ = decision_log._seal(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    (tmp_path / "decisions.jsonl").write_bytes(line)
    result = verify(tmp_path / "decisions.jsonl")
    assert not result.ok and problem in result.message


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])),
)
def test_times_are_rfc3339_utc_with_microseconds(moment: datetime) -> None:
    expected = moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert decision_log._format_time(moment) == expected


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))])),
    whole_second=st.booleans(),
)
def test_a_decide_time_renders_as_format_time_says(moment: datetime, whole_second: bool) -> None:
    if whole_second:
        moment = moment.replace(microsecond=0)  # orjson would leave the fraction out
    for value in (moment, LaterDatetime.fromisoformat(moment.isoformat())):  # orjson refuses subclasses
        rendered = orjson.dumps({"time": decision_log._time_value(value)}, option=orjson.OPT_UTC_Z)
        assert rendered == orjson.dumps({"time": decision_log._format_time(moment)})


class LaterDatetime(datetime):
    """A datetime subclass, as a test clock library might hand out."""


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        decision_log._format_time(datetime(2026, 11, 30))


# Whatever the strings hold, a sealed line is canonical, verifies and reads back the same.
text = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=100, deadline=None)
@given(
    strings=st.lists(text, min_size=8, max_size=8),
    path=st.lists(text, max_size=3),
    context=st.one_of(st.none(), st.dictionaries(text.filter(lambda key: key != "decision_id"), text, max_size=3)),
    seq=st.integers(min_value=1, max_value=2**53),
    revision=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_a_sealed_line_is_canonical_and_reads_back(strings, path, context, seq, revision) -> None:
    caller, decision_id, dataset_id, region, version, message, rule_id, kind = strings
    d = decision(
        1,
        caller=caller,
        decision_id=decision_id,
        dataset_id=dataset_id,
        region=region,
        policy_version=version,
        allowed_regions=tuple(path),
        catalog_revision=revision,
        reasons=(Reason(ReasonCode.DEFAULT_DENIED, message, rule_id, "", tuple(path)),),
    )
    builder = decision_log._LineBuilder()
    builder.add(d, context, kind, "ff" * 32, decision_log._time_value(d.decide_time))
    line, digest = decision_log._line(builder.parts(), seq, ZERO_HASH)
    body = json.loads(line)
    assert body.pop("hash") == digest
    assert line.startswith(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)[:-1])
    record, problem = decision_log._check_line(line)
    assert problem == "" and record is not None
    assert decision_log._line_ids(line) == [decision_id]
    (request,) = record["requests"]
    logged = decision_log._logged(record, request, request["decisions"][0])
    assert logged.decision == d and logged.kind == kind and logged.seq == seq
    assert dict(logged.context or {}) == (context or {})


def format1_log(path: Path, count: int) -> bytes:
    """A log as written before 2026-11-30: one decision per line, stdlib canonical JSON."""
    prev_hash, data = ZERO_HASH, b""
    for n in range(1, count + 1):
        body = {
            "allowed_regions": ["aws:eu-central-1"],
            "caller": "",
            "catalog_revision": n,
            "decision_id": f"old{n}",
            "outcome": "deny",
            "policy_hash": "ab" * 32,
            "policy_version": "2026.11.1",
            "prev_hash": prev_hash,
            "reasons": [
                {"citation": "", "code": "RULE_DENIED", "lineage_path": ["s3://a"], "message": "é", "rule_id": "r"}
            ],
            "request": {"dataset_id": "s3://a", "kind": "decide", "operation": "store", "region": "aws:us-east-1"},
            "seq": n,
            "time": "2026-11-29T10:00:00.000000Z",
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        prev_hash = hashlib.sha256(canonical).hexdigest()
        data += canonical[:-1] + b',"hash":"' + prev_hash.encode("ascii") + b'"}\n'
    path.write_bytes(data)
    return data


async def test_a_format1_log_is_verified_and_set_aside_at_open(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    old = format1_log(path, 3)
    result = verify(path)
    assert result.ok and result.message == "3 decisions in 3 lines (format 1, before 2026-11-30), chain intact"
    path.write_bytes(old.replace(b"old2", b"old7"))
    assert verify(path).first_bad_line == 2
    path.write_bytes(old)
    log = await DecisionLog.open(path, durable=True)
    try:
        (aside,) = tmp_path.glob("decisions.jsonl.format1-*")
        assert aside.read_bytes() == old and verify(aside).ok  # kept byte for byte
        assert log.head() == (0, ZERO_HASH)  # a new chain
        await write_one_per_line(log, (1,))
        assert (await log.get("d0001")).decision == decision(1)
        with pytest.raises(DomicileError):  # the new file is locked like any log
            await DecisionLog.open(path)
    finally:
        await log.close()
    assert verify(path).message == "1 decision in 1 line, chain intact"


async def test_get_returns_the_newest_copy_of_an_id_logged_twice(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", flush_interval=60)
    try:
        log.append(decision(1))
        await log.flush()
        log.append(decision(1, catalog_revision=99))  # still queued
        found = await log.get("d0001")
        assert found is not None and found.decision.catalog_revision == 99
    finally:
        await log.close()


def test_a_context_cannot_pass_for_a_decision(tmp_path: Path) -> None:
    async def attempt() -> None:
        log = await DecisionLog.open(tmp_path / "decisions.jsonl")
        try:
            with pytest.raises(ValueError):
                log.append(decision(1), {"decision_id": "forged"})
            with pytest.raises(ValueError):
                log.append_many([decision(2)], {"inputs": 3})  # type: ignore[dict-item]
            # Text that merely mentions the key, in a value or inside another key, is no id.
            log.append(decision(3), {'x"decision_id': '"decision_id":"forged"'})
            await log.flush()
            (line,) = lines(tmp_path / "decisions.jsonl")
            assert decision_log._line_ids(line) == ["d0003"]
        finally:
            await log.close()

    asyncio.run(attempt())
