"""The `AccessStore` of the Neo4j backend. Access records are nodes of their own, outside the
catalog's revisioned model (no meta-node lock, no revision):

- `(:AccessDay {dataset, actor, operation, region, day, count, first_seen, last_seen})`
- `(:AccessRun {job, run_id, producer, principal, run_region, event_time, last_event_time,
  record_time, accesses})`, `accesses` the JSON of `codec.accesses_document`
- `(:ObservedViolation {id, time, body})`, `(:AccessAnomaly {id, time, body})`
- `(:ActorBaseline {actor, dimension, value, first_seen, last_seen})`
- `(:AccessBatch {batch_id, time})`: flushes already applied

Times and days are microseconds since the epoch, as everywhere in this backend.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from neo4j import AsyncManagedTransaction

from domicile.access import codec
from domicile.access.model import (
    AccessBatch,
    AccessOperation,
    AccessTotals,
    ActorBaseline,
    Anomaly,
    BaselineDimension,
    BaselineEntry,
    ObservedViolation,
    RunAccess,
    RunRecord,
)
from domicile.catalog.model import Page, PageRequest, from_micros, to_micros
from domicile.catalog.stores.access_common import day_range, day_rows_range, next_token, page_start, time_range
from domicile.catalog.stores.neo4j_cypher import consume, raw_single, records, single_or_none

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]

_OBSERVED = [op.value for op in AccessOperation if op.observed]

SCHEMA_STATEMENTS = (
    (
        "CREATE CONSTRAINT domicile_access_day_key IF NOT EXISTS FOR (a:AccessDay)"
        " REQUIRE (a.dataset, a.actor, a.operation, a.region, a.day) IS UNIQUE"
    ),
    "CREATE INDEX domicile_access_day_actor IF NOT EXISTS FOR (a:AccessDay) ON (a.actor)",
    "CREATE INDEX domicile_access_day_dataset IF NOT EXISTS FOR (a:AccessDay) ON (a.dataset)",
    "CREATE CONSTRAINT domicile_access_run_key IF NOT EXISTS FOR (r:AccessRun) REQUIRE (r.job, r.run_id) IS UNIQUE",
    "CREATE INDEX domicile_access_run_record_time IF NOT EXISTS FOR (r:AccessRun) ON (r.record_time)",
    "CREATE INDEX domicile_access_run_job IF NOT EXISTS FOR (r:AccessRun) ON (r.job)",
    "CREATE CONSTRAINT domicile_observed_violation_id IF NOT EXISTS FOR (v:ObservedViolation) REQUIRE v.id IS UNIQUE",
    "CREATE INDEX domicile_observed_violation_time IF NOT EXISTS FOR (v:ObservedViolation) ON (v.time)",
    "CREATE CONSTRAINT domicile_access_anomaly_id IF NOT EXISTS FOR (a:AccessAnomaly) REQUIRE a.id IS UNIQUE",
    "CREATE INDEX domicile_access_anomaly_time IF NOT EXISTS FOR (a:AccessAnomaly) ON (a.time)",
    (
        "CREATE CONSTRAINT domicile_actor_baseline_key IF NOT EXISTS FOR (b:ActorBaseline)"
        " REQUIRE (b.actor, b.dimension, b.value) IS UNIQUE"
    ),
    "CREATE CONSTRAINT domicile_access_batch_id IF NOT EXISTS FOR (b:AccessBatch) REQUIRE b.batch_id IS UNIQUE",
    "CREATE INDEX domicile_access_batch_time IF NOT EXISTS FOR (b:AccessBatch) ON (b.time)",
)

# One total per (name, operation, region) of the matched days, collected into one list of
# `AccessTotals` rows: no record, dict or tuple per total on the way to the answer's encoder.
_PACKED_SUMS = (
    "WITH a.{name} AS name, a.operation AS operation, a.region AS region, sum(a.count) AS total,"
    " min(a.first_seen) AS first, max(a.last_seen) AS last"
    " RETURN collect([name, operation, region, total, first, last]) AS rows"
)
_RUN_FIELDS = (
    "r.job AS job, r.run_id AS run_id, r.producer AS producer, r.principal AS principal, r.run_region AS run_region,"
    " r.event_time AS event_time, r.last_event_time AS last_event_time, r.record_time AS record_time,"
    " r.accesses AS accesses"
)


class Neo4jAccessStore:
    """`AccessStore` over the Neo4j store's managed-transaction runners (`write(fn, *args)`
    runs `fn(tx, *args)` as one retried write transaction, `read` as a read transaction)."""

    def __init__(self, write: Runner, read: Runner) -> None:
        self._write = write
        self._read = read

    async def write_batch(self, batch: AccessBatch) -> bool:
        return await self._write(_write_batch_tx, batch)

    async def dataset_access(
        self, dataset_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> AccessTotals:
        low, high, since_us, until_us = day_rows_range(since, until)
        found = await self._read(
            raw_single,
            "MATCH (a:AccessDay {dataset: $dataset}) WHERE a.day >= $low AND a.day < $high"
            " AND a.first_seen < $until AND a.last_seen >= $since " + _PACKED_SUMS.format(name="actor"),
            dataset=dataset_id,
            low=low,
            high=high,
            since=since_us,
            until=until_us,
        )
        return AccessTotals(dataset_id, True, orjson.dumps(found["rows"]).decode())

    async def actor_access(
        self, actor: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> AccessTotals:
        low, high, since_us, until_us = day_rows_range(since, until)
        found = await self._read(
            raw_single,
            "MATCH (a:AccessDay {actor: $actor}) WHERE a.day >= $low AND a.day < $high"
            " AND a.first_seen < $until AND a.last_seen >= $since " + _PACKED_SUMS.format(name="dataset"),
            actor=actor,
            low=low,
            high=high,
            since=since_us,
            until=until_us,
        )
        return AccessTotals(actor, False, orjson.dumps(found["rows"]).decode())

    async def list_runs(
        self, job: str, *, since: datetime | None = None, until: datetime | None = None, limit: int = 100
    ) -> list[RunRecord]:
        low, high = time_range(since, until)
        rows = await self._read(
            records,
            "MATCH (r:AccessRun {job: $job}) WHERE r.event_time >= $low AND r.event_time < $high "
            f"RETURN {_RUN_FIELDS} ORDER BY event_time DESC, run_id LIMIT $limit",
            job=job,
            low=low,
            high=high,
            limit=limit,
        )
        return [_run(row) for row in rows]

    async def run_accesses(self, job: str, run_id: str) -> frozenset[RunAccess]:
        return await self._read(run_accesses_tx, job, run_id)

    async def list_violations(
        self, page: PageRequest, *, since: datetime | None = None, until: datetime | None = None
    ) -> Page[ObservedViolation]:
        return await self._page("ObservedViolation", "violations", page, since, until, codec.violation_from_body)

    async def list_anomalies(
        self, page: PageRequest, *, since: datetime | None = None, until: datetime | None = None
    ) -> Page[Anomaly]:
        return await self._page("AccessAnomaly", "anomalies", page, since, until, codec.anomaly_from_body)

    async def _page(
        self,
        label: str,
        kind: str,
        page: PageRequest,
        since: datetime | None,
        until: datetime | None,
        decode: Callable[[str], T],
    ) -> Page[T]:
        low, high = time_range(since, until)
        start = page_start(page, kind, low, high)
        after = "" if start is None else " AND (n.time > $after_time OR (n.time = $after_time AND n.id > $after_id))"
        rows = await self._read(
            records,
            f"MATCH (n:{label}) WHERE n.time >= $low AND n.time < $high{after} "
            "RETURN n.time AS time, n.id AS id, n.body AS body ORDER BY time, id LIMIT $limit",
            low=low,
            high=high,
            after_time=None if start is None else start[0],
            after_id=None if start is None else start[1],
            limit=page.size + 1,
        )
        items = tuple(decode(row["body"]) for row in rows[: page.size])
        last = rows[page.size - 1] if len(rows) > page.size else None
        return Page(items, next_token(kind, low, high, (last["time"], last["id"])) if last else "")

    async def baselines(self, actors: Sequence[str], *, since: datetime) -> dict[str, ActorBaseline]:
        return await self._read(_baselines_tx, list(dict.fromkeys(actors)), day_range(since, None)[0])

    async def prune_runs(self, before: datetime) -> int:
        return await self._write(_prune_tx, to_micros(before))


def _run(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        row["job"],
        row["run_id"],
        row["producer"],
        row["principal"],
        row["run_region"],
        from_micros(row["event_time"]),
        from_micros(row["last_event_time"]),
        from_micros(row["record_time"]),
        codec.accesses_from_document(json.loads(row["accesses"])),
    )


async def _write_batch_tx(tx: AsyncManagedTransaction, batch: AccessBatch) -> bool:
    seen = await single_or_none(tx, "MATCH (b:AccessBatch {batch_id: $id}) RETURN 1 AS found", id=batch.batch_id)
    if seen is not None:
        return False
    await consume(
        tx, "CREATE (:AccessBatch {batch_id: $id, time: $time})", id=batch.batch_id, time=to_micros(batch.time)
    )
    rows = [list(c.row()) for c in batch.counts]
    rows += map(list, batch.intents)
    if rows:
        # Rows in the columns of `CountRow`: (actor, dataset, operation, region, count, first
        # seen, last seen, day).
        await consume(
            tx,
            "UNWIND $rows AS row "
            "MERGE (a:AccessDay {dataset: row[1], actor: row[0], operation: row[2], region: row[3], day: row[7]}) "
            "ON CREATE SET a.count = row[4], a.first_seen = row[5], a.last_seen = row[6] "
            "ON MATCH SET a.count = a.count + row[4],"
            " a.first_seen = CASE WHEN row[5] < a.first_seen THEN row[5] ELSE a.first_seen END,"
            " a.last_seen = CASE WHEN row[6] > a.last_seen THEN row[6] ELSE a.last_seen END",
            rows=rows,
        )
    if batch.runs:
        await _merge_runs(tx, batch.runs)
    if batch.violations:
        await consume(
            tx,
            "UNWIND $rows AS row MERGE (v:ObservedViolation {id: row.id}) ON CREATE SET v.time = row.time, v.body = row.body",
            rows=[
                {"id": v.violation_id, "time": to_micros(v.event_time), "body": codec.violation_body(v)}
                for v in batch.violations
            ],
        )
    if batch.anomalies:
        await consume(
            tx,
            "UNWIND $rows AS row MERGE (a:AccessAnomaly {id: row.id}) ON CREATE SET a.time = row.time, a.body = row.body",
            rows=[
                {"id": a.anomaly_id, "time": to_micros(a.detect_time), "body": codec.anomaly_body(a)}
                for a in batch.anomalies
            ],
        )
    if batch.baselines:
        await consume(
            tx,
            "UNWIND $rows AS row "
            "MERGE (b:ActorBaseline {actor: row.actor, dimension: row.dimension, value: row.value}) "
            "ON CREATE SET b.first_seen = row.first_seen, b.last_seen = row.last_seen "
            "ON MATCH SET b.first_seen = CASE WHEN row.first_seen < b.first_seen THEN row.first_seen ELSE b.first_seen END,"
            " b.last_seen = CASE WHEN row.last_seen > b.last_seen THEN row.last_seen ELSE b.last_seen END",
            rows=[
                {
                    "actor": e.actor,
                    "dimension": e.dimension.value,
                    "value": e.value,
                    "first_seen": to_micros(e.first_seen),
                    "last_seen": to_micros(e.last_seen),
                }
                for e in batch.baselines
            ],
        )
    return True


async def _merge_runs(tx: AsyncManagedTransaction, runs: Sequence[RunRecord]) -> None:
    """Merged in Python (a run's accesses are a set union), written with one UNWIND."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    existing = await records(
        tx,
        "UNWIND $keys AS key MATCH (r:AccessRun {job: key[0], run_id: key[1]}) RETURN " + _RUN_FIELDS,
        keys=sorted({(r.job, r.run_id) for r in runs}),
    )
    for stored in existing:
        stored["accesses"] = {tuple(a) for a in json.loads(stored["accesses"])}
        merged[(stored["job"], stored["run_id"])] = stored
    for run in runs:
        accesses = {tuple(a) for a in codec.accesses_document(run.accesses)}
        row = merged.get((run.job, run.run_id))
        if row is None:
            merged[(run.job, run.run_id)] = {
                "job": run.job,
                "run_id": run.run_id,
                "producer": run.producer,
                "principal": run.principal,
                "run_region": run.run_region,
                "event_time": to_micros(run.event_time),
                "last_event_time": to_micros(run.last_event_time),
                "record_time": to_micros(run.record_time),
                "accesses": accesses,
            }
            continue
        row["producer"] = row["producer"] or run.producer
        row["principal"] = row["principal"] or run.principal
        row["run_region"] = row["run_region"] or run.run_region
        row["event_time"] = min(row["event_time"], to_micros(run.event_time))
        row["last_event_time"] = max(row["last_event_time"], to_micros(run.last_event_time))
        row["accesses"] |= accesses
    rows = [{**row, "accesses": json.dumps([list(a) for a in sorted(row["accesses"])])} for row in merged.values()]
    await consume(
        tx,
        "UNWIND $rows AS row MERGE (r:AccessRun {job: row.job, run_id: row.run_id}) "
        "ON CREATE SET r.record_time = row.record_time "
        "SET r.producer = row.producer, r.principal = row.principal, r.run_region = row.run_region,"
        " r.event_time = row.event_time, r.last_event_time = row.last_event_time, r.accesses = row.accesses",
        rows=rows,
    )


async def _baselines_tx(tx: AsyncManagedTransaction, actors: list[str], first_day: int) -> dict[str, ActorBaseline]:
    entries: dict[str, list[BaselineEntry]] = {}
    for row in await records(
        tx,
        "UNWIND $actors AS actor MATCH (b:ActorBaseline {actor: actor}) "
        "RETURN b.actor AS actor, b.dimension AS dimension, b.value AS value, b.first_seen AS first_seen,"
        " b.last_seen AS last_seen ORDER BY actor, dimension, value",
        actors=actors,
    ):
        entries.setdefault(row["actor"], []).append(
            BaselineEntry(
                row["actor"],
                BaselineDimension(row["dimension"]),
                row["value"],
                from_micros(row["first_seen"]),
                from_micros(row["last_seen"]),
            )
        )
    counts: dict[str, dict[datetime, int]] = {}
    for row in await records(
        tx,
        "UNWIND $actors AS actor MATCH (a:AccessDay {actor: actor}) WHERE a.day >= $first_day AND a.operation IN $ops "
        "RETURN a.actor AS actor, a.day AS day, sum(a.count) AS count",
        actors=actors,
        first_day=first_day,
        ops=_OBSERVED,
    ):
        counts.setdefault(row["actor"], {})[from_micros(row["day"])] = row["count"]
    return {
        actor: ActorBaseline(actor, tuple(entries.get(actor, ())), counts.get(actor, {}))
        for actor in actors
        if actor in entries or actor in counts
    }


async def _prune_tx(tx: AsyncManagedTransaction, before: int) -> int:
    row = await single_or_none(
        tx,
        "MATCH (r:AccessRun) WHERE r.record_time < $before WITH collect(r) AS runs "
        "FOREACH (r IN runs | DELETE r) RETURN size(runs) AS deleted",
        before=before,
    )
    await consume(tx, "MATCH (b:AccessBatch) WHERE b.time < $before DELETE b", before=before)
    return row["deleted"] if row else 0


async def run_accesses_tx(tx: AsyncManagedTransaction, job: str, run_id: str) -> frozenset[RunAccess]:
    """`AccessStore.run_accesses` in a transaction of the caller's (also the catalog's lineage write)."""
    row = await single_or_none(
        tx, "MATCH (r:AccessRun {job: $job, run_id: $run_id}) RETURN r.accesses AS accesses", job=job, run_id=run_id
    )
    return frozenset(codec.accesses_from_document(json.loads(row["accesses"]))) if row else frozenset()
