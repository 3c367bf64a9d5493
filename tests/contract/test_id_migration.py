"""A catalog written before dataset ids were normalised keeps working: opening it moves every
id that follows the naming rules to its normal form -- the dataset, its history and its
lineage with it -- and leaves alone the ids that break the rules and the pairs that collide
(both forms stored as two datasets). Run against every backend."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from domicile.catalog.model import Dataset, Direction, EdgeKey, Run
from domicile.catalog.store import GraphStore
from domicile.catalog.stores.neo4j import Neo4jGraphStore
from domicile.catalog.stores.sqlite import SQLiteGraphStore

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
