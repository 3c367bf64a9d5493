"""Contract: a dataset's revision history (`GraphStore.dataset_revisions`)."""

from __future__ import annotations

import pytest

from domicile.catalog.model import Dataset, EdgeKey, PageRequest, RevisionChange, Run
from domicile.errors import DomicileError, ErrorCode


async def test_revisions_newest_first_with_creates_updates_and_deletes(store, clock):
    await store.record_lineage(Run("etl", "r1"), [EdgeKey("s3://raw", "s3://a", "etl")], principal="airflow")
    t_update = clock.advance()
    await store.upsert_dataset(Dataset.create("s3://a", owner="crm", origins=["DE"]), principal="alice")
    clock.advance()
    await store.upsert_dataset(Dataset.create("s3://a", owner="crm", origins=["DE", "FR"]), principal="bob")
    t_delete = clock.advance()
    deleted_at = await store.delete_dataset("s3://a", principal="dpo")
    clock.advance()
    await store.upsert_dataset(Dataset.create("s3://a", owner="crm-v2"), principal="carol")

    page = await store.dataset_revisions("s3://a", PageRequest(size=100))

    assert [(r.change, r.principal) for r in page.items] == [
        (RevisionChange.CREATED, "carol"),
        (RevisionChange.DELETED, "dpo"),
        (RevisionChange.UPDATED, "bob"),
        (RevisionChange.UPDATED, "alice"),
        (RevisionChange.CREATED, "airflow"),
    ]
    revisions = [r.revision for r in page.items]
    assert revisions == sorted(revisions, reverse=True)
    assert page.items[1].revision == deleted_at and page.items[1].time == t_delete and page.items[1].dataset is None
    assert page.items[2].dataset.origins == ("DE", "FR")
    assert page.items[3].time == t_update
    assert page.items[4].dataset.placeholder
    assert page.next_token == ""


async def test_revisions_page_without_gaps_or_repeats(store, clock):
    for i in range(5):
        clock.advance()
        await store.upsert_dataset(Dataset.create("s3://a", owner=f"o{i}"), principal=f"p{i}")
    await store.upsert_dataset(Dataset.create("s3://other", owner="x"))
    seen, token = [], ""
    while True:
        page = await store.dataset_revisions("s3://a", PageRequest(size=2, token=token))
        seen += [r.principal for r in page.items]
        token = page.next_token
        if not token:
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"]


async def test_revisions_of_unknown_dataset_not_found(store):
    with pytest.raises(DomicileError) as raised:
        await store.dataset_revisions("s3://never", PageRequest())
    assert raised.value.code is ErrorCode.NOT_FOUND


async def test_revisions_token_of_another_dataset_refused(store):
    for i in range(3):
        await store.upsert_dataset(Dataset.create("s3://a", owner=f"o{i}"))
        await store.upsert_dataset(Dataset.create("s3://b", owner=f"o{i}"))
    token = (await store.dataset_revisions("s3://a", PageRequest(size=1))).next_token
    with pytest.raises(DomicileError) as raised:
        await store.dataset_revisions("s3://b", PageRequest(size=1, token=token))
    assert raised.value.code is ErrorCode.INVALID_ARGUMENT
