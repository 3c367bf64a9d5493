"""A catalog written before dataset ids were normalised keeps working: opening it moves every
id that follows the naming rules to its normal form -- the dataset, its history and its
lineage with it -- and leaves alone the ids that break the rules and the pairs that collide
(both forms stored as two datasets). Access records follow their datasets, merged where
both forms have them. Run against every backend."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from domicile.access.model import (
    AccessBatch,
    AccessCount,
    AccessOperation,
    Anomaly,
    AnomalyKind,
    FindingKind,
    ObservedViolation,
    RunAccess,
    RunRecord,
    day_of,
)
from domicile.catalog.model import Dataset, Direction, EdgeKey, PageRequest, Run
from domicile.catalog.store import GraphStore
from domicile.catalog.stores.neo4j import Neo4jGraphStore
from domicile.catalog.stores.sqlite import SQLiteGraphStore
from domicile.router.types import Operation

CUSTOMERS = "S3://Bank-EU-Lake/customers"  # as the previous release let it be stored
COPY = "S3://Bank-EU-Lake/copy"
DUPLICATE, ITS_NORMAL_FORM = "S3://Bank-EU-Lake/dup", "s3://bank-eu-lake/dup"
BROKEN = "not a dataset"  # breaks the rules: stays as written


async def write_as_the_previous_release(store: GraphStore, clock) -> datetime:
    """Ids the previous release accepted; returns a time at which `CUSTOMERS` existed."""
    await store.upsert_dataset(
        Dataset.create(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"]), principal="old"
    )
    existed = clock.now
    clock.advance()
    await store.upsert_dataset(
        Dataset.create(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE", "FR"]), principal="old"
    )
    clock.advance()
    await store.record_lineage(Run("airflow/copy", "r1"), [EdgeKey(CUSTOMERS, COPY, "airflow/copy")], principal="old")
    for dataset_id in (DUPLICATE, ITS_NORMAL_FORM, BROKEN):
        clock.advance()
        await store.upsert_dataset(Dataset.create(dataset_id, owner=dataset_id), principal="old")
    return existed


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def previous_release(request, tmp_path, clock) -> AsyncIterator[tuple[GraphStore, datetime, int]]:
    """A catalog as the previous release wrote it (the schema version before), opened by this one:
    (the store, a time at which CUSTOMERS existed, the catalog revision)."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'previous.db'}"
        store = await SQLiteGraphStore.open(uri, clock=clock)
        existed = await write_as_the_previous_release(store, clock)
        revision = await store.revision()
        await store.close()
        with sqlite3.connect(tmp_path / "previous.db") as conn:
            # The schema before the ids were normalised (2), without the tables added since.
            conn.execute("UPDATE schema_version SET version = 2")
            conn.execute("DROP TABLE access_totals")
        reopened: GraphStore = await SQLiteGraphStore.open(uri)
    else:
        import neo4j

        from tests.neo4j_plugin import PASSWORD_ENV, open_clean_neo4j_store

        uri, password = request.getfixturevalue("neo4j_uri"), os.environ.get(PASSWORD_ENV)
        store = await open_clean_neo4j_store(uri, clock=clock)
        existed = await write_as_the_previous_release(store, clock)
        revision = await store.revision()
        await store.close()
        auth = None if password is None else ("neo4j", password)
        async with neo4j.AsyncGraphDatabase.driver(uri, auth=auth) as driver:
            await driver.execute_query("MATCH (c:DomicileCatalog) SET c.schema_version = 1")
        reopened = await Neo4jGraphStore.open(uri, password=password)
    yield reopened, existed, revision
    await reopened.close()


async def test_opening_moves_ids_to_their_normal_form(previous_release):
    store, existed, revision = previous_release
    moved = await store.get_dataset("s3://bank-eu-lake/customers")
    assert moved is not None and moved.origins == ("DE", "FR") and moved.updated_by == "old"
    assert await store.get_dataset(CUSTOMERS) is None  # one dataset, under its normal form
    then = await store.get_dataset("s3://bank-eu-lake/customers", as_of=existed)
    assert then is not None and then.origins == ("DE",)  # its history moved with it
    copy = await store.get_dataset("s3://bank-eu-lake/copy")
    assert copy is not None and copy.placeholder
    upstream = await store.traverse("s3://bank-eu-lake/copy", Direction.UPSTREAM, max_depth=5)
    assert {(e.input, e.output) for e in upstream.edges} == {("s3://bank-eu-lake/customers", "s3://bank-eu-lake/copy")}
    # Both forms were stored as two datasets: both stay, each under what it was stored as.
    assert (await store.get_dataset(DUPLICATE)).owner == DUPLICATE
    assert (await store.get_dataset(ITS_NORMAL_FORM)).owner == ITS_NORMAL_FORM
    assert (await store.get_dataset(BROKEN)).owner == BROKEN
    # Moving ids is no change to the catalog: no revision, and the feed names the new ids.
    assert await store.revision() == revision
    changed = {c.dataset.id for c in await store.changes_since(0) if c.dataset is not None}
    assert "s3://bank-eu-lake/customers" in changed and CUSTOMERS not in changed


async def test_an_imported_history_of_the_previous_release_is_normalised_too(store_factory, clock):
    source = await store_factory(clock=clock)
    await write_as_the_previous_release(source, clock)
    records = [record async for record in source.export_history()]
    await source.close()
    target = await store_factory()

    async def replay():
        for record in records:
            yield record

    await target.import_history(replay())
    assert await target.get_dataset("s3://bank-eu-lake/customers") is not None
    assert await target.get_dataset(CUSTOMERS) is None
    assert await target.get_dataset(DUPLICATE) is not None and await target.get_dataset(BROKEN) is not None


# Access records of the current release (SQLite schema 4, Neo4j 2) under old forms of ids:
# written before the catalog's ids moved, or under a form a client sent since.
OLD, OTHER_OLD, NORMAL = "S3://Bank-EU-Lake/customers", "s3://BANK-eu-lake/customers", "s3://bank-eu-lake/customers"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
READ = AccessOperation.READ


def day_count(dataset, at, n, last=None, actor="airflow/etl", region="aws:eu-west-1"):
    return AccessCount(actor, dataset, READ, region, n, at, last or at, day=day_of(at))


def observed_violation(violation_id, dataset):
    return ObservedViolation(
        violation_id,
        FindingKind.UNKNOWN_RUN_REGION,
        "airflow/etl",
        "r1",
        "https://producer",
        "pipeline",
        dataset,
        Operation.PROCESS,
        "",
        T0,
        T0,
        message="no run region",
    )


async def write_access_as_the_current_release(store: GraphStore) -> None:
    """The catalog as it is after the ids moved (the normal form, and a collided pair), and
    access records naming old forms beside the normal one."""
    await store.upsert_dataset(Dataset.create(NORMAL))
    await store.upsert_dataset(Dataset.create(DUPLICATE))
    await store.upsert_dataset(Dataset.create(ITS_NORMAL_FORM))
    counts = (
        day_count(OLD, T0, 3, last=T0 + timedelta(hours=1)),
        day_count(OTHER_OLD, T0 - timedelta(hours=2), 1),
        day_count(NORMAL, T0 + timedelta(minutes=10), 2, last=T0 + timedelta(hours=3)),
        day_count(OLD, T0 + timedelta(days=1), 4),  # a day only the old form has
        day_count(OLD, T0, 5, actor="dbt/marts"),
        day_count(DUPLICATE, T0, 7),
        day_count(BROKEN, T0, 1),
    )
    run = RunRecord(
        "airflow/etl",
        "r1",
        "https://producer",
        "pipeline",
        "aws:eu-west-1",
        T0,
        T0,
        T0,
        (RunAccess(OLD, READ, "aws:eu-west-1"), RunAccess(NORMAL, READ, "aws:eu-west-1")),
    )
    anomaly = Anomaly(
        "a1",
        AnomalyKind.NEW_REGION_FOR_ACTOR,
        "airflow/etl",
        (DUPLICATE, OLD, OTHER_OLD),
        "aws:eu-west-1",
        T0,
        T0 - timedelta(days=30),
        ("aws:eu-central-1",),
        message="new region",
    )
    violations = (observed_violation("v1", OLD), observed_violation("v2", DUPLICATE))
    batch = AccessBatch("b1", T0, counts=counts, runs=(run,), violations=violations, anomalies=(anomaly,))
    assert await store.access.write_batch(batch)


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def current_release(request, tmp_path) -> AsyncIterator[GraphStore]:
    """A store with access records as the current release wrote them, opened by this one."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'current.db'}"
        store = await SQLiteGraphStore.open(uri)
        await write_access_as_the_current_release(store)
        await store.close()
        with sqlite3.connect(tmp_path / "current.db") as conn:
            conn.execute("UPDATE schema_version SET version = 4")
        reopened: GraphStore = await SQLiteGraphStore.open(uri)
    else:
        import neo4j

        from tests.neo4j_plugin import PASSWORD_ENV, open_clean_neo4j_store

        uri, password = request.getfixturevalue("neo4j_uri"), os.environ.get(PASSWORD_ENV)
        store = await open_clean_neo4j_store(uri)
        await write_access_as_the_current_release(store)
        await store.close()
        auth = None if password is None else ("neo4j", password)
        async with neo4j.AsyncGraphDatabase.driver(uri, auth=auth) as driver:
            await driver.execute_query("MATCH (c:DomicileCatalog) SET c.schema_version = 2")
        reopened = await Neo4jGraphStore.open(uri, password=password)
    yield reopened
    await reopened.close()


def rows(totals):
    return [(t.actor, t.dataset_id, t.total, t.first_seen, t.last_seen) for t in totals]


async def test_opening_moves_access_records_to_the_normal_form(current_release):
    access = current_release.access
    # All time (SQLite reads its totals, Neo4j sums the days): both old forms merged in.
    assert rows(await access.dataset_access(NORMAL)) == [
        ("airflow/etl", NORMAL, 3 + 1 + 2 + 4, T0 - timedelta(hours=2), T0 + timedelta(days=1)),
        ("dbt/marts", NORMAL, 5, T0, T0),
    ]
    # Per day: the day both forms had, merged; the day only the old form had, moved.
    first_day = await access.dataset_access(NORMAL, since=day_of(T0), until=day_of(T0) + timedelta(days=1))
    assert rows(first_day) == [
        ("airflow/etl", NORMAL, 6, T0 - timedelta(hours=2), T0 + timedelta(hours=3)),
        ("dbt/marts", NORMAL, 5, T0, T0),
    ]
    second_day = await access.dataset_access(NORMAL, since=day_of(T0) + timedelta(days=1))
    assert rows(second_day) == [("airflow/etl", NORMAL, 4, T0 + timedelta(days=1), T0 + timedelta(days=1))]
    for old in (OLD, OTHER_OLD):
        assert list(await access.dataset_access(old)) == []
        assert list(await access.dataset_access(old, since=day_of(T0))) == []
    by_actor = await access.actor_access("airflow/etl")
    assert {(t.dataset_id, t.total) for t in by_actor} == {(NORMAL, 10), (DUPLICATE, 7), (BROKEN, 1)}
    # A collided id is a dataset of its own, and an id that breaks the rules stays as written.
    assert rows(await access.dataset_access(DUPLICATE)) == [("airflow/etl", DUPLICATE, 7, T0, T0)]
    assert list(await access.dataset_access(ITS_NORMAL_FORM)) == []
    assert rows(await access.dataset_access(BROKEN)) == [("airflow/etl", BROKEN, 1, T0, T0)]
    # Runs, observed violations and anomalies name the normal form (duplicates merged).
    assert await access.run_accesses("airflow/etl", "r1") == {RunAccess(NORMAL, READ, "aws:eu-west-1")}
    (run,) = await access.list_runs("airflow/etl")
    assert run.accesses == (RunAccess(NORMAL, READ, "aws:eu-west-1"),)
    violations = (await access.list_violations(PageRequest(10))).items
    assert [(v.violation_id, v.dataset_id) for v in violations] == [("v1", NORMAL), ("v2", DUPLICATE)]
    (anomaly,) = (await access.list_anomalies(PageRequest(10))).items
    assert anomaly.dataset_ids == (DUPLICATE, NORMAL)
    # Moving access records is no catalog change.
    assert await current_release.revision() == 3
