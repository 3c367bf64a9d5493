"""Contract: dataset writes and reads, revisions, conflicts, history (as_of), soft delete."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from domicile.catalog.model import Dataset, EdgeKey, Field, Protection, Run
from domicile.errors import DomicileError, ErrorCode


def customers(**overrides) -> Dataset:
    values = {
        "name": "customers",
        "owner": "crm-team",
        "description": "Customer master data",
        "classifications": ["PII.CONTACT", "PII", "PII.CONTACT"],
        "origins": ["FR", "DE"],
        "locations": ["aws:eu-central-1"],
        "tags": {"tier": "gold", "domain": "crm"},
        "fields": [Field("email", ("PII.CONTACT",)), Field("iban", ("FINANCIAL.ACCOUNT", "FINANCIAL.ACCOUNT"))],
        "protection": Protection(encrypted_at_rest=True),
    }
    values.update(overrides)
    return Dataset.create("s3://bank-eu/customers", **values)


async def test_upsert_returns_normalized_dataset_with_store_fields(store, clock):
    written_at = clock.advance()
    raw = Dataset(
        id="s3://bank-eu/customers",
        classifications=("PII", "PII.CONTACT", "PII"),
        origins=("FR", "DE", "FR"),
        fields=(Field("email", ("PII.CONTACT", "PII")),),
        revision=99,  # store-managed: ignored
    )

    stored = await store.upsert_dataset(raw, principal="alice")

    assert stored.classifications == ("PII", "PII.CONTACT")
    assert stored.origins == ("DE", "FR")
    assert stored.fields == (Field("email", ("PII", "PII.CONTACT")),)
    assert stored.revision == 1 == await store.revision()
    assert stored.create_time == stored.update_time == written_at
    assert stored.updated_by == "alice"
    assert not stored.placeholder
    assert await store.get_dataset(raw.id) == stored


async def test_get_returns_every_attribute_as_written(store):
    stored = await store.upsert_dataset(customers())
    got = await store.get_dataset(stored.id)
    assert got == stored
    assert got.same_content(customers())
    assert dict(got.tags) == {"domain": "crm", "tier": "gold"}
    assert got.protection == Protection(encrypted_at_rest=True)


async def test_unknown_dataset_is_none(store):
    assert await store.get_dataset("s3://nowhere/nothing") is None
    assert await store.revision() == 0


async def test_each_write_bumps_the_revision_exactly_once(store, clock):
    first = await store.upsert_dataset(customers())
    clock.advance()
    second = await store.upsert_dataset(customers(description="changed"), principal="bob")
    other = await store.upsert_dataset(Dataset.create("s3://other"))
    deleted_at = await store.delete_dataset("s3://other")

    assert (first.revision, second.revision, other.revision, deleted_at) == (1, 2, 3, 4)
    assert await store.revision() == 4
    # An update keeps the creation time and moves the update time.
    assert second.create_time == first.create_time
    assert second.update_time > first.update_time
    assert second.updated_by == "bob"


async def test_upsert_of_equal_content_is_a_no_op(store, clock):
    stored = await store.upsert_dataset(customers(), principal="alice")
    clock.advance()
    again = await store.upsert_dataset(customers(classifications=["PII", "PII.CONTACT"]), principal="bob")
    assert again == stored
    assert again.updated_by == "alice"
    assert await store.revision() == 1
    assert await store.changes_since(1) == []


async def test_expected_revision_must_match(store):
    stored = await store.upsert_dataset(customers())

    updated = await store.upsert_dataset(customers(description="v2"), expected_revision=stored.revision)
    assert updated.revision == stored.revision + 1

    with pytest.raises(DomicileError) as stale:
        await store.upsert_dataset(customers(description="v3"), expected_revision=stored.revision)
    assert stale.value.code is ErrorCode.ABORTED
    assert stale.value.reason == "REVISION_CONFLICT"
    assert (await store.get_dataset(stored.id)).description == "v2"
    assert await store.revision() == updated.revision

    with pytest.raises(DomicileError) as missing:
        await store.upsert_dataset(Dataset.create("s3://new"), expected_revision=1)
    assert missing.value.code is ErrorCode.ABORTED
    assert await store.get_dataset("s3://new") is None


async def test_concurrent_conflicting_upserts_exactly_one_wins(store):
    stored = await store.upsert_dataset(customers())

    results = await asyncio.gather(
        *(
            store.upsert_dataset(customers(description=f"writer {i}"), expected_revision=stored.revision)
            for i in range(6)
        ),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, Dataset)]
    losers = [r for r in results if isinstance(r, DomicileError)]
    assert len(winners) == 1 and len(losers) == 5
    assert all(e.code is ErrorCode.ABORTED for e in losers)
    assert await store.get_dataset(stored.id) == winners[0]
    assert await store.revision() == stored.revision + 1


async def test_concurrent_independent_writes_get_distinct_revisions(store):
    results = await asyncio.gather(*(store.upsert_dataset(Dataset.create(f"s3://d/{i}")) for i in range(10)))
    assert sorted(d.revision for d in results) == list(range(1, 11))


async def test_as_of_reads_see_each_version_at_its_time(store, clock):
    before = clock.now
    t1 = clock.advance()
    v1 = await store.upsert_dataset(customers(description="v1"))
    t2 = clock.advance()
    v2 = await store.upsert_dataset(customers(description="v2"))
    t3 = clock.advance()
    await store.delete_dataset(v1.id)
    t4 = clock.advance()
    v4 = await store.upsert_dataset(customers(description="v4"))
    tick = timedelta(microseconds=1)

    assert await store.get_dataset(v1.id, as_of=before) is None
    assert await store.get_dataset(v1.id, as_of=t1 - tick) is None
    assert await store.get_dataset(v1.id, as_of=t1) == v1
    assert await store.get_dataset(v1.id, as_of=t2 - tick) == v1
    assert await store.get_dataset(v1.id, as_of=t2) == v2
    assert await store.get_dataset(v1.id, as_of=t3 - tick) == v2
    assert await store.get_dataset(v1.id, as_of=t3) is None
    assert await store.get_dataset(v1.id, as_of=t4) == v4
    assert await store.get_dataset(v1.id, as_of=t4 + timedelta(days=1)) == v4
    assert await store.get_dataset(v1.id) == v4


async def test_store_time_never_goes_backwards(store, clock):
    first = await store.upsert_dataset(Dataset.create("s3://a"))
    clock.advance(-3600)  # the wall clock steps back an hour
    second = await store.upsert_dataset(Dataset.create("s3://b"))
    assert second.update_time > first.update_time


async def test_delete_is_soft_and_recreate_starts_over(store, clock):
    created = await store.upsert_dataset(customers())
    clock.advance()
    revision = await store.delete_dataset(created.id, principal="dpo")

    assert revision == created.revision + 1 == await store.revision()
    assert await store.get_dataset(created.id) is None
    assert await store.get_dataset(created.id, as_of=created.update_time) == created

    with pytest.raises(DomicileError) as again:
        await store.delete_dataset(created.id)
    assert again.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(DomicileError) as stale:
        await store.upsert_dataset(customers(), expected_revision=created.revision)
    assert stale.value.code is ErrorCode.ABORTED

    recreated_at = clock.advance()
    recreated = await store.upsert_dataset(customers())
    assert recreated.create_time == recreated_at > created.create_time
    assert recreated.revision == revision + 1


async def test_delete_checks_existence_and_expected_revision(store):
    with pytest.raises(DomicileError) as missing:
        await store.delete_dataset("s3://never")
    assert missing.value.code is ErrorCode.NOT_FOUND

    stored = await store.upsert_dataset(customers())
    with pytest.raises(DomicileError) as stale:
        await store.delete_dataset(stored.id, expected_revision=stored.revision + 5)
    assert stale.value.code is ErrorCode.ABORTED
    assert await store.get_dataset(stored.id) == stored

    await store.delete_dataset(stored.id, expected_revision=stored.revision)
    assert await store.get_dataset(stored.id) is None


async def test_upserting_a_placeholder_makes_it_real(store):
    await store.record_lineage(Run("etl", "r1"), [EdgeKey("s3://raw", "s3://clean", "etl")])
    placeholder = await store.get_dataset("s3://raw")
    assert placeholder.placeholder
    assert placeholder.classifications == ()

    real = await store.upsert_dataset(Dataset.create("s3://raw", owner="ingest", placeholder=True))
    assert not real.placeholder
    assert real.revision == placeholder.revision + 1
    assert await store.get_dataset("s3://raw") == real


async def test_invalid_dataset_id_is_invalid_argument(store):
    with pytest.raises(DomicileError) as empty:
        await store.upsert_dataset(Dataset.create(""))
    assert empty.value.code is ErrorCode.INVALID_ARGUMENT
    assert await store.revision() == 0


async def test_calls_after_close_fail(store):
    await store.upsert_dataset(customers())
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(DomicileError):
        await store.get_dataset("s3://bank-eu/customers")
    with pytest.raises(DomicileError):
        await store.upsert_dataset(customers(description="late"))
