"""Access records (`GraphStore.access`): every backend aggregates, merges, pages and prunes
them alike, and none of it is a catalog change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domicile.access.model import (
    AccessBatch,
    AccessCount,
    AccessOperation,
    Anomaly,
    AnomalyKind,
    BaselineDimension,
    BaselineEntry,
    FindingKind,
    ObservedViolation,
    RunAccess,
    RunRecord,
    day_of,
)
from domicile.catalog.model import Dataset, EdgeKey, PageRequest, Run, to_micros
from domicile.errors import DomicileError, ErrorCode
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
READ, WRITE = AccessOperation.READ, AccessOperation.WRITE
EU = "s3://bank-eu/customers"


def count(actor, dataset, op, region, at, n=1, last=None):
    return AccessCount(actor, dataset, op, region, n, at, last or at, day=day_of(at))


def batch(batch_id, **parts):
    return AccessBatch(batch_id, T0, **parts)


def run(job="airflow/etl", run_id="r1", *, at=T0, accesses=(), region="aws:eu-west-1", producer="", principal="p"):
    return RunRecord(job, run_id, producer, principal, region, at, at, at, tuple(accesses))


def violation(violation_id, at, *, dataset=EU):
    decision = Decision(
        f"d-{violation_id}",
        Outcome.DENY,
        dataset,
        Operation.PROCESS,
        "aws:us-east-1",
        ("aws:eu-west-1",),
        (Reason(ReasonCode.RULE_DENIED, "EU personal data", "gdpr", "GDPR Art. 44", ("s3://raw", dataset)),),
        "2026.1",
        7,
        at,
        "pipeline",
    )
    return ObservedViolation(
        violation_id,
        FindingKind.POLICY_DENIED,
        "airflow/etl",
        "r1",
        "https://producer",
        "pipeline",
        dataset,
        Operation.PROCESS,
        "aws:us-east-1",
        at,
        at + timedelta(minutes=1),
        decision=decision,
        message="processed where the policy forbids it",
    )


def anomaly(anomaly_id, at):
    return Anomaly(
        anomaly_id,
        AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR,
        "airflow/etl",
        ("s3://bank-in/payments",),
        "FINANCIAL.PAYMENT",
        at,
        at - timedelta(days=30),
        ("PII.CONTACT",),
        message="new classification",
    )


async def test_counts_add_up_per_day_and_keep_first_and_last_seen(store):
    access = store.access
    assert await access.write_batch(
        batch("b1", counts=(count("job-a", EU, READ, "aws:eu-west-1", T0, 2, T0 + timedelta(hours=1)),))
    )
    assert await access.write_batch(
        batch(
            "b2",
            counts=(
                count("job-a", EU, READ, "aws:eu-west-1", T0 - timedelta(hours=1), 3),
                count("job-a", EU, READ, "aws:eu-west-1", T0 + timedelta(days=1)),
                count("job-b", EU, WRITE, "aws:eu-central-1", T0),
            ),
        )
    )
    patterns = await access.dataset_access(EU)
    assert [(c.actor, c.operation, c.region, c.total, c.first_seen, c.last_seen) for c in patterns] == [
        ("job-a", READ, "aws:eu-west-1", 6, T0 - timedelta(hours=1), T0 + timedelta(days=1)),
        ("job-b", WRITE, "aws:eu-central-1", 1, T0, T0),
    ]
    # A range selects the UTC days that overlap it.
    first_day = await access.dataset_access(EU, until=T0 + timedelta(hours=2))
    assert [(c.actor, c.total) for c in first_day] == [("job-a", 5), ("job-b", 1)]
    second_day = await access.dataset_access(EU, since=day_of(T0) + timedelta(days=1, hours=3))
    assert [(c.actor, c.total) for c in second_day] == [("job-a", 1)]
    assert list(await access.dataset_access("s3://nobody/reads-this")) == []


async def test_a_range_leaves_out_the_day_rows_with_no_access_in_it(store):
    # A day that has an access in the range counts whole; one whose accesses all fall on the
    # other side of a range end does not: read as of noon, an actor first seen that evening
    # had touched nothing yet.
    access = store.access
    morning, noon, evening = T0.replace(hour=8), T0.replace(hour=12), T0.replace(hour=20)
    await access.write_batch(
        batch(
            "b1",
            counts=(
                count("job-a", EU, READ, "r", morning),
                count("job-b", EU, READ, "r", evening),
                count("job-c", EU, READ, "r", morning, 2, evening),
            ),
        )
    )
    as_of_noon = await access.dataset_access(EU, until=noon)
    assert [(c.actor, c.total, c.last_seen) for c in as_of_noon] == [("job-a", 1, morning), ("job-c", 2, evening)]
    since_noon = await access.dataset_access(EU, since=noon)
    assert [(c.actor, c.total) for c in since_noon] == [("job-b", 1), ("job-c", 2)]
    assert list(await access.actor_access("job-b", until=noon)) == []
    assert [c.total for c in await access.actor_access("job-a", until=noon)] == [1]
    assert list(await access.actor_access("job-a", since=noon)) == []


async def test_intent_rows_add_up_like_counts(store):
    # The engine's intents arrive as rows; they add to the day rows and all-time totals as
    # counts do, also when a key repeats within a batch.
    access = store.access
    at, day = to_micros(T0), to_micros(day_of(T0))
    next_day = day + to_micros(T0 + timedelta(days=1)) - to_micros(T0)
    store_intent = AccessOperation.INTENT_STORE
    assert await access.write_batch(
        batch(
            "b1",
            counts=(count("job-a", EU, READ, "aws:eu-west-1", T0),),
            intents=(
                ("svc", EU, store_intent.value, "aws:us-east-1", 4, at, at + 10, day),
                ("svc", EU, store_intent.value, "aws:us-east-1", 1, at - 5, at - 5, day),
                ("svc", EU, store_intent.value, "aws:us-east-1", 2, at + 86_400_000_000, at + 86_400_000_000, next_day),
            ),
        )
    )
    assert await access.write_batch(
        batch("b2", intents=(("svc", EU, store_intent.value, "aws:us-east-1", 3, at, at, day),))
    )
    expected = [
        ("job-a", READ, "aws:eu-west-1", 1, at, at),
        ("svc", store_intent, "aws:us-east-1", 10, at - 5, at + 86_400_000_000),
    ]
    summary = [
        (c.actor, c.operation, c.region, c.total, c.first_seen_us, c.last_seen_us)
        for c in await access.dataset_access(EU)
    ]
    assert summary == expected
    first_day = await access.dataset_access(EU, since=T0, until=T0 + timedelta(hours=1))
    assert [(c.actor, c.total, c.first_seen_us, c.last_seen_us) for c in first_day] == [
        ("job-a", 1, at, at),
        ("svc", 8, at - 5, at + 10),
    ]
    (svc,) = await access.actor_access("svc")
    assert (svc.dataset_id, svc.total) == (EU, 10)


async def test_actor_access_lists_what_an_actor_touched(store):
    access = store.access
    await access.write_batch(
        batch(
            "b1",
            counts=(
                count("job-a", EU, READ, "aws:eu-west-1", T0),
                count("job-a", "s3://b", WRITE, "aws:eu-west-1", T0),
                count("job-b", "s3://c", READ, "aws:eu-west-1", T0),
            ),
        )
    )
    touched = await access.actor_access("job-a")
    assert [(c.dataset_id, c.operation) for c in touched] == [("s3://b", WRITE), (EU, READ)]
    assert list(await access.actor_access("job-a", since=T0 + timedelta(days=1))) == []


async def test_a_batch_applies_at_most_once(store):
    access = store.access
    first = batch("same", counts=(count("job-a", EU, READ, "r", T0),), violations=(violation("v1", T0),))
    assert await access.write_batch(first) is True
    assert await access.write_batch(first) is False
    (pattern,) = await access.dataset_access(EU)
    assert pattern.total == 1


async def test_access_records_are_not_catalog_changes(store):
    await store.upsert_dataset(Dataset.create(EU, classifications=["PII"]))
    revision = await store.revision()
    await store.access.write_batch(
        batch(
            "b1",
            counts=(count("job-a", EU, READ, "r", T0),),
            runs=(run(accesses=[RunAccess(EU, READ, "aws:eu-west-1")]),),
            violations=(violation("v1", T0),),
            anomalies=(anomaly("a1", T0),),
        )
    )
    assert await store.revision() == revision
    assert [c.revision for c in await store.changes_since(0)] == [revision]


async def test_runs_merge_across_events_and_dedupe_accesses(store):
    access = store.access
    read = RunAccess(EU, READ, "aws:eu-west-1")
    written = RunAccess("s3://out", WRITE, "aws:eu-west-1")
    await access.write_batch(batch("b1", runs=(run(accesses=[read], producer="", at=T0),)))
    later = RunRecord(
        "airflow/etl",
        "r1",
        "https://producer",
        "other",
        "",
        T0 - timedelta(minutes=5),
        T0 + timedelta(minutes=5),
        T0,
        (read, written),
    )
    await access.write_batch(batch("b2", runs=(later,)))
    assert await access.run_accesses("airflow/etl", "r1") == frozenset({read, written})
    assert await access.run_accesses("airflow/etl", "unknown") == frozenset()
    (stored,) = await access.list_runs("airflow/etl")
    assert stored.producer == "https://producer"  # filled in: empty before
    assert stored.principal == "p"  # kept from the first record
    assert stored.run_region == "aws:eu-west-1"
    assert (stored.event_time, stored.last_event_time) == (T0 - timedelta(minutes=5), T0 + timedelta(minutes=5))
    assert set(stored.accesses) == {read, written}


async def test_record_lineage_reads_the_access_record_of_the_run_asked_for(store):
    read = RunAccess(EU, READ, "aws:eu-west-1")
    await store.access.write_batch(batch("b1", runs=(run("default/etl", "r1", accesses=[read]),)))
    edge = [EdgeKey(EU, "s3://out", "etl")]
    # Access records key the run by the qualified job: not the catalog's key.
    first = await store.record_lineage(Run("etl", "r1"), edge, access_run=("default/etl", "r1"))
    assert (first.edges_created, first.run_accesses) == (1, frozenset({read}))
    # The same run again writes nothing; the read is answered all the same.
    again = await store.record_lineage(Run("etl", "r1"), edge, access_run=("default/etl", "r1"))
    assert (again.edges_created, again.revision, again.run_accesses) == (0, first.revision, frozenset({read}))
    unknown = await store.record_lineage(Run("etl", "r2"), edge, access_run=("default/etl", "r2"))
    assert unknown.run_accesses == frozenset()
    assert (await store.record_lineage(Run("etl", "r3"), edge)).run_accesses is None  # not asked


async def test_list_runs_reads_a_time_range_latest_first(store):
    access = store.access
    runs = tuple(run(run_id=f"r{i}", at=T0 + timedelta(hours=i)) for i in range(4))
    await access.write_batch(batch("b1", runs=runs))
    assert [r.run_id for r in await access.list_runs("airflow/etl")] == ["r3", "r2", "r1", "r0"]
    assert [r.run_id for r in await access.list_runs("airflow/etl", limit=2)] == ["r3", "r2"]
    window = await access.list_runs("airflow/etl", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert [r.run_id for r in window] == ["r2", "r1"]


async def test_pruning_removes_old_runs_and_keeps_aggregates(store):
    access = store.access
    old = RunRecord("airflow/etl", "old", "", "", "r", T0, T0, T0 - timedelta(days=40))
    new = RunRecord("airflow/etl", "new", "", "", "r", T0, T0, T0)
    await access.write_batch(batch("b1", runs=(old, new), counts=(count("airflow/etl", EU, READ, "r", T0),)))
    assert await access.prune_runs(T0 - timedelta(days=30)) == 1
    assert [r.run_id for r in await access.list_runs("airflow/etl")] == ["new"]
    assert await access.run_accesses("airflow/etl", "old") == frozenset()
    assert len(await access.dataset_access(EU)) == 1


async def test_violations_page_in_time_order_and_round_trip(store):
    access = store.access
    violations = [violation(f"v{i}", T0 + timedelta(minutes=i)) for i in (3, 1, 2, 0)]
    await access.write_batch(batch("b1", violations=tuple(violations)))
    first = await access.list_violations(PageRequest(size=3))
    assert [v.violation_id for v in first.items] == ["v0", "v1", "v2"]
    assert first.next_token
    # A violation recorded between pages does not disturb the paging.
    await access.write_batch(batch("b2", violations=(violation("v9", T0 + timedelta(minutes=9)),)))
    second = await access.list_violations(PageRequest(size=3, token=first.next_token))
    assert [v.violation_id for v in second.items] == ["v3", "v9"]
    assert second.next_token == ""
    assert first.items[0] == violations[3]
    ranged = await access.list_violations(
        PageRequest(size=10), since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
    )
    assert [v.violation_id for v in ranged.items] == ["v1", "v2"]


async def test_page_tokens_are_bound_to_their_listing_and_range(store):
    access = store.access
    await access.write_batch(
        batch("b1", violations=tuple(violation(f"v{i}", T0 + timedelta(minutes=i)) for i in range(3)))
    )
    page = await access.list_violations(PageRequest(size=1))
    for call in (
        access.list_violations(PageRequest(size=1, token="not-a-token")),
        access.list_violations(PageRequest(size=1, token=page.next_token), since=T0),
        access.list_anomalies(PageRequest(size=1, token=page.next_token)),
    ):
        with pytest.raises(DomicileError) as caught:
            await call
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT
        assert caught.value.violations[0].field == "page_token"
    with pytest.raises(DomicileError) as caught:
        await access.list_violations(PageRequest(size=1), since=T0, until=T0)
    assert caught.value.violations[0].field == "until"


async def test_anomalies_page_by_detect_time(store):
    access = store.access
    await access.write_batch(batch("b1", anomalies=(anomaly("a2", T0 + timedelta(hours=2)), anomaly("a1", T0))))
    page = await access.list_anomalies(PageRequest(size=5))
    assert [a.anomaly_id for a in page.items] == ["a1", "a2"]
    assert page.items[0] == anomaly("a1", T0)
    later = await access.list_anomalies(PageRequest(size=5), since=T0 + timedelta(hours=1))
    assert [a.anomaly_id for a in later.items] == ["a2"]


async def test_baselines_hold_entries_and_daily_observed_counts(store):
    access = store.access
    seen = BaselineEntry("job-a", BaselineDimension.SEEN, "", T0 - timedelta(days=20), T0)
    label = BaselineEntry("job-a", BaselineDimension.CLASSIFICATION, "PII", T0 - timedelta(days=20), T0)
    await access.write_batch(
        batch(
            "b1",
            baselines=(seen, label),
            counts=(
                count("job-a", EU, READ, "r", T0 - timedelta(days=2), 4),
                count("job-a", EU, READ, "r", T0, 1),
                count("job-a", EU, AccessOperation.INTENT_STORE, "r", T0, 50),  # questions are not accesses
                count("job-a", EU, READ, "r", T0 - timedelta(days=40), 9),  # before `since`
            ),
        )
    )
    # Later entries widen the interval, never narrow it.
    await access.write_batch(
        batch(
            "b2",
            baselines=(
                BaselineEntry(
                    "job-a", BaselineDimension.CLASSIFICATION, "PII", T0 - timedelta(days=1), T0 + timedelta(days=1)
                ),
            ),
        )
    )
    baselines = await access.baselines(["job-a", "job-unknown"], since=T0 - timedelta(days=30))
    assert set(baselines) == {"job-a"}
    baseline = baselines["job-a"]
    assert baseline.first_seen == T0 - timedelta(days=20)
    assert baseline.values(BaselineDimension.CLASSIFICATION, T0) == {"PII"}
    (pii,) = [e for e in baseline.entries if e.value == "PII"]
    assert (pii.first_seen, pii.last_seen) == (T0 - timedelta(days=20), T0 + timedelta(days=1))
    assert baseline.daily_counts == {day_of(T0 - timedelta(days=2)): 4, day_of(T0): 1}
