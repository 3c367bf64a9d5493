"""SQLite-only behaviour of the GraphStore backend: files, schema, permissions, tokens.

Shared behaviour is in tests/contract (run against every backend); this covers what only an
embedded file store has. Permission tests run their store in a subprocess as an unprivileged
user when the suite runs as root (root ignores file modes).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domicile.catalog.model import (
    Dataset,
    DatasetFilter,
    Direction,
    EdgeKey,
    PageRequest,
    Run,
    TraversalLimits,
    to_micros,
)
from domicile.catalog.stores import history_format as hf
from domicile.catalog.stores import open_store
from domicile.catalog.stores import sqlite as sqlite_store
from domicile.catalog.stores.sqlite import SQLiteGraphStore, path_from_uri
from domicile.catalog.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, migrate, read_schema_version
from domicile.errors import DomicileError, ErrorCode

NOBODY = 65534


def uri(path: Path) -> str:
    return f"sqlite:///{path}"


async def make_store(path: Path, *datasets: str) -> None:
    store = await SQLiteGraphStore.open(uri(path))
    for dataset_id in datasets:
        await store.upsert_dataset(Dataset.create(dataset_id))
    await store.close()


def test_uri_forms():
    assert path_from_uri("sqlite:///relative/dir/catalog.db") == Path("relative/dir/catalog.db")
    assert path_from_uri("sqlite:////var/lib/domicile/catalog.db") == Path("/var/lib/domicile/catalog.db")
    assert path_from_uri("sqlite:///odd dir/#1/100%?.db") == Path("odd dir/#1/100%?.db")
    for bad in ("sqlite://host/x.db", "sqlite:///", "bolt://localhost:7687", "catalog.db"):
        with pytest.raises(DomicileError) as error:
            path_from_uri(bad)
        assert error.value.code is ErrorCode.INVALID_ARGUMENT


async def test_open_creates_parent_directories_for_relative_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = await open_store("sqlite:///nested/rel/catalog.db")
    await relative.upsert_dataset(Dataset.create("s3://x"))
    await relative.close()
    assert (tmp_path / "nested/rel/catalog.db").is_file()

    absolute = await open_store(f"sqlite:///{tmp_path}/deep/abs/catalog.db")
    assert await absolute.revision() == 0
    await absolute.close()
    assert (tmp_path / "deep/abs/catalog.db").is_file()

    odd = await open_store(f"sqlite:///{tmp_path}/odd dir #1/100%?.db")
    await odd.upsert_dataset(Dataset.create("s3://y"))
    assert (await odd.get_dataset("s3://y")).revision == 1  # read through the reader connection
    await odd.close()
    assert (tmp_path / "odd dir #1/100%?.db").is_file()


async def test_new_database_is_at_the_current_schema_version_in_wal_mode(tmp_path):
    path = tmp_path / "c.db"
    await make_store(path, "s3://a")
    with sqlite3.connect(path) as conn:
        assert read_schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM revisions").fetchone()[0] == 1


async def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path):
    path = tmp_path / "c.db"
    await make_store(path, "s3://a", "s3://b")
    store = await SQLiteGraphStore.open(uri(path))
    assert await store.revision() == 2
    assert (await store.get_dataset("s3://b")).revision == 2
    await store.close()


def test_migrations_apply_in_order_each_in_one_transaction(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == (0, SCHEMA_VERSION)

    extra = "CREATE TABLE extra (x INTEGER);\nINSERT INTO extra (x) VALUES (42);"
    assert migrate(conn, [*MIGRATIONS, extra]) == (SCHEMA_VERSION, SCHEMA_VERSION + 1)
    assert conn.execute("SELECT x FROM extra").fetchall() == [(42,)]

    broken = "CREATE TABLE half (x INTEGER);\nINSERT INTO missing_table VALUES (1);"
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, [*MIGRATIONS, extra, broken])
    assert read_schema_version(conn) == SCHEMA_VERSION + 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    await make_store(path, "s3://a")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))

    with pytest.raises(DomicileError) as error:
        await SQLiteGraphStore.open(uri(path))
    assert error.value.code is ErrorCode.FAILED_PRECONDITION
    assert error.value.reason == "SCHEMA_TOO_NEW"
    assert str(path) in error.value.message


@pytest.mark.parametrize(
    "content", [b"this is not a database at all\n" * 200, os.urandom(8192)], ids=["text", "random"]
)
async def test_corrupt_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "corrupt.db"
    path.write_bytes(content)
    with pytest.raises(DomicileError) as error:
        await SQLiteGraphStore.open(uri(path))
    assert error.value.code is ErrorCode.FAILED_PRECONDITION
    assert error.value.reason == "STORE_CORRUPT"
    assert str(path) in error.value.message
    assert path.read_bytes() == content  # left untouched


async def test_an_empty_file_is_refused_unless_init_is_given(tmp_path):
    path = tmp_path / "catalog.db"
    path.write_bytes(b"")  # what a truncation, or a crash while the file was created, leaves
    with pytest.raises(DomicileError) as error:
        await SQLiteGraphStore.open(uri(path))
    assert error.value.reason == "CATALOG_FILE_EMPTY" and "--init" in error.value.message
    assert path.read_bytes() == b""
    store = await SQLiteGraphStore.open(uri(path), init=True)
    try:
        assert await store.revision() == 0
    finally:
        await store.close()
    for missing_or_initialised in (path, tmp_path / "new.db"):  # opens without init
        store = await SQLiteGraphStore.open(uri(missing_or_initialised))
        await store.close()


async def test_directory_in_place_of_the_file_is_refused(tmp_path):
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(DomicileError) as error:
        await SQLiteGraphStore.open(uri(tmp_path / "dir.db"))
    assert error.value.code is ErrorCode.FAILED_PRECONDITION
    assert "dir.db" in error.value.message


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="domicile-sqlite-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def run_unprivileged(script: str, db: Path) -> dict:
    """Runs `script` (which defines `async def main(uri) -> dict`) against `db` as a user that
    file permissions apply to; returns main's result."""
    program = (
        textwrap.dedent(
            """
        import asyncio, json, os, sys
        from domicile.catalog.model import Dataset
        from domicile.catalog.stores.sqlite import SQLiteGraphStore
        from domicile.errors import DomicileError
        """
        )
        + textwrap.dedent(script)
        + textwrap.dedent(
            f"""
        if os.geteuid() == 0:
            os.setgid({NOBODY})
            os.setuid({NOBODY})
        print(json.dumps(asyncio.run(main(sys.argv[1]))))
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", program, uri(db)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_read_only_file_serves_reads_and_refuses_writes(shared_dir):
    db = shared_dir / "ro.db"
    await make_store(db, "s3://a")
    db.chmod(0o444)

    result = run_unprivileged(
        """
        async def main(uri):
            store = await SQLiteGraphStore.open(uri)
            out = {"read_only": store.read_only, "found": (await store.get_dataset("s3://a")) is not None}
            try:
                await store.upsert_dataset(Dataset.create("s3://b"))
                out["write"] = "accepted"
            except DomicileError as e:
                out["write"] = [e.code.value, e.reason, e.message]
            out["revision"] = await store.revision()
            await store.close()
            return out
        """,
        db,
    )

    assert result["read_only"] and result["found"]
    code, reason, message = result["write"]
    assert (code, reason) == ("FAILED_PRECONDITION", "STORE_READ_ONLY")
    assert str(db) in message
    assert result["revision"] == 1


async def test_unreadable_file_is_unavailable_naming_the_path(shared_dir):
    db = shared_dir / "secret.db"
    await make_store(db, "s3://a")
    db.chmod(0o000)

    result = run_unprivileged(
        """
        async def main(uri):
            try:
                await SQLiteGraphStore.open(uri)
                return {"opened": True}
            except DomicileError as e:
                return {"error": [e.code.value, e.message]}
        """,
        db,
    )

    code, message = result["error"]
    assert code == "UNAVAILABLE"
    assert str(db) in message


async def test_page_token_is_bound_to_its_filter_and_as_of(tmp_path):
    store = await SQLiteGraphStore.open(uri(tmp_path / "t.db"))
    for i in range(5):
        await store.upsert_dataset(Dataset.create(f"s3://d/{i}", owner="crm"))
    first = await store.list_datasets(DatasetFilter(owner="crm"), PageRequest(2))

    with pytest.raises(DomicileError) as other_filter:
        await store.list_datasets(DatasetFilter(owner="bi"), PageRequest(2, first.next_token))
    assert [v.field for v in other_filter.value.violations] == ["page_token"]

    with pytest.raises(DomicileError) as other_time:
        await store.list_datasets(
            DatasetFilter(owner="crm"),
            PageRequest(2, first.next_token),
            as_of=datetime(2020, 1, 1, tzinfo=UTC),
        )
    assert [v.field for v in other_time.value.violations] == ["page_token"]

    edges_token = (await store.list_edges(PageRequest(1))).next_token
    assert edges_token == ""
    await store.close()


async def test_end_edges_at_is_clamped_into_the_edge_interval(tmp_path):
    now = [datetime(2026, 3, 1, tzinfo=UTC)]
    store = await SQLiteGraphStore.open(uri(tmp_path / "e.db"), clock=lambda: now[0])
    await store.record_lineage(Run("etl", "r1"), [EdgeKey("a", "b", "etl"), EdgeKey("b", "c", "etl")])
    recorded = now[0]
    now[0] += timedelta(hours=1)

    await store.end_edges([EdgeKey("a", "b", "etl")], at=recorded - timedelta(days=1))
    await store.end_edges([EdgeKey("b", "c", "etl")], at=now[0] + timedelta(days=1))

    ended = {(c.edge.input, c.edge.end_time) for c in await store.changes_since(1)}
    assert ended == {("a", recorded), ("b", now[0] + timedelta(microseconds=1))}
    await store.close()


async def test_two_store_objects_on_one_file_share_one_revision_sequence(tmp_path):
    first = await SQLiteGraphStore.open(uri(tmp_path / "shared.db"))
    second = await SQLiteGraphStore.open(uri(tmp_path / "shared.db"))
    a = await first.upsert_dataset(Dataset.create("s3://a"))
    b = await second.upsert_dataset(Dataset.create("s3://b"))
    assert (a.revision, b.revision) == (1, 2)
    assert b.update_time > a.update_time
    assert await first.get_dataset("s3://b") == b
    await first.close()
    await second.close()


async def test_classification_filter_plans_agree(tmp_path, monkeypatch):
    """Rare labels are looked up through the label index, common ones checked per dataset;
    both plans must give the same pages."""
    store = await SQLiteGraphStore.open(uri(tmp_path / "labels.db"))
    for i in range(12):
        labels = ["PII.CONTACT"] if i % 3 == 0 else (["PIIX"] if i % 3 == 1 else [])
        await store.upsert_dataset(Dataset.create(f"s3://d/{i:02d}", classifications=labels))

    async def pages() -> list[list[str]]:
        result, token = [], ""
        while True:
            page = await store.list_datasets(DatasetFilter(classification="PII"), PageRequest(2, token))
            result.append([d.id for d in page.items])
            if not (token := page.next_token):
                return result

    by_label_index = await pages()
    monkeypatch.setattr(sqlite_store, "_SELECTIVE_LABEL_ROWS", 1)
    per_dataset = await pages()
    assert by_label_index == per_dataset == [["s3://d/00", "s3://d/03"], ["s3://d/06", "s3://d/09"]]
    await store.close()


async def records_of(*records):
    for record in records:
        yield record


async def test_import_of_an_inconsistent_history_is_invalid_and_loads_nothing(tmp_path):
    store = await SQLiteGraphStore.open(uri(tmp_path / "import.db"))
    header = {"type": "header", "format": "domicile-history", "version": 1}
    revision = {"type": "revision", "revision": 1, "time": 10, "principal": "", "summary": ""}
    edge = {
        "type": "edge",
        "input": "a",
        "output": "b",
        "job": "j",
        "transform": "",
        "run_id": "r",
        "record_time": 10,
        "end_time": None,
        "revision": 2,  # no revision record 2
        "end_revision": None,
    }
    with pytest.raises(DomicileError) as dangling:
        await store.import_history(records_of(header, revision, edge))
    assert dangling.value.code is ErrorCode.INVALID_ARGUMENT
    assert dangling.value.violations[0].field == "records[2].revision"

    with pytest.raises(DomicileError) as gap:
        await store.import_history(records_of(header, {**revision, "revision": 3}))
    assert gap.value.violations[0].field == "records[1].revision"

    with pytest.raises(DomicileError) as wrong_type:
        await store.import_history(records_of(header, {**revision, "time": True}))
    assert wrong_type.value.violations[0].field == "records[1].time"

    version = {
        "type": "dataset_version",
        "revision": 1,
        "valid_from": 10,
        "valid_to": None,
        "end_revision": None,
        "deleted": False,
        "create_time": 10,
        "updated_by": "",
        "dataset": hf.dataset_content(Dataset.create("a")),
    }
    with pytest.raises(DomicileError) as two_current:
        await store.import_history(records_of(header, revision, version, version))
    assert two_current.value.code is ErrorCode.INVALID_ARGUMENT
    assert "two current versions" in two_current.value.message

    assert await store.revision() == 0
    assert [r async for r in store.export_history()] == [header]
    # The failed imports left the store empty, so a good one still loads.
    assert await store.import_history(records_of(header, revision)) == 2
    assert await store.revision() == 1
    await store.close()


async def test_traversal_stops_at_the_timeout_with_what_it_has(tmp_path, monkeypatch):
    store = await SQLiteGraphStore.open(uri(tmp_path / "slow.db"))
    await store.record_lineage(Run("etl", "r1"), [EdgeKey("a", "b", "etl"), EdgeKey("b", "c", "etl")])

    class SteppingClock:
        """Each reading is one second after the previous one."""

        def __init__(self) -> None:
            self.now = 0.0

        def monotonic(self) -> float:
            self.now += 1.0
            return self.now

    monkeypatch.setattr(sqlite_store, "time", SteppingClock())
    result = await store.traverse("a", Direction.DOWNSTREAM, max_depth=10, limits=TraversalLimits(timeout_seconds=1.5))

    assert [(n.dataset_id, n.depth) for n in result.nodes] == [("a", 0), ("b", 1)]
    assert (result.complete, result.incomplete_reason) == (False, "timeout")
    await store.close()


async def test_a_database_of_schema_1_is_migrated_to_the_access_tables(tmp_path):
    from domicile.access.model import AccessBatch, AccessCount, AccessOperation, day_of

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])  # the schema of the release before access records
    conn.close()
    store = await SQLiteGraphStore.open(uri(path))
    await store.upsert_dataset(Dataset.create("s3://a", classifications=["PII"]))
    await store.close()
    store = await SQLiteGraphStore.open(uri(path))
    try:
        assert (await store.get_dataset("s3://a")).classifications == ("PII",)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        count = AccessCount("job", "s3://a", AccessOperation.READ, "r", 1, now, now, day_of(now))
        assert await store.access.write_batch(AccessBatch("b1", now, (count,)))
        assert [t.total for t in await store.access.dataset_access("s3://a")] == [1]
    finally:
        await store.close()


async def test_a_database_of_schema_3_gets_access_totals_from_its_day_rows(tmp_path):
    from domicile.access.model import AccessBatch, AccessCount, AccessOperation, day_of

    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:3])  # the schema of the release with day rows only
    t0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
    t1 = t0 + timedelta(days=1)
    rows = [
        ("s3://a", "job-1", "read", "r1", day_of(t0), 2, t0, t0 + timedelta(hours=1)),
        ("s3://a", "job-1", "read", "r1", day_of(t1), 3, t1, t1 + timedelta(hours=2)),
        ("s3://a", "job-2", "write", "r2", day_of(t0), 1, t0, t0),
        ("s3://b", "job-1", "read", "r1", day_of(t0), 4, t0, t0),
    ]
    conn.executemany(
        "INSERT INTO access_days (dataset, actor, operation, region, day, count, first_seen, last_seen)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(d, a, o, r, to_micros(day), n, to_micros(f), to_micros(last)) for d, a, o, r, day, n, f, last in rows],
    )
    conn.close()
    store = await SQLiteGraphStore.open(uri(path))
    try:
        totals = await store.access.dataset_access("s3://a")
        assert list(totals) == list(await store.access.dataset_access("s3://a", since=t0 - timedelta(days=1)))
        assert [(t.actor, t.operation, t.total, t.first_seen, t.last_seen) for t in totals] == [
            ("job-1", AccessOperation.READ, 5, t0, t1 + timedelta(hours=2)),
            ("job-2", AccessOperation.WRITE, 1, t0, t0),
        ]
        # Writes after the migration keep both in step.
        later = t0 + timedelta(days=2)
        count = AccessCount("job-1", "s3://a", AccessOperation.READ, "r1", 1, later, later, day_of(later))
        assert await store.access.write_batch(AccessBatch("b1", later, (count,)))
        totals = await store.access.dataset_access("s3://a")
        assert list(totals) == list(await store.access.dataset_access("s3://a", since=t0 - timedelta(days=1)))
        assert (totals[0].total, totals[0].last_seen) == (6, later)
    finally:
        await store.close()
