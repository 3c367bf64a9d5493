"""Contract: recording and ending lineage, traversal (limits, cycles, as_of), list_edges."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from domicile.catalog.model import (
    ChangeKind,
    Dataset,
    Direction,
    EdgeKey,
    PageRequest,
    Run,
    TraversalLimits,
)
from domicile.errors import DomicileError, ErrorCode


def keys(job: str, *pairs: tuple[str, str]) -> list[EdgeKey]:
    return [EdgeKey(i, o, job) for i, o in pairs]


async def all_edges(store, size: int = 100, **kwargs):
    found = []
    token = ""
    while True:
        page = await store.list_edges(PageRequest(size, token), **kwargs)
        found += page.items
        token = page.next_token
        if not token:
            return found


def depths(traversal) -> dict[str, int]:
    return {n.dataset_id: n.depth for n in traversal.nodes}


def edge_pairs(traversal) -> set[tuple[str, str]]:
    return {(e.input, e.output) for e in traversal.edges}


# raw1 -> clean -> mart -> report, plus raw2 -> clean and the shortcut raw2 -> mart.
PIPELINE = [("raw1", "clean"), ("raw2", "clean"), ("clean", "mart"), ("raw2", "mart"), ("mart", "report")]


@pytest.fixture
async def pipeline(store):
    await store.upsert_dataset(Dataset.create("report", owner="bi"))
    await store.record_lineage(Run("etl", "run-1", run_region="aws:eu-central-1"), keys("etl", *PIPELINE))
    return store


async def test_record_lineage_creates_edges_and_placeholders(store, clock):
    await store.upsert_dataset(Dataset.create("s3://known", owner="me"))
    recorded_at = clock.advance()

    result = await store.record_lineage(
        Run("etl", "r1", transform="aggregate", event_time=recorded_at - timedelta(minutes=5)),
        keys("etl", ("s3://known", "s3://derived"), ("s3://other", "s3://derived")),
        principal="airflow",
    )

    assert result.edges_created == 2
    assert result.revision == 2 == await store.revision()
    known, derived = await store.get_dataset("s3://known"), await store.get_dataset("s3://derived")
    assert not known.placeholder and known.owner == "me" and known.revision == 1
    assert derived.placeholder and derived.revision == 2 and derived.create_time == recorded_at
    edges = await all_edges(store)
    assert {(e.input, e.output, e.job, e.transform, e.run_id) for e in edges} == {
        ("s3://known", "s3://derived", "etl", "aggregate", "r1"),
        ("s3://other", "s3://derived", "etl", "aggregate", "r1"),
    }
    assert all(e.record_time == recorded_at and e.end_time is None for e in edges)


async def test_same_run_twice_creates_nothing(pipeline):
    revision = await pipeline.revision()
    again = await pipeline.record_lineage(Run("etl", "run-1"), keys("etl", *PIPELINE, ("new", "report")))
    assert again.edges_created == 0
    assert await pipeline.revision() == revision
    assert await pipeline.get_dataset("new") is None


async def test_new_run_with_the_same_transform_keeps_the_edges(pipeline):
    before = await all_edges(pipeline)
    revision = await pipeline.revision()

    result = await pipeline.record_lineage(Run("etl", "run-2"), keys("etl", *PIPELINE))

    assert result.edges_created == 0
    assert await pipeline.revision() == revision
    assert await all_edges(pipeline) == before  # still the edges of run-1


async def test_new_run_adds_only_new_edges(pipeline):
    result = await pipeline.record_lineage(Run("etl", "run-2"), keys("etl", ("mart", "report"), ("mart", "export")))
    assert result.edges_created == 1
    assert len(await all_edges(pipeline)) == len(PIPELINE) + 1


async def test_same_datasets_under_another_job_is_another_edge(pipeline):
    result = await pipeline.record_lineage(Run("backfill", "b1"), keys("backfill", ("mart", "report")))
    assert result.edges_created == 1
    assert {e.job for e in await all_edges(pipeline) if (e.input, e.output) == ("mart", "report")} == {
        "etl",
        "backfill",
    }


async def test_transform_change_ends_the_old_edge_and_starts_a_new_one(pipeline, clock):
    old = next(e for e in await all_edges(pipeline) if e.key == EdgeKey("mart", "report", "etl"))
    before_change = clock.advance()
    changed_at = clock.advance()

    result = await pipeline.record_lineage(Run("etl", "run-2", transform="anonymize"), keys("etl", ("mart", "report")))

    assert result.edges_created == 1
    current = [e for e in await all_edges(pipeline) if e.key == old.key]
    assert [(e.transform, e.run_id, e.record_time) for e in current] == [("anonymize", "run-2", changed_at)]
    historic = [e for e in await all_edges(pipeline, as_of=before_change) if e.key == old.key]
    # A past read shows the edge with the whole interval it was true for.
    assert historic == [replace(old, end_time=changed_at)]
    changes = await pipeline.changes_since(result.revision - 1)
    assert [c.kind for c in changes] == [ChangeKind.EDGE_ENDED, ChangeKind.EDGE_ADDED]
    assert changes[0].edge.end_time == changed_at and changes[0].edge.transform == ""
    assert changes[1].edge.transform == "anonymize" and changes[1].edge.end_time is None


async def test_edges_must_belong_to_the_run_job(store):
    with pytest.raises(DomicileError) as error:
        await store.record_lineage(Run("etl", "r1"), [EdgeKey("a", "b", "other-job")])
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    assert await store.revision() == 0


async def test_end_edges_ends_current_edges_and_ignores_unknown_keys(pipeline, clock):
    recorded = (await all_edges(pipeline))[0].record_time
    ended_at = clock.advance()
    revision = await pipeline.revision()

    result = await pipeline.end_edges(
        [*keys("etl", ("raw2", "mart"), ("nope", "mart")), EdgeKey("raw2", "mart", "other-job")], principal="ops"
    )

    assert result.edges_created == 1 and result.revision == revision + 1
    assert ("raw2", "mart") not in {(e.input, e.output) for e in await all_edges(pipeline)}
    assert ("raw2", "mart") in {(e.input, e.output) for e in await all_edges(pipeline, as_of=recorded)}
    again = await pipeline.end_edges(keys("etl", ("raw2", "mart")))
    assert again.edges_created == 0 and again.revision == revision + 1 == await pipeline.revision()
    change = (await pipeline.changes_since(revision))[0]
    assert change.kind is ChangeKind.EDGE_ENDED and change.edge.end_time == ended_at and change.principal == "ops"


async def test_end_edges_at_an_earlier_time(pipeline, clock):
    recorded = (await all_edges(pipeline))[0].record_time
    end = clock.advance(10)
    clock.advance(10)

    await pipeline.end_edges(keys("etl", ("mart", "report")), at=end)

    assert ("mart", "report") in {
        (e.input, e.output) for e in await all_edges(pipeline, as_of=end - timedelta(seconds=1))
    }
    assert ("mart", "report") not in {(e.input, e.output) for e in await all_edges(pipeline, as_of=end)}
    traversal = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=5, as_of=recorded)
    assert "mart" in depths(traversal)


async def test_traverse_upstream_reports_shortest_depths(pipeline):
    result = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=10)
    assert depths(result) == {"report": 0, "mart": 1, "clean": 2, "raw2": 2, "raw1": 3}
    assert result.nodes[0].dataset_id == "report"
    assert edge_pairs(result) == set(PIPELINE)
    assert result.complete and result.incomplete_reason == ""
    assert {n.dataset_id: n.placeholder for n in result.nodes} == {
        "report": False,
        "mart": True,
        "clean": True,
        "raw2": True,
        "raw1": True,
    }
    assert all(e.job == "etl" and e.run_id == "run-1" and e.end_time is None for e in result.edges)


async def test_traverse_downstream_and_both(pipeline):
    down = await pipeline.traverse("raw2", Direction.DOWNSTREAM, max_depth=10)
    assert depths(down) == {"raw2": 0, "clean": 1, "mart": 1, "report": 2}
    assert edge_pairs(down) == {("raw2", "clean"), ("raw2", "mart"), ("clean", "mart"), ("mart", "report")}

    both = await pipeline.traverse("clean", Direction.BOTH, max_depth=10)
    assert depths(both) == {"clean": 0, "raw1": 1, "raw2": 1, "mart": 1, "report": 2}
    assert edge_pairs(both) == set(PIPELINE)


async def test_traverse_handles_cycles(store):
    await store.record_lineage(Run("loop", "r1"), keys("loop", ("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")))
    down = await store.traverse("a", Direction.DOWNSTREAM, max_depth=10)
    assert depths(down) == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert edge_pairs(down) == {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}
    assert down.complete
    up = await store.traverse("a", Direction.UPSTREAM, max_depth=10)
    assert depths(up) == {"a": 0, "c": 1, "b": 2}


async def test_depth_limit_marks_the_answer_incomplete(pipeline):
    cut = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=2)
    assert depths(cut) == {"report": 0, "mart": 1, "clean": 2, "raw2": 2}
    assert (cut.complete, cut.incomplete_reason) == (False, "max_depth")
    assert {("mart", "report"), ("clean", "mart"), ("raw2", "mart")} <= edge_pairs(cut)
    assert all(e.input in depths(cut) and e.output in depths(cut) for e in cut.edges)

    # raw1, at exactly max_depth, has no further neighbours: nothing was cut.
    exact = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=3)
    assert len(exact.nodes) == 5 and exact.complete

    only_start = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=0)
    assert depths(only_start) == {"report": 0} and only_start.edges == ()
    assert (only_start.complete, only_start.incomplete_reason) == (False, "max_depth")


async def test_max_nodes_limit(pipeline):
    cut = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=10, limits=TraversalLimits(max_nodes=3))
    assert len(cut.nodes) == 3 and cut.nodes[0].dataset_id == "report"
    assert (cut.complete, cut.incomplete_reason) == (False, "max_nodes")
    assert all(e.input in depths(cut) and e.output in depths(cut) for e in cut.edges)

    enough = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=10, limits=TraversalLimits(max_nodes=5))
    assert len(enough.nodes) == 5 and enough.complete


async def test_traverse_as_of(pipeline, clock):
    original = clock.advance()
    clock.advance()
    await pipeline.end_edges(keys("etl", ("raw2", "mart"), ("raw1", "clean")))
    await pipeline.record_lineage(Run("etl", "run-2"), keys("etl", ("raw3", "clean")))

    now = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=10)
    assert depths(now) == {"report": 0, "mart": 1, "clean": 2, "raw2": 3, "raw3": 3}
    then = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=10, as_of=original)
    assert depths(then) == {"report": 0, "mart": 1, "clean": 2, "raw2": 2, "raw1": 3}
    assert edge_pairs(then) == set(PIPELINE)


async def test_traverse_unknown_start_is_not_found(pipeline, clock):
    with pytest.raises(DomicileError) as unknown:
        await pipeline.traverse("missing", Direction.UPSTREAM, max_depth=3)
    assert unknown.value.code is ErrorCode.NOT_FOUND

    with pytest.raises(DomicileError) as too_early:
        await pipeline.traverse("report", Direction.UPSTREAM, max_depth=3, as_of=clock.now - timedelta(days=1))
    assert too_early.value.code is ErrorCode.NOT_FOUND


async def test_traverse_from_a_deleted_dataset_is_not_found_but_history_works(pipeline):
    before = (await pipeline.get_dataset("report")).update_time
    lineage_time = (await all_edges(pipeline))[0].record_time
    await pipeline.delete_dataset("report")
    with pytest.raises(DomicileError) as deleted:
        await pipeline.traverse("report", Direction.UPSTREAM, max_depth=3)
    assert deleted.value.code is ErrorCode.NOT_FOUND
    past = await pipeline.traverse("report", Direction.UPSTREAM, max_depth=1, as_of=max(before, lineage_time))
    assert depths(past) == {"report": 0, "mart": 1}


async def test_list_edges_pages_and_as_of(pipeline, clock):
    recorded = (await all_edges(pipeline))[0].record_time
    clock.advance()
    await pipeline.end_edges(keys("etl", ("mart", "report")))
    await pipeline.record_lineage(Run("etl", "run-2"), keys("etl", ("mart", "export")))

    paged = await all_edges(pipeline, size=2)
    assert len(paged) == len(set(paged)) == len(PIPELINE)
    assert {(e.input, e.output) for e in paged} == set(PIPELINE) - {("mart", "report")} | {("mart", "export")}
    historic = await all_edges(pipeline, size=3, as_of=recorded)
    assert {(e.input, e.output) for e in historic} == set(PIPELINE)
    assert await all_edges(pipeline, as_of=recorded - timedelta(days=1)) == []
