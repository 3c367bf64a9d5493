"""`AccessRecorder`: buffering, flushing, and what happens when the store refuses a batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domicile.access.model import AccessOperation, FindingKind, ObservedViolation, RunAccess, RunRecord, day_of
from domicile.access.recorder import AccessRecorder
from domicile.catalog.model import to_micros
from domicile.config import AccessSettings
from domicile.errors import store_unavailable
from domicile.router.types import Operation

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


class FakeAccessStore:
    """Keeps the batches it applied; fails the next `fail` writes."""

    def __init__(self):
        self.batches = []
        self.fail = 0
        self.run_reads = 0

    async def write_batch(self, batch):
        if self.fail:
            self.fail -= 1
            raise store_unavailable("store down")
        if any(b.batch_id == batch.batch_id for b in self.batches):
            return False
        self.batches.append(batch)
        return True

    async def baselines(self, actors, *, since):
        return {}

    async def run_accesses(self, job, run_id):
        self.run_reads += 1
        return frozenset(
            a for b in self.batches for r in b.runs if (r.job, r.run_id) == (job, run_id) for a in r.accesses
        )

    async def prune_runs(self, before):
        return 0


def recorder(store):
    return AccessRecorder(store, AccessSettings(), labels_of=lambda d: (), clock=lambda: NOW)


async def test_counts_aggregate_in_memory_until_flushed():
    store = FakeAccessStore()
    access = recorder(store)
    access.count("job", "s3://a", AccessOperation.READ, "aws:eu-west-1", NOW)
    access.count("job", "s3://a", AccessOperation.READ, "aws:eu-west-1", NOW - timedelta(hours=1), 2)
    access.record_catalog_write("", "s3://a")
    assert store.batches == []
    await access.flush()
    (batch,) = store.batches
    counts = {(c.actor, c.operation, c.region): (c.count, c.first_seen, c.last_seen) for c in batch.counts}
    assert counts == {
        ("job", AccessOperation.READ, "aws:eu-west-1"): (3, NOW - timedelta(hours=1), NOW),
        ("(unauthenticated)", AccessOperation.CATALOG_WRITE, ""): (1, NOW, NOW),
    }
    await access.flush()  # nothing pending: nothing written
    assert len(store.batches) == 1


async def test_intents_are_counted_by_the_engine_and_written_as_rows():
    store = FakeAccessStore()
    access = recorder(store)
    at = to_micros(NOW)
    access.intents.add([(("svc", "s3://a", 0, "aws:us-east-1"), 5), (("", "s3://a", 1, "r"), 1)], at)
    access.intents.add([(("svc", "s3://a", 0, "aws:us-east-1"), 1)], at + 7)
    await access.flush()
    (batch,) = store.batches
    day = to_micros(day_of(NOW))
    assert batch.counts == ()
    assert sorted(batch.intents) == [
        ("(unauthenticated)", "s3://a", "intent_process", "r", 1, at, at, day),
        ("svc", "s3://a", "intent_store", "aws:us-east-1", 6, at, at + 7, day),
    ]
    assert len(access.intents) == 0


async def test_intents_wait_for_their_own_interval_or_their_key_bound():
    store = FakeAccessStore()
    access = AccessRecorder(
        store,
        AccessSettings(intent_flush_seconds=3600, intent_max_keys=2),
        labels_of=lambda d: (),
        clock=lambda: NOW,
    )
    access.intents.add([(("svc", "s3://a", 0, "r"), 1)], to_micros(NOW))
    assert not access._intents_due()  # one key, and the interval has not passed
    access.count("job", "s3://a", AccessOperation.READ, "r", NOW)
    await access.flush(intents=access._intents_due())
    assert [len(b.intents) for b in store.batches] == [0]
    access.intents.add([(("svc", "s3://b", 0, "r"), 1)], to_micros(NOW))
    assert access._intents_due()  # two keys: the bound
    await access.flush(intents=access._intents_due())
    assert [len(b.intents) for b in store.batches] == [0, 2]


async def test_a_refused_batch_keeps_its_intents_for_the_retry():
    store = FakeAccessStore()
    access = recorder(store)
    access.intents.add([(("svc", "s3://a", 0, "r"), 2)], to_micros(NOW))
    store.fail = 1
    with pytest.raises(Exception, match="store down"):
        await access.flush()
    await access.flush()
    (batch,) = store.batches
    assert [row[4] for row in batch.intents] == [2]


async def test_a_refused_batch_is_kept_and_written_again_with_the_same_id():
    store = FakeAccessStore()
    access = recorder(store)
    access.count("job", "s3://a", AccessOperation.READ, "r", NOW)
    store.fail = 1
    with pytest.raises(Exception, match="store down"):
        await access.flush()
    access.count("job", "s3://a", AccessOperation.READ, "r", NOW)
    await access.flush()
    first, second = store.batches
    assert [c.count for c in first.counts] == [1]  # the refused batch, as it was
    assert [c.count for c in second.counts] == [1]


async def test_runs_merge_while_pending_and_their_accesses_are_known():
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    wrote = RunAccess("s3://b", AccessOperation.WRITE, "r")
    access.record_run(RunRecord("job", "r1", "", "p", "r", NOW, NOW, NOW, (read,)), [read])
    assert await access.run_accesses("job", "r1") == {read}
    access.record_run(RunRecord("job", "r1", "prod", "", "r", NOW, NOW + timedelta(minutes=1), NOW, (wrote,)), [wrote])
    await access.flush()
    assert await access.run_accesses("job", "r1") == {read, wrote}
    (run,) = store.batches[0].runs
    assert (run.producer, run.principal, run.last_event_time) == ("prod", "p", NOW + timedelta(minutes=1))
    assert sum(c.count for c in store.batches[0].counts) == 2


async def test_a_run_seen_lately_is_not_read_from_the_store_again():
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    wrote = RunAccess("s3://b", AccessOperation.WRITE, "r")
    assert await access.run_accesses("job", "r1") == set()  # a run not seen: the store is asked
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (read,)), [read])
    await access.flush()
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (wrote,)), [wrote])
    assert await access.run_accesses("job", "r1") == {read, wrote}  # from memory, flushed or pending
    assert store.run_reads == 1
    await access.prune()  # forgets what it knew: the store is asked again, pending runs included
    assert await access.run_accesses("job", "r1") == {read, wrote}
    assert store.run_reads == 2


async def test_a_read_made_with_another_store_call_stands_for_the_stores_read():
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    wrote = RunAccess("s3://b", AccessOperation.WRITE, "r")
    stored = access.stored_run("job", "r1")
    assert stored is not None and stored.key == ("job", "r1")
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (wrote,)), [wrote])  # pending: merged
    assert await access.run_accesses("job", "r1", stored.read(frozenset({read}))) == {read, wrote}
    assert store.run_reads == 0
    assert access.stored_run("job", "r1") is None  # known now: nothing to read
    other = access.stored_run("job", "r2")
    assert await access.run_accesses("job", "r3", other.read(frozenset({read}))) == set()  # another run's read
    assert store.run_reads == 1


async def test_a_read_made_before_a_batch_was_written_is_made_again():
    # The read rode on a store call that may have preceded the batch holding the run's records
    # (which left memory when written): it cannot stand for the store.
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    stored = access.stored_run("job", "r1")
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (read,)), [read])
    await access.flush()
    assert await access.run_accesses("job", "r1", stored.read(frozenset())) == {read}
    assert store.run_reads == 1


async def test_a_read_that_missed_a_concurrent_event_does_not_forget_it():
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    wrote = RunAccess("s3://b", AccessOperation.WRITE, "r")
    unread = asyncio.Event()
    answered = store.run_accesses

    async def slow_read(job, run_id):  # answers as of before the other event was written
        before = await answered(job, run_id)
        await unread.wait()
        return before

    store.run_accesses = slow_read
    first = asyncio.create_task(access.run_accesses("job", "r1"))  # START: its read is slow
    await asyncio.sleep(0)
    store.run_accesses = answered
    assert await access.run_accesses("job", "r1") == set()  # COMPLETE: read, recorded, flushed
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (read, wrote)), [read, wrote])
    await access.flush()
    unread.set()
    assert await first == {read, wrote}
    assert await access.run_accesses("job", "r1") == {read, wrote}  # and so for the run's next event


async def test_a_run_in_a_batch_not_written_yet_is_known():
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    for run_id in ("r1", "r2"):
        access.record_run(RunRecord("job", run_id, "", "", "r", NOW, NOW, NOW, (read,)), [read])
    store.fail = 1
    with pytest.raises(Exception, match="store down"):
        await access.flush()
    await access.prune()  # forgets the runs it kept in memory: the store is asked, and the kept batch
    assert await access.run_accesses("job", "r2") == {read}
    assert await access.run_accesses("job", "r3") == set()
    await access.flush()
    assert await access.run_accesses("job", "r1") == {read}


async def test_run_records_are_written_only_after_the_decisions_logged_before_them():
    # The store remembers a run as judged (it is not judged again): its decisions, which the
    # durable log may still hold, must be on disk first.
    store, order = FakeAccessStore(), []
    real_write = store.write_batch

    async def write_batch(batch):
        order.append(("store", len(batch.runs)))
        return await real_write(batch)

    async def decisions_logged():
        order.append(("decision log", None))

    store.write_batch = write_batch
    access = AccessRecorder(
        store, AccessSettings(), labels_of=lambda d: (), decisions_logged=decisions_logged, clock=lambda: NOW
    )
    access.record_catalog_write("", "s3://a")
    await access.flush()  # no run: nothing to wait for
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (read,)), [read])
    await access.flush()
    assert order == [("store", 0), ("decision log", None), ("store", 1)]


async def test_a_flush_cancelled_while_the_decisions_are_logged_keeps_the_runs():
    store, release = FakeAccessStore(), asyncio.Event()

    async def decisions_logged():
        await release.wait()

    access = AccessRecorder(
        store, AccessSettings(), labels_of=lambda d: (), decisions_logged=decisions_logged, clock=lambda: NOW
    )
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (read,)), [read])
    flushing = asyncio.create_task(access.flush())
    await asyncio.sleep(0)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    release.set()
    await access.flush()
    (batch,) = store.batches
    assert [(r.job, r.run_id) for r in batch.runs] == [("job", "r1")] and len(batch.counts) == 1


async def test_runs_known_in_memory_are_bounded_by_the_most_recently_used(monkeypatch):
    monkeypatch.setattr("domicile.access.recorder.KNOWN_RUNS", 2)
    store = FakeAccessStore()
    access = recorder(store)
    read = RunAccess("s3://a", AccessOperation.READ, "r")
    access.record_run(RunRecord("job", "r1", "", "", "r", NOW, NOW, NOW, (read,)), [read])
    await access.flush()
    for run_id in ("r1", "r2", "r1", "r3"):  # r2 is the least recently used when r3 comes
        await access.run_accesses("job", run_id)
    assert store.run_reads == 3
    assert await access.run_accesses("job", "r1") == {read}
    await access.run_accesses("job", "r2")
    assert store.run_reads == 4


def violation(violation_id: str) -> ObservedViolation:
    return ObservedViolation(
        violation_id, FindingKind.UNKNOWN_RUN_REGION, "job", "r1", "", "", "s3://a", Operation.PROCESS, "", NOW, NOW
    )


async def test_violations_are_written_at_once_in_a_batch_of_their_own():
    store = FakeAccessStore()
    access = recorder(store)
    access.count("job", "s3://a", AccessOperation.READ, "r", NOW)
    await access.record_violations([violation("v1")])
    (batch,) = store.batches
    assert ([v.violation_id for v in batch.violations], batch.counts, batch.anomalies) == (["v1"], (), ())
    await access.flush()  # the accesses beside them: with the next flush
    assert [c.count for c in store.batches[1].counts] == [1]
    assert store.batches[1].violations == ()


async def test_a_refused_violation_batch_is_written_again_before_anything_newer():
    store = FakeAccessStore()
    access = recorder(store)
    store.fail = 1
    with pytest.raises(Exception, match="store down"):
        await access.record_violations([violation("v1")])
    await access.record_violations([violation("v2")])
    assert [[v.violation_id for v in b.violations] for b in store.batches] == [["v1"], ["v2"]]


async def test_close_flushes_what_is_pending():
    store = FakeAccessStore()
    access = recorder(store)
    access.start()
    access.count("job", "s3://a", AccessOperation.READ, "r", NOW)
    await access.close()
    assert len(store.batches) == 1


async def test_pruning_uses_the_configured_retention():
    store = FakeAccessStore()
    cutoffs = []

    async def prune_runs(before):
        cutoffs.append(before)
        return 0

    store.prune_runs = prune_runs
    access = AccessRecorder(store, AccessSettings(run_retention_days=10), labels_of=lambda d: (), clock=lambda: NOW)
    await access.prune()
    assert cutoffs == [NOW - timedelta(days=10)]
