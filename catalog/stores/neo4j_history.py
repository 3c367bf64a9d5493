"""Export and import of the Neo4j store's history, in the shared `history_format` records.

Both sides work in batches of separate transactions, driven by the store: a history can be
far larger than one transaction should hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neo4j import AsyncManagedTransaction
from neo4j import exceptions as neo4j_errors

from domicile.catalog.model import Run, from_micros
from domicile.catalog.stores import history_format as hf
from domicile.catalog.stores.common import check_id
from domicile.catalog.stores.neo4j_codec import dataset_from_version, edge_from_properties, version_properties
from domicile.catalog.stores.neo4j_cypher import consume, create_versions, single
from domicile.catalog.stores.neo4j_schema import META_KEY
from domicile.errors import failed_precondition, invalid_argument, invalid_field

# ---------------------------------------------------------------------- export
# Export is cut at a revision `bound` (see `Neo4jGraphStore.export_history`): what a later
# write ended is exported as still current.


def _export_version(row: dict[str, Any], bound: int) -> dict:
    v = row["v"]
    ended = v.get("end_revision") is not None and v["end_revision"] <= bound
    return hf.dataset_version_record(
        dataset_from_version(v),
        valid_to=from_micros(v["valid_to"]) if ended else None,
        end_revision=v["end_revision"] if ended else None,
        deleted=bool(v["deleted"]) if ended else False,
    )


def _export_edge(row: dict[str, Any], bound: int) -> dict:
    e = row["e"]
    ended = e.get("end_revision") is not None and e["end_revision"] <= bound
    edge = edge_from_properties({**e, "end_time": e["end_time"] if ended else None})
    return hf.edge_record(edge, revision=e["revision"], end_revision=e["end_revision"] if ended else None)


def _export_run(row: dict[str, Any], bound: int) -> dict:
    r = row["r"]
    event_time = r.get("event_time")
    run = Run(
        r["job"], r["run_id"], r["run_region"], r["transform"], None if event_time is None else from_micros(event_time)
    )
    return hf.run_record(run, record_time=from_micros(r["record_time"]), principal=r["principal"])


# (query with $after/$revision/$time/$limit, key of a row for the next batch, converter), in
# the record order `history_format` documents; keyset pagination on that order.
EXPORT_QUERIES: list[tuple[str, Callable[[dict[str, Any]], list[Any]], Callable[[dict[str, Any], int], dict]]] = [
    (
        (
            "MATCH (r:Revision) WHERE r.revision <= $revision AND ($after IS NULL OR r.revision > $after[0]) "
            "RETURN r.revision AS revision, r.time AS time, r.principal AS principal, r.summary AS summary "
            "ORDER BY r.revision LIMIT $limit"
        ),
        lambda row: [row["revision"]],
        lambda row, bound: hf.revision_record(row["revision"], row["time"], row["principal"], row["summary"]),
    ),
    (
        (
            "MATCH (v:DatasetVersion) WHERE v.revision <= $revision AND ($after IS NULL OR v.revision > $after[0] "
            "OR (v.revision = $after[0] AND v.id > $after[1])) "
            "RETURN properties(v) AS v ORDER BY v.revision, v.id LIMIT $limit"
        ),
        lambda row: [row["v"]["revision"], row["v"]["id"]],
        _export_version,
    ),
    (
        (
            "MATCH ()-[e:DERIVED_FROM]->() WHERE e.revision <= $revision AND ($after IS NULL OR e.revision > $after[0] "
            "OR (e.revision = $after[0] AND (e.input > $after[1] OR (e.input = $after[1] AND (e.output > $after[2] "
            "OR (e.output = $after[2] AND e.job > $after[3])))))) "
            "RETURN properties(e) AS e ORDER BY e.revision, e.input, e.output, e.job LIMIT $limit"
        ),
        lambda row: [row["e"]["revision"], row["e"]["input"], row["e"]["output"], row["e"]["job"]],
        _export_edge,
    ),
    (
        (
            "MATCH (r:Run) WHERE r.record_time <= $time AND ($after IS NULL OR r.record_time > $after[0] "
            "OR (r.record_time = $after[0] AND (r.job > $after[1] OR (r.job = $after[1] AND r.run_id > $after[2])))) "
            "RETURN properties(r) AS r ORDER BY r.record_time, r.job, r.run_id LIMIT $limit"
        ),
        lambda row: [row["r"]["record_time"], row["r"]["job"], row["r"]["run_id"]],
        _export_run,
    ),
]


# ---------------------------------------------------------------------- import


async def begin_import(tx: AsyncManagedTransaction) -> bool:
    """Mark the catalog "importing"; False (changing nothing) when a failed import left it so.

    The caller then clears the catalog and begins again. FAILED_PRECONDITION
    (STORE_NOT_EMPTY) when the catalog holds data.
    """
    meta = await single(
        tx,
        "MATCH (c:DomicileCatalog {key: $key}) SET c.write_lock = true RETURN c.importing AS importing",
        key=META_KEY,
    )
    if meta["importing"]:
        await consume(tx, "MATCH (c:DomicileCatalog {key: $key}) REMOVE c.write_lock", key=META_KEY)
        return False
    populated = await single(
        tx,
        "RETURN EXISTS { MATCH (:Revision) } OR EXISTS { MATCH (:Dataset) } OR EXISTS { MATCH (:Run) } AS populated",
    )
    if populated["populated"]:
        raise failed_precondition("import needs an empty store; this one already holds data", reason="STORE_NOT_EMPTY")
    await consume(tx, "MATCH (c:DomicileCatalog {key: $key}) REMOVE c.write_lock SET c.importing = true", key=META_KEY)
    return True


class Importer:
    """Loads validated history records; each `load` is one write transaction function.

    `load` only reads the state that spans batches (last revision, last time, record type
    reached) and returns the state after its batch; `advance` adopts it once the
    transaction has committed. So an attempt the driver retries starts from the same state.
    """

    def __init__(self) -> None:
        self.count = 0
        self._last_revision = 0
        self._last_time = 0
        self._kinds_seen = 0

    def advance(self, state: tuple[int, int, int], records: int) -> None:
        self._last_revision, self._last_time, self._kinds_seen = state
        self.count += records

    async def load(self, tx: AsyncManagedTransaction, batch: list[tuple[int, str, dict]]) -> tuple[int, int, int]:
        last_revision, last_time = self._last_revision, self._last_time
        change_counts: dict[int, int] = {}
        kind_order = self._kinds_seen
        revisions: list[dict[str, Any]] = []
        versions: list[dict[str, Any]] = []
        edges: list[dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        for index, kind, record in batch:
            order = hf.RECORD_TYPES.index(kind)
            if order < kind_order:
                raise invalid_field(
                    f"records[{index}].type",
                    f"a {kind} record must come before the {hf.RECORD_TYPES[kind_order]} records",
                )
            kind_order = order
            if kind != "revision":
                for key in ("revision", "end_revision"):
                    referenced = record.get(key)
                    if referenced is not None and not 1 <= referenced <= last_revision:
                        raise invalid_field(
                            f"records[{index}].{key}", f"revision {referenced} has no earlier revision record"
                        )
            if kind == "revision":
                if record["revision"] != last_revision + 1:
                    raise invalid_field(f"records[{index}].revision", f"expected revision {last_revision + 1}")
                last_revision = record["revision"]
                last_time = max(last_time, record["time"])
                revisions.append({k: record[k] for k in ("revision", "time", "principal", "summary")})
            elif kind == "dataset_version":
                versions.append(_imported_version(index, record))
                change_counts[record["revision"]] = change_counts.get(record["revision"], 0) + 1
                if record["deleted"]:
                    change_counts[record["end_revision"]] = change_counts.get(record["end_revision"], 0) + 1
            elif kind == "edge":
                if (record["end_time"] is None) != (record["end_revision"] is None):
                    raise invalid_field(
                        f"records[{index}].end_time", "an ended edge needs both end_time and end_revision"
                    )
                edges.append(
                    {
                        k: record[k]
                        for k in (
                            "input",
                            "output",
                            "job",
                            "transform",
                            "run_id",
                            "record_time",
                            "end_time",
                            "revision",
                            "end_revision",
                        )
                    }
                )
                for key in ("revision", "end_revision"):
                    if record[key] is not None:
                        change_counts[record[key]] = change_counts.get(record[key], 0) + 1
            else:
                runs.append(
                    {
                        k: record[k]
                        for k in ("job", "run_id", "run_region", "transform", "event_time", "record_time", "principal")
                    }
                )
                last_time = max(last_time, record["record_time"])
        try:
            if revisions:
                await consume(
                    tx, "UNWIND $rows AS row CREATE (r:Revision) SET r = row, r.change_count = 0", rows=revisions
                )
            if versions:
                await create_versions(tx, versions)
            if edges:
                await consume(
                    tx,
                    "UNWIND $rows AS row MERGE (o:Dataset {id: row.output}) MERGE (i:Dataset {id: row.input}) "
                    "CREATE (o)-[e:DERIVED_FROM]->(i) SET e = row",
                    rows=edges,
                )
            if runs:
                await consume(tx, "UNWIND $rows AS row CREATE (r:Run) SET r = row", rows=runs)
            if change_counts:
                await consume(
                    tx,
                    "UNWIND $counts AS c MATCH (r:Revision {revision: c[0]}) SET r.change_count = r.change_count + c[1]",
                    counts=[[r, n] for r, n in change_counts.items()],
                )
        except neo4j_errors.ConstraintError as exc:
            raise invalid_argument(f"history is inconsistent: {exc.message}") from exc
        return last_revision, last_time, kind_order

    async def finish(self, tx: AsyncManagedTransaction) -> None:
        await consume(
            tx,
            "MATCH (c:DomicileCatalog {key: $key}) SET c.revision = $revision, c.time = $time REMOVE c.importing",
            key=META_KEY,
            revision=self._last_revision,
            time=self._last_time,
        )


def _imported_version(index: int, record: dict[str, Any]) -> dict[str, Any]:
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
        raise invalid_field(f"records[{index}].valid_to", "an ended version needs both valid_to and end_revision")
    return {
        **version_properties(dataset),
        "revision": record["revision"],
        "valid_from": record["valid_from"],
        "valid_to": record["valid_to"],
        "end_revision": record["end_revision"],
        "deleted": record["deleted"],
        "create_time": record["create_time"],
        "updated_by": record["updated_by"],
    }
