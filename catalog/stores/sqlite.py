"""`SQLiteGraphStore`: the embedded, default `GraphStore` backend (stdlib `sqlite3`).

Durability and concurrency:
- WAL journal with `synchronous=FULL`: a write is acknowledged only after its commit is
  fsynced, so it survives SIGKILL and power loss.
- Every write runs on one dedicated writer thread (a single-thread executor, one
  connection), inside one `BEGIN IMMEDIATE` transaction: it either fully commits with its
  single revision bump or changes nothing. Reads run on separate reader threads, each with
  its own connection and a snapshot transaction (WAL lets them run beside the writer).
  The event loop thread never touches SQLite.
- Revision and time are read inside the write transaction, so several processes may even
  share one file (serialized by SQLite's write lock and `busy_timeout`).

Choices where the `GraphStore` docstrings leave room. Shared with the Neo4j backend and
checked by `tests/contract`:
- A `record_lineage` call for a new run whose edges all exist already (with the same
  transform) stores the run for audit but bumps no revision.
- Traversal walks the edges of nodes at depth < max_depth; `complete` is False with
  "max_depth" when a node at max_depth has a neighbour outside the answer.
- Edges read `as_of` a past instant carry their whole interval (an `end_time` set later).
SQLite's own (tested in tests/unit/test_sqlite_store.py):
- `end_edges(at=...)`: an edge's end time is `at` clamped into [its record time, the write's
  time]; history cannot end before it began nor in the future.
- Page tokens are urlsafe base64 JSON `{"k": kind, "after": ..., "as_of": us|null, "f": hash}`;
  a token used with another filter or another `as_of` is INVALID_ARGUMENT.

Errors from SQLite never escape raw: a file that is not a database is FAILED_PRECONDITION
(reason STORE_CORRUPT), a read-only file refuses writes with FAILED_PRECONDITION (reason
STORE_READ_ONLY), a schema newer than this code FAILED_PRECONDITION (SCHEMA_TOO_NEW), and
I/O or locking failures UNAVAILABLE; every message names the database path.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

import orjson

from domicile.catalog.model import (
    Change,
    ChangeKind,
    Dataset,
    DatasetFilter,
    DatasetRevision,
    Direction,
    Edge,
    EdgeKey,
    EdgeRow,
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
)
from domicile.catalog.stores.sqlite_access import SQLiteAccessStore, run_accesses_tx
from domicile.catalog.stores.sqlite_schema import (
    KIND_DATASET_DELETED,
    KIND_DATASET_UPSERTED,
    KIND_EDGE_ADDED,
    KIND_EDGE_ENDED,
    SCHEMA_VERSION,
    encode_content,
    migrate,
    normalize_dataset_ids,
    read_schema_version,
)
from domicile.errors import (
    DomicileError,
    ErrorCode,
    failed_precondition,
    invalid_argument,
    invalid_field,
    not_found,
    revision_conflict,
    store_unavailable,
)
from domicile.private_files import create_private_file, make_private_directory

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]

_KINDS = {
    KIND_DATASET_UPSERTED: ChangeKind.DATASET_UPSERTED,
    KIND_DATASET_DELETED: ChangeKind.DATASET_DELETED,
    KIND_EDGE_ENDED: ChangeKind.EDGE_ENDED,
    KIND_EDGE_ADDED: ChangeKind.EDGE_ADDED,
}
_PLACEHOLDER_CONTENT = hf.dataset_content(Dataset.create("placeholder", placeholder=True))
_BUSY_TIMEOUT_MS = 10_000
# A classification filter matching fewer label rows than this is driven by the label index.
_SELECTIVE_LABEL_ROWS = 5_000
_IMPORT_BATCH = 2_000
_EXPORT_BATCH = 2_000
# Dataset columns selected by every dataset read, decoded by `_dataset_from_row`.
_DATASET_COLUMNS = "v.revision, v.valid_from, v.create_time, v.updated_by, v.body"
_EDGE_COLUMNS = "e.edge, e.input, e.output, e.job, e.transform, e.run_id, e.record_time, e.end_time"


def path_from_uri(uri: str) -> Path:
    """`sqlite:///relative/path.db` -> relative/path.db, `sqlite:////abs/path.db` -> /abs/path.db.

    The path is taken literally (no URL decoding), so file names may hold `?`, `#` or `%`.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise invalid_field(
            "store", f"not a SQLite store URI: {uri!r} (use sqlite:///relative.db or sqlite:////abs.db)"
        )
    return Path(uri[len(prefix) :])


class SQLiteGraphStore:
    """The `GraphStore` contract (see `domicile.catalog.store`) on one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        read_only: bool,
        writer: ThreadPoolExecutor,
        writer_conn: sqlite3.Connection | None,
        readers: int,
    ) -> None:
        # Use `open`; the constructor only wires already-opened parts together.
        self._path = path
        self._clock = clock
        self._read_only = read_only
        self._writer = writer
        self._writer_conn = writer_conn
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-reader")
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        # Serializes writers on the event loop so that an import, which spans several jobs on
        # the writer thread inside one transaction, never interleaves with another write.
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._access = SQLiteAccessStore(self._write, self._read)

    # ------------------------------------------------------------------ opening / closing

    @classmethod
    async def open(
        cls, uri: str, *, clock: Clock | None = None, readers: int = 2, init: bool = False
    ) -> SQLiteGraphStore:
        """Open (creating the file and parent directories, or migrating) the store at `uri`.

        `clock` returns aware UTC datetimes (default: the system clock); the store still
        never hands out a time earlier than its previous write's. A file that cannot be
        written is opened read-only: reads work, writes fail with FAILED_PRECONDITION.
        An existing file of 0 bytes is refused (FAILED_PRECONDITION, CATALOG_FILE_EMPTY) unless
        `init`: SQLite would take it for a new, empty catalog, and a catalog lost to a
        truncation would silently start over.
        """
        path = path_from_uri(uri)
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()
        try:
            read_only, conn = await loop.run_in_executor(writer, _open_writer, path, init)
        except BaseException:
            writer.shutdown(wait=False)
            raise
        return cls(path, clock=clock or utcnow, read_only=read_only, writer=writer, writer_conn=conn, readers=readers)

    async def close(self) -> None:
        """Wait for queued writes, close the readers, fold the write-ahead log into the
        database file (a checkpoint that truncates it) and close the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            loop = asyncio.get_running_loop()
            # Readers first: a checkpoint cannot pass a reader, and read-only connections
            # never fold the log themselves.
            await asyncio.to_thread(self._readers.shutdown, True)
            with self._reader_conns_lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()
            if self._writer_conn is not None:
                await loop.run_in_executor(self._writer, _checkpoint_and_close, self._writer_conn, self._path)
            self._writer.shutdown(wait=False)

    @property
    def access(self) -> SQLiteAccessStore:
        """Access records in this file (see `catalog.stores.sqlite_access`)."""
        return self._access

    @property
    def path(self) -> Path:
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    # ------------------------------------------------------------------ plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise failed_precondition(f"SQLite store {self._path} is closed", reason="STORE_CLOSED")

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in one write transaction on the writer thread."""
        self._check_open()
        if self._read_only:
            raise failed_precondition(
                f"SQLite store {self._path} is read-only; writes are refused", reason="STORE_READ_ONLY"
            )
        async with self._write_lock:
            self._check_open()
            return await asyncio.get_running_loop().run_in_executor(self._writer, self._transaction, fn, args)

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._writer_conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in one snapshot read transaction on a reader thread."""
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._snapshot, fn, args)

    def _snapshot(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            conn = self._reader_conn()
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = _connect(self._path, read_only=True)
            self._reader_local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
        return conn

    def _next_time(self, conn: sqlite3.Connection) -> int:
        """The time of the write in progress: the clock, but strictly after the last write."""
        (last,) = conn.execute("SELECT value FROM store_meta WHERE key = 'last_time'").fetchone()
        now = max(to_micros(self._clock()), last + 1)
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'last_time'", (now,))
        return now

    # ------------------------------------------------------------------ datasets

    async def upsert_dataset(self, dataset: Dataset, *, expected_revision: int = 0, principal: str = "") -> Dataset:
        """See `GraphStore.upsert_dataset`. The stored dataset is never a placeholder."""
        check_id(dataset.id, "dataset.id")
        content = hf.dataset_content(replace(dataset, placeholder=False))
        return await self._write(self._upsert_tx, content, expected_revision, principal)

    def _upsert_tx(
        self, conn: sqlite3.Connection, content: dict[str, Any], expected_revision: int, principal: str
    ) -> Dataset:
        dataset_id = content["id"]
        body = encode_content(content)
        current = conn.execute(
            f"SELECT v.version, v.placeholder, {_DATASET_COLUMNS} FROM nodes n JOIN dataset_versions v"
            " ON v.node = n.node AND v.valid_to IS NULL WHERE n.id = ?",
            (dataset_id,),
        ).fetchone()
        if expected_revision > 0:
            actual = current[2] if current else 0
            if actual != expected_revision:
                raise revision_conflict(
                    f"dataset {dataset_id!r} is at revision {actual}, not {expected_revision}",
                    expected=expected_revision,
                    actual=actual,
                )
        if current is not None and current[6] == body:
            return _dataset_from_row(current[2:])
        now = self._next_time(conn)
        revision = _new_revision(conn, now, principal, f"upsert {dataset_id}")
        if current is not None:
            conn.execute(
                "UPDATE dataset_versions SET valid_to = ?, end_revision = ? WHERE version = ?",
                (now, revision, current[0]),
            )
        # A placeholder turned real is created now, like a re-created deleted dataset.
        create_time = current[4] if current is not None and not current[1] else now
        node = _ensure_nodes(conn, [dataset_id])[dataset_id]
        version = _insert_version(
            conn, node, content, body, revision=revision, valid_from=now, create_time=create_time, updated_by=principal
        )
        conn.execute(
            "INSERT INTO changes (revision, kind, ref) VALUES (?, ?, ?)", (revision, KIND_DATASET_UPSERTED, version)
        )
        return hf.dataset_from_content(
            content,
            revision=revision,
            create_time=from_micros(create_time),
            update_time=from_micros(now),
            updated_by=principal,
        )

    async def get_dataset(self, dataset_id: str, *, as_of: datetime | None = None) -> Dataset | None:
        """See `GraphStore.get_dataset`."""
        at = micros_arg(as_of, "as_of")
        return await self._read(self._get_dataset_tx, dataset_id, at)

    def _get_dataset_tx(self, conn: sqlite3.Connection, dataset_id: str, at: int | None) -> Dataset | None:
        where, params = _version_visible("v", at)
        row = conn.execute(
            f"SELECT {_DATASET_COLUMNS} FROM nodes n JOIN dataset_versions v ON v.node = n.node WHERE n.id = ? AND {where}",
            (dataset_id, *params),
        ).fetchone()
        return _dataset_from_row(row) if row else None

    async def dataset_revisions(self, dataset_id: str, page: PageRequest) -> Page[DatasetRevision]:
        """See `GraphStore.dataset_revisions`."""
        check_id(dataset_id, "id")
        versions = await self._read(self._versions_tx, dataset_id)
        if not versions:
            raise not_found(f"dataset {dataset_id!r} not found")
        return revision_page(dataset_id, versions, page)

    def _versions_tx(self, conn: sqlite3.Connection, dataset_id: str) -> list[VersionRow]:
        rows = conn.execute(
            f"SELECT {_DATASET_COLUMNS}, v.deleted, v.end_revision, v.valid_to, r.principal"
            " FROM nodes n JOIN dataset_versions v ON v.node = n.node"
            " LEFT JOIN revisions r ON r.revision = v.end_revision WHERE n.id = ? ORDER BY v.revision",
            (dataset_id,),
        ).fetchall()
        return [
            VersionRow(
                _dataset_from_row(row[:5]),
                from_micros(row[1]),
                bool(row[5]),
                row[6],
                None if row[7] is None else from_micros(row[7]),
                row[8] or "",
            )
            for row in rows
        ]

    async def list_datasets(
        self, filter: DatasetFilter, page: PageRequest, *, as_of: datetime | None = None
    ) -> Page[Dataset]:
        """See `GraphStore.list_datasets`."""
        if page.size <= 0:
            raise invalid_field("page_size", "must be positive")
        at = micros_arg(as_of, "as_of")
        fingerprint = filter_fingerprint(filter)
        after, at = decode_page_token(page.token, "datasets", at, fingerprint)
        return await self._read(self._list_datasets_tx, filter, page.size, after, at, fingerprint)

    def _list_datasets_tx(
        self,
        conn: sqlite3.Connection,
        filter: DatasetFilter,
        size: int,
        after: str | None,
        at: int | None,
        fingerprint: str,
    ) -> Page[Dataset]:
        where, params = _version_visible("v", at)
        clauses, args = [where], list[object](params)
        if after is not None:
            clauses.append("n.id > ?")
            args.append(after)
        if filter.classification:
            # Hierarchical: the label itself or any "label.*" descendant ("." < "/"), as index
            # ranges. A rare label drives the query from the label index; a common one is
            # checked per dataset while walking ids in order, so a page stops early.
            label_args = [filter.classification, filter.classification + ".", filter.classification + "/"]
            label_match = "(l.label = ? OR (l.label > ? AND l.label < ?))"
            (tagged,) = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM version_labels l WHERE {label_match} LIMIT ?)",
                (*label_args, _SELECTIVE_LABEL_ROWS),
            ).fetchone()
            if tagged < _SELECTIVE_LABEL_ROWS:
                clauses.append(f"v.version IN (SELECT l.version FROM version_labels l WHERE {label_match})")
            else:
                clauses.append(f"EXISTS (SELECT 1 FROM version_labels l WHERE l.version = v.version AND {label_match})")
            args += label_args
        if filter.origin:
            clauses.append("EXISTS (SELECT 1 FROM version_origins o WHERE o.version = v.version AND o.origin = ?)")
            args.append(filter.origin)
        if filter.region:
            clauses.append("EXISTS (SELECT 1 FROM version_locations r WHERE r.version = v.version AND r.region = ?)")
            args.append(filter.region)
        if filter.owner:
            clauses.append("v.owner = ?")
            args.append(filter.owner)
        if filter.query:
            clauses.append("domicile_icontains(?, n.id, v.name, v.description)")
            args.append(filter.query.lower())
        if not filter.include_placeholders:
            clauses.append("v.placeholder = 0")
        rows = conn.execute(
            f"SELECT n.id, {_DATASET_COLUMNS} FROM nodes n JOIN dataset_versions v ON v.node = n.node"
            f" WHERE {' AND '.join(clauses)} ORDER BY n.id LIMIT ?",
            (*args, size + 1),
        ).fetchall()
        items = tuple(_dataset_from_row(row[1:]) for row in rows[:size])
        token = encode_page_token("datasets", rows[size - 1][0], at, fingerprint) if len(rows) > size else ""
        return Page(items, token)

    async def delete_dataset(self, dataset_id: str, *, expected_revision: int = 0, principal: str = "") -> int:
        """See `GraphStore.delete_dataset`."""
        return await self._write(self._delete_tx, dataset_id, expected_revision, principal)

    def _delete_tx(self, conn: sqlite3.Connection, dataset_id: str, expected_revision: int, principal: str) -> int:
        current = conn.execute(
            "SELECT v.version, v.revision FROM nodes n JOIN dataset_versions v ON v.node = n.node AND v.valid_to IS NULL"
            " WHERE n.id = ?",
            (dataset_id,),
        ).fetchone()
        if current is None:
            raise not_found(f"dataset {dataset_id!r} not found")
        if expected_revision > 0 and current[1] != expected_revision:
            raise revision_conflict(
                f"dataset {dataset_id!r} is at revision {current[1]}, not {expected_revision}",
                expected=expected_revision,
                actual=current[1],
            )
        now = self._next_time(conn)
        revision = _new_revision(conn, now, principal, f"delete {dataset_id}")
        conn.execute(
            "UPDATE dataset_versions SET valid_to = ?, end_revision = ?, deleted = 1 WHERE version = ?",
            (now, revision, current[0]),
        )
        conn.execute(
            "INSERT INTO changes (revision, kind, ref) VALUES (?, ?, ?)", (revision, KIND_DATASET_DELETED, current[0])
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
        event_time, keys = await asyncio.to_thread(check_lineage, run, edges)  # 100,000 edges take a while
        return await self._write(self._record_lineage_and_read_tx, run, event_time, keys, principal, access_run)

    def _record_lineage_and_read_tx(
        self,
        conn: sqlite3.Connection,
        run: Run,
        event_time: int | None,
        keys: list[tuple[str, str]],
        principal: str,
        access_run: tuple[str, str] | None,
    ) -> LineageResult:
        result = self._record_lineage_tx(conn, run, event_time, keys, principal)
        if access_run is None:
            return result
        return replace(result, run_accesses=run_accesses_tx(conn, *access_run))

    def _record_lineage_tx(
        self, conn: sqlite3.Connection, run: Run, event_time: int | None, keys: list[tuple[str, str]], principal: str
    ) -> LineageResult:
        if conn.execute("SELECT 1 FROM runs WHERE job = ? AND run_id = ?", (run.job, run.run_id)).fetchone():
            return LineageResult(0, _current_revision(conn))
        now = self._next_time(conn)
        conn.execute(
            "INSERT INTO runs (job, run_id, run_region, transform, event_time, record_time, principal) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run.job, run.run_id, run.run_region, run.transform, event_time, now, principal),
        )
        ids = sorted({i for key in keys for i in key})
        nodes: dict[str, int] = dict(
            conn.execute("SELECT id, node FROM nodes WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
        )
        # Ids never seen become placeholders; a deleted dataset stays deleted (lineage naming it
        # again does not bring it back as a placeholder, which would judge it by inheritance).
        placeholders = [i for i in ids if i not in nodes]
        if placeholders:
            first = _next_id(conn, "nodes", "node")
            conn.executemany("INSERT INTO nodes (node, id) VALUES (?, ?)", list(enumerate(placeholders, first)))
            nodes.update(zip(placeholders, range(first, first + len(placeholders)), strict=True))
        current = _current_edges(conn, run.job, {(nodes[i], nodes[o]) for i, o in keys})
        to_end: list[int] = []
        to_add: list[tuple[int, int]] = []
        for input_id, output_id in keys:
            pair = (nodes[input_id], nodes[output_id])
            existing = current.get(pair)
            if existing is not None and existing[1] == run.transform:
                continue
            if existing is not None:
                to_end.append(existing[0])
            to_add.append(pair)
        if not placeholders and not to_add:
            return LineageResult(0, _current_revision(conn))
        revision = _new_revision(conn, now, principal, f"lineage {run.job} run {run.run_id}: {len(to_add)} edges")
        if placeholders:
            first = _next_id(conn, "dataset_versions", "version")
            rows = [
                (
                    nodes[i],
                    revision,
                    now,
                    1,
                    now,
                    principal,
                    "",
                    "",
                    "",
                    encode_content({**_PLACEHOLDER_CONTENT, "id": i}),
                )
                for i in placeholders
            ]
            conn.executemany(
                "INSERT INTO dataset_versions (node, revision, valid_from, placeholder, create_time, updated_by, owner, name,"
                " description, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "INSERT INTO changes (revision, kind, ref) SELECT ?, ?, version FROM dataset_versions WHERE version >= ?",
                (revision, KIND_DATASET_UPSERTED, first),
            )
        if to_end:
            conn.executemany(
                "UPDATE edges SET end_time = ?, end_revision = ? WHERE edge = ?", [(now, revision, e) for e in to_end]
            )
            conn.executemany(
                "INSERT INTO changes (revision, kind, ref) VALUES (?, ?, ?)",
                [(revision, KIND_EDGE_ENDED, e) for e in to_end],
            )
        first = _next_id(conn, "edges", "edge")
        conn.executemany(
            "INSERT INTO edges (input, output, job, transform, run_id, record_time, revision) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, o, run.job, run.transform, run.run_id, now, revision) for i, o in to_add],
        )
        conn.execute(
            "INSERT INTO changes (revision, kind, ref) SELECT ?, ?, edge FROM edges WHERE edge >= ?",
            (revision, KIND_EDGE_ADDED, first),
        )
        return LineageResult(len(to_add), revision)

    async def end_edges(
        self, keys: Sequence[EdgeKey], *, at: datetime | None = None, principal: str = ""
    ) -> LineageResult:
        """See `GraphStore.end_edges`; `at` is clamped into [edge record time, now]."""
        at_us = micros_arg(at, "at")
        return await self._write(
            self._end_edges_tx, sorted(set(keys), key=lambda k: (k.input, k.output, k.job)), at_us, principal
        )

    def _end_edges_tx(
        self, conn: sqlite3.Connection, keys: list[EdgeKey], at: int | None, principal: str
    ) -> LineageResult:
        nodes = _lookup_nodes(conn, sorted({i for k in keys for i in (k.input, k.output)}))
        wanted: dict[str, set[tuple[int, int]]] = {}
        for k in keys:
            if k.input in nodes and k.output in nodes:
                wanted.setdefault(k.job, set()).add((nodes[k.input], nodes[k.output]))
        to_end = [edge for job, pairs in wanted.items() for edge, _ in _current_edges(conn, job, pairs).values()]
        if not to_end:
            return LineageResult(0, _current_revision(conn))
        to_end.sort()
        now = self._next_time(conn)
        revision = _new_revision(conn, now, principal, f"end {len(to_end)} edges")
        end = now if at is None else at
        conn.executemany(
            "UPDATE edges SET end_time = min(max(?, record_time), ?), end_revision = ? WHERE edge = ?",
            [(end, now, revision, e) for e in to_end],
        )
        conn.executemany(
            "INSERT INTO changes (revision, kind, ref) VALUES (?, ?, ?)",
            [(revision, KIND_EDGE_ENDED, e) for e in to_end],
        )
        return LineageResult(len(to_end), revision)

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
        """See `GraphStore.traverse`: a level-by-level BFS, one indexed query per level."""
        if max_depth < 0:
            raise invalid_field("max_depth", "must not be negative")
        at = micros_arg(as_of, "as_of")
        return await self._read(self._traverse_tx, start, direction, max_depth, at, limits)

    def _traverse_tx(
        self,
        conn: sqlite3.Connection,
        start: str,
        direction: Direction,
        max_depth: int,
        at: int | None,
        limits: TraversalLimits,
    ) -> Traversal:
        deadline = time.monotonic() + limits.timeout_seconds
        where, params = _version_visible("v", at)
        row = conn.execute(
            f"SELECT n.node FROM nodes n JOIN dataset_versions v ON v.node = n.node WHERE n.id = ? AND {where}",
            (start, *params),
        ).fetchone()
        if row is None:
            raise not_found(
                f"dataset {start!r} not found" + ("" if at is None else f" at {from_micros(at).isoformat()}")
            )
        start_node = row[0]
        # Per direction: the adjacency query over the frontier and the position of the
        # neighbour in its (edge, input, output) rows. Upstream goes from an output to its
        # inputs, downstream from an input to its outputs. The adjacency indexes cover these
        # queries, so walking reads no table rows.
        sides = {
            Direction.UPSTREAM: [("output", 1)],
            Direction.DOWNSTREAM: [("input", 2)],
            Direction.BOTH: [("output", 1), ("input", 2)],
        }[direction]
        edge_filter, edge_params = _edge_visible("e", at)
        queries = [
            (
                (
                    f"SELECT e.edge, e.input, e.output FROM edges e"
                    f" WHERE e.{column} IN (SELECT value FROM json_each(?)) AND {edge_filter}"
                ),
                neighbour,
            )
            for column, neighbour in sides
        ]
        depths = {start_node: 0}
        walked: list[tuple[int, int, int]] = []
        frontier = [start_node]
        reason = ""
        depth = 0
        while frontier:
            if time.monotonic() > deadline:
                reason = "timeout"
                break
            batch = json.dumps(frontier)
            neighbours: set[int] = set()
            level: list[tuple[int, int, int]] = []
            for sql, position in queries:
                rows = conn.execute(sql, (batch, *edge_params)).fetchall()
                level += rows
                neighbours.update(r[position] for r in rows)
            new = neighbours.difference(depths)
            if depth == max_depth:
                # Nodes at max_depth are not expanded; the answer is cut if they lead further.
                reason = "max_depth" if new else ""
                break
            walked += level
            room = limits.max_nodes - len(depths)
            if len(new) > room:
                new = set(sorted(new)[:room])
                reason = "max_nodes"
            depth += 1
            for node in new:
                depths[node] = depth
            if reason:
                break
            frontier = list(new)
        ids, placeholders = self._describe_nodes(conn, list(depths), at)
        nodes = sorted(
            (LineageNode(ids[n], d, placeholders[n]) for n, d in depths.items()), key=lambda x: (x.depth, x.dataset_id)
        )
        kept = sorted({r[0] for r in walked if r[1] in depths and r[2] in depths})
        edges = sorted(self._edges_by_key(conn, kept, ids), key=lambda e: (e.input, e.output, e.job, e.record_time))
        return Traversal(tuple(nodes), tuple(edges), complete=not reason, incomplete_reason=reason)

    def _edges_by_key(self, conn: sqlite3.Connection, keys: list[int], ids: dict[int, str]) -> list[Edge]:
        """The edges with row keys `keys`; `ids` maps every endpoint's node key to its id."""
        times: dict[int | None, datetime | None] = {None: None}  # edges of one write share times
        edges = []
        for _, input_node, output_node, job, transform, run_id, record_time, end_time in conn.execute(
            f"SELECT {_EDGE_COLUMNS} FROM edges e WHERE e.edge IN (SELECT value FROM json_each(?))", (json.dumps(keys),)
        ):
            if record_time not in times:
                times[record_time] = from_micros(record_time)
            if end_time not in times:
                times[end_time] = from_micros(end_time)
            edges.append(
                Edge(ids[input_node], ids[output_node], job, transform, run_id, times[record_time], times[end_time])
            )
        return edges

    def _describe_nodes(
        self, conn: sqlite3.Connection, nodes: list[int], at: int | None
    ) -> tuple[dict[int, str], dict[int, bool]]:
        """Dataset ids of `nodes`, and whether each was a placeholder at `at` (None = now)."""
        where, params = _version_visible("v", at)
        ids: dict[int, str] = {}
        placeholders: dict[int, bool] = {}
        for node, dataset_id, placeholder in conn.execute(
            f"SELECT n.node, n.id, v.placeholder FROM nodes n LEFT JOIN dataset_versions v ON v.node = n.node AND {where}"
            " WHERE n.node IN (SELECT value FROM json_each(?))",
            (*params, json.dumps(nodes)),
        ):
            ids[node] = dataset_id
            placeholders[node] = bool(placeholder)
        return ids, placeholders

    async def list_edges(self, page: PageRequest, *, as_of: datetime | None = None) -> Page[Edge]:
        """See `GraphStore.list_edges`; ordered by the order in which edges were recorded."""
        if page.size <= 0:
            raise invalid_field("page_size", "must be positive")
        at = micros_arg(as_of, "as_of")
        after, at = decode_page_token(page.token, "edges", at, "")
        return await self._read(self._list_edges_tx, page.size, int(after) if after is not None else 0, at)

    def _list_edges_tx(self, conn: sqlite3.Connection, size: int, after: int, at: int | None) -> Page[Edge]:
        edge_filter, params = _edge_visible("e", at)
        rows = conn.execute(
            f"SELECT {_EDGE_COLUMNS}, i.id, o.id FROM edges e JOIN nodes i ON i.node = e.input JOIN nodes o ON o.node = e.output"
            f" WHERE e.edge > ? AND {edge_filter} ORDER BY e.edge LIMIT ?",
            (after, *params, size + 1),
        ).fetchall()
        items = tuple(_edge_from_row(r, {r[1]: r[8], r[2]: r[9]}) for r in rows[:size])
        token = encode_page_token("edges", str(rows[size - 1][0]), at, "") if len(rows) > size else ""
        return Page(items, token)

    # ------------------------------------------------------------------ revisions and changes

    async def revision(self) -> int:
        """See `GraphStore.revision`."""
        return await self._read(_current_revision)

    async def residency_snapshot(self) -> ResidencySnapshot:
        """See `GraphStore.residency_snapshot`: one read transaction, so exactly at its revision."""
        return await self._read(_residency_snapshot_tx)

    async def changes_since(self, revision: int, *, limit: int = 10_000) -> list[Change]:
        """See `GraphStore.changes_since`."""
        return await self._read(self._changes_tx, revision, max(1, limit))

    def _changes_tx(self, conn: sqlite3.Connection, revision: int, limit: int) -> list[Change]:
        # The revision of the limit-th change; the answer ends with that whole revision.
        last = conn.execute(
            "SELECT revision FROM changes WHERE revision > ? ORDER BY revision, kind, ref LIMIT 1 OFFSET ?",
            (revision, limit - 1),
        ).fetchone()
        bound = last[0] if last else None
        rows = conn.execute(
            "SELECT c.revision, c.kind, c.ref, r.time, r.principal FROM changes c JOIN revisions r ON r.revision = c.revision"
            " WHERE c.revision > ? AND (? IS NULL OR c.revision <= ?) ORDER BY c.revision, c.kind, c.ref",
            (revision, bound, bound),
        ).fetchall()
        version_refs = [r[2] for r in rows if r[1] in (KIND_DATASET_UPSERTED, KIND_DATASET_DELETED)]
        edge_refs = [r[2] for r in rows if r[1] in (KIND_EDGE_ENDED, KIND_EDGE_ADDED)]
        versions = {
            r[0]: (r[1], r[2:])
            for r in conn.execute(
                f"SELECT v.version, n.id, {_DATASET_COLUMNS} FROM dataset_versions v JOIN nodes n ON n.node = v.node"
                " WHERE v.version IN (SELECT value FROM json_each(?))",
                (json.dumps(version_refs),),
            )
        }
        # Built directly, one object per change, times converted once each: a lineage event of
        # 100,000 edges is read here while the router waits for it.
        times: dict[int, datetime] = {}

        def to_time(micros: int) -> datetime:
            converted = times.get(micros)
            if converted is None:
                converted = times[micros] = from_micros(micros)
            return converted

        edges = {
            r[0]: _edge_from_row(r, {r[1]: r[8], r[2]: r[9]}, to_time)
            for r in conn.execute(
                f"SELECT {_EDGE_COLUMNS}, i.id, o.id FROM edges e JOIN nodes i ON i.node = e.input"
                " JOIN nodes o ON o.node = e.output WHERE e.edge IN (SELECT value FROM json_each(?))",
                (json.dumps(edge_refs),),
            )
        }
        changes = []
        for rev, kind, ref, at, principal in rows:
            time = to_time(at)
            if kind == KIND_DATASET_UPSERTED:
                dataset_id, row = versions[ref]
                change = Change(rev, _KINDS[kind], time, principal, dataset_id, _dataset_from_row(row))
            elif kind == KIND_DATASET_DELETED:
                change = Change(rev, _KINDS[kind], time, principal, versions[ref][0])
            else:
                edge = edges[ref]
                if kind == KIND_EDGE_ADDED and edge.end_time is not None:
                    edge = replace(edge, end_time=None)  # the edge as it was added, though ended since
                change = Change(rev, _KINDS[kind], time, principal, edge=edge)
            changes.append(change)
        return changes

    # ------------------------------------------------------------------ export / import

    async def export_history(self) -> AsyncIterator[dict]:
        """See `GraphStore.export_history` and `history_format` for the records.

        The export reads one consistent snapshot, even while writes continue.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        # A private connection keeps its snapshot across batches; it is only ever used by one
        # reader-pool job at a time.
        conn = await loop.run_in_executor(self._readers, functools.partial(_connect, self._path, read_only=True))
        try:
            await loop.run_in_executor(self._readers, conn.execute, "BEGIN")
            yield hf.header_record()
            for sql, convert in _EXPORT_QUERIES:
                cursor = await loop.run_in_executor(self._readers, conn.execute, sql)
                while True:
                    self._check_open()
                    rows = await loop.run_in_executor(self._readers, cursor.fetchmany, _EXPORT_BATCH)
                    if not rows:
                        break
                    for row in rows:
                        yield convert(row)
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc
        finally:
            await asyncio.get_running_loop().run_in_executor(None, conn.close)

    async def import_history(self, records: AsyncIterator[dict]) -> int:
        """See `GraphStore.import_history`: all records load in one transaction, or none."""
        self._check_open()
        if self._read_only:
            raise failed_precondition(
                f"SQLite store {self._path} is read-only; writes are refused", reason="STORE_READ_ONLY"
            )
        loop = asyncio.get_running_loop()
        async with self._write_lock:
            self._check_open()
            importer = _Importer(self._writer_conn)  # type: ignore[arg-type]
            await loop.run_in_executor(self._writer, self._guarded, importer.begin)
            try:
                batch: list[tuple[int, str, dict]] = []
                async for record in records:
                    if importer.count == 0 and not batch:
                        hf.check_header(record)
                        importer.count = 1
                        continue
                    index = importer.count + len(batch)
                    batch.append((index, hf.check_record(record, index), record))
                    if len(batch) >= _IMPORT_BATCH:
                        await loop.run_in_executor(self._writer, self._guarded, importer.load, batch)
                        batch = []
                if importer.count == 0:
                    raise invalid_field("records[0]", "a history must start with a header record")
                if batch:
                    await loop.run_in_executor(self._writer, self._guarded, importer.load, batch)
                await loop.run_in_executor(self._writer, self._guarded, importer.finish)
            except BaseException:
                await loop.run_in_executor(self._writer, self._guarded, importer.abort)
                raise
            return importer.count

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.IntegrityError as exc:
            raise invalid_argument(f"history is inconsistent: {exc}") from exc
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc


# ---------------------------------------------------------------------- import


class _Importer:
    """Loads history records into an empty store inside one open write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.count = 0
        self._last_revision = 0
        self._last_time = 0

    def begin(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        populated = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM revisions) OR EXISTS (SELECT 1 FROM nodes) OR EXISTS (SELECT 1 FROM runs)"
        ).fetchone()[0]
        if populated:
            conn.execute("ROLLBACK")
            raise failed_precondition(
                "import needs an empty store; this one already holds data", reason="STORE_NOT_EMPTY"
            )

    def load(self, batch: list[tuple[int, str, dict]]) -> None:
        conn = self._conn
        ids = sorted(
            {r["dataset"]["id"] for _, kind, r in batch if kind == "dataset_version"}
            | {r[side] for _, kind, r in batch if kind == "edge" for side in ("input", "output")}
        )
        nodes = _ensure_nodes(conn, ids)
        for index, kind, record in batch:
            for key in ("revision", "end_revision"):
                referenced = record.get(key) if kind != "revision" else None
                if referenced is not None and not 1 <= referenced <= self._last_revision:
                    raise invalid_field(
                        f"records[{index}].{key}", f"revision {referenced} has no earlier revision record"
                    )
            if kind == "revision":
                if record["revision"] != self._last_revision + 1:
                    raise invalid_field(f"records[{index}].revision", f"expected revision {self._last_revision + 1}")
                conn.execute(
                    "INSERT INTO revisions (revision, time, principal, summary) VALUES (?, ?, ?, ?)",
                    (record["revision"], record["time"], record["principal"], record["summary"]),
                )
                self._last_revision = record["revision"]
                self._last_time = max(self._last_time, record["time"])
            elif kind == "dataset_version":
                try:
                    dataset = hf.dataset_from_content(
                        record["dataset"], revision=0, create_time=None, update_time=None, updated_by=""
                    )
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise invalid_field(f"records[{index}].dataset", f"malformed dataset ({exc!r})") from exc
                check_id(dataset.id, f"records[{index}].dataset.id")
                if (record["valid_to"] is None) != (record["end_revision"] is None) or (
                    record["deleted"] and record["valid_to"] is None
                ):
                    raise invalid_field(
                        f"records[{index}].valid_to", "an ended version needs both valid_to and end_revision"
                    )
                content = hf.dataset_content(dataset)
                _insert_version(
                    conn,
                    nodes[dataset.id],
                    content,
                    encode_content(content),
                    revision=record["revision"],
                    valid_from=record["valid_from"],
                    create_time=record["create_time"],
                    updated_by=record["updated_by"],
                    valid_to=record["valid_to"],
                    end_revision=record["end_revision"],
                    deleted=record["deleted"],
                )
            elif kind == "edge":
                conn.execute(
                    "INSERT INTO edges (input, output, job, transform, run_id, record_time, end_time, revision, end_revision)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        nodes[record["input"]],
                        nodes[record["output"]],
                        record["job"],
                        record["transform"],
                        record["run_id"],
                        record["record_time"],
                        record["end_time"],
                        record["revision"],
                        record["end_revision"],
                    ),
                )
            else:
                conn.execute(
                    "INSERT INTO runs (job, run_id, run_region, transform, event_time, record_time, principal)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    tuple(
                        record[k]
                        for k in ("job", "run_id", "run_region", "transform", "event_time", "record_time", "principal")
                    ),
                )
                self._last_time = max(self._last_time, record["record_time"])
        self.count += len(batch)

    def finish(self) -> None:
        conn = self._conn
        # The change feed is a function of the history (see history_format).
        conn.execute(f"INSERT INTO changes SELECT revision, {KIND_DATASET_UPSERTED}, version FROM dataset_versions")
        conn.execute(
            f"INSERT INTO changes SELECT end_revision, {KIND_DATASET_DELETED}, version FROM dataset_versions WHERE deleted = 1"
        )
        conn.execute(
            f"INSERT INTO changes SELECT end_revision, {KIND_EDGE_ENDED}, edge FROM edges WHERE end_revision IS NOT NULL"
        )
        conn.execute(f"INSERT INTO changes SELECT revision, {KIND_EDGE_ADDED}, edge FROM edges")
        # Invariants the writer keeps and a hand-made history might not.
        twice = conn.execute(
            "SELECT n.id FROM dataset_versions v JOIN nodes n ON n.node = v.node WHERE v.valid_to IS NULL"
            " GROUP BY v.node HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if twice:
            raise invalid_argument(f"history is inconsistent: dataset {twice[0]!r} has two current versions")
        twice = conn.execute(
            "SELECT i.id, o.id, e.job FROM edges e JOIN nodes i ON i.node = e.input JOIN nodes o ON o.node = e.output"
            " WHERE e.end_time IS NULL GROUP BY e.input, e.output, e.job HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if twice:
            raise invalid_argument(
                f"history is inconsistent: edge {twice[0]!r} -> {twice[1]!r} ({twice[2]}) is current twice"
            )
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'last_time'", (self._last_time,))
        # A history exported by an earlier release may hold ids written before they were normalised.
        normalize_dataset_ids(conn)
        conn.execute("COMMIT")

    def abort(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


def _export_version(row: tuple) -> dict:
    dataset = _dataset_from_row(row[:5])
    return hf.dataset_version_record(
        dataset, valid_to=None if row[5] is None else from_micros(row[5]), end_revision=row[6], deleted=bool(row[7])
    )


def _export_edge(row: tuple) -> dict:
    edge = _edge_from_row(row, {row[1]: row[8], row[2]: row[9]})
    return hf.edge_record(edge, revision=row[10], end_revision=row[11])


def _export_run(row: tuple) -> dict:
    job, run_id, run_region, transform, event_time, record_time, principal = row
    run = Run(job, run_id, run_region, transform, None if event_time is None else from_micros(event_time))
    return hf.run_record(run, record_time=from_micros(record_time), principal=principal)


# Rows come in creation order, which is the record order `history_format` documents.
_EXPORT_QUERIES: list[tuple[str, Callable[[tuple], dict]]] = [
    (
        "SELECT revision, time, principal, summary FROM revisions ORDER BY revision",
        lambda r: hf.revision_record(r[0], r[1], r[2], r[3]),
    ),
    (
        f"SELECT {_DATASET_COLUMNS}, v.valid_to, v.end_revision, v.deleted FROM dataset_versions v ORDER BY v.version",
        _export_version,
    ),
    (
        (
            f"SELECT {_EDGE_COLUMNS}, i.id, o.id, e.revision, e.end_revision FROM edges e JOIN nodes i ON i.node = e.input"
            " JOIN nodes o ON o.node = e.output ORDER BY e.edge"
        ),
        _export_edge,
    ),
    (
        "SELECT job, run_id, run_region, transform, event_time, record_time, principal FROM runs ORDER BY record_time, job, run_id",
        _export_run,
    ),
]


# ---------------------------------------------------------------------- connections


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), foreign keys on."""
    if read_only:
        conn = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_MS / 1000,
        )
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA cache_size = -32768")
        # Reads of a large catalog touch rows all over the file; mapping it saves a copy per page.
        conn.execute("PRAGMA mmap_size = 1073741824")
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
        # The writer probes the node and adjacency indexes of every edge it records.
        conn.execute("PRAGMA cache_size = -131072")
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.create_function("domicile_icontains", 4, _icontains, deterministic=True)
    return conn


def _checkpoint_and_close(conn: sqlite3.Connection, path: Path) -> None:
    """`PRAGMA wal_checkpoint(TRUNCATE)`, then close: a stopped server leaves its whole
    catalog in the database file (and an empty log). Another process still reading the file
    may keep the checkpoint from completing; its own last close finishes it."""
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.info("SQLite store %s: another connection is using the write-ahead log; not truncated", path)
    except sqlite3.Error as exc:
        log.warning("SQLite store %s: checkpoint at close failed: %s", path, exc)
    finally:
        conn.close()


def _icontains(needle: str, *haystacks: str | None) -> bool:
    """Case-insensitive substring test; SQLite's own LIKE folds ASCII only."""
    return any(h is not None and needle in h.lower() for h in haystacks)


def _open_writer(path: Path, init: bool = False) -> tuple[bool, sqlite3.Connection | None]:
    """Opens and migrates the database on the writer thread; returns (read_only, connection).

    Translates every failure into a DomicileError naming `path`.
    """
    try:
        make_private_directory(path.parent)
    except OSError as exc:
        raise store_unavailable(f"cannot create the directory of SQLite store {path}: {exc.strerror}") from exc
    if path.exists():
        if path.is_dir():
            raise failed_precondition(
                f"SQLite store {path} is a directory, not a database file", reason="STORE_CORRUPT"
            )
        if not os.access(path, os.R_OK):
            raise store_unavailable(f"cannot open SQLite store {path}: permission denied (not readable)")
        if path.stat().st_size == 0 and not init:
            raise failed_precondition(
                f"SQLite store {path} is an empty (0-byte) file: a catalog lost to a truncation would start over "
                "empty. Restore it (docs/audit.md, Backup and restore), or start with --init to begin a new catalog "
                "in it",
                reason="CATALOG_FILE_EMPTY",
            )
        read_only = not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK)
    else:
        read_only = False
        # SQLite would create it world-readable; its -wal and -shm files take its mode.
        try:
            create_private_file(path)
        except OSError as exc:
            raise store_unavailable(f"cannot create SQLite store {path}: {exc.strerror}") from exc
    try:
        if read_only:
            conn = _connect(path, read_only=True)
            try:
                _check_schema(conn, path, read_only=True)
            finally:
                conn.close()
            return True, None
        conn = _connect(path, read_only=False)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise store_unavailable(f"SQLite store {path} cannot use WAL journaling (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            _check_schema(conn, path, read_only=False)
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return False, conn
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc


def _check_schema(conn: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
    version = read_schema_version(conn)
    if version > SCHEMA_VERSION:
        raise failed_precondition(
            f"SQLite store {path} has schema version {version}, newer than this Domicile supports ({SCHEMA_VERSION});"
            " upgrade Domicile",
            reason="SCHEMA_TOO_NEW",
        )
    if read_only and version < SCHEMA_VERSION:
        raise failed_precondition(
            f"SQLite store {path} is read-only and needs a schema migration ({version} -> {SCHEMA_VERSION})",
            reason="STORE_READ_ONLY",
        )


def _translate(exc: sqlite3.Error, path: Path) -> DomicileError:
    """The DomicileError for a sqlite3 failure on the store at `path`."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text or "malformed" in text:
        return failed_precondition(
            f"SQLite store {path} is not a valid Domicile database ({text})", reason="STORE_CORRUPT"
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return failed_precondition(
            f"SQLite store {path} is read-only; writes are refused ({text})", reason="STORE_READ_ONLY"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return store_unavailable(f"SQLite store {path} is locked by another writer ({text})")
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)):
        return store_unavailable(f"SQLite store {path} failed: {text}")
    return DomicileError(f"SQLite store {path}: {text}", ErrorCode.INTERNAL, "STORE_ERROR")


# ---------------------------------------------------------------------- row helpers


def _dataset_from_row(row: Sequence[Any]) -> Dataset:
    revision, valid_from, create_time, updated_by, body = row
    return hf.dataset_from_content(
        orjson.loads(body),  # listings read thousands of datasets: the faster decoder
        revision=revision,
        create_time=from_micros(create_time),
        update_time=from_micros(valid_from),
        updated_by=updated_by,
    )


def _edge_from_row(row: Sequence[Any], ids: dict[int, str], to_time: Callable[[int], datetime] = from_micros) -> Edge:
    _, input_node, output_node, job, transform, run_id, record_time, end_time = row[:8]
    return Edge(
        ids[input_node],
        ids[output_node],
        job,
        transform,
        run_id,
        to_time(record_time),
        None if end_time is None else to_time(end_time),
    )


def _version_visible(alias: str, at: int | None) -> tuple[str, tuple[int, ...]]:
    """SQL condition: the version `alias` is the one visible now (at is None) or at `at`."""
    if at is None:
        return f"{alias}.valid_to IS NULL", ()
    return f"{alias}.valid_from <= ? AND ({alias}.valid_to IS NULL OR {alias}.valid_to > ?)", (at, at)


def _edge_visible(alias: str, at: int | None) -> tuple[str, tuple[int, ...]]:
    if at is None:
        return f"{alias}.end_time IS NULL", ()
    return f"{alias}.record_time <= ? AND ({alias}.end_time IS NULL OR {alias}.end_time > ?)", (at, at)


def _current_edges(
    conn: sqlite3.Connection, job: str, pairs: set[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, str]]:
    """Current edges of `job` between the (input, output) node `pairs`: pair -> (edge, transform)."""
    # First through the covering adjacency index only; table rows are read just for the
    # few candidates (usually none when ingesting new lineage).
    candidates = [
        edge
        for edge, input_node, output_node in conn.execute(
            "SELECT edge, input, output FROM edges WHERE output IN (SELECT value FROM json_each(?)) AND end_time IS NULL",
            (json.dumps(sorted({o for _, o in pairs})),),
        )
        if (input_node, output_node) in pairs
    ]
    if not candidates:
        return {}
    return {
        (input_node, output_node): (edge, transform)
        for edge, input_node, output_node, transform in conn.execute(
            "SELECT edge, input, output, transform FROM edges WHERE edge IN (SELECT value FROM json_each(?)) AND job = ?",
            (json.dumps(candidates), job),
        )
    }


def _residency_snapshot_tx(conn: sqlite3.Connection) -> ResidencySnapshot:
    row_of = hf.residency_row_from_content
    loads = orjson.loads
    datasets = [
        row_of(loads(body))
        for (body,) in conn.execute(
            "SELECT v.body FROM nodes n JOIN dataset_versions v ON v.node = n.node"
            " WHERE v.valid_to IS NULL AND v.placeholder = 0 ORDER BY n.id"
        )
    ]
    # A placeholder over a deleted version was brought back by lineage (before lineage stopped
    # doing that): it is the deleted dataset, so it is left out.
    placeholders = [
        dataset_id
        for (dataset_id,) in conn.execute(
            "SELECT n.id FROM nodes n JOIN dataset_versions v ON v.node = n.node"
            " WHERE v.valid_to IS NULL AND v.placeholder = 1"
            " AND NOT EXISTS (SELECT 1 FROM dataset_versions d WHERE d.node = n.node AND d.deleted = 1) ORDER BY n.id"
        )
    ]
    make_edge = EdgeRow._make
    edges = [
        make_edge(row)
        for row in conn.execute(
            "SELECT i.id, o.id, e.job, e.transform FROM edges e JOIN nodes i ON i.node = e.input"
            " JOIN nodes o ON o.node = e.output WHERE e.end_time IS NULL ORDER BY e.edge"
        )
    ]
    return ResidencySnapshot(_current_revision(conn), datasets, edges, placeholders)


def _current_revision(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(revision), 0) FROM revisions").fetchone()[0]


def _new_revision(conn: sqlite3.Connection, at: int, principal: str, summary: str) -> int:
    revision = _current_revision(conn) + 1
    conn.execute(
        "INSERT INTO revisions (revision, time, principal, summary) VALUES (?, ?, ?, ?)",
        (revision, at, principal, summary),
    )
    return revision


def _next_id(conn: sqlite3.Connection, table: str, column: str) -> int:
    """The rowid the next insert into `table` gets (rowids are max + 1; rows are never deleted)."""
    return conn.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchone()[0]


def _lookup_nodes(conn: sqlite3.Connection, ids: Iterable[str]) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT id, node FROM nodes WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)
        ).fetchall()
    )


def _ensure_nodes(conn: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
    """Node keys of `ids`, creating the missing ones."""
    conn.executemany("INSERT OR IGNORE INTO nodes (id) VALUES (?)", [(i,) for i in ids])
    return _lookup_nodes(conn, ids)


def _insert_version(
    conn: sqlite3.Connection,
    node: int,
    content: dict[str, Any],
    body: str,
    *,
    revision: int,
    valid_from: int,
    create_time: int,
    updated_by: str,
    valid_to: int | None = None,
    end_revision: int | None = None,
    deleted: bool = False,
) -> int:
    """Inserts one dataset version and its label/origin/region index rows; returns its key."""
    cursor = conn.execute(
        "INSERT INTO dataset_versions (node, revision, valid_from, valid_to, end_revision, deleted, placeholder,"
        " create_time, updated_by, owner, name, description, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            node,
            revision,
            valid_from,
            valid_to,
            end_revision,
            int(deleted),
            int(content["placeholder"]),
            create_time,
            updated_by,
            content["owner"],
            content["name"],
            content["description"],
            body,
        ),
    )
    version = cast(int, cursor.lastrowid)  # set by every INSERT
    labels = set(content["classifications"])
    for f in content["fields"]:
        labels.update(f["classifications"])
    conn.executemany(
        "INSERT INTO version_labels (version, label) VALUES (?, ?)", [(version, x) for x in sorted(labels)]
    )
    conn.executemany(
        "INSERT INTO version_origins (version, origin) VALUES (?, ?)", [(version, x) for x in content["origins"]]
    )
    conn.executemany(
        "INSERT INTO version_locations (version, region) VALUES (?, ?)", [(version, x) for x in content["locations"]]
    )
    return version
