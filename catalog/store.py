"""The `GraphStore` interface: the one way catalog, lineage and router reach storage.

Every backend (SQLite in `catalog.stores.sqlite`, Neo4j in `catalog.stores.neo4j`) must
behave identically; `tests/contract/` proves it. Rules every implementation follows:

- **One revision per write.** Each successful write call (upsert, delete, record_lineage
  with at least one change, end_edges with at least one change) bumps the single,
  monotonically increasing catalog revision by exactly one, atomically with its effects, and
  records the acting `principal` and the time. A call that changes nothing does not bump it.
- **Durable acknowledgement.** When a write returns, it survives a crash of the process.
- **History.** Every dataset version and every edge keeps the interval during which it was
  true; `as_of` reads return the state at that instant (an instant before any write returns
  nothing). Deletes are soft: history and `as_of` reads still see the dataset.
- **Times** are the store's clock at commit, never earlier than the previous write's time
  (so history intervals never overlap); `Run.event_time` is kept as given.
- **Errors.** Bad input that slipped past validation → `DomicileError(INVALID_ARGUMENT)`;
  `expected_revision` mismatch → `ABORTED` (reason REVISION_CONFLICT); the backend
  unreachable → `UNAVAILABLE` (never an empty answer). A failed write changes nothing.
- **Concurrency.** Methods are coroutines safe to call concurrently from one event loop;
  blocking I/O never runs on the event loop thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from domicile.catalog.model import (
    Change,
    Dataset,
    DatasetFilter,
    DatasetRevision,
    Direction,
    Edge,
    EdgeKey,
    LineageResult,
    Page,
    PageRequest,
    ResidencySnapshot,
    Run,
    Traversal,
    TraversalLimits,
)

if TYPE_CHECKING:
    from domicile.access.store import AccessStore


@runtime_checkable
class GraphStore(Protocol):
    """Storage for datasets, lineage edges and their history."""

    async def upsert_dataset(self, dataset: Dataset, *, expected_revision: int = 0, principal: str = "") -> Dataset:
        """Create or replace `dataset` (normalized); returns it with revision and times set.

        expected_revision > 0: the current (non-deleted) dataset must be at exactly that
        revision, else ABORTED; a missing dataset with expected_revision > 0 is ABORTED too.
        Upserting a deleted dataset re-creates it (create_time = now). Upserting a
        placeholder makes it a real dataset. An upsert whose content equals the stored
        content is a no-op that returns the stored dataset without bumping the revision.
        """
        ...

    async def get_dataset(self, dataset_id: str, *, as_of: datetime | None = None) -> Dataset | None:
        """The dataset now (or at `as_of`); None when it did not exist or was deleted then."""
        ...

    async def list_datasets(
        self, filter: DatasetFilter, page: PageRequest, *, as_of: datetime | None = None
    ) -> Page[Dataset]:
        """Datasets matching `filter`, ordered by id; pages are stable across inserts.

        A page token encodes the last id returned (and `as_of`), so datasets inserted or
        deleted between calls never cause one to be skipped or repeated among those that
        exist throughout. A malformed token → INVALID_ARGUMENT (field "page_token").
        """
        ...

    async def dataset_revisions(self, dataset_id: str, page: PageRequest) -> Page[DatasetRevision]:
        """The revision history of one dataset, newest first: one entry per version (CREATED
        for the first and for the first after a delete, else UPDATED, with the dataset as that
        write left it) and one DELETED entry per delete (the delete's revision, time and
        principal). Placeholder versions are included. Pages are stable: a token encodes the
        last revision returned. NOT_FOUND when the id was never seen.
        """
        ...

    async def delete_dataset(self, dataset_id: str, *, expected_revision: int = 0, principal: str = "") -> int:
        """Soft-delete; returns the new catalog revision. NOT_FOUND when absent or deleted.

        Lineage edges touching the dataset are left as they are (history is not rewritten).
        """
        ...

    async def record_lineage(
        self,
        run: Run,
        edges: Sequence[EdgeKey],
        *,
        principal: str = "",
        access_run: tuple[str, str] | None = None,
    ) -> LineageResult:
        """Record a run and its edges (every EdgeKey.job equals run.job).

        Idempotent per (job, run_id): a run already recorded creates nothing. Ids never seen
        before are created as placeholders; a deleted dataset stays deleted (its edges are
        recorded all the same). An edge already current with the same
        transform is kept (a new run does not create it again); with another transform the
        old edge is ended and a new one started. `edges_created` counts new edges.

        `access_run` (job, run id) -- the run as the access records key it, which need not be
        `run`'s key -- asks for `AccessStore.run_accesses` of that run, read in the same
        transaction (`LineageResult.run_accesses`; None without `access_run`), so that the
        ingest path that records the lineage and then judges the run's accesses makes one
        store call instead of two. It is read whether or not the lineage changed anything.
        """
        ...

    async def end_edges(
        self, keys: Sequence[EdgeKey], *, at: datetime | None = None, principal: str = ""
    ) -> LineageResult:
        """End the current edges among `keys` at `at` (default: now); unknown keys are ignored.

        `LineageResult.edges_created` is the number of edges ended.
        """
        ...

    async def traverse(
        self,
        start: str,
        direction: Direction,
        *,
        max_depth: int,
        as_of: datetime | None = None,
        limits: TraversalLimits = TraversalLimits(),
    ) -> Traversal:
        """Breadth-first lineage traversal from `start` (see `Traversal` for the result rules).

        UPSTREAM follows output→input; DOWNSTREAM input→output; BOTH either way. Cycles are
        fine; each node is reported once with its shortest depth. NOT_FOUND if `start` did
        not exist (as a dataset or placeholder) at that time.
        """
        ...

    async def list_edges(self, page: PageRequest, *, as_of: datetime | None = None) -> Page[Edge]:
        """All edges current now (or at `as_of`), in a stable order; for index builds."""
        ...

    async def revision(self) -> int:
        """The current catalog revision (0 for an empty catalog)."""
        ...

    async def residency_snapshot(self) -> ResidencySnapshot:
        """What the residency router builds its index from at start-up: every described
        (not placeholder) current dataset and every current edge, reduced to the fields
        residency decisions read, and the ids of the current placeholders that never had a
        deleted version, with a revision they are at least as new as. A store that
        can should read it in one snapshot, without building Dataset and Edge values (100,000
        datasets are read at every router start); `snapshot_from_pages` in
        `catalog/stores/common.py` is the generic version."""
        ...

    async def changes_since(self, revision: int, *, limit: int = 10_000) -> list[Change]:
        """Changes with revision > `revision`, oldest first, at most about `limit` of them.

        Never splits one revision's changes across two answers (so it may return more than
        `limit` when a single revision holds more). The router follows this feed.
        """
        ...

    def export_history(self) -> AsyncIterator[dict]:
        """Every record (dataset versions, edges, runs, revisions) as JSON-able dicts, in an
        order `import_history` accepts; used by `domicile export`."""
        ...

    async def import_history(self, records: AsyncIterator[dict]) -> int:
        """Load records from `export_history` into an empty store; returns their count.

        FAILED_PRECONDITION when the store is not empty.
        """
        ...

    @property
    def access(self) -> AccessStore:
        """The access records kept beside the catalog (see `domicile.access.store`): they are
        not catalog changes and never bump the revision."""
        ...

    async def close(self) -> None:
        """Flush and release resources; later calls fail. Idempotent."""
        ...
