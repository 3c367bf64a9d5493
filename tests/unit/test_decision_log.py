"""DecisionLog: round trips, group commit, reading back with a proof, backpressure, one owner."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections import Counter
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import pytest

from domicile.appendfile import AppendOnlyFile
from domicile.catalog.model import Dataset
from domicile.errors import DomicileError, ErrorCode
from domicile.router import _engine
from domicile.router.decision_log import ZERO_HASH, DecisionLog, writer
from domicile.router.engine import DecisionBatch, Engine, compile_policy
from domicile.router.policy import load_policy
from domicile.router.types import Operation, Outcome
from tests.unit.decision_log_helpers import (
    REPLICA,
    SIGNER,
    T0,
    decision,
    open_log,
    records,
    row_ids,
    verify,
    write_one_per_line,
)


async def test_appended_decisions_round_trip_with_their_chain(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path)
    try:
        first = decision(1)
        allowed = decision(2, outcome=Outcome.ALLOW, allowed_regions=(), reasons=(), caller="")
        assert log.append(first, policy_hash="ab" * 32) == 1
        assert log.append(allowed, {"check_job_inputs": "s3://a\ns3://b"}, kind="check_job") == 2
        await log.flush()
        one, two = await log.get(first.decision_id), await log.get(allowed.decision_id)
        assert one is not None and two is not None
        assert one.decision == first and one.kind == "decide" and one.policy_hash == "ab" * 32 and one.context is None
        assert two.decision == allowed and two.kind == "check_job"
        assert dict(two.context or {}) == {"check_job_inputs": "s3://a\ns3://b"}
        # Written together, after the file's first line: one line holds both, and both name it.
        assert (one.seq, two.seq) == (2, 2) and one.hash == two.hash and log.head() == (2, one.hash)
        assert one.proof.line_seq == 2 and one.proof.replica == REPLICA and one.proof.checkpoint is None
        assert await log.get("nope") is None
    finally:
        await log.close()
    file_line, decisions_line, checkpoint_line = records(path)
    assert (file_line["type"], decisions_line["type"], checkpoint_line["type"]) == ("file", "decisions", "checkpoint")
    assert file_line["prev"] == ZERO_HASH and decisions_line["prev"] == file_line["hash"]
    first_entry, second_entry = decisions_line["entries"]  # they share neither caller nor kind
    assert first_entry["kind"] == "decide" and second_entry["context"] == {"check_job_inputs": "s3://a\ns3://b"}
    assert first_entry["decisions"] == [
        [
            first.decision_id,
            "s3://bank-eu/customers-1",
            "store",
            "aws:us-east-1",
            "deny",
            0,
            0,
            "2026-11-30T04:00:01.123456Z",
            False,
        ]
    ]
    assert first_entry["region_sets"] == [["aws:eu-central-1", "aws:eu-west-1"]]
    assert first_entry["reason_texts"] == [
        ["RULE_DENIED", "EU personal data stays in the EU", "gdpr-personal-data", "GDPR Art. 44-45"]
    ]
    assert first_entry["reason_sets"] == [[[0, ["s3://bank-eu/raw", "s3://bank-eu/customers-1"]]]]
    assert second_entry["region_sets"] == [[]] and second_entry["reason_sets"] == [[]]
    assert second_entry["reason_texts"] == []
    assert {line["format"] for line in (file_line, decisions_line, checkpoint_line)} == {4}
    report = verify(path)
    assert report.ok and report.state.decisions == 2 and report.last_checkpoint is not None  # (signed at close)


async def test_a_decision_on_a_derived_dataset_reads_back_as_inherited_only(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path)
    try:
        derived, plain = decision(1, inherited_only=True), decision(2)
        log.append_many([derived, plain])
        await log.flush()
        assert (await log.get(derived.decision_id)).decision == derived
        assert (await log.get(plain.decision_id)).decision == plain
    finally:
        await log.close()
    rows = [row for record in records(path) for entry in record.get("entries", ()) for row in entry["decisions"]]
    assert [row[8] for row in rows] == [True, False]


async def test_a_queued_decision_is_flushed_when_asked_for(tmp_path) -> None:
    log = await open_log(tmp_path / "decisions.jsonl", durable=False, flush_interval=60)
    try:
        log.append(decision(1))
        entry = await log.get(decision(1).decision_id)
        assert entry is not None and entry.decision == decision(1)
        assert row_ids(tmp_path / "decisions.jsonl") == [decision(1).decision_id]
        assert await log.get(decision(1).decision_id) == entry  # now from the lines kept in memory
    finally:
        await log.close()


async def test_a_durable_flush_returns_only_once_its_lines_are_synced(tmp_path, monkeypatch) -> None:
    """A durable answer leaves after `flush`: by then its decision's line is written and synced
    (the log's file syncs every write, O_DSYNC: the file's size after each completed write,
    recorded), for decisions appended and decisions of the lane alike."""
    path = tmp_path / "decisions.jsonl"
    synced: list[int] = []
    real_write_pieces = AppendOnlyFile.write_pieces

    def write_pieces(self: AppendOnlyFile, pieces) -> None:
        assert fcntl.fcntl(self._fd, fcntl.F_GETFL) & os.O_DSYNC, "a write the kernel syncs before it returns"
        real_write_pieces(self, pieces)
        synced.append(self.size)

    monkeypatch.setattr(AppendOnlyFile, "write_pieces", write_pieces)
    engine = Engine(compile_policy(load_policy(BATCH_POLICY)))
    engine.add([Dataset.create("s3://bank/0", classifications=["PII.CONTACT"], origins=["DE"])], [])
    log = await open_log(path)
    lane = _engine.LogLane("p:", 100, 10_000, log.wake)
    log.attach_lane(lane)
    decider = engine.unary_decider(lane, lambda *question: pytest.fail(f"not decided alone: {question}"), None)
    decider.set_view(7, 3600.0)
    try:
        for n in range(1, 11):
            log.append(decision(n))
            await log.flush()
            assert synced and synced[-1] == path.stat().st_size and decision(n).decision_id in row_ids(path)
            syncs = len(synced)
            laned = decider.decide("s3://bank/0", Operation.STORE, "aws:eu-west-1", caller="bob")
            await log.flush()
            assert len(synced) > syncs and synced[-1] == path.stat().st_size
            assert laned.decision_id in row_ids(path)
    finally:
        await log.close()
    assert verify(path).state.decisions == 20


async def test_a_commits_waiters_are_released_after_its_write_with_one_wake_up_per_loop(tmp_path, monkeypatch) -> None:
    """Waiters on two event loops share a commit: none is released while its write has not
    returned (each write held until the test lets it go), and each loop is woken once for all
    of its own waiters of that commit."""
    path = tmp_path / "decisions.jsonl"
    writing, gate = threading.Semaphore(0), threading.Semaphore(0)
    written: list[int] = []
    real_write_pieces = AppendOnlyFile.write_pieces

    def write_pieces(self: AppendOnlyFile, pieces) -> None:
        writing.release()
        assert gate.acquire(timeout=10)
        real_write_pieces(self, pieces)
        written.append(self.size)

    monkeypatch.setattr(AppendOnlyFile, "write_pieces", write_pieces)
    wake_ups: Counter[asyncio.AbstractEventLoop] = Counter()

    def count_wake_ups(loop: asyncio.AbstractEventLoop) -> None:
        real = loop.call_soon_threadsafe

        def call_soon_threadsafe(callback, *args, **kwargs):
            if callback is writer._settle:
                wake_ups[loop] += 1
            return real(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_soon_threadsafe", call_soon_threadsafe)

    main = asyncio.get_running_loop()
    other = asyncio.new_event_loop()
    count_wake_ups(main)
    count_wake_ups(other)
    other_thread = threading.Thread(target=other.run_forever, daemon=True)
    other_thread.start()
    log = await open_log(path)
    registered = threading.Event()

    async def answer_on_the_other_loop() -> None:
        for n in range(4, 7):
            log.append(decision(n))
        flushes = [asyncio.ensure_future(log.flush()) for _ in range(3)]
        await asyncio.sleep(0)
        registered.set()
        await asyncio.gather(*flushes)

    try:
        log.append(decision(0))
        first = asyncio.ensure_future(log.flush())
        assert await asyncio.to_thread(writing.acquire, timeout=10)  # the first commit is writing
        for n in range(1, 4):
            log.append(decision(n))
        mine = [asyncio.ensure_future(log.flush()) for _ in range(3)]
        theirs = asyncio.run_coroutine_threadsafe(answer_on_the_other_loop(), other)
        assert await asyncio.to_thread(registered.wait, 10)
        await asyncio.sleep(0.05)
        assert not first.done() and not any(f.done() for f in mine) and not theirs.done()
        gate.release()
        await first
        assert written == [path.stat().st_size]
        assert await asyncio.to_thread(writing.acquire, timeout=10)  # the second commit: the other six
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in mine) and not theirs.done()
        gate.release()
        await asyncio.gather(*mine)
        await asyncio.wrap_future(theirs)
        assert len(written) == 2 and written[-1] == path.stat().st_size
        assert row_ids(path) == [decision(n).decision_id for n in range(7)]
        assert wake_ups == {main: 2, other: 1}
    finally:
        for _ in range(8):
            gate.release()  # the close's checkpoint
        await log.close()
        other.call_soon_threadsafe(other.stop)
        other_thread.join(10)
        other.close()


async def test_concurrent_durable_callers_share_fsyncs(tmp_path, monkeypatch) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path)
    fsyncs = []  # each write is synced (O_DSYNC)
    real_writev = os.writev
    monkeypatch.setattr(
        "domicile.appendfile.os.writev", lambda fd, views: (fsyncs.append(fd), real_writev(fd, views))[1]
    )

    async def answer(n: int) -> int:
        seq = log.append(decision(n))
        await log.flush()  # returns only once this decision's line is on disk
        assert decision(n).decision_id in row_ids(path)
        return seq

    try:
        seqs = await asyncio.gather(*(answer(n) for n in range(1, 201)))
        assert sorted(seqs) == list(range(1, 201))
        assert len(fsyncs) < 200  # group commit: callers that queued during an fsync share the next
    finally:
        await log.close()
    assert verify(path).state.decisions == 200


async def test_held_decisions_wait_for_the_next_write_somebody_awaits(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, flush_interval=60)  # durable; the timer alone would take a minute
    try:
        assert log.append_many([decision(1), decision(2)], hold=True) == 2
        await asyncio.sleep(0.3)
        assert row_ids(path) == [] and log.queued() == 2  # held: nobody waits for them
        log.append(decision(3))  # somebody will: written at once, the held ones with it
        deadline = time.monotonic() + 30
        while decision(3).decision_id not in row_ids(path):
            assert time.monotonic() < deadline, "an awaited decision waited for the held ones' timer"
            await asyncio.sleep(0.01)
        assert row_ids(path) == [decision(n).decision_id for n in (1, 2, 3)]
        assert len([r for r in records(path) if r["type"] == "decisions"]) == 1  # one write
        log.append_many([decision(4)], hold=True)
        await asyncio.wait_for(log.flush(), 30)  # a flush ends the hold too
        assert row_ids(path)[-1] == decision(4).decision_id and log.queued() == 0
    finally:
        await log.close()


async def test_held_decisions_are_written_by_the_timer(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, flush_interval=0.05)
    try:
        log.append_many([decision(1)], hold=True)
        log.append_many([decision(2)], hold=True)
        deadline = time.monotonic() + 30  # bounds a hung test, not the timer
        while log.queued():  # (counted as durable once written and fsynced)
            assert time.monotonic() < deadline, "held decisions were never written"
            await asyncio.sleep(0.01)
        assert row_ids(path) == [decision(1).decision_id, decision(2).decision_id]
    finally:
        await log.close()
    assert verify(path).state.decisions == 2


async def test_reopening_continues_the_chain_and_finds_old_decisions(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, recent_capacity=1)
    await write_one_per_line(log, range(1, 4))
    await log.close()
    log = await open_log(path, recent_capacity=1)
    try:
        before = log.head()
        log.append(decision(4))
        await log.flush()
        fourth = await log.get(decision(4).decision_id)
        assert fourth is not None and fourth.seq == before[0] + 1 and fourth.prev_hash == before[1]
        second = await log.get(decision(2).decision_id)  # read back from the file, checked against its hash
        assert second is not None and second.decision == decision(2)
        assert second.proof.checkpoint is not None and second.proof.checkpoint.signed_seq > second.seq
    finally:
        await log.close()
    assert verify(path).ok


async def test_ids_older_than_the_bounded_index_are_found_in_the_file(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, recent_capacity=1, index_capacity=2)
    await write_one_per_line(log, range(1, 8))
    await log.close()
    log = await open_log(path, recent_capacity=1, index_capacity=2)
    try:
        await log.get(decision(7).decision_id)
        assert sorted(log._index._ids) == [decision(6).decision_id, decision(7).decision_id]  # the last lines only
        for n in range(1, 8):
            found = await log.get(decision(n).decision_id)
            assert found is not None and found.decision == decision(n)
        assert await log.get(decision(8).decision_id) is None
    finally:
        await log.close()


async def test_the_writer_leaves_indexing_to_get_and_bounds_what_waits(tmp_path) -> None:
    log = await open_log(tmp_path / "decisions.jsonl", recent_capacity=2, index_capacity=3)
    try:
        await write_one_per_line(log, range(1, 11))
        index = log._index
        # Nobody asked: nothing indexed, and only what the capacities keep is waiting.
        assert index._ids == {} and index._recent == {}
        assert [tuple(ids) for ids, _ in index._unindexed] == [(decision(n).decision_id,) for n in (8, 9, 10)]
        assert [tuple(ids) for ids, _, _ in index._unindexed_lines] == [(decision(n).decision_id,) for n in (9, 10)]
        for n in (10, 7, 3, 1):
            found = await log.get(decision(n).decision_id)
            assert found is not None and found.decision == decision(n)
        assert sorted(index._recent) == [decision(n).decision_id for n in (9, 10)]
        assert sorted(index._ids) == [decision(n).decision_id for n in (8, 9, 10)]
    finally:
        await log.close()


async def test_a_full_queue_blocks_append_until_the_writer_takes_it(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    # A writer that would wait a minute to fill its batch: only the full queue wakes it.
    log = await open_log(path, durable=False, flush_interval=60, max_queue=2)
    try:
        seqs = [log.append(decision(n)) for n in range(1, 6)]
        assert seqs == [1, 2, 3, 4, 5] and len(log._queue) <= 2
        await log.flush()
    finally:
        await log.close()
    assert verify(path).state.decisions == 5


async def test_append_fails_closed_when_the_queue_stays_full(tmp_path, monkeypatch) -> None:
    log = await open_log(
        tmp_path / "decisions.jsonl", durable=False, flush_interval=60, max_queue=1, append_timeout=0.05
    )
    stuck = threading.Event()
    write = log._write_batch
    monkeypatch.setattr(log, "_write_batch", lambda batch, last: (stuck.wait(), write(batch, last)))
    try:
        log.append(decision(1))  # taken by the writer, which then hangs
        for _ in range(100):
            if not log._queue:
                break
            await asyncio.sleep(0.01)
        log.append(decision(2))  # fills the queue
        with pytest.raises(DomicileError) as info:
            log.append(decision(3))
        assert info.value.code is ErrorCode.UNAVAILABLE and info.value.reason == "DECISION_LOG_BEHIND"
        assert [q[0].decision_id for q in log._queue] == [decision(2).decision_id]  # nothing queued for it
    finally:
        stuck.set()
        await log.close()
    assert verify(tmp_path / "decisions.jsonl").state.decisions == 2


async def test_a_batch_is_one_queue_item_and_one_entry_per_line(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path, line_decisions=10)
    eu = ("aws:eu-central-1", "aws:eu-west-1")
    try:
        batch = [
            decision(n, allowed_regions=tuple(eu) if n % 2 else ("aws:ap-south-1",), catalog_revision=7)
            for n in range(1, 26)
        ]
        log.append_many(batch, kind="batch_decide")
        await log.flush()
        decision_lines = [r for r in records(path) if r["type"] == "decisions"]
        assert [[len(e["decisions"]) for e in r["entries"]] for r in decision_lines] == [[10], [10], [5]]
        # Equal region lists held by different tuples share one entry; each reason tuple is its own.
        assert decision_lines[0]["entries"][0]["region_sets"] == [list(eu), ["aws:ap-south-1"]]
        for n in (1, 10, 11, 25):
            found = await log.get(decision(n).decision_id)
            assert found is not None and found.decision == batch[n - 1]
    finally:
        await log.close()


async def test_only_one_writer_owns_a_log(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = await open_log(path)
    try:
        with pytest.raises(DomicileError) as info:
            await open_log(path)
        assert info.value.reason == "DECISION_LOG_IN_USE"
    finally:
        await log.close()
    await (await open_log(path)).close()  # released by close


async def test_append_after_close_is_refused_and_close_is_idempotent(tmp_path) -> None:
    log = await open_log(tmp_path / "decisions.jsonl")
    await log.close()
    await log.close()
    with pytest.raises(DomicileError) as info:
        log.append(decision(1))
    assert info.value.code is ErrorCode.UNAVAILABLE


async def test_get_returns_the_newest_copy_of_an_id_logged_twice(tmp_path) -> None:
    log = await open_log(tmp_path / "decisions.jsonl", durable=False, flush_interval=60)
    try:
        log.append(decision(1))
        await log.flush()
        log.append(decision(1, catalog_revision=99))  # still queued
        found = await log.get(decision(1).decision_id)
        assert found is not None and found.decision.catalog_revision == 99
    finally:
        await log.close()


async def test_the_replica_id_is_the_logs_own(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    await (await open_log(path, replica="eu-1")).close()
    log = await DecisionLog.open(path, signer=SIGNER)  # not configured: the log's own id
    assert log.replica == "eu-1"
    await log.close()
    with pytest.raises(DomicileError) as info:
        await open_log(path, replica="eu-2")
    assert info.value.reason == "DECISION_LOG_REPLICA_MISMATCH" and "eu-1" in str(info.value)
    with pytest.raises(ValueError):
        await open_log(tmp_path / "other.jsonl", replica="not a host name")


async def test_a_new_log_is_named_after_the_host_by_default(tmp_path) -> None:
    log = await DecisionLog.open(tmp_path / "decisions.jsonl", signer=SIGNER)
    try:
        assert log.replica and ":" not in log.replica
    finally:
        await log.close()


BATCH_POLICY = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata: {name: batches, version: "2026.11.1"}
rules:
  - {id: gdpr, citation: "GDPR Art. 44", match: {classifications: [PII], origins: [EEA]}, store: {allow: [EEA]}}
"""


class _SlowFirst(ThreadPoolExecutor):
    """Renders on two threads, the first batch submitted last to finish."""

    def __init__(self) -> None:
        super().__init__(2)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.submitted += 1
        if self.submitted == 1:
            return super().submit(lambda: (time.sleep(0.2), fn(*args, **kwargs))[1])
        return super().submit(fn, *args, **kwargs)


def _engine_batches() -> tuple[str, list[DecisionBatch]]:
    engine = Engine(compile_policy(load_policy(BATCH_POLICY)))
    engine.add(
        [Dataset.create(f"s3://bank/{n}", classifications=["PII.CONTACT"], origins=["DE"]) for n in range(9)], []
    )
    lane = _engine.LogLane("p:", 100, 10_000, lambda: None)
    questions = [
        (f"s3://bank/{n}", Operation.STORE, region) for n in range(9) for region in ("aws:us-east-1", "aws:eu-west-1")
    ]
    when = T0
    return engine.policy.content_hash, [
        engine.batch_decide(questions[start : start + 6], when, None, 7, lane, "alice") for start in (0, 6, 12)
    ]


async def _log_batches(path, render, **options) -> Counter:
    """The engine's batches and single decisions between them, appended to a log at `path`
    with `render` (or rendered by the writer); the intents the log counted."""
    policy_hash, batches = _engine_batches()
    tally = _engine.IntentTally(("intent_store", "intent_process"), "(unauthenticated)")
    log = await open_log(path, **options)
    log.set_intent_sink(tally)
    try:
        for n, batch in enumerate(batches, start=1):
            log.append_many(batch, kind="batch_decide", policy_hash=policy_hash, render=render)
            log.append(decision(n))
        await log.flush()
    finally:
        await log.close()
    return Counter({row[:4]: row[4] for row in tally.take()})


@pytest.mark.parametrize("max_queue", [20_000, 4])
async def test_batches_rendered_on_other_threads_are_written_in_order_as_the_writer_writes_them(
    tmp_path, max_queue
) -> None:
    """A batch whose entries are rendered elsewhere (`render`: the batch threads) is written
    where it was appended -- the writer waits for a slow rendering -- byte for byte as the
    writer renders it, its intents counted once; also when a full queue cuts it in parts."""
    with _SlowFirst() as render:
        elsewhere = await _log_batches(tmp_path / "a" / "decisions.jsonl", render, max_queue=max_queue)
        assert render.submitted >= 3
    by_writer = await _log_batches(tmp_path / "b" / "decisions.jsonl", None, max_queue=max_queue)
    assert elsewhere == by_writer and sum(by_writer.values()) == 21  # the single decisions too

    def entries(path):
        return [entry for record in records(path) if record["type"] == "decisions" for entry in record["entries"]]

    def rows(entries):  # each decision with what its entry says of it
        return [({**entry, "decisions": None}, row) for entry in entries for row in entry["decisions"]]

    written = entries(tmp_path / "a" / "decisions.jsonl")
    assert rows(written) == rows(entries(tmp_path / "b" / "decisions.jsonl"))
    ids = [row[0] for _, row in rows(written)]
    assert [ids[n] for n in (6, 13, 20)] == [decision(n).decision_id for n in (1, 2, 3)]  # where appended
    kinds = [entry["kind"] for entry in written]
    if max_queue == 4:  # a full queue cut each batch of 6 into parts (entries of their own)
        assert max(len(entry["decisions"]) for entry in written) <= 4 and kinds.count("batch_decide") >= 6
    else:
        assert kinds == ["batch_decide", "decide"] * 3
    assert verify(tmp_path / "a" / "decisions.jsonl").state.decisions == 21


class _Failing(Executor):
    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        future.set_exception(RuntimeError("no renderer"))
        return future


async def test_a_batch_that_cannot_be_rendered_fails_its_waiters_and_is_not_logged(tmp_path) -> None:
    path = tmp_path / "decisions.jsonl"
    policy_hash, (batch, *_) = _engine_batches()
    log = await open_log(path)
    try:
        log.append_many(batch, kind="batch_decide", policy_hash=policy_hash, render=_Failing())
        with pytest.raises(DomicileError) as failed:
            await log.flush()
        assert failed.value.code is ErrorCode.UNAVAILABLE and failed.value.reason == "DECISION_LOG_FAILED"
        log.append(decision(1))  # the log carries on
        await log.flush()
    finally:
        await log.close()
    assert row_ids(path) == [decision(1).decision_id]
    assert verify(path).state.decisions == 1
