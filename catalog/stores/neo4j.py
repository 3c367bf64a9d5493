"""`Neo4jGraphStore`: the `GraphStore` on a Neo4j 5 server or cluster (official async driver).

The graph model is described in `catalog.stores.neo4j_schema`. How the contract is kept:

- **One revision per write, serialised writers.** Every write is one managed transaction
  (`session.execute_write`) that first takes the write lock of the one `DomicileCatalog`
  node, reads the revision and last time there, and bumps them in the same transaction as
  its effects. Transaction functions are idempotent: the driver may run them again after a
  transient failure, and a retried attempt starts from a rolled-back state.
- **Times** are the store's clock, strictly after the previous write's time (as in the
  SQLite backend), read under the write lock so times never go back, even across
  processes sharing one server.
- **Behaviour the contract leaves open** is fixed exactly as in the SQLite backend (see its
  module docstring): `end_edges(at=...)` clamps the end into [record time, write time]; a
  new run whose edges all exist is stored but bumps no revision; the traversal walks edges
  of nodes at depth < max_depth and reports "max_depth" when a node at max_depth has a
  neighbour outside the answer; page tokens carry a filter fingerprint and `as_of`.
- **Failures.** A server that cannot be reached, a lost connection or a transient error
  that outlived the driver's retries becomes UNAVAILABLE (`store_unavailable`, with
  `retry_after`), never an empty answer. Timeouts are short (see `_DRIVER_CONFIG`) so an
  outage is reported within seconds; the driver's pool reconnects by itself when the server
  is back, so the same store object recovers without being reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import neo4j
from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j import exceptions as neo4j_errors

from domicile import external_json
from domicile.catalog.model import (
    Change,
    ChangeKind,
    Dataset,
    DatasetFilter,
    DatasetRevision,
    Direction,
    Edge,
    EdgeKey,
    LineageNode,
    LineageResult,
    Page,
    PageRequest,
    ResidencySnapshot,
    Run,
    Traversal,
    TraversalLimits,
    from_micros,
    to_micros,
    utcnow,
)
from domicile.catalog.stores import history_format as hf
from domicile.catalog.stores.common import (
    VersionRow,
    check_id,
    check_lineage,
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    micros_arg,
    revision_page,
    snapshot_from_pages,
)
from domicile.catalog.stores.neo4j_access import SCHEMA_STATEMENTS as ACCESS_SCHEMA_STATEMENTS
from domicile.catalog.stores.neo4j_access import Neo4jAccessStore, run_accesses_tx
from domicile.catalog.stores.neo4j_codec import (
    canonical_json,
    dataset_from_version,
    edge_from_properties,
    version_properties,
)
from domicile.catalog.stores.neo4j_cypher import (
    consume,
    create_versions,
    delete_catalog_batch,
    edge_visible,
    new_version,
    raw_single,
    raw_single_or_none,
    records,
    reset_meta,
    single,
    single_or_none,
    traversal_chunk,
    values,
    version_visible,
)
from domicile.catalog.stores.neo4j_history import EXPORT_QUERIES, Importer, begin_import
from domicile.catalog.stores.neo4j_schema import (
    META_KEY,
    SCHEMA_STATEMENTS,
    SCHEMA_VERSION,
    ensure_meta,
    migrate,
    normalize_dataset_ids,
)
from domicile.errors import (
    DomicileError,
    ErrorCode,
    failed_precondition,
    invalid_field,
    not_found,
    revision_conflict,
    store_unavailable,
)

Clock = Callable[[], datetime]

_log = logging.getLogger(__name__)

# Short timeouts: an unreachable server must surface as UNAVAILABLE within a few seconds
# (callers retry after `retry_after`), not after the driver's 30-60 s defaults.
_DRIVER_CONFIG: dict[str, Any] = {
    "connection_timeout": 3.0,
    "connection_acquisition_timeout": 10.0,
    # Managed transactions retry transient errors and lost connections for this long.
    "max_transaction_retry_time": 3.0,
    # A pooled connection idle for longer is checked before use, so a restarted server is
    # noticed on the check rather than by a failed query.
    "liveness_check_timeout": 10.0,
    "keep_alive": True,
    "user_agent": "domicile",
    # The store's queries are fixed; server notifications (e.g. unknown property keys on an
    # empty database) carry nothing for callers.
    "notifications_min_severity": "OFF",
}
_RETRY_AFTER = 1.0
_BATCH = 1_000


class Neo4jGraphStore:
    """The `GraphStore` contract (see `domicile.catalog.store`) on Neo4j 5."""

    def __init__(self, driver: AsyncDriver, *, uri: str, database: str | None, clock: Clock) -> None:
        # Use `open`; the constructor only wires an already-verified driver.
        self._driver = driver
        self._uri = uri
        self._database = database
        self._clock = clock
        self._closed = False
        # Sessions of this store share bookmarks: on a cluster a read then waits for the
        # writes this store made (read-your-writes), wherever the read is routed.
        self._bookmarks = AsyncGraphDatabase.bookmark_manager()
        self._access = Neo4jAccessStore(self._write, self._read)

    # ------------------------------------------------------------------ opening / closing

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        trusted_ca: str | None = None,
        clock: Clock | None = None,
    ) -> Neo4jGraphStore:
        """Connect to the Neo4j server or cluster at `uri` and set up the schema.

        `uri`: bolt:// (one server) or neo4j:// (routing, for clusters), with +s for TLS
        verified against the system CAs, or +ssc for self-signed certificates. `trusted_ca`
        (a PEM file) verifies TLS against that CA instead; it turns bolt:// and neo4j:// into
        TLS connections. No `user` and no `password` means no authentication; a password
        alone is for user "neo4j". `database` defaults to the server's home database.
        `clock` returns aware UTC datetimes (default: the system clock).

        The schema (constraints, indexes, the meta node with its schema version) is created
        idempotently; a catalog of a newer schema version is FAILED_PRECONDITION. An
        unreachable server is UNAVAILABLE.
        """
        driver_uri, config = _driver_settings(uri, trusted_ca)
        auth = None if user is None and password is None else neo4j.basic_auth(user or "neo4j", password or "")
        driver = AsyncGraphDatabase.driver(driver_uri, auth=auth, **config, **_DRIVER_CONFIG)
        store = cls(driver, uri=uri, database=database, clock=clock or utcnow)
        try:
            with store._translated():
                await driver.verify_connectivity()
                async with driver.session(database=database) as session:
                    for statement in (*SCHEMA_STATEMENTS, *ACCESS_SCHEMA_STATEMENTS):
                        await (await session.run(statement)).consume()
                    if await session.execute_write(ensure_meta) < SCHEMA_VERSION:
                        await session.execute_write(migrate)
        except BaseException:
            await driver.close()
            raise
        return store

    @property
    def access(self) -> Neo4jAccessStore:
        """Access records on this server (see `catalog.stores.neo4j_access`)."""
        return self._access

    async def close(self) -> None:
        """Close the driver's connections; later calls fail with FAILED_PRECONDITION. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._driver.close()

    # ------------------------------------------------------------------ plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise failed_precondition(f"Neo4j store {self._uri} is closed", reason="STORE_CLOSED")

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """The one place where driver and network errors become DomicileErrors."""
        try:
            yield
        except DomicileError:
            raise
        except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired, neo4j_errors.ConnectionPoolError) as exc:
            # IncompleteCommit is a ServiceUnavailable too: the outcome of that write is
            # unknown, and callers retry (writes are idempotent or revision-checked).
            raise store_unavailable(f"Neo4j at {self._uri} is unreachable: {exc}", retry_after=_RETRY_AFTER) from exc
        except neo4j_errors.TransientError as exc:
            raise store_unavailable(f"Neo4j at {self._uri} is busy: {exc}", retry_after=_RETRY_AFTER) from exc
        except (TimeoutError, OSError) as exc:
            raise store_unavailable(f"Neo4j at {self._uri} is unreachable: {exc}", retry_after=_RETRY_AFTER) from exc
        except neo4j_errors.AuthError as exc:
            raise failed_precondition(
                f"Neo4j at {self._uri} refused the credentials: {exc}", reason="STORE_AUTH_FAILED"
            ) from exc
        except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as exc:
            raise DomicileError(f"Neo4j at {self._uri} failed: {exc}", ErrorCode.INTERNAL, "STORE_ERROR") from exc

    async def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(tx, *args, **kwargs)` as one managed write transaction (retried on transient errors)."""
        self._check_open()
        with self._translated():
            async with self._session(neo4j.WRITE_ACCESS) as session:
                return await session.execute_write(fn, *args, **kwargs)

    async def _read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        with self._translated():
            async with self._session(neo4j.READ_ACCESS) as session:
                return await session.execute_read(fn, *args, **kwargs)

    def _session(self, access_mode: str) -> neo4j.AsyncSession:
        return self._driver.session(
            database=self._database, default_access_mode=access_mode, bookmark_manager=self._bookmarks
        )

    async def _begin_write(self, tx: AsyncManagedTransaction) -> tuple[int, int]:
        """Lock the meta node; returns (current revision, last time handed out)."""
        record = await single(
            tx,
            "MATCH (c:DomicileCatalog {key: $key}) SET c.write_lock = true RETURN c.revision AS revision, c.time AS time",
            key=META_KEY,
        )
        return record["revision"], record["time"]

    def _next_time(self, last_time: int) -> int:
        """The time of the write in progress: the clock, but strictly after the last write."""
        return max(to_micros(self._clock()), last_time + 1)

    @staticmethod
    async def _finish_write(
        tx: AsyncManagedTransaction,
        *,
        revision: int | None = None,
        time_us: int | None = None,
        principal: str = "",
        summary: str = "",
        change_count: int = 0,
    ) -> None:
        """Release the meta lock; with `revision`, record it (and `time_us`) as the new state."""
        if revision is None:
            query = "MATCH (c:DomicileCatalog {key: $key}) REMOVE c.write_lock SET c.time = coalesce($time, c.time)"
        else:
            query = (
                "MATCH (c:DomicileCatalog {key: $key}) REMOVE c.write_lock SET c.revision = $revision, c.time = $time "
                "CREATE (:Revision {revision: $revision, time: $time, principal: $principal, summary: $summary, "
                "change_count: $change_count})"
            )
        await consume(
            tx,
            query,
            key=META_KEY,
            revision=revision,
            time=time_us,
            principal=principal,
            summary=summary,
            change_count=change_count,
        )

    # ------------------------------------------------------------------ datasets

    async def upsert_dataset(self, dataset: Dataset, *, expected_revision: int = 0, principal: str = "") -> Dataset:
        """See `GraphStore.upsert_dataset`. The stored dataset is never a placeholder."""
        check_id(dataset.id, "dataset.id")
        props = version_properties(replace(dataset, placeholder=False))
        return await self._write(self._upsert_tx, props, expected_revision, principal)

    async def _upsert_tx(
        self, tx: AsyncManagedTransaction, props: dict[str, Any], expected_revision: int, principal: str
    ) -> Dataset:
        revision, last_time = await self._begin_write(tx)
        dataset_id = props["id"]
        current = await _current_version(tx, dataset_id)
        if expected_revision > 0:
            actual = current["revision"] if current is not None else 0
            if actual != expected_revision:
                raise revision_conflict(
                    f"dataset {dataset_id!r} is at revision {actual}, not {expected_revision}",
                    expected=expected_revision,
                    actual=actual,
                )
        if current is not None and current["body"] == props["body"]:
            await self._finish_write(tx)
            return dataset_from_version(current)
        now = self._next_time(last_time)
        revision += 1
        if current is not None:
            await _end_version(tx, dataset_id, current["revision"], now, revision, deleted=False)
        # A placeholder turned real is created now, like a re-created deleted dataset.
        create_time = current["create_time"] if current is not None and not current["placeholder"] else now
        stored = new_version(props, revision=revision, valid_from=now, create_time=create_time, updated_by=principal)
        await create_versions(tx, [stored])
        await self._finish_write(
            tx, revision=revision, time_us=now, principal=principal, summary=f"upsert {dataset_id}", change_count=1
        )
        return dataset_from_version(stored)

    async def get_dataset(self, dataset_id: str, *, as_of: datetime | None = None) -> Dataset | None:
        """See `GraphStore.get_dataset`."""
        at = micros_arg(as_of, "as_of")
        return await self._read(_get_dataset_tx, dataset_id, at)

    async def dataset_revisions(self, dataset_id: str, page: PageRequest) -> Page[DatasetRevision]:
        """See `GraphStore.dataset_revisions`."""
        check_id(dataset_id, "id")
        versions = await self._read(_versions_tx, dataset_id)
        if not versions:
            raise not_found(f"dataset {dataset_id!r} not found")
        return revision_page(dataset_id, versions, page)

    async def list_datasets(
        self, filter: DatasetFilter, page: PageRequest, *, as_of: datetime | None = None
    ) -> Page[Dataset]:
        """See `GraphStore.list_datasets`."""
        if page.size <= 0:
            raise invalid_field("page_size", "must be positive")
        at = micros_arg(as_of, "as_of")
        fingerprint = filter_fingerprint(filter)
        after, at = decode_page_token(page.token, "datasets", at, fingerprint)
        rows = await self._read(_list_datasets_tx, filter, page.size, after, at)
        items = tuple(dataset_from_version(row) for row in rows[: page.size])
        token = encode_page_token("datasets", items[-1].id, at, fingerprint) if len(rows) > page.size else ""
        return Page(items, token)

    async def delete_dataset(self, dataset_id: str, *, expected_revision: int = 0, principal: str = "") -> int:
        """See `GraphStore.delete_dataset`."""
        return await self._write(self._delete_tx, dataset_id, expected_revision, principal)

    async def _delete_tx(
        self, tx: AsyncManagedTransaction, dataset_id: str, expected_revision: int, principal: str
    ) -> int:
        revision, last_time = await self._begin_write(tx)
        current = await _current_version(tx, dataset_id)
        if current is None:
            raise not_found(f"dataset {dataset_id!r} not found")
        if expected_revision > 0 and current["revision"] != expected_revision:
            raise revision_conflict(
                f"dataset {dataset_id!r} is at revision {current['revision']}, not {expected_revision}",
                expected=expected_revision,
                actual=current["revision"],
            )
        now = self._next_time(last_time)
        revision += 1
        await _end_version(tx, dataset_id, current["revision"], now, revision, deleted=True)
        await self._finish_write(
            tx, revision=revision, time_us=now, principal=principal, summary=f"delete {dataset_id}", change_count=1
        )
        return revision

    # ------------------------------------------------------------------ lineage writes

    async def record_lineage(
        self,
        run: Run,
        edges: Sequence[EdgeKey],
        *,
        principal: str = "",
        access_run: tuple[str, str] | None = None,
    ) -> LineageResult:
        """See `GraphStore.record_lineage`; one transaction per call, however many edges."""
        event_time, pairs = await asyncio.to_thread(check_lineage, run, edges)  # 100,000 edges take a while
        return await self._write(self._record_lineage_and_read_tx, run, event_time, pairs, principal, access_run)

    async def _record_lineage_and_read_tx(
        self,
        tx: AsyncManagedTransaction,
        run: Run,
        event_time: int | None,
        pairs: list[tuple[str, str]],
        principal: str,
        access_run: tuple[str, str] | None,
    ) -> LineageResult:
        result = await self._record_lineage_tx(tx, run, event_time, pairs, principal)
        if access_run is None:
            return result
        return replace(result, run_accesses=await run_accesses_tx(tx, *access_run))

    async def _record_lineage_tx(
        self,
        tx: AsyncManagedTransaction,
        run: Run,
        event_time: int | None,
        pairs: list[tuple[str, str]],
        principal: str,
    ) -> LineageResult:
        revision, last_time = await self._begin_write(tx)
        existing_run = await single_or_none(
            tx, "MATCH (r:Run {job: $job, run_id: $run_id}) RETURN 1 AS found", job=run.job, run_id=run.run_id
        )
        if existing_run is not None:
            await self._finish_write(tx)
            return LineageResult(0, revision)
        now = self._next_time(last_time)
        await consume(
            tx,
            "CREATE (:Run {job: $job, run_id: $run_id, run_region: $run_region, transform: $transform, "
            "event_time: $event_time, record_time: $record_time, principal: $principal})",
            job=run.job,
            run_id=run.run_id,
            run_region=run.run_region,
            transform=run.transform,
            event_time=event_time,
            record_time=now,
            principal=principal,
        )
        ids = sorted({i for pair in pairs for i in pair})
        # Answers of thousands of rows come back as one collected list: the driver's
        # per-record cost is far above the server's cost of producing a row.
        known = set(
            (await raw_single(tx, "UNWIND $ids AS id MATCH (d:Dataset {id: id}) RETURN collect(id) AS ids", ids=ids))[
                "ids"
            ]
        )
        # Ids never seen become placeholders; a deleted dataset stays deleted (lineage naming it
        # again does not bring it back as a placeholder, which would judge it by inheritance).
        placeholders = [i for i in ids if i not in known]
        # The transform of each current edge of this job among the pairs.
        current = {
            (input_id, output_id): transform
            for input_id, output_id, transform in (
                await raw_single(
                    tx,
                    "UNWIND $pairs AS pair "
                    "MATCH (:Dataset {id: pair[1]})-[e:DERIVED_FROM {job: $job}]->(:Dataset {id: pair[0]}) "
                    "WHERE e.end_time IS NULL RETURN collect([e.input, e.output, e.transform]) AS edges",
                    pairs=[list(p) for p in pairs],
                    job=run.job,
                )
            )["edges"]
        }
        to_end: list[tuple[str, str]] = []
        to_add: list[tuple[str, str]] = []
        for pair in pairs:
            if pair not in current:
                to_add.append(pair)
            elif current[pair] != run.transform:
                to_end.append(pair)
                to_add.append(pair)
        if not placeholders and not to_add:
            await self._finish_write(tx, time_us=now)
            return LineageResult(0, revision)
        revision += 1
        if placeholders:
            await create_versions(
                tx,
                [
                    new_version(
                        version_properties(Dataset.create(dataset_id, placeholder=True)),
                        revision=revision,
                        valid_from=now,
                        create_time=now,
                        updated_by=principal,
                    )
                    for dataset_id in placeholders
                ],
            )
        if to_end:
            await _end_edges(tx, [[i, o, run.job] for i, o in to_end], now, revision)
        # Every id has its Dataset node by now (a live version's, or the placeholder's just
        # created), so MATCH suffices: unlike MERGE it takes no locks and needs no Eager
        # barrier, and the properties listed in CREATE (not SET from a map) spare another.
        await consume(
            tx,
            "UNWIND $pairs AS pair "
            "MATCH (o:Dataset {id: pair[1]}) MATCH (i:Dataset {id: pair[0]}) "
            "CREATE (o)-[:DERIVED_FROM {input: pair[0], output: pair[1], job: $job, transform: $transform, "
            "run_id: $run_id, record_time: $record_time, revision: $revision}]->(i)",
            pairs=[list(pair) for pair in to_add],
            job=run.job,
            transform=run.transform,
            run_id=run.run_id,
            record_time=now,
            revision=revision,
        )
        await self._finish_write(
            tx,
            revision=revision,
            time_us=now,
            principal=principal,
            summary=f"lineage {run.job} run {run.run_id}: {len(to_add)} edges",
            change_count=len(placeholders) + len(to_end) + len(to_add),
        )
        return LineageResult(len(to_add), revision)

    async def end_edges(
        self, keys: Sequence[EdgeKey], *, at: datetime | None = None, principal: str = ""
    ) -> LineageResult:
        """See `GraphStore.end_edges`; `at` is clamped into [edge record time, now]."""
        at_us = micros_arg(at, "at")
        unique = [list(key) for key in sorted({(k.input, k.output, k.job) for k in keys})]
        return await self._write(self._end_edges_tx, unique, at_us, principal)

    async def _end_edges_tx(
        self, tx: AsyncManagedTransaction, keys: list[list[str]], at: int | None, principal: str
    ) -> LineageResult:
        revision, last_time = await self._begin_write(tx)
        count = await single(
            tx,
            "UNWIND $keys AS key "
            "MATCH (:Dataset {id: key[1]})-[e:DERIVED_FROM {job: key[2]}]->(:Dataset {id: key[0]}) "
            "WHERE e.end_time IS NULL RETURN count(e) AS n",
            keys=keys,
        )
        if count["n"] == 0:
            await self._finish_write(tx)
            return LineageResult(0, revision)
        now = self._next_time(last_time)
        revision += 1
        ended = await _end_edges(tx, keys, now, revision, at=at)
        await self._finish_write(
            tx, revision=revision, time_us=now, principal=principal, summary=f"end {ended} edges", change_count=ended
        )
        return LineageResult(ended, revision)

    # ------------------------------------------------------------------ lineage reads

    async def traverse(
        self,
        start: str,
        direction: Direction,
        *,
        max_depth: int,
        as_of: datetime | None = None,
        limits: TraversalLimits = TraversalLimits(),
    ) -> Traversal:
        """See `GraphStore.traverse`: a breadth-first walk, ten levels per query."""
        if max_depth < 0:
            raise invalid_field("max_depth", "must not be negative")
        at = micros_arg(as_of, "as_of")
        return await self._read(_traverse_tx, start, direction, max_depth, at, limits)

    async def list_edges(self, page: PageRequest, *, as_of: datetime | None = None) -> Page[Edge]:
        """See `GraphStore.list_edges`; ordered by the order in which edges were recorded.

        That order is (revision, input, output, job), the order the SQLite backend's row ids
        follow too, so both backends list edges identically.
        """
        if page.size <= 0:
            raise invalid_field("page_size", "must be positive")
        at = micros_arg(as_of, "as_of")
        after_text, at = decode_page_token(page.token, "edges", at, "")
        after = _decode_edge_position(after_text)
        rows = await self._read(_list_edges_tx, page.size, after, at)
        items = tuple(edge_from_properties(row) for row in rows[: page.size])
        token = ""
        if len(rows) > page.size:
            last = rows[page.size - 1]
            position = canonical_json([last["revision"], last["input"], last["output"], last["job"]])
            token = encode_page_token("edges", position, at, "")
        return Page(items, token)

    # ------------------------------------------------------------------ revisions and changes

    async def revision(self) -> int:
        """See `GraphStore.revision`."""
        record = await self._read(
            single, "MATCH (c:DomicileCatalog {key: $key}) RETURN c.revision AS revision", key=META_KEY
        )
        return record["revision"]

    async def residency_snapshot(self) -> ResidencySnapshot:
        """See `GraphStore.residency_snapshot`: the generic version, through the listings (start-up
        time at 100k datasets is a SQLite figure; this backend serves lineage at scale)."""
        return await snapshot_from_pages(self, self._revived_placeholders)

    async def _revived_placeholders(self) -> set[str]:
        """Current placeholders over a deleted version: lineage brought a deleted dataset back
        as a placeholder before it stopped doing that (they stay deleted for the router)."""
        record = await self._read(
            raw_single,
            "MATCH (v:DatasetVersion) WHERE v.valid_to IS NULL AND v.placeholder "
            "AND EXISTS { MATCH (d:DatasetVersion {id: v.id}) WHERE d.deleted } RETURN collect(v.id) AS ids",
        )
        return set(record["ids"])

    async def changes_since(self, revision: int, *, limit: int = 10_000) -> list[Change]:
        """See `GraphStore.changes_since`."""
        return await self._read(_changes_tx, revision, max(1, limit))

    # ------------------------------------------------------------------ export / import

    async def export_history(self) -> AsyncIterator[dict]:
        """See `GraphStore.export_history` and `history_format` for the records.

        Neo4j has no snapshot reads, so the export is cut at the revision current when it
        starts: later versions, edges and runs are left out and whatever later writes ended
        is exported as still current. The result is the catalog exactly as of that revision,
        even while writes continue.
        """
        self._check_open()
        bound = await self._read(
            single, "MATCH (c:DomicileCatalog {key: $key}) RETURN c.revision AS revision, c.time AS time", key=META_KEY
        )
        yield hf.header_record()
        for query, key_of, convert in EXPORT_QUERIES:
            after: list[Any] | None = None
            while True:
                rows = await self._read(
                    records, query, after=after, revision=bound["revision"], time=bound["time"], limit=_BATCH
                )
                for row in rows:
                    yield convert(row, bound["revision"])
                if len(rows) < _BATCH:
                    break
                after = key_of(rows[-1])

    async def import_history(self, records: AsyncIterator[dict]) -> int:
        """See `GraphStore.import_history`.

        Records load in batches of separate transactions (a history can be far larger than
        one transaction should be). The meta node is marked "importing" meanwhile: a failed
        import removes what it loaded, and should even that fail (the server went away), the
        next import clears the remains of the failed one before it starts.
        """
        self._check_open()
        importer = Importer()
        if not await self._write(begin_import):
            _log.warning("clearing the remains of an import that failed before")
            await self._clear_catalog()
            await self._write(begin_import)
        try:
            batch: list[tuple[int, str, dict]] = []
            async for record in records:
                if importer.count == 0 and not batch:
                    hf.check_header(record)
                    importer.count = 1
                    continue
                index = importer.count + len(batch)
                batch.append((index, hf.check_record(record, index), record))
                if len(batch) >= _BATCH:
                    importer.advance(await self._write(importer.load, batch), len(batch))
                    batch = []
            if importer.count == 0:
                raise invalid_field("records[0]", "a history must start with a header record")
            if batch:
                importer.advance(await self._write(importer.load, batch), len(batch))
            await self._write(importer.finish)
            # A history exported by an earlier release may hold ids written before they were normalised.
            await self._write(normalize_dataset_ids)
        except BaseException:
            with contextlib.suppress(DomicileError):
                await self._clear_catalog()
            raise
        return importer.count

    async def _clear_catalog(self) -> None:
        while await self._write(delete_catalog_batch):
            pass
        await self._write(reset_meta)


# ---------------------------------------------------------------------- connection settings


def _driver_settings(uri: str, trusted_ca: str | None) -> tuple[str, dict[str, Any]]:
    """The URI and TLS settings to hand the driver for a store `uri` and optional CA file."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if scheme not in ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc") or not parts.hostname:
        raise invalid_field("store", f"not a Neo4j store URI: {uri!r} (use bolt://HOST:PORT or neo4j://HOST:PORT)")
    if trusted_ca is None:
        return uri, {}
    if not os.path.isfile(trusted_ca):
        raise invalid_field("trusted_ca", f"no such CA file: {trusted_ca}")
    if scheme.endswith("+ssc"):
        raise invalid_field("store", "a trusted CA file and a +ssc URI (trust any certificate) contradict each other")
    # The driver refuses TLS settings next to a +s scheme, so a custom CA means the plain
    # scheme with explicit encryption.
    plain = urlunsplit(parts._replace(scheme=scheme.split("+")[0]))
    return plain, {"encrypted": True, "trusted_certificates": neo4j.TrustCustomCAs(trusted_ca)}


async def _current_version(tx: AsyncManagedTransaction, dataset_id: str) -> dict[str, Any] | None:
    record = await single_or_none(
        tx, "MATCH (v:DatasetVersion {id: $id}) WHERE v.valid_to IS NULL RETURN properties(v) AS v", id=dataset_id
    )
    return None if record is None else record["v"]


async def _end_version(
    tx: AsyncManagedTransaction, dataset_id: str, version: int, at: int, revision: int, *, deleted: bool
) -> None:
    await consume(
        tx,
        "MATCH (v:DatasetVersion {id: $id, revision: $version}) SET v.valid_to = $at, v.end_revision = $revision, v.deleted = $deleted",
        id=dataset_id,
        version=version,
        at=at,
        revision=revision,
        deleted=deleted,
    )


async def _end_edges(
    tx: AsyncManagedTransaction, keys: list[list[str]], now: int, revision: int, *, at: int | None = None
) -> int:
    """End the current edges with these [input, output, job] keys; returns how many ended.

    The end time is `at` clamped into [the edge's record time, `now`] (`now` when at is None).
    """
    record = await single(
        tx,
        "UNWIND $keys AS key "
        "MATCH (:Dataset {id: key[1]})-[e:DERIVED_FROM {job: key[2]}]->(:Dataset {id: key[0]}) "
        "WHERE e.end_time IS NULL "
        "SET e.end_time = CASE WHEN $at IS NULL THEN $now "
        "  WHEN $at < e.record_time THEN e.record_time WHEN $at > $now THEN $now ELSE $at END, "
        "  e.end_revision = $revision "
        "RETURN count(e) AS n",
        keys=keys,
        now=now,
        at=at,
        revision=revision,
    )
    return record["n"]


def _decode_edge_position(text: str | None) -> list[Any] | None:
    """The (revision, input, output, job) position an edges page token holds."""
    if text is None:
        return None
    try:
        position = external_json.parse(text)
    except ValueError as exc:
        raise invalid_field("page_token", "malformed page token") from exc
    if (
        not isinstance(position, list)
        or len(position) != 4
        or not isinstance(position[0], int)
        or not all(isinstance(part, str) for part in position[1:])
    ):
        raise invalid_field("page_token", "malformed page token")
    return position


# ---------------------------------------------------------------------- read transactions


async def _get_dataset_tx(tx: AsyncManagedTransaction, dataset_id: str, at: int | None) -> Dataset | None:
    record = await single_or_none(
        tx,
        f"MATCH (v:DatasetVersion {{id: $id}}) WHERE {version_visible('v', at)} RETURN properties(v) AS v",
        id=dataset_id,
        at=at,
    )
    return None if record is None else dataset_from_version(record["v"])


async def _versions_tx(tx: AsyncManagedTransaction, dataset_id: str) -> list[VersionRow]:
    rows = await records(
        tx,
        "MATCH (v:DatasetVersion {id: $id}) OPTIONAL MATCH (r:Revision {revision: v.end_revision}) "
        "RETURN properties(v) AS v, r.principal AS deleted_by ORDER BY v.revision",
        id=dataset_id,
    )
    return [
        VersionRow(
            dataset_from_version(row["v"]),
            from_micros(row["v"]["valid_from"]),
            bool(row["v"].get("deleted")),
            row["v"].get("end_revision"),
            None if row["v"].get("valid_to") is None else from_micros(row["v"]["valid_to"]),
            row["deleted_by"] or "",
        )
        for row in rows
    ]


async def _list_datasets_tx(
    tx: AsyncManagedTransaction, filter: DatasetFilter, size: int, after: str | None, at: int | None
) -> list[dict[str, Any]]:
    clauses = [version_visible("v", at)]
    params: dict[str, Any] = {"at": at, "limit": size + 1}
    if after is not None:
        clauses.append("v.id > $after")
        params["after"] = after
    if filter.classification:
        # Hierarchical: the label itself or any "label.*" descendant, own or field label.
        clauses.append("any(label IN v.all_classifications WHERE label = $label OR label STARTS WITH $label_prefix)")
        params["label"] = filter.classification
        params["label_prefix"] = filter.classification + "."
    if filter.origin:
        clauses.append("$origin IN v.origins")
        params["origin"] = filter.origin
    if filter.region:
        clauses.append("$region IN v.locations")
        params["region"] = filter.region
    if filter.owner:
        clauses.append("v.owner = $owner")
        params["owner"] = filter.owner
    if filter.query:
        clauses.append(
            "(toLower(v.id) CONTAINS $query OR toLower(v.name) CONTAINS $query OR toLower(v.description) CONTAINS $query)"
        )
        params["query"] = filter.query.lower()
    if not filter.include_placeholders:
        clauses.append("NOT v.placeholder")
    return await values(
        tx,
        f"MATCH (v:DatasetVersion) WHERE {' AND '.join(clauses)} RETURN properties(v) AS v ORDER BY v.id LIMIT $limit",
        **params,
    )


# Levels walked per traversal query: a depth-10 traversal (the usual request) is one round
# trip; deeper ones continue from the state the previous query reached.
_TRAVERSAL_CHUNK = 10


async def _traverse_tx(
    tx: AsyncManagedTransaction,
    start: str,
    direction: Direction,
    max_depth: int,
    at: int | None,
    limits: TraversalLimits,
) -> Traversal:
    """The breadth-first walk, up to `_TRAVERSAL_CHUNK` levels per query (see `traversal_chunk`).

    The deadline is checked before each query, as the walk cannot be interrupted inside one;
    a timeout keeps the levels already walked.
    """
    deadline = time.monotonic() + limits.timeout_seconds
    levels: list[list[str]] = [[start]]  # ids per depth
    walked: dict[tuple[str, str, str, int], list[Any]] = {}
    placeholders: set[str] = set()
    visited = [start]
    reason = ""
    first = True
    while True:
        depth = len(levels) - 1
        active = bool(levels[-1]) and not reason
        if active and time.monotonic() > deadline:
            reason = "timeout"
            active = False
        if not active and not first:
            break
        steps = min(_TRAVERSAL_CHUNK, max_depth - depth) if active else 0
        check_deeper = active and depth + steps == max_depth
        query = traversal_chunk(direction.value, at is not None, steps, first, check_deeper)
        row = await raw_single_or_none(
            tx,
            query,
            start=start,
            visited=visited,
            frontier=levels[-1],
            room=max(0, limits.max_nodes - len(visited)),
            at=at,
        )
        if row is None:
            raise not_found(
                f"dataset {start!r} not found" + ("" if at is None else f" at {from_micros(at).isoformat()}")
            )
        first = False
        placeholders.update(row["placeholders"])
        for level_ids, level_edges in zip(row["levels"], row["walked"], strict=True):
            for edges_of_node in level_edges:
                for edge in edges_of_node:
                    walked[(edge[0], edge[1], edge[2], edge[5])] = edge
            levels.append(level_ids)
            visited.extend(level_ids)
        if row["cut"]:
            reason = "max_nodes"
        elif row["deeper"]:
            reason = "max_depth"
        if not steps or depth + steps == max_depth:
            break
    depths = {node: depth for depth, ids in enumerate(levels) for node in ids}
    nodes = sorted(
        (LineageNode(i, d, i in placeholders) for i, d in depths.items()), key=lambda x: (x.depth, x.dataset_id)
    )
    times: dict[int | None, datetime | None] = {None: None}  # the edges of one write share their times
    edges: list[Edge] = []
    for input_id, output_id, job, transform, run_id, record_time, end_time in walked.values():
        if input_id in depths and output_id in depths:
            for t in (record_time, end_time):
                if t not in times:
                    times[t] = from_micros(t)
            edges.append(Edge(input_id, output_id, job, transform, run_id, times[record_time], times[end_time]))
    edges.sort(key=lambda e: (e.input, e.output, e.job, e.record_time))
    return Traversal(tuple(nodes), tuple(edges), complete=not reason, incomplete_reason=reason)


async def _list_edges_tx(
    tx: AsyncManagedTransaction, size: int, after: list[Any] | None, at: int | None
) -> list[dict[str, Any]]:
    clauses = [edge_visible("e", at)]
    if after is not None:
        clauses.append(
            "(e.revision > $r OR (e.revision = $r AND (e.input > $i OR (e.input = $i AND "
            "(e.output > $o OR (e.output = $o AND e.job > $j))))))"
        )
    r, i, o, j = after if after is not None else (None, None, None, None)
    return await values(
        tx,
        f"MATCH ()-[e:DERIVED_FROM]->() WHERE {' AND '.join(clauses)} "
        "RETURN properties(e) AS e ORDER BY e.revision, e.input, e.output, e.job LIMIT $limit",
        at=at,
        r=r,
        i=i,
        o=o,
        j=j,
        limit=size + 1,
    )


async def _changes_tx(tx: AsyncManagedTransaction, after: int, limit: int) -> list[Change]:
    revisions = await records(
        tx,
        "MATCH (r:Revision) WHERE r.revision > $after "
        "RETURN r.revision AS revision, r.time AS time, r.principal AS principal, r.change_count AS count "
        "ORDER BY r.revision LIMIT $limit",
        after=after,
        limit=limit,
    )
    # Whole revisions up to the one holding the limit-th change.
    total = 0
    kept: list[dict[str, Any]] = []
    for revision in revisions:
        kept.append(revision)
        total += revision["count"]
        if total >= limit:
            break
    if not kept:
        return []
    bound = kept[-1]["revision"]
    params = {"after": after, "bound": bound}
    upserted = await values(
        tx,
        "MATCH (v:DatasetVersion) WHERE v.revision > $after AND v.revision <= $bound "
        "RETURN properties(v) AS v ORDER BY v.revision, v.id",
        **params,
    )
    deleted = await records(
        tx,
        "MATCH (v:DatasetVersion) WHERE v.end_revision > $after AND v.end_revision <= $bound AND v.deleted "
        "RETURN v.end_revision AS revision, v.id AS id ORDER BY v.end_revision, v.id",
        **params,
    )
    ended = await values(
        tx,
        "MATCH ()-[e:DERIVED_FROM]->() WHERE e.end_revision > $after AND e.end_revision <= $bound "
        "RETURN properties(e) AS e ORDER BY e.end_revision, e.revision, e.input, e.output, e.job",
        **params,
    )
    added = await values(
        tx,
        "MATCH ()-[e:DERIVED_FROM]->() WHERE e.revision > $after AND e.revision <= $bound "
        "RETURN properties(e) AS e ORDER BY e.revision, e.input, e.output, e.job",
        **params,
    )
    by_revision: dict[int, list[tuple[ChangeKind, Any]]] = {r["revision"]: [] for r in kept}
    for v in upserted:
        by_revision[v["revision"]].append((ChangeKind.DATASET_UPSERTED, v))
    for d in deleted:
        by_revision[d["revision"]].append((ChangeKind.DATASET_DELETED, d["id"]))
    for e in ended:
        by_revision[e["end_revision"]].append((ChangeKind.EDGE_ENDED, e))
    for e in added:
        by_revision[e["revision"]].append((ChangeKind.EDGE_ADDED, e))
    changes: list[Change] = []
    for revision in kept:
        at = from_micros(revision["time"])
        for kind, item in by_revision[revision["revision"]]:
            change = Change(revision["revision"], kind, at, revision["principal"])
            if kind is ChangeKind.DATASET_UPSERTED:
                dataset = dataset_from_version(item)
                changes.append(replace(change, dataset_id=dataset.id, dataset=dataset))
            elif kind is ChangeKind.DATASET_DELETED:
                changes.append(replace(change, dataset_id=item))
            elif kind is ChangeKind.EDGE_ADDED:
                # The edge as it was added, even if a later revision ended it.
                changes.append(replace(change, edge=edge_from_properties({**item, "end_time": None})))
            else:
                changes.append(replace(change, edge=edge_from_properties(item)))
    return changes
