"""Writing a validated OpenLineage event into the catalog.

All-or-nothing from the caller's view: `lineage.openlineage.parse_run_event` has validated
the event itself; `ingest_event` then reads the datasets the event describes, merges and
validates every one of them, and only then writes: first the dataset attributes (so the
lineage lands on datasets that already carry them), then the run and its edges. The
GraphStore has no multi-call transaction, so a store failure between those writes can leave
the first ones applied; every step is idempotent (merges only add, runs are idempotent per
(job, run id)), so the sender's retry of the same event converges to the complete result,
and the error it received tells it to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from domicile.access.model import RunAccess
from domicile.catalog.model import Dataset
from domicile.catalog.regions import RegionRegistry
from domicile.catalog.store import GraphStore
from domicile.catalog.validation import validate_dataset
from domicile.errors import DomicileError, ErrorCode, FieldErrors
from domicile.lineage.openlineage import DatasetFacts, LineageEvent
from domicile.lineage.recording import edges_for, merge_reported

# Optimistic-concurrency retries when a CatalogService write lands between our read and
# our write of the same dataset.
MERGE_ATTEMPTS = 5


@dataclass(frozen=True)
class IngestResult:
    """What one event changed. `revision` is the catalog revision after the last write
    (the current revision when nothing changed). `run_accesses`: what the lineage write read
    for `ingest_event`'s `access_run` (None when it was not asked or nothing was written)."""

    recorded: bool
    edges_created: int
    datasets_updated: int
    revision: int
    run_accesses: frozenset[RunAccess] | None = None


def _merged(current: Dataset | None, facts: DatasetFacts) -> Dataset:
    return merge_reported(
        current,
        facts.dataset_id,
        name=facts.name,
        classifications=facts.classifications,
        origins=facts.origins,
        locations=facts.locations,
        field_labels=dict(facts.fields),
    )


async def _plan_merges(
    store: GraphStore, datasets: Sequence[DatasetFacts], regions: RegionRegistry
) -> list[tuple[DatasetFacts, Dataset | None, Dataset]]:
    """(facts, current, merged) for each dataset whose content the event changes; raises
    INVALID_ARGUMENT (before anything is written) when a merge breaks a catalog limit."""
    currents = await asyncio.gather(*(store.get_dataset(f.dataset_id) for f in datasets))
    plan = []
    errors = FieldErrors()
    for facts, current in zip(datasets, currents, strict=True):
        merged = _merged(current, facts)
        if current is not None and merged.same_content(current):
            continue
        try:
            validate_dataset(merged, regions, path=f"dataset {facts.dataset_id!r}")
        except DomicileError as error:
            errors.violations.extend(error.violations)
            continue
        plan.append((facts, current, merged))
    errors.raise_if_any("the event's facets would make a dataset invalid")
    return plan


async def _write_merge(
    store: GraphStore,
    facts: DatasetFacts,
    current: Dataset | None,
    merged: Dataset,
    regions: RegionRegistry,
    principal: str,
) -> int:
    """Upsert `merged`, re-reading and re-merging when the dataset changed meanwhile;
    returns the new revision, 0 when the dataset meanwhile holds everything reported."""
    for attempt in range(MERGE_ATTEMPTS):
        try:
            # expected_revision guards against wiping a concurrent CatalogService change;
            # 0 (unchecked) only when the dataset does not exist yet.
            stored = await store.upsert_dataset(
                merged, expected_revision=current.revision if current else 0, principal=principal
            )
            return stored.revision
        except DomicileError as error:
            if error.code is not ErrorCode.ABORTED or attempt == MERGE_ATTEMPTS - 1:
                raise
        current = await store.get_dataset(facts.dataset_id)
        merged = _merged(current, facts)
        if current is not None and merged.same_content(current):
            return 0
        validate_dataset(merged, regions, path=f"dataset {facts.dataset_id!r}")
    raise AssertionError("unreachable: the last attempt returns or raises")


async def ingest_event(
    store: GraphStore,
    event: LineageEvent,
    *,
    regions: RegionRegistry,
    principal: str = "",
    on_write: Callable[[int], Awaitable[None]] | None = None,
    access_run: tuple[str, str] | None = None,
) -> IngestResult:
    """Apply `event` to the catalog (see the module docstring for the guarantees).

    Events whose type creates no lineage change nothing. Returns what changed; `on_write`
    (if given) is awaited with the revision after each acknowledged write. `access_run` is
    handed to the lineage write (`GraphStore.record_lineage`).
    """
    if not event.records_lineage:
        return IngestResult(False, 0, 0, await store.revision())
    plan = await _plan_merges(store, event.datasets, regions)
    revision = 0
    updated = 0
    for facts, current, merged in plan:
        written = await _write_merge(store, facts, current, merged, regions, principal)
        if written:
            updated += 1
            revision = max(revision, written)
            if on_write is not None:
                await on_write(written)
    edges = await asyncio.to_thread(edges_for, event.run.job, event.inputs, event.outputs)
    result = await store.record_lineage(event.run, edges, principal=principal, access_run=access_run)
    if on_write is not None:
        await on_write(result.revision)
    return IngestResult(True, result.edges_created, updated, max(revision, result.revision), result.run_accesses)
