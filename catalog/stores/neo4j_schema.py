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

Schema versions: 1 the first; 2 dataset ids in normal form (`normalize_dataset_ids`, run
once when a version 1 catalog is opened); 3 the access records' dataset ids moved with them
(`normalize_access_ids`; the access records are described in `catalog.stores.neo4j_access`).
"""

from __future__ import annotations

import json
import logging

import orjson
from neo4j import AsyncManagedTransaction

from domicile.catalog.dataset_ids import Renames, plan_record_renames, plan_renames
from domicile.catalog.stores.access_ids import renamed_accesses, renamed_anomaly, renamed_violation
from domicile.catalog.stores.neo4j_codec import canonical_json
from domicile.errors import failed_precondition

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

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


async def ensure_meta(tx: AsyncManagedTransaction) -> int:
    """Creates the meta node of a new catalog; returns the catalog's schema version and
    refuses a catalog of a newer one.

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
    return record["version"]


async def migrate(tx: AsyncManagedTransaction) -> None:
    """Bring a catalog of an older schema version to this one, in one write transaction
    (which locks the meta node: a concurrent opener waits, then finds nothing to do)."""
    result = await tx.run(
        "MATCH (c:DomicileCatalog {key: $key}) SET c.write_lock = true RETURN c.schema_version AS version",
        key=META_KEY,
    )
    version = (await result.single(strict=True))["version"]
    if version < 2:
        await normalize_dataset_ids(tx)
    if version < 3:
        await normalize_access_ids(tx)
    await (
        await tx.run(
            "MATCH (c:DomicileCatalog {key: $key}) SET c.schema_version = $version",
            key=META_KEY,
            version=SCHEMA_VERSION,
        )
    ).consume()


async def normalize_dataset_ids(tx: AsyncManagedTransaction) -> Renames:
    """Move every stored dataset id that follows the naming rules to its normal form
    (`catalog.dataset_ids`): on its `Dataset` node, its versions (property and content) and
    the `input` / `output` copies on its relationships. Ids that break the rules, and ids
    whose normal form another dataset has, stay as they are (logged)."""
    result = await tx.run("MATCH (d:Dataset) RETURN d.id AS id")
    plan = plan_renames([record["id"] async for record in result])
    renames = [{"old": old, "new": new} for old, new in plan.renames.items()]
    if renames:
        versions = await tx.run(
            "UNWIND $olds AS old MATCH (v:DatasetVersion {id: old}) RETURN v.id AS id, v.revision AS revision, "
            "v.body AS body",
            olds=list(plan.renames),
        )
        rows = []
        async for version in versions:
            content = json.loads(version["body"])
            content["id"] = plan.renames[version["id"]]
            rows.append(
                {
                    "old": version["id"],
                    "revision": version["revision"],
                    "new": content["id"],
                    "body": canonical_json(content),
                }
            )
        await (
            await tx.run(
                "UNWIND $rows AS row MATCH (v:DatasetVersion {id: row.old, revision: row.revision}) "
                "SET v.id = row.new, v.body = row.body",
                rows=rows,
            )
        ).consume()
        await (
            await tx.run(
                "UNWIND $renames AS r MATCH (d:Dataset {id: r.old}) SET d.id = r.new "
                "WITH d, r CALL (d, r) { MATCH (d)-[e:DERIVED_FROM]->() SET e.output = r.new } "
                "CALL (d, r) { MATCH ()-[e:DERIVED_FROM]->(d) SET e.input = r.new }",
                renames=renames,
            )
        ).consume()
        log.info("moved %d dataset id(s) to their normal form", len(renames))
    for old, normal in plan.collisions:
        log.warning(
            "dataset id %r stays as it is: its normal form %r names another dataset too (see docs/catalog.md)",
            old,
            normal,
        )
    return plan


async def normalize_access_ids(tx: AsyncManagedTransaction) -> dict[str, str]:
    """Move the dataset ids in the access records to where `normalize_dataset_ids` moved their
    datasets (`catalog.dataset_ids.plan_record_renames`): day rows under an old form merge
    into those under the normal form (counts summed, earliest first seen, latest last seen);
    run accesses, observed violations and anomalies name the normal form."""
    recorded = set(await (await tx.run("MATCH (a:AccessDay) RETURN DISTINCT a.dataset AS id")).value())
    runs = await (
        await tx.run("MATCH (r:AccessRun) RETURN r.job AS job, r.run_id AS run_id, r.accesses AS body")
    ).data()
    violations = await (await tx.run("MATCH (v:ObservedViolation) RETURN v.id AS id, v.body AS body")).data()
    anomalies = await (await tx.run("MATCH (a:AccessAnomaly) RETURN a.id AS id, a.body AS body")).data()
    recorded.update(dataset for run in runs for dataset, _, _ in orjson.loads(run["body"]))
    recorded.update(orjson.loads(violation["body"])["dataset_id"] for violation in violations)
    recorded.update(dataset for anomaly in anomalies for dataset in orjson.loads(anomaly["body"])["dataset_ids"])
    catalog = await (await tx.run("MATCH (d:Dataset) RETURN d.id AS id")).value()
    renames = plan_record_renames(recorded, catalog)
    if not renames:
        return renames
    await (
        await tx.run(
            "UNWIND $renames AS r MATCH (a:AccessDay {dataset: r.old}) "
            "MERGE (b:AccessDay {dataset: r.new, actor: a.actor, operation: a.operation, region: a.region, day: a.day}) "
            "ON CREATE SET b.count = a.count, b.first_seen = a.first_seen, b.last_seen = a.last_seen "
            "ON MATCH SET b.count = b.count + a.count,"
            " b.first_seen = CASE WHEN a.first_seen < b.first_seen THEN a.first_seen ELSE b.first_seen END,"
            " b.last_seen = CASE WHEN a.last_seen > b.last_seen THEN a.last_seen ELSE b.last_seen END "
            "DELETE a",
            renames=[{"old": old, "new": new} for old, new in renames.items()],
        )
    ).consume()
    moved_runs = [
        {"job": run["job"], "run_id": run["run_id"], "body": body}
        for run in runs
        if (body := renamed_accesses(run["body"], renames)) is not None
    ]
    await (
        await tx.run(
            "UNWIND $rows AS row MATCH (r:AccessRun {job: row.job, run_id: row.run_id}) SET r.accesses = row.body",
            rows=moved_runs,
        )
    ).consume()
    for label, documents, rename in (
        ("ObservedViolation", violations, renamed_violation),
        ("AccessAnomaly", anomalies, renamed_anomaly),
    ):
        moved = [
            {"id": document["id"], "body": body}
            for document in documents
            if (body := rename(document["body"], renames)) is not None
        ]
        await (
            await tx.run(f"UNWIND $rows AS row MATCH (n:{label} {{id: row.id}}) SET n.body = row.body", rows=moved)
        ).consume()
    log.info("moved the access records of %d dataset id(s) to their normal form", len(renames))
    return renames
