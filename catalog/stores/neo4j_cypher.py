"""Cypher building blocks shared by the Neo4j store's transaction functions.

Every function takes the managed transaction it runs in; none commits or retries (the
store's `execute_read` / `execute_write` does that). Parameters go as one map, so a query
parameter may be called anything, `query` included.
"""

from __future__ import annotations

import functools
from typing import Any

from neo4j import AsyncManagedTransaction, Record

from domicile.catalog.stores.neo4j_schema import META_KEY

# Rows deleted per transaction when a catalog is cleared.
CLEAR_BATCH = 10_000


async def records(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> list[dict[str, Any]]:
    """Every record of the query, as dicts."""
    result = await tx.run(cypher, params)
    return await result.data()


async def values(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> list[Any]:
    """The first column of every record."""
    result = await tx.run(cypher, params)
    return await result.value()


async def single(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> dict[str, Any]:
    """The one record the query returns (an error if it returns none or several)."""
    result = await tx.run(cypher, params)
    record = await result.single(strict=True)
    return record.data()


async def single_or_none(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> dict[str, Any] | None:
    """The record the query returns, or None."""
    result = await tx.run(cypher, params)
    record = await result.single()
    return None if record is None else record.data()


async def raw_single(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> Record:
    """The one record the query returns (an error if none or several), as the driver gives it.

    Unlike `single` it skips `Record.data()`, which walks every nested value: a query that
    returns large collected lists of plain values reads them at no extra cost.
    """
    result = await tx.run(cypher, params)
    return await result.single(strict=True)


async def raw_single_or_none(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> Record | None:
    """The record the query returns, or None; as `raw_single`, without `Record.data()`."""
    result = await tx.run(cypher, params)
    return await result.single()


async def consume(tx: AsyncManagedTransaction, cypher: str, **params: Any) -> None:
    """Runs a query for its effects."""
    await (await tx.run(cypher, params)).consume()


def version_visible(alias: str, at: int | None) -> str:
    """Cypher condition: the version `alias` is the one visible now (at is None) or at `$at`."""
    if at is None:
        return f"{alias}.valid_to IS NULL"
    return f"{alias}.valid_from <= $at AND ({alias}.valid_to IS NULL OR {alias}.valid_to > $at)"


def edge_visible(alias: str, at: int | None) -> str:
    """Cypher condition: the edge `alias` is current (at is None) or was true at `$at`."""
    if at is None:
        return f"{alias}.end_time IS NULL"
    return f"{alias}.record_time <= $at AND ({alias}.end_time IS NULL OR {alias}.end_time > $at)"


def new_version(
    props: dict[str, Any], *, revision: int, valid_from: int, create_time: int, updated_by: str
) -> dict[str, Any]:
    """All properties of a new, current `DatasetVersion` with content `props`."""
    return {
        **props,
        "revision": revision,
        "valid_from": valid_from,
        "valid_to": None,
        "end_revision": None,
        "deleted": False,
        "create_time": create_time,
        "updated_by": updated_by,
    }


async def create_versions(tx: AsyncManagedTransaction, versions: list[dict[str, Any]]) -> None:
    """Creates `DatasetVersion` nodes (full property maps) and any missing `Dataset` nodes."""
    await consume(
        tx,
        "UNWIND $versions AS version MERGE (:Dataset {id: version.id}) CREATE (v:DatasetVersion) SET v = version",
        versions=versions,
    )


async def delete_catalog_batch(tx: AsyncManagedTransaction) -> int:
    """Delete up to CLEAR_BATCH catalog nodes (with their relationships); returns how many.

    Call until it returns 0, then `reset_meta`: batches keep a large catalog from needing
    one huge transaction.
    """
    record = await single(
        tx,
        "MATCH (n) WHERE n:Dataset OR n:DatasetVersion OR n:Revision OR n:Run "
        "WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS deleted",
        limit=CLEAR_BATCH,
    )
    return record["deleted"]


async def reset_meta(tx: AsyncManagedTransaction) -> None:
    """The meta node of an empty catalog (schema version kept)."""
    await consume(
        tx,
        "MATCH (c:DomicileCatalog {key: $key}) SET c.revision = 0, c.time = 0 REMOVE c.importing, c.write_lock",
        key=META_KEY,
    )


# Per direction: the pattern from a frontier node `n` to a neighbour `m`, and the order in
# which a level's new neighbours are taken (0 before 1) when `max_nodes` cuts the answer:
# for BOTH, a node reached upstream counts before one reached only downstream.
_TRAVERSAL_PATTERNS = {
    # Upstream goes from an output to its inputs, downstream from an input to its outputs.
    "upstream": ("(n)-[e:DERIVED_FROM]->(m)", "0"),
    "downstream": ("(n)<-[e:DERIVED_FROM]-(m)", "0"),
    "both": ("(n)-[e:DERIVED_FROM]-(m)", "CASE WHEN startNode(e) = n THEN 0 ELSE 1 END"),
}


@functools.lru_cache(maxsize=256)
def traversal_chunk(direction: str, historical: bool, levels: int, first: bool, check_deeper: bool) -> str:
    """Cypher for `levels` breadth-first levels of a lineage traversal in one query.

    Parameters: `$visited` (ids of every node found so far), `$frontier` (ids of the nodes
    of the deepest level), `$room` (how many more nodes the answer may take), `$at`; with
    `first`, `$start` must have a visible version (else the query returns no row). Each
    level walks the visible edges of the frontier; its new nodes (not visited before) are
    taken in order (pattern rank, id) while room remains; a level that leaves new nodes out
    sets `cut` and ends the walk. With `check_deeper`, `deeper` tells whether a node of the
    last level has a neighbour outside the answer.

    One row: `levels` (per level, the ids of its new nodes; empty once the walk ends),
    `walked` (per level, per neighbour, [input, output, job, transform, run_id,
    record_time, end_time] of the walked edges), `cut`, `deeper`, and `placeholders` (the
    ids, among the start node (with `first`) and the new nodes, whose visible version is
    a placeholder).
    """
    pattern, rank = _TRAVERSAL_PATTERNS[direction]
    # Only selects the form of the visibility conditions; the instant itself is `$at`.
    at = 0 if historical else None
    visible_edge = edge_visible("e", at)
    parts: list[str] = []
    if first:
        parts.append(f"MATCH (sv:DatasetVersion {{id: $start}}) WHERE {version_visible('sv', at)} WITH sv LIMIT 1")
    # The node lists stay node values inside the query: membership tests compare node ids
    # rather than reading properties.
    parts.append(
        "CALL { UNWIND $visited AS id MATCH (x:Dataset {id: id}) RETURN collect(x) AS visited } "
        "CALL { UNWIND $frontier AS id MATCH (x:Dataset {id: id}) RETURN collect(x) AS frontier } "
        f"WITH visited, frontier, {'frontier' if first else '[]'} AS added, [] AS levels, [] AS walked, "
        "false AS cut, $room AS room"
    )
    for _ in range(levels):
        # Aggregating without grouping keys always yields one row, so an empty frontier
        # gives an empty level rather than ending the query. `CALL { WITH ... }` (not the
        # newer `CALL (...) { }`) runs on every Neo4j 5 server.
        parts.append(
            "CALL { WITH frontier, visited "
            f"UNWIND frontier AS n MATCH {pattern} WHERE {visible_edge} "
            f"WITH m, NOT m IN visited AS fresh, min({rank}) AS rank, "
            "collect([e.input, e.output, e.job, e.transform, e.run_id, e.record_time, e.end_time]) AS edges "
            "ORDER BY rank, m.id "
            "RETURN collect(edges) AS level_edges, collect(CASE WHEN fresh THEN m END) AS fresh } "
            "WITH visited, added, levels, walked + [level_edges] AS walked, fresh[0..room] AS taken, "
            "cut OR size(fresh) > room AS cut, room "
            "WITH visited + taken AS visited, added + taken AS added, levels + [[x IN taken | x.id]] AS levels, "
            "walked, cut, room - size(taken) AS room, CASE WHEN cut THEN [] ELSE taken END AS frontier"
        )
    if check_deeper:
        parts.append(
            "CALL { WITH frontier, visited "
            f"UNWIND frontier AS n MATCH {pattern} WHERE {visible_edge} AND NOT m IN visited "
            "WITH 1 AS found LIMIT 1 RETURN count(found) > 0 AS deeper }"
        )
    else:
        parts.append("WITH *, false AS deeper")
    parts.append(
        "RETURN levels, walked, cut, deeper, [x IN added WHERE EXISTS { MATCH (v:DatasetVersion {id: x.id}) "
        f"WHERE {version_visible('v', at)} AND v.placeholder }} | x.id] AS placeholders"
    )
    return "\n".join(parts)
