"""OpenLineage ingestion's write path (lineage.ingest) against a scripted fake store: the
concurrency and ordering rules that a real store makes hard to provoke on purpose."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domicile.catalog.model import Dataset, LineageResult
from domicile.catalog.regions import RegionRegistry
from domicile.errors import DomicileError, ErrorCode, revision_conflict
from domicile.lineage.ingest import ingest_event
from domicile.lineage.openlineage import parse_run_event

REGIONS = RegionRegistry.builtin()


def event(**overrides):
    document = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-30T10:00:00Z",
        "producer": "p",
        "schemaURL": "s",
        "run": {"runId": "r-1"},
        "job": {"namespace": "airflow", "name": "j"},
        "inputs": [
            {
                "namespace": "s3://a",
                "name": "in",
                "facets": {"residency": {"region": "aws:eu-west-1", "origins": ["DE"]}},
            }
        ],
        "outputs": [{"namespace": "s3://a", "name": "out"}],
    }
    document.update(overrides)
    return parse_run_event(document, regions=REGIONS)


class ScriptedStore:
    """Keeps datasets in a dict; `conflict_with` simulates a CatalogService write that lands
    between ingestion's read and its first upsert."""

    def __init__(self, datasets: dict[str, Dataset], conflict_with: Dataset | None = None) -> None:
        self.datasets = datasets
        self.conflict_with = conflict_with
        self.calls: list[tuple] = []
        self.revision_now = max((d.revision for d in datasets.values()), default=0)

    async def revision(self) -> int:
        return self.revision_now

    async def get_dataset(self, dataset_id, *, as_of=None):
        return self.datasets.get(dataset_id)

    async def upsert_dataset(self, dataset, *, expected_revision=0, principal=""):
        self.calls.append(("upsert", dataset.id, expected_revision))
        if self.conflict_with is not None:
            self.datasets[dataset.id], self.conflict_with = self.conflict_with, None
            self.revision_now = self.datasets[dataset.id].revision
        current = self.datasets.get(dataset.id)
        if expected_revision and (current is None or current.revision != expected_revision):
            raise revision_conflict("conflict", expected=expected_revision, actual=current.revision if current else 0)
        self.revision_now += 1
        self.datasets[dataset.id] = replace(dataset, revision=self.revision_now)
        return self.datasets[dataset.id]

    async def record_lineage(self, run, edges, *, principal="", access_run=None):
        self.calls.append(("record_lineage", run.run_id, len(edges)))
        self.revision_now += 1
        return LineageResult(len(edges), self.revision_now)


async def test_attributes_are_written_before_the_lineage():
    store = ScriptedStore({})
    written: list[int] = []

    async def on_write(revision: int) -> None:
        written.append(revision)

    result = await ingest_event(store, event(), regions=REGIONS, principal="ol", on_write=on_write)
    assert store.calls == [("upsert", "s3://a/in", 0), ("record_lineage", "r-1", 1)]
    assert (result.recorded, result.edges_created, result.datasets_updated, result.revision) == (True, 1, 1, 2)
    assert written == [1, 2]


async def test_a_concurrent_catalog_write_is_merged_not_overwritten():
    existing = Dataset.create("s3://a/in", owner="o", classifications=["PII"])
    existing = replace(existing, revision=7)
    concurrent = replace(
        Dataset.create("s3://a/in", owner="new-owner", classifications=["PII"], locations=["aws:eu-central-1"]),
        revision=8,
    )
    store = ScriptedStore({"s3://a/in": existing}, conflict_with=concurrent)
    await ingest_event(store, event(), regions=REGIONS)
    stored = store.datasets["s3://a/in"]
    assert store.calls[:2] == [("upsert", "s3://a/in", 7), ("upsert", "s3://a/in", 8)]
    assert stored.owner == "new-owner"
    assert stored.locations == ("aws:eu-central-1", "aws:eu-west-1")
    assert stored.origins == ("DE",)


async def test_nothing_new_writes_no_dataset():
    existing = replace(Dataset.create("s3://a/in", origins=["DE"], locations=["aws:eu-west-1"]), revision=3)
    store = ScriptedStore({"s3://a/in": existing})
    result = await ingest_event(store, event(), regions=REGIONS)
    assert [c[0] for c in store.calls] == ["record_lineage"]
    assert result.datasets_updated == 0


async def test_a_merge_over_catalog_limits_is_refused_before_any_write():
    crowded = replace(
        Dataset.create("s3://a/in", origins=["DE"], classifications=[f"L{i}" for i in range(64)]), revision=3
    )
    store = ScriptedStore({"s3://a/in": crowded})
    crowded_event = parse_run_event(
        {
            "eventType": "COMPLETE",
            "eventTime": "2026-11-30T10:00:00Z",
            "producer": "p",
            "schemaURL": "s",
            "run": {"runId": "r-2"},
            "job": {"namespace": "airflow", "name": "j"},
            "inputs": [{"namespace": "s3://a", "name": "in", "facets": {"residency": {"classifications": ["EXTRA"]}}}],
            "outputs": [{"namespace": "s3://a", "name": "out"}],
        },
        regions=REGIONS,
    )
    with pytest.raises(DomicileError) as info:
        await ingest_event(store, crowded_event, regions=REGIONS)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert store.calls == []


@pytest.mark.parametrize("event_type", ["START", "FAIL", "ABORT"])
async def test_events_that_create_no_lineage_write_nothing(event_type):
    store = ScriptedStore({})
    result = await ingest_event(store, event(eventType=event_type), regions=REGIONS)
    assert store.calls == [] and not result.recorded
