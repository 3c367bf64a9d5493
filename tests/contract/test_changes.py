"""Contract: the change feed (changes_since) that the router follows."""

from __future__ import annotations

from itertools import groupby, pairwise

import pytest

from domicile.catalog.model import ChangeKind, Dataset, EdgeKey, Run


@pytest.fixture
async def history(store, clock):
    """Five writes: two upserts, lineage (placeholder + 2 edges), a delete, an edge end."""
    clock.advance()
    await store.upsert_dataset(Dataset.create("a", classifications=["PII"]), principal="alice")
    clock.advance()
    await store.upsert_dataset(Dataset.create("b"), principal="bob")
    clock.advance()
    await store.record_lineage(Run("etl", "r1"), [EdgeKey("a", "c", "etl"), EdgeKey("b", "c", "etl")], principal="etl")
    clock.advance()
    await store.delete_dataset("b", principal="dpo")
    clock.advance()
    await store.end_edges([EdgeKey("b", "c", "etl")], principal="ops")
    return store


def revisions(changes) -> list[int]:
    return [c.revision for c in changes]


async def test_changes_describe_every_write_in_revision_order(history, clock):
    changes = await history.changes_since(0)

    assert revisions(changes) == [1, 2, 3, 3, 3, 4, 5]
    summary = [(c.kind, c.dataset_id, c.edge and (c.edge.input, c.edge.output), c.principal) for c in changes]
    assert summary[:2] == [
        (ChangeKind.DATASET_UPSERTED, "a", None, "alice"),
        (ChangeKind.DATASET_UPSERTED, "b", None, "bob"),
    ]
    assert summary[2] == (ChangeKind.DATASET_UPSERTED, "c", None, "etl")
    assert sorted(summary[3:5]) == [
        (ChangeKind.EDGE_ADDED, "", ("a", "c"), "etl"),
        (ChangeKind.EDGE_ADDED, "", ("b", "c"), "etl"),
    ]
    assert summary[5:] == [
        (ChangeKind.DATASET_DELETED, "b", None, "dpo"),
        (ChangeKind.EDGE_ENDED, "", ("b", "c"), "ops"),
    ]
    # Upserts carry the dataset as written; the placeholder too.
    assert changes[0].dataset == await history.get_dataset("a", as_of=changes[0].time)
    assert changes[2].dataset.placeholder
    assert changes[6].edge.end_time == changes[6].time == clock.now
    assert all(later.time > earlier.time for earlier, later in pairwise(changes) if later.revision > earlier.revision)


async def test_changes_since_a_revision_starts_after_it(history):
    assert revisions(await history.changes_since(3)) == [4, 5]
    assert await history.changes_since(5) == []
    assert await history.changes_since(99) == []


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 6, 7, 100])
async def test_limit_never_splits_a_revision(history, limit):
    everything = await history.changes_since(0)
    answer = await history.changes_since(0, limit=limit)

    assert answer == everything[: len(answer)]  # a prefix of the feed
    assert answer, "a limit still returns at least one revision"
    last = answer[-1].revision
    assert [c for c in everything if c.revision == last] == [c for c in answer if c.revision == last]
    # Only the last revision may take the answer past the limit.
    assert len([c for c in answer if c.revision != last]) < limit


async def test_following_the_feed_in_small_steps_sees_everything_once(history):
    everything = await history.changes_since(0)
    followed = []
    cursor = 0
    while batch := await history.changes_since(cursor, limit=2):
        followed += batch
        cursor = batch[-1].revision
    assert followed == everything
    assert [r for r, _ in groupby(revisions(followed))] == [1, 2, 3, 4, 5]
