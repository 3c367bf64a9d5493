"""Cypher building blocks shared by the Neo4j store's transaction functions.

Every function takes the managed transaction it runs in; none commits or retries (the
store's `execute_read` / `execute_write` does that). Parameters go as one map, so a query
parameter may be called anything, `query` included.
"""

from __future__ import annotations

from typing import Any

from neo4j import AsyncManagedTransaction

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


def new_version(props: dict[str, Any], *, revision: int, valid_from: int, create_time: int, updated_by: str) -> dict[str, Any]:
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
