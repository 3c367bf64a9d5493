"""Schema of the SQLite GraphStore and its migrations.

`MIGRATIONS[i]` takes a database from schema version i to i + 1 (a script, or a function of
the connection); each runs in one transaction together with the `schema_version` update, so
a crash mid-migration leaves the previous version intact. Append new migrations; never edit a
released one.

Tables (times are microseconds since the epoch, UTC):

- `nodes`: every dataset id ever seen, with a small integer key used everywhere else, so
  edges and indexes hold 8-byte keys instead of ids of up to 2 KiB.
- `dataset_versions`: one row per version of a dataset; current when `valid_to IS NULL`.
  Indexes are few on purpose: each one costs random page writes (WAL volume, fsync time)
  on bulk lineage ingestion, which creates placeholders and edges by the thousand.
  `body` is the JSON content (`history_format.dataset_content`); `owner`, `name`,
  `description` and `placeholder` are copied out of it for filtering.
- `version_labels` / `version_origins` / `version_locations`: per version, its labels (own
  and field labels), origins and regions, so list filters are index lookups.
- `edges`: one row per edge version; current when `end_time IS NULL`.
- `runs`, `revisions`: audit records. `changes`: the change feed, (revision, kind, ref)
  where ref is a `dataset_versions.version` or an `edges.edge` depending on `kind`.
- `store_meta`: `last_time`, the latest time the store handed out, so times never go back.
- Access records (schema 2, `catalog.stores.sqlite_access`; not catalog history):
  `access_days` (aggregates per actor, dataset, operation, region and UTC day),
  `access_totals` (schema 4: the same summed over all days, kept by the same writes, so a
  read without a time range needs no grouping),
  `access_runs` (raw run records, pruned after their retention), `observed_violations`,
  `access_anomalies`, `actor_baselines` and `access_batches` (flushes already applied).
  Schema 5 moved the dataset ids in them to where schema 3 moved their datasets
  (`normalize_access_ids`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from domicile.catalog.dataset_ids import Renames, plan_record_renames, plan_renames
from domicile.catalog.stores.access_ids import renamed_accesses, renamed_anomaly, renamed_violation

log = logging.getLogger(__name__)

# Change kinds as stored in `changes.kind`; the numeric order is the order within a revision.
KIND_DATASET_UPSERTED = 0
KIND_DATASET_DELETED = 1
KIND_EDGE_ENDED = 2
KIND_EDGE_ADDED = 3


def encode_content(content: dict[str, Any]) -> str:
    """A dataset version's `body`: canonical JSON, so equal content gives an equal string
    (used for no-op detection)."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalize_dataset_ids(conn: sqlite3.Connection) -> Renames:
    """Move every stored dataset id that follows the naming rules to its normal form
    (`catalog.dataset_ids`), in `nodes` and in the content of its versions, inside the
    caller's transaction. Ids that break the rules, and ids whose normal form another
    dataset has, stay as they are (logged)."""
    plan = plan_renames(dataset_id for (dataset_id,) in conn.execute("SELECT id FROM nodes"))
    for old, new in plan.renames.items():
        (node,) = conn.execute("SELECT node FROM nodes WHERE id = ?", (old,)).fetchone()
        conn.execute("UPDATE nodes SET id = ? WHERE node = ?", (new, node))
        versions = conn.execute("SELECT version, body FROM dataset_versions WHERE node = ?", (node,)).fetchall()
        for version, body in versions:
            content = json.loads(body)
            content["id"] = new
            conn.execute("UPDATE dataset_versions SET body = ? WHERE version = ?", (encode_content(content), version))
    for old, normal in plan.collisions:
        log.warning(
            "dataset id %r stays as it is: its normal form %r names another dataset too (see docs/catalog.md)",
            old,
            normal,
        )
    if plan.renames:
        log.info("moved %d dataset id(s) to their normal form", len(plan.renames))
    return plan


def normalize_access_ids(conn: sqlite3.Connection) -> dict[str, str]:
    """Move the dataset ids in the access records to where `normalize_dataset_ids` moved their
    datasets (`catalog.dataset_ids.plan_record_renames`), inside the caller's transaction:
    day and all-time rows under an old form merge into those under the normal form (counts
    summed, earliest first seen, latest last seen); run accesses, observed violations and
    anomalies name the normal form."""
    recorded = conn.execute(
        "SELECT dataset FROM access_totals UNION SELECT dataset FROM access_days"
        " UNION SELECT a.value ->> 0 FROM access_runs, json_each(access_runs.accesses) AS a"
        " UNION SELECT body ->> '$.dataset_id' FROM observed_violations"
        " UNION SELECT d.value FROM access_anomalies, json_each(access_anomalies.body, '$.dataset_ids') AS d"
    )
    renames = plan_record_renames(
        (dataset_id for (dataset_id,) in recorded),
        (dataset_id for (dataset_id,) in conn.execute("SELECT id FROM nodes")),
    )
    if not renames:
        return renames
    for table, key in (
        ("access_days", "dataset, actor, operation, region, day"),
        ("access_totals", "dataset, actor, operation, region"),
    ):
        conn.executemany(
            f"INSERT INTO {table} ({key}, count, first_seen, last_seen)"
            f" SELECT ?, {key.removeprefix('dataset, ')}, count, first_seen, last_seen FROM {table} WHERE dataset = ?"
            f" ON CONFLICT ({key}) DO UPDATE SET count = count + excluded.count,"
            " first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)",
            [(new, old) for old, new in renames.items()],
        )
        conn.executemany(f"DELETE FROM {table} WHERE dataset = ?", [(old,) for old in renames])
    olds = json.dumps(list(renames))
    runs = conn.execute(
        "SELECT job, run_id, accesses FROM access_runs WHERE EXISTS (SELECT 1 FROM json_each(accesses)"
        " WHERE value ->> 0 IN (SELECT value FROM json_each(?)))",
        (olds,),
    ).fetchall()
    conn.executemany(
        "UPDATE access_runs SET accesses = ? WHERE job = ? AND run_id = ?",
        [(renamed_accesses(accesses, renames), job, run_id) for job, run_id, accesses in runs],
    )
    violations = conn.execute(
        "SELECT id, body FROM observed_violations WHERE body ->> '$.dataset_id' IN (SELECT value FROM json_each(?))",
        (olds,),
    ).fetchall()
    conn.executemany(
        "UPDATE observed_violations SET body = ? WHERE id = ?",
        [(renamed_violation(body, renames), violation_id) for violation_id, body in violations],
    )
    anomalies = conn.execute(
        "SELECT id, body FROM access_anomalies WHERE EXISTS (SELECT 1 FROM json_each(body, '$.dataset_ids')"
        " WHERE value IN (SELECT value FROM json_each(?)))",
        (olds,),
    ).fetchall()
    conn.executemany(
        "UPDATE access_anomalies SET body = ? WHERE id = ?",
        [(renamed_anomaly(body, renames), anomaly_id) for anomaly_id, body in anomalies],
    )
    log.info("moved the access records of %d dataset id(s) to their normal form", len(renames))
    return renames


MIGRATIONS: list[str | Callable[[sqlite3.Connection], object]] = [
    # 0 -> 1: initial schema.
    """
    CREATE TABLE revisions (
        revision INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        principal TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE nodes (
        node INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE
    );
    CREATE TABLE dataset_versions (
        version INTEGER PRIMARY KEY,
        node INTEGER NOT NULL REFERENCES nodes(node),
        revision INTEGER NOT NULL REFERENCES revisions(revision),
        valid_from INTEGER NOT NULL,
        valid_to INTEGER,
        end_revision INTEGER REFERENCES revisions(revision),
        deleted INTEGER NOT NULL DEFAULT 0,
        placeholder INTEGER NOT NULL,
        create_time INTEGER NOT NULL,
        updated_by TEXT NOT NULL,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        body TEXT NOT NULL
    );
    -- Current versions (valid_to NULL) sort first under each dataset, so one index serves
    -- current reads (node = ? AND valid_to IS NULL) and as_of reads (the few versions of
    -- one node, filtered inside the index). At most one current version per dataset is kept
    -- by the single writer and checked after imports.
    CREATE INDEX dataset_versions_by_node ON dataset_versions(node, valid_to, valid_from);
    CREATE INDEX dataset_versions_owner ON dataset_versions(owner);
    CREATE TABLE version_labels (
        version INTEGER NOT NULL REFERENCES dataset_versions(version),
        label TEXT NOT NULL,
        PRIMARY KEY (version, label)
    ) WITHOUT ROWID;
    CREATE INDEX version_labels_label ON version_labels(label);
    CREATE TABLE version_origins (
        version INTEGER NOT NULL REFERENCES dataset_versions(version),
        origin TEXT NOT NULL,
        PRIMARY KEY (version, origin)
    ) WITHOUT ROWID;
    CREATE INDEX version_origins_origin ON version_origins(origin);
    CREATE TABLE version_locations (
        version INTEGER NOT NULL REFERENCES dataset_versions(version),
        region TEXT NOT NULL,
        PRIMARY KEY (version, region)
    ) WITHOUT ROWID;
    CREATE INDEX version_locations_region ON version_locations(region);
    CREATE TABLE edges (
        edge INTEGER PRIMARY KEY,
        input INTEGER NOT NULL REFERENCES nodes(node),
        output INTEGER NOT NULL REFERENCES nodes(node),
        job TEXT NOT NULL,
        transform TEXT NOT NULL,
        run_id TEXT NOT NULL,
        record_time INTEGER NOT NULL,
        end_time INTEGER,
        revision INTEGER NOT NULL REFERENCES revisions(revision),
        end_revision INTEGER REFERENCES revisions(revision)
    );
    -- Adjacency both ways. Current edges (end_time NULL) sort first under each node, so one
    -- index serves current walks (node = ? AND end_time IS NULL) and as_of walks (node = ?,
    -- filtered on the interval inside the index); both are covering. At most one current
    -- edge per (input, output, job) is kept by the single writer, not by a third index:
    -- every index costs random page writes on bulk lineage ingestion.
    CREATE INDEX edges_by_output ON edges(output, end_time, input, record_time);
    CREATE INDEX edges_by_input ON edges(input, end_time, output, record_time);
    CREATE TABLE runs (
        job TEXT NOT NULL,
        run_id TEXT NOT NULL,
        run_region TEXT NOT NULL,
        transform TEXT NOT NULL,
        event_time INTEGER,
        record_time INTEGER NOT NULL,
        principal TEXT NOT NULL,
        PRIMARY KEY (job, run_id)
    ) WITHOUT ROWID;
    CREATE TABLE changes (
        revision INTEGER NOT NULL REFERENCES revisions(revision),
        kind INTEGER NOT NULL,
        ref INTEGER NOT NULL,
        PRIMARY KEY (revision, kind, ref)
    ) WITHOUT ROWID;
    CREATE TABLE store_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO store_meta (key, value) VALUES ('last_time', 0);
    """,
    # 1 -> 2: access records. Times and days are microseconds since the epoch.
    """
    CREATE TABLE access_days (
        dataset TEXT NOT NULL,
        actor TEXT NOT NULL,
        operation TEXT NOT NULL,
        region TEXT NOT NULL,
        day INTEGER NOT NULL,
        count INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (dataset, actor, operation, region, day)
    ) WITHOUT ROWID;
    CREATE INDEX access_days_by_actor ON access_days(actor, day);
    CREATE TABLE access_runs (
        job TEXT NOT NULL,
        run_id TEXT NOT NULL,
        producer TEXT NOT NULL,
        principal TEXT NOT NULL,
        run_region TEXT NOT NULL,
        event_time INTEGER NOT NULL,
        last_event_time INTEGER NOT NULL,
        record_time INTEGER NOT NULL,
        accesses TEXT NOT NULL,
        PRIMARY KEY (job, run_id)
    ) WITHOUT ROWID;
    CREATE INDEX access_runs_by_job_time ON access_runs(job, event_time);
    CREATE INDEX access_runs_by_record_time ON access_runs(record_time);
    CREATE TABLE observed_violations (
        id TEXT PRIMARY KEY,
        event_time INTEGER NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX observed_violations_by_time ON observed_violations(event_time, id);
    CREATE TABLE access_anomalies (
        id TEXT PRIMARY KEY,
        detect_time INTEGER NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX access_anomalies_by_time ON access_anomalies(detect_time, id);
    CREATE TABLE actor_baselines (
        actor TEXT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (actor, dimension, value)
    ) WITHOUT ROWID;
    CREATE TABLE access_batches (
        batch_id TEXT PRIMARY KEY,
        time INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2 -> 3: dataset ids in normal form (catalog/dataset_ids.py).
    normalize_dataset_ids,
    # 3 -> 4: all-time access totals beside the day rows, from the day rows already kept.
    """
    CREATE TABLE access_totals (
        dataset TEXT NOT NULL,
        actor TEXT NOT NULL,
        operation TEXT NOT NULL,
        region TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (dataset, actor, operation, region)
    ) WITHOUT ROWID;
    INSERT INTO access_totals (dataset, actor, operation, region, count, first_seen, last_seen)
        SELECT dataset, actor, operation, region, sum(count), min(first_seen), max(last_seen)
        FROM access_days GROUP BY dataset, actor, operation, region;
    """,
    # 4 -> 5: access records follow their datasets' ids to normal form (3 moved only the
    # catalog's); run on every database, whichever release wrote its access records.
    normalize_access_ids,
]

SCHEMA_VERSION = len(MIGRATIONS)


def read_schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database behind `conn` (0 for a new, empty database)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(
    conn: sqlite3.Connection, migrations: list[str | Callable[[sqlite3.Connection], object]] = MIGRATIONS
) -> tuple[int, int]:
    """Applies the pending `migrations` to `conn` (autocommit mode); returns (from, to).

    The caller has checked that the database is not newer than `len(migrations)`. Each
    migration commits together with its version bump or not at all.
    """
    start = read_schema_version(conn)
    for index in range(start, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if read_schema_version(conn) > index:
                conn.execute("ROLLBACK")
                continue
            migration = migrations[index]
            if callable(migration):
                migration(conn)
            else:
                for statement in _statements(migration):
                    conn.execute(statement)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (index + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start, len(migrations)


def _statements(script: str) -> list[str]:
    """Splits a migration script into statements (executescript would commit implicitly)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
