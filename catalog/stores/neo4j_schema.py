"""The graph model of the Neo4j GraphStore, and its schema set-up.

Times are integers, microseconds since the epoch, UTC (as in the history format).

- `(:DomicileCatalog {key: "catalog"})`: the one meta node. `revision` is the catalog
  revision, `time` the latest time the store handed out (so times never go back),
  `schema_version` the version of this model. Every write transaction locks this node
  first, which serialises writers: revisions are allocated one at a time, in commit order.
- `(:Revision {revision, time, principal, summary, change_count})`: one per write.
  `change_count` is the number of change-feed entries of that revision, so `changes_since`
  can cut its answer at a revision boundary without counting.
- `(:Dataset {id})`: identity node of every dataset id ever seen; lineage hangs off it.
- `(:DatasetVersion {id, revision, valid_from, valid_to, end_revision, deleted,
  create_time, updated_by, placeholder, body, name, owner, description, origins, locations,
  all_classifications})`: one per version; current while `valid_to IS NULL`. `body` is the
  history-format content (JSON); the rest are copies for filtering.
- `(output:Dataset)-[:DERIVED_FROM {input, output, job, transform, run_id, record_time,
  end_time, revision, end_revision}]->(input:Dataset)`: one relationship per edge version;
  current while `end_time IS NULL`. The ids are copied onto the relationship so edge lists
  sort and page without touching the nodes.
- `(:Run {job, run_id, run_region, transform, event_time, record_time, principal})`.
"""

from __future__ import annotations

from neo4j import AsyncManagedTransaction

from domicile.errors import failed_precondition

SCHEMA_VERSION = 1

META_KEY = "catalog"

# Constraints and indexes, idempotent. Neo4j runs schema commands in their own
# transactions, so they cannot share one with the meta node creation.
SCHEMA_STATEMENTS = (
    "CREATE CONSTRAINT domicile_catalog_key IF NOT EXISTS FOR (c:DomicileCatalog) REQUIRE c.key IS UNIQUE",
    "CREATE CONSTRAINT domicile_dataset_id IF NOT EXISTS FOR (d:Dataset) REQUIRE d.id IS UNIQUE",
    "CREATE CONSTRAINT domicile_version_key IF NOT EXISTS FOR (v:DatasetVersion) REQUIRE (v.id, v.revision) IS UNIQUE",
    "CREATE CONSTRAINT domicile_revision IF NOT EXISTS FOR (r:Revision) REQUIRE r.revision IS UNIQUE",
    "CREATE CONSTRAINT domicile_run_key IF NOT EXISTS FOR (r:Run) REQUIRE (r.job, r.run_id) IS UNIQUE",
    # Ordered listing and range scans by id (the composite constraint index leads with id
    # too, but a single-property index is what the planner uses for ORDER BY id).
    "CREATE INDEX domicile_version_id IF NOT EXISTS FOR (v:DatasetVersion) ON (v.id)",
    "CREATE INDEX domicile_version_revision IF NOT EXISTS FOR (v:DatasetVersion) ON (v.revision)",
    "CREATE INDEX domicile_version_end_revision IF NOT EXISTS FOR (v:DatasetVersion) ON (v.end_revision)",
    "CREATE INDEX domicile_edge_revision IF NOT EXISTS FOR ()-[e:DERIVED_FROM]-() ON (e.revision)",
    "CREATE INDEX domicile_edge_end_revision IF NOT EXISTS FOR ()-[e:DERIVED_FROM]-() ON (e.end_revision)",
    "CREATE INDEX domicile_run_record_time IF NOT EXISTS FOR (r:Run) ON (r.record_time)",
)


async def ensure_meta(tx: AsyncManagedTransaction) -> None:
    """Creates the meta node of a new catalog; refuses a catalog of a newer schema version.

    MERGE on the uniquely constrained key makes concurrent first opens safe.
    """
    result = await tx.run(
        "MERGE (c:DomicileCatalog {key: $key}) "
        "ON CREATE SET c.revision = 0, c.time = 0, c.schema_version = $version "
        "RETURN c.schema_version AS version",
        key=META_KEY,
        version=SCHEMA_VERSION,
    )
    record = await result.single(strict=True)
    if record["version"] > SCHEMA_VERSION:
        raise failed_precondition(
            f"the Neo4j catalog has schema version {record['version']}, newer than this Domicile "
            f"understands ({SCHEMA_VERSION}); upgrade Domicile",
            reason="SCHEMA_TOO_NEW",
        )
