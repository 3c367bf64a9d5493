"""`domicile lineage record|show|export|end` against a real server (SQLite store)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from domicile.cli.main import cli

pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@pytest.fixture
def run(server):
    runner = CliRunner()

    async def invoke(*args: str):
        return await asyncio.to_thread(
            runner.invoke, cli, ["--insecure", "--server", f"127.0.0.1:{server.port}", *args]
        )

    return invoke


async def ok(run, *args: str) -> str:
    result = await run(*args)
    assert result.exit_code == 0, result.output
    return result.output


async def build(run) -> None:
    await ok(run, "lineage", "record", "--job", "ingest", "--run-id", "r1", "-i", "s3://l/raw", "-o", "s3://l/clean")
    await ok(
        run,
        "lineage",
        "record",
        "--job",
        "rollup",
        "--run-id",
        "r2",
        "-i",
        "s3://l/clean",
        "-i",
        "s3://l/fx",
        "-o",
        "s3://l/report",
        "--transform",
        "aggregate",
        "--run-region",
        "aws:eu-central-1",
        "--event-time",
        "2026-11-30T09:00:00Z",
    )


async def test_record_and_show_tree(run):
    output = await ok(
        run, "lineage", "record", "--job", "ingest", "--run-id", "r1", "-i", "s3://l/raw", "-o", "s3://l/clean"
    )
    assert "1 edge(s) created" in output
    await build(run)
    tree = await ok(run, "lineage", "show", "s3://l/report")
    assert tree.splitlines() == [
        "s3://l/report (placeholder)",
        "├── s3://l/clean (placeholder)  ⟨rollup [aggregate]⟩",
        "│   └── s3://l/raw (placeholder)  ⟨ingest⟩",
        "└── s3://l/fx (placeholder)  ⟨rollup [aggregate]⟩",
    ]
    down = await ok(run, "lineage", "show", "s3://l/raw", "--downstream", "--depth", "1")
    assert down.splitlines() == [
        "s3://l/raw (placeholder)",
        "└── s3://l/clean (placeholder)  ⟨ingest⟩",
        "(incomplete: max_depth: deeper lineage exists; raise --depth)",
    ]


async def test_show_json_and_as_of(run):
    before = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.05)
    await build(run)
    data = json.loads(await ok(run, "lineage", "show", "s3://l/clean", "--both", "--depth", "1", "--json"))
    assert {n["dataset_id"]: n.get("depth", 0) for n in data["nodes"]} == {
        "s3://l/clean": 0,
        "s3://l/raw": 1,
        "s3://l/report": 1,
    }
    assert data.get("complete", False) is False and data["incomplete_reason"] == "max_depth"
    result = await run("lineage", "show", "s3://l/clean", "--as-of", before)
    assert result.exit_code == 4 and "NOT_FOUND" in result.output


async def test_export_json_and_dot(run, tmp_path):
    await build(run)
    exported = json.loads(await ok(run, "lineage", "export", "s3://l/report", "--format", "json"))
    assert exported["root"] == "s3://l/report" and exported["direction"] == "upstream"
    assert {(e["input"], e["output"], e["transform"]) for e in exported["edges"]} == {
        ("s3://l/raw", "s3://l/clean", ""),
        ("s3://l/clean", "s3://l/report", "aggregate"),
        ("s3://l/fx", "s3://l/report", "aggregate"),
    }

    target = tmp_path / "lineage.dot"
    await ok(run, "lineage", "export", "s3://l/report", "--format", "dot", "-O", str(target))
    dot = target.read_text()
    assert dot.startswith("digraph lineage {")
    assert '"s3://l/clean" -> "s3://l/report" [label="rollup\\n[aggregate]"];' in dot
    result = await run("lineage", "export", "s3://l/report", "-O", str(tmp_path / "l.json"), "--json")
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(result.stderr) == {
        "file": str(tmp_path / "l.json"),
        "datasets": 4,
        "edges": 3,
        "complete": True,
        "incomplete_reason": "",
    }


async def test_end_then_show(run):
    await build(run)
    output = await ok(run, "lineage", "end", "--job", "ingest", "-i", "s3://l/raw", "-o", "s3://l/clean")
    assert "1 edge(s) ended" in output
    tree = await ok(run, "lineage", "show", "s3://l/clean")
    assert tree.splitlines() == ["s3://l/clean (placeholder)"]


async def test_invalid_input_exits_2_with_the_field(run):
    result = await run("lineage", "show", "s3://l/x", "--depth", "99")
    assert result.exit_code == 2
    assert "max_depth" in result.output
