"""Contract: export_history / import_history round trips losslessly within a backend."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from domicile.catalog.model import (
    Dataset,
    DatasetFilter,
    Direction,
    EdgeKey,
    Field,
    PageRequest,
    Run,
)
from domicile.errors import DomicileError, ErrorCode

IDS = ["s3://a", "s3://b", "s3://c", "s3://d", "s3://e"]


async def build_history(store, clock) -> list:
    """Writes a varied history and returns the instants worth asking about."""
    instants = [clock.now]
    clock.advance()
    await store.upsert_dataset(
        Dataset.create(
            "s3://a",
            owner="crm",
            classifications=["PII"],
            origins=["DE"],
            tags={"k": "v"},
            fields=[Field("email", ("PII.CONTACT",))],
        ),
        principal="alice",
    )
    instants.append(clock.advance())
    await store.record_lineage(
        Run("etl", "r1", run_region="aws:eu-west-1", event_time=clock.now - timedelta(minutes=1)),
        [EdgeKey("s3://a", "s3://b", "etl"), EdgeKey("s3://b", "s3://c", "etl")],
        principal="airflow",
    )
    instants.append(clock.advance())
    await store.upsert_dataset(Dataset.create("s3://b", owner="bi", locations=["aws:eu-central-1"]), principal="bob")
    instants.append(clock.advance())
    await store.record_lineage(Run("etl", "r2", transform="anonymize"), [EdgeKey("s3://a", "s3://b", "etl")])
    await store.record_lineage(Run("etl", "r3", transform="anonymize"), [EdgeKey("s3://a", "s3://b", "etl")])
    instants.append(clock.advance())
    await store.delete_dataset("s3://a", principal="dpo")
    instants.append(clock.advance())
    await store.end_edges([EdgeKey("s3://b", "s3://c", "etl")], at=clock.now - timedelta(milliseconds=500))
    instants.append(clock.advance())
    await store.upsert_dataset(Dataset.create("s3://a", owner="crm-v2"))
    await store.record_lineage(Run("load", "l1", transform="aggregate"), [EdgeKey("s3://d", "s3://e", "load")])
    instants.append(clock.advance())
    return instants


async def observe(store, instants) -> dict:
    """Everything a reader can ask, at every instant; equal observations = same history."""
    seen: dict = {"revision": await store.revision(), "changes": await store.changes_since(0)}
    for at in [*instants, None]:
        key = "now" if at is None else at.isoformat()
        seen[key, "datasets"] = {i: await store.get_dataset(i, as_of=at) for i in IDS}
        seen[key, "list"] = (await store.list_datasets(DatasetFilter(), PageRequest(100), as_of=at)).items
        seen[key, "pii"] = (
            await store.list_datasets(DatasetFilter(classification="PII"), PageRequest(100), as_of=at)
        ).items
        seen[key, "edges"] = sorted(
            (await store.list_edges(PageRequest(100), as_of=at)).items, key=lambda e: (e.input, e.output, e.job)
        )
        for dataset_id, dataset in seen[key, "datasets"].items():
            if dataset is not None:
                seen[key, "lineage", dataset_id] = await store.traverse(
                    dataset_id, Direction.BOTH, max_depth=5, as_of=at
                )
    return seen


async def iterate(records):
    for record in records:
        yield record


async def test_export_import_round_trip_is_lossless(store_factory, clock):
    source = await store_factory(clock=clock)
    instants = await build_history(source, clock)
    expected = await observe(source, instants)
    # Records are JSON-able: push them through JSON text as `domicile export` does.
    records = [json.loads(json.dumps(r)) for r in [r async for r in source.export_history()]]
    await source.close()

    target = await store_factory(clock=clock)
    assert await target.import_history(iterate(records)) == len(records)

    assert await observe(target, instants) == expected
    assert [r async for r in target.export_history()] == records
    # The imported store carries on from the last revision, later than every recorded time.
    clock.advance(-60)
    written = await target.upsert_dataset(Dataset.create("s3://new"))
    assert written.revision == expected["revision"] + 1
    assert written.update_time > expected["changes"][-1].time


async def test_export_of_an_empty_store_imports_as_empty(store_factory):
    source = await store_factory()
    records = [r async for r in source.export_history()]
    await source.close()
    target = await store_factory()
    assert await target.import_history(iterate(records)) == len(records)
    assert await target.revision() == 0
    assert await target.changes_since(0) == []


async def test_import_into_a_non_empty_store_is_refused(store, clock):
    await build_history(store, clock)
    records = [r async for r in store.export_history()]
    revision = await store.revision()

    with pytest.raises(DomicileError) as error:
        await store.import_history(iterate(records))

    assert error.value.code is ErrorCode.FAILED_PRECONDITION
    assert await store.revision() == revision


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"type": "revision", "revision": 1, "time": 1, "principal": "", "summary": ""}],
        [{"type": "header", "format": "domicile-history", "version": 999}],
        [{"type": "header", "format": "domicile-history", "version": 1}, {"type": "mystery"}],
        [
            {"type": "header", "format": "domicile-history", "version": 1},
            {"type": "revision", "revision": 1, "time": 1, "principal": ""},
        ],
    ],
    ids=["empty", "no-header", "future-version", "unknown-type", "missing-field"],
)
async def test_malformed_history_is_invalid_and_imports_nothing(store, records):
    with pytest.raises(DomicileError) as error:
        await store.import_history(iterate(records))
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    assert await store.revision() == 0
    assert [r async for r in store.export_history()][1:] == []
