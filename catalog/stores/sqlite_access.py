"""The `AccessStore` of the SQLite backend: tables of schema 2 (see `sqlite_schema`), written
on the store's one writer thread in their own transactions (never a catalog revision)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from domicile.access import codec
from domicile.access.model import (
    AccessBatch,
    AccessOperation,
    AccessTotals,
    ActorBaseline,
    Anomaly,
    BaselineDimension,
    BaselineEntry,
    CountRow,
    ObservedViolation,
    RunAccess,
    RunRecord,
)
from domicile.catalog.model import Page, PageRequest, from_micros, to_micros
from domicile.catalog.stores.access_common import day_range, day_rows_range, next_token, page_start, time_range

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]

_OBSERVED = tuple(op.value for op in AccessOperation if op.observed)


class SQLiteAccessStore:
    """`AccessStore` over the SQLite store's transaction runners (`write(fn, *args)` runs
    `fn(conn, *args)` in one write transaction, `read` in one snapshot)."""

    def __init__(self, write: Runner, read: Runner) -> None:
        self._write = write
        self._read = read

    async def write_batch(self, batch: AccessBatch) -> bool:
        return await self._write(_write_batch_tx, batch)

    async def dataset_access(
        self, dataset_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> AccessTotals:
        if since is None and until is None:  # all time: the totals, no grouping (a busy dataset has 10,000s)
            rows = await self._read(
                _packed,
                "SELECT json_group_array(json_array(actor, operation, region, count, first_seen, last_seen))"
                " FROM access_totals WHERE dataset = ?",
                (dataset_id,),
            )
            return AccessTotals(dataset_id, True, rows)
        rows = await self._read(
            _packed,
            f"SELECT {_PACKED_SUMS} FROM (SELECT actor AS name, operation, region, sum(count) AS total,"
            " min(first_seen) AS first, max(last_seen) AS last FROM access_days"
            " WHERE dataset = ? AND day >= ? AND day < ? AND last_seen >= ? AND first_seen < ?"
            " GROUP BY actor, operation, region)",
            (dataset_id, *day_rows_range(since, until)),
        )
        return AccessTotals(dataset_id, True, rows)

    async def actor_access(
        self, actor: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> AccessTotals:
        rows = await self._read(
            _packed,
            f"SELECT {_PACKED_SUMS} FROM (SELECT dataset AS name, operation, region, sum(count) AS total,"
            " min(first_seen) AS first, max(last_seen) AS last FROM access_days"
            " WHERE actor = ? AND day >= ? AND day < ? AND last_seen >= ? AND first_seen < ?"
            " GROUP BY dataset, operation, region)",
            (actor, *day_rows_range(since, until)),
        )
        return AccessTotals(actor, False, rows)

    async def list_runs(
        self, job: str, *, since: datetime | None = None, until: datetime | None = None, limit: int = 100
    ) -> list[RunRecord]:
        low, high = time_range(since, until)
        rows = await self._read(
            _select,
            "SELECT job, run_id, producer, principal, run_region, event_time, last_event_time, record_time, accesses"
            " FROM access_runs WHERE job = ? AND event_time >= ? AND event_time < ?"
            " ORDER BY event_time DESC, run_id LIMIT ?",
            (job, low, high, limit),
        )
        return [_run(row) for row in rows]

    async def run_accesses(self, job: str, run_id: str) -> frozenset[RunAccess]:
        return await self._read(run_accesses_tx, job, run_id)

    async def list_violations(
        self, page: PageRequest, *, since: datetime | None = None, until: datetime | None = None
    ) -> Page[ObservedViolation]:
        return await self._page(
            "observed_violations", "event_time", "violations", page, since, until, codec.violation_from_body
        )

    async def list_anomalies(
        self, page: PageRequest, *, since: datetime | None = None, until: datetime | None = None
    ) -> Page[Anomaly]:
        return await self._page(
            "access_anomalies", "detect_time", "anomalies", page, since, until, codec.anomaly_from_body
        )

    async def _page(
        self,
        table: str,
        time_column: str,
        kind: str,
        page: PageRequest,
        since: datetime | None,
        until: datetime | None,
        decode: Callable[[str], T],
    ) -> Page[T]:
        low, high = time_range(since, until)
        start = page_start(page, kind, low, high)
        where = f"{time_column} >= ? AND {time_column} < ?"
        args: list[Any] = [low, high]
        if start is not None:
            where += f" AND ({time_column} > ? OR ({time_column} = ? AND id > ?))"
            args += [start[0], start[0], start[1]]
        rows = await self._read(
            _select,
            f"SELECT {time_column}, id, body FROM {table} WHERE {where} ORDER BY {time_column}, id LIMIT ?",
            (*args, page.size + 1),
        )
        items = tuple(decode(body) for _, _, body in rows[: page.size])
        token = next_token(kind, low, high, tuple(rows[page.size - 1][:2])) if len(rows) > page.size else ""
        return Page(items, token)

    async def baselines(self, actors: Sequence[str], *, since: datetime) -> dict[str, ActorBaseline]:
        return await self._read(_baselines_tx, list(dict.fromkeys(actors)), day_range(since, None)[0])

    async def prune_runs(self, before: datetime) -> int:
        return await self._write(_prune_tx, to_micros(before))


def run_accesses_tx(conn: sqlite3.Connection, job: str, run_id: str) -> frozenset[RunAccess]:
    """`AccessStore.run_accesses` in a transaction of the caller's (also the catalog's lineage write)."""
    row = conn.execute("SELECT accesses FROM access_runs WHERE job = ? AND run_id = ?", (job, run_id)).fetchone()
    return frozenset(codec.accesses_from_document(orjson.loads(row[0]))) if row else frozenset()


def _select(conn: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> list[tuple]:
    return conn.execute(query, args).fetchall()


# Totals packed by SQLite itself (`AccessTotals.rows`): one string per read, no Python value per row.
_PACKED_SUMS = "json_group_array(json_array(name, operation, region, total, first, last))"


def _packed(conn: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> str:
    return conn.execute(query, args).fetchone()[0]


def _run(row: tuple) -> RunRecord:
    job, run_id, producer, principal, run_region, event_time, last_event_time, record_time, accesses = row
    return RunRecord(
        job,
        run_id,
        producer,
        principal,
        run_region,
        from_micros(event_time),
        from_micros(last_event_time),
        from_micros(record_time),
        codec.accesses_from_document(orjson.loads(accesses)),
    )


def _write_batch_tx(conn: sqlite3.Connection, batch: AccessBatch) -> bool:
    applied = conn.execute(
        "INSERT OR IGNORE INTO access_batches (batch_id, time) VALUES (?, ?)",
        (batch.batch_id, to_micros(batch.time)),
    )
    if applied.rowcount == 0:
        return False
    _add_counts(conn, [c.row() for c in batch.counts])
    _add_counts(conn, batch.intents)
    _merge_runs(conn, batch.runs)
    conn.executemany(
        "INSERT OR IGNORE INTO observed_violations (id, event_time, body) VALUES (?, ?, ?)",
        [(v.violation_id, to_micros(v.event_time), codec.violation_body(v)) for v in batch.violations],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO access_anomalies (id, detect_time, body) VALUES (?, ?, ?)",
        [(a.anomaly_id, to_micros(a.detect_time), codec.anomaly_body(a)) for a in batch.anomalies],
    )
    conn.executemany(
        "INSERT INTO actor_baselines (actor, dimension, value, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (actor, dimension, value) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),"
        " last_seen = max(last_seen, excluded.last_seen)",
        [
            (e.actor, e.dimension.value, e.value, to_micros(e.first_seen), to_micros(e.last_seen))
            for e in batch.baselines
        ],
    )
    return True


def _add_counts(conn: sqlite3.Connection, rows: Sequence[CountRow]) -> None:
    """Add aggregates to their day rows and all-time totals: the rows are bound once, into a
    temporary table, and both tables are updated from it by one statement each, in key order
    (an upsert in key order costs about half of one in arrival order)."""
    if not len(rows):
        return
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS access_counts_in"
        " (actor, dataset, operation, region, count, first_seen, last_seen, day)"
    )
    conn.executemany("INSERT INTO temp.access_counts_in VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute(
        "INSERT INTO access_days (dataset, actor, operation, region, count, first_seen, last_seen, day)"
        " SELECT dataset, actor, operation, region, count, first_seen, last_seen, day FROM temp.access_counts_in"
        " WHERE true ORDER BY dataset, actor, operation, region, day"
        " ON CONFLICT (dataset, actor, operation, region, day) DO UPDATE SET"
        " count = count + excluded.count, first_seen = min(first_seen, excluded.first_seen),"
        " last_seen = max(last_seen, excluded.last_seen)"
    )
    conn.execute(
        "INSERT INTO access_totals (dataset, actor, operation, region, count, first_seen, last_seen)"
        " SELECT dataset, actor, operation, region, sum(count), min(first_seen), max(last_seen)"
        " FROM temp.access_counts_in WHERE true GROUP BY dataset, actor, operation, region"
        " ON CONFLICT (dataset, actor, operation, region) DO UPDATE SET"
        " count = count + excluded.count, first_seen = min(first_seen, excluded.first_seen),"
        " last_seen = max(last_seen, excluded.last_seen)"
    )
    conn.execute("DELETE FROM temp.access_counts_in")


def _merge_runs(conn: sqlite3.Connection, runs: Sequence[RunRecord]) -> None:
    """Insert `runs`, merging those already stored (one lookup for the batch: most are new)."""
    if not runs:
        return
    stored = {
        (job, run_id): rest
        for job, run_id, *rest in conn.execute(
            "SELECT job, run_id, producer, principal, run_region, event_time, last_event_time, accesses"
            " FROM access_runs WHERE (job, run_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
            (orjson.dumps([(run.job, run.run_id) for run in runs]),),
        )
    }
    conn.executemany(
        "INSERT INTO access_runs (job, run_id, producer, principal, run_region, event_time, last_event_time,"
        " record_time, accesses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run.job,
                run.run_id,
                run.producer,
                run.principal,
                run.run_region,
                to_micros(run.event_time),
                to_micros(run.last_event_time),
                to_micros(run.record_time),
                codec.encode_accesses(run.accesses),
            )
            for run in runs
            if (run.job, run.run_id) not in stored
        ],
    )
    for run in runs:
        row = stored.get((run.job, run.run_id))
        if row is None:
            continue
        producer, principal, run_region, event_time, last_event_time, accesses = row
        merged = sorted(
            {tuple(a) for a in orjson.loads(accesses)} | {tuple(a) for a in codec.accesses_document(run.accesses)}
        )
        conn.execute(
            "UPDATE access_runs SET producer = ?, principal = ?, run_region = ?, event_time = ?, last_event_time = ?,"
            " accesses = ? WHERE job = ? AND run_id = ?",
            (
                producer or run.producer,
                principal or run.principal,
                run_region or run.run_region,
                min(event_time, to_micros(run.event_time)),
                max(last_event_time, to_micros(run.last_event_time)),
                orjson.dumps(merged).decode(),
                run.job,
                run.run_id,
            ),
        )


def _baselines_tx(conn: sqlite3.Connection, actors: list[str], first_day: int) -> dict[str, ActorBaseline]:
    entries: dict[str, list[BaselineEntry]] = {}
    for actor, dimension, value, first, last in conn.execute(
        "SELECT actor, dimension, value, first_seen, last_seen FROM actor_baselines"
        " WHERE actor IN (SELECT value FROM json_each(?)) ORDER BY actor, dimension, value",
        (json.dumps(actors),),
    ):
        entries.setdefault(actor, []).append(
            BaselineEntry(actor, BaselineDimension(dimension), value, from_micros(first), from_micros(last))
        )
    counts: dict[str, dict[datetime, int]] = {}
    for actor, day, count in conn.execute(
        "SELECT actor, day, sum(count) FROM access_days WHERE actor IN (SELECT value FROM json_each(?))"
        f" AND day >= ? AND operation IN ({', '.join('?' * len(_OBSERVED))}) GROUP BY actor, day",
        (json.dumps(actors), first_day, *_OBSERVED),
    ):
        counts.setdefault(actor, {})[from_micros(day)] = count
    return {
        actor: ActorBaseline(actor, tuple(entries.get(actor, ())), counts.get(actor, {}))
        for actor in actors
        if actor in entries or actor in counts
    }


def _prune_tx(conn: sqlite3.Connection, before: int) -> int:
    deleted = conn.execute("DELETE FROM access_runs WHERE record_time < ?", (before,)).rowcount
    conn.execute("DELETE FROM access_batches WHERE time < ?", (before,))
    return deleted
