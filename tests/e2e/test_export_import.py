"""`domicile export` / `domicile import`: a catalog with history moves SQLite → Neo4j → SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from domicile.catalog.model import DatasetFilter, Direction, EdgeKey, PageRequest, Run
from domicile.catalog.stores import open_store
from domicile.cli.main import cli
from domicile.demo import load_demo_catalog


async def invoke(*args: str):
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == 0, result.output
    return result


async def build_catalog_with_history(uri: str):
    """The demo catalog plus updates, a delete and an ended edge; returns probe instants."""
    store = await open_store(uri)
    try:
        await load_demo_catalog(store)
        before = await store.get_dataset("s3://bank-eu-lake/customers")
        updated = await store.upsert_dataset(
            before.__class__.create(
                before.id, name="renamed", classifications=["PII"], origins=["DE"], locations=["aws:eu-west-1"]
            ),
            principal="alice",
        )
        await store.end_edges(
            [
                EdgeKey(
                    "s3://bank-in-lake/card-payments",
                    "s3://bank-global-analytics/payment-volumes-by-country",
                    "airflow-in/payment_volumes",
                )
            ],
            principal="bob",
        )
        await store.delete_dataset("bigquery://bank-marketing/eu.customer_segments", principal="carol")
        await store.record_lineage(
            Run("late-job", "r-late", "aws:eu-west-1"),
            [EdgeKey("s3://bank-eu-lake/customers", "s3://new/placeholder", "late-job")],
        )
        return [before.update_time, updated.update_time, updated.update_time + timedelta(seconds=3600)]
    finally:
        await store.close()


async def snapshot(uri: str, instants) -> list:
    """Everything observable at each instant: datasets and upstream/downstream traversals."""
    store = await open_store(uri) if isinstance(uri, str) else uri
    try:
        views = []
        for at in instants:
            page = await store.list_datasets(DatasetFilter(), PageRequest(size=1000), as_of=at)
            datasets = [
                (d.id, d.name, d.classifications, d.locations, d.revision, d.placeholder, d.updated_by)
                for d in page.items
            ]
            walks = []
            for d in page.items:
                t = await store.traverse(d.id, Direction.BOTH, max_depth=10, as_of=at)
                walks.append(sorted((n.dataset_id, n.depth) for n in t.nodes))
            views.append((datasets, walks))
        views.append(await store.revision())
        return views
    finally:
        if isinstance(uri, str):
            await store.close()


@pytest.mark.neo4j
async def test_round_trip_sqlite_neo4j_sqlite(tmp_path, neo4j_uri):
    from tests.neo4j_plugin import open_clean_neo4j_store

    source = f"sqlite:///{tmp_path / 'source.db'}"
    instants = await build_catalog_with_history(source)
    await invoke("export", "--store", source, "-O", str(tmp_path / "one.jsonl"))

    neo4j = await open_clean_neo4j_store(neo4j_uri)
    await neo4j.close()
    await invoke("import", str(tmp_path / "one.jsonl"), "--store", neo4j_uri)
    await invoke("export", "--store", neo4j_uri, "-O", str(tmp_path / "two.jsonl"))

    back = f"sqlite:///{tmp_path / 'back.db'}"
    await invoke("import", str(tmp_path / "two.jsonl"), "--store", back)
    await invoke("export", "--store", back, "-O", str(tmp_path / "three.jsonl"))

    assert (
        (tmp_path / "one.jsonl").read_text()
        == (tmp_path / "two.jsonl").read_text()
        == (tmp_path / "three.jsonl").read_text()
    )
    expected = await snapshot(source, instants)
    assert await snapshot(neo4j_uri, instants) == expected
    assert await snapshot(back, instants) == expected


async def test_import_refuses_a_non_empty_store(tmp_path):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    await build_catalog_with_history(source)
    await invoke("export", "--store", source, "-O", str(tmp_path / "one.jsonl"))
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["import", str(tmp_path / "one.jsonl"), "--store", source]
    )
    assert result.exit_code == 1 and "empty" in result.output


async def test_import_rejects_a_malformed_file_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "header", "format": "domicile-history", "version": 1}\n{"type": "revision"\n')
    target = f"sqlite:///{tmp_path / 'target.db'}"
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["import", str(bad), "--store", target])
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output
    store = await open_store(target)
    try:
        assert await store.revision() == 0
    finally:
        await store.close()


async def test_the_counts_are_json_under_json(tmp_path):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    await build_catalog_with_history(source)
    exported = await invoke("--json", "export", "--store", source, "-O", str(tmp_path / "one.jsonl"))
    count = json.loads(exported.stderr)["exported"]
    assert count == len((tmp_path / "one.jsonl").read_text().splitlines()) and exported.stdout == ""
    imported = await invoke(
        "import", str(tmp_path / "one.jsonl"), "--store", f"sqlite:///{tmp_path / 't.db'}", "--json"
    )
    assert json.loads(imported.stderr) == {"imported": count}
