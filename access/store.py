"""The `AccessStore` interface: access records in the graph store, beside the catalog.

Every `GraphStore` backend provides one (`GraphStore.access`); `tests/contract/test_access.py`
holds them to the same behaviour. Rules every implementation follows:

- **Not catalog changes.** Nothing here bumps the catalog revision, enters the change feed or
  is exported with the catalog's history.
- **One batch, one transaction, at most once.** `write_batch` applies everything in a batch or
  nothing; a batch id already applied is a no-op (so a flush retried after an unknown outcome
  never counts twice).
- **Aggregates** are keyed (actor, dataset, operation, region, UTC day): a batch adds its
  counts, keeps the earliest `first_seen` and the latest `last_seen`.
- **Runs** are keyed (job, run_id): a batch merges into an existing record (accesses are a
  union; earliest event time, latest last event time; principal, producer and run region are
  kept from the first record unless empty there).
- **Time ranges** are half-open, `since <= t < until`, either end optional (None). Aggregate
  reads select the UTC days that overlap the range; everything else compares exact times:
  runs their `event_time`, violations their `event_time`, anomalies their `detect_time`.
- **Errors** as in `GraphStore`: bad arguments INVALID_ARGUMENT, a malformed page token
  INVALID_ARGUMENT on "page_token", the backend unreachable UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from domicile.access.model import (
    AccessBatch,
    AccessTotals,
    ActorBaseline,
    Anomaly,
    ObservedViolation,
    RunAccess,
    RunRecord,
)
from domicile.catalog.model import Page, PageRequest


@runtime_checkable
class AccessStore(Protocol):
    async def write_batch(self, batch: AccessBatch) -> bool:
        """Apply `batch` (see the module rules); False when its id was applied before."""
        ...

    async def dataset_access(
        self, dataset_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> AccessTotals:
        """Who touched `dataset_id` in the range: one total per (actor, operation, region),
        packed by actor (`AccessTotals`: a busy dataset has ten thousand)."""
        ...

    async def actor_access(
        self, actor: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> AccessTotals:
        """What `actor` touched in the range: one total per (dataset, operation, region),
        packed by dataset."""
        ...

    async def list_runs(
        self, job: str, *, since: datetime | None = None, until: datetime | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """The retained runs of `job` whose event time is in the range, latest first, at most `limit`."""
        ...

    async def run_accesses(self, job: str, run_id: str) -> frozenset[RunAccess]:
        """The accesses already recorded for run (job, run_id); empty for an unknown run."""
        ...

    async def list_violations(
        self, page: PageRequest, *, since: datetime | None = None, until: datetime | None = None
    ) -> Page[ObservedViolation]:
        """Observed violations with event time in the range, oldest first (ties by id); page
        tokens are stable across inserts."""
        ...

    async def list_anomalies(
        self, page: PageRequest, *, since: datetime | None = None, until: datetime | None = None
    ) -> Page[Anomaly]:
        """Anomalies with detect time in the range, oldest first (ties by id)."""
        ...

    async def baselines(self, actors: Sequence[str], *, since: datetime) -> dict[str, ActorBaseline]:
        """For each of `actors` known to the store: its baseline entries, and its observed
        accesses (READ, WRITE, CATALOG_WRITE) per UTC day from the day of `since` on."""
        ...

    async def prune_runs(self, before: datetime) -> int:
        """Delete run records first recorded before `before`; returns how many."""
        ...
