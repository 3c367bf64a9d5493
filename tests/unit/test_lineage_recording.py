"""Lineage recording helpers (lineage.recording) and subgraph rendering (lineage.render)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domicile.catalog.model import (
    Dataset,
    Direction,
    Edge,
    EdgeKey,
    Field,
    LineageNode,
    Protection,
    Traversal,
)
from domicile.errors import FieldErrors
from domicile.lineage.recording import (
    check_edge_count,
    check_transform,
    edges_for,
    merge_reported,
)
from domicile.lineage.render import render_tree, to_dot, to_json

T = datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_edges_for_every_pair_without_self_pairs_or_duplicates():
    assert edges_for("j", ["a", "b", "a"], ["c", "b"]) == [
        EdgeKey("a", "c", "j"),
        EdgeKey("b", "c", "j"),
        EdgeKey("a", "b", "j"),
    ]
    assert edges_for("j", [], ["c"]) == []


def test_edge_count_limit():
    errors = FieldErrors()
    check_edge_count(errors, "inputs", [f"i{n}" for n in range(1000)], [f"o{n}" for n in range(101)])
    assert [v.field for v in errors.violations] == ["inputs"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), ("anonymize", True), ("k-anon:5", True), ("drop table;", False), ("-x", False), ("a" * 129, False)],
)
def test_transform_names(value, ok):
    errors = FieldErrors()
    check_transform(errors, "transform", value)
    assert (not errors) == ok


def test_merge_into_nothing_creates_a_real_dataset():
    merged = merge_reported(
        None,
        "s3://x/t",
        name="t",
        classifications=["PII"],
        origins=["DE"],
        locations=["aws:eu-west-1"],
        field_labels={"email": ["PII.CONTACT"]},
    )
    assert merged == Dataset.create(
        "s3://x/t",
        name="t",
        classifications=["PII"],
        origins=["DE"],
        locations=["aws:eu-west-1"],
        fields=[Field("email", ("PII.CONTACT",))],
    )
    assert not merged.placeholder


def test_merge_only_adds_and_keeps_catalog_attributes():
    current = Dataset.create(
        "s3://x/t",
        name="Customers",
        owner="o",
        description="d",
        classifications=["PII.IDENTITY"],
        origins=["AT"],
        locations=["aws:eu-west-1"],
        tags={"k": "v"},
        fields=[Field("email", ("PII.CONTACT",)), Field("id", ())],
        protection=Protection(encrypted_at_rest=True),
    )
    merged = merge_reported(
        current,
        "s3://x/t",
        name="t",
        classifications=["PII"],
        origins=["DE"],
        locations=["aws:eu-west-1"],
        field_labels={"email": ["PII.BIOMETRIC"], "iban": ["FINANCIAL"]},
    )
    assert (merged.name, merged.owner, merged.description, dict(merged.tags), merged.protection) == (
        "Customers",
        "o",
        "d",
        {"k": "v"},
        Protection(encrypted_at_rest=True),
    )
    assert merged.classifications == ("PII", "PII.IDENTITY")
    assert merged.origins == ("AT", "DE")
    assert merged.locations == ("aws:eu-west-1",)
    assert merged.fields == (
        Field("email", ("PII.BIOMETRIC", "PII.CONTACT")),
        Field("id", ()),
        Field("iban", ("FINANCIAL",)),
    )


def test_merge_of_nothing_new_is_the_same_content():
    current = Dataset.create("s3://x/t", classifications=["PII"], locations=["aws:eu-west-1"])
    assert merge_reported(current, "s3://x/t", classifications=["PII"]).same_content(current)


def test_merge_turns_a_placeholder_into_a_named_dataset():
    placeholder = Dataset.create("s3://x/t", placeholder=True)
    merged = merge_reported(placeholder, "s3://x/t", name="t", locations=["aws:eu-west-1"])
    assert (merged.placeholder, merged.name) == (False, "t")


def test_merge_leaves_the_name_of_a_registered_dataset_alone_even_when_empty():
    registered = Dataset.create("s3://x/t", owner="o")
    assert merge_reported(registered, "s3://x/t", name="t", locations=["aws:eu-west-1"]).name == ""


def diamond_with_cycle() -> Traversal:
    """report <- {clean, fx}; clean <- raw; fx <- raw; raw <- report (a cycle)."""
    edges = (
        Edge("clean", "report", "rollup", "aggregate", "r2", T),
        Edge("fx", "report", "rollup", "aggregate", "r2", T),
        Edge("raw", "clean", "ingest", "", "r1", T),
        Edge("raw", "fx", "fx-job", "", "r3", T, end_time=T),
        Edge("report", "raw", "feedback", "", "r4", T),
    )
    nodes = (
        LineageNode("report", 0),
        LineageNode("clean", 1),
        LineageNode("fx", 1, placeholder=True),
        LineageNode("raw", 2),
    )
    return Traversal(nodes, edges, complete=False, incomplete_reason="max_depth")


def test_tree_shows_each_dataset_expanded_once_and_says_it_is_incomplete():
    tree = render_tree(diamond_with_cycle(), "report", Direction.UPSTREAM)
    assert tree.splitlines() == [
        "report",
        "├── clean  ⟨rollup [aggregate]⟩",
        "│   └── raw  ⟨ingest⟩",
        "└── fx (placeholder)  ⟨rollup [aggregate]⟩",
        "    └── raw  ⟨fx-job (ended 2026-11-30T10:00:00Z)⟩",
        "(incomplete: max_depth: deeper lineage exists; raise --depth)",
    ]


def test_tree_both_ways_marks_the_direction_of_each_step():
    traversal = Traversal(
        (LineageNode("b", 0), LineageNode("a", 1), LineageNode("c", 1)), (Edge("a", "b", "j1"), Edge("b", "c", "j2"))
    )
    assert render_tree(traversal, "b", Direction.BOTH).splitlines() == ["b", "├── <- a  ⟨j1⟩", "└── -> c  ⟨j2⟩"]


def test_tree_marks_a_claimed_transform_the_policy_does_not_grant():
    traversal = Traversal(
        (LineageNode("out", 0), LineageNode("in", 1)),
        (Edge("in", "out", "us/join", "aggregate"), Edge("in", "out", "eu/rollup", "aggregate")),
    )
    tree = render_tree(traversal, "out", Direction.UPSTREAM, {EdgeKey("in", "out", "us/join")})
    assert tree.splitlines() == ["out", "└── in  ⟨eu/rollup [aggregate]; us/join [aggregate, not granted]⟩"]


def test_json_export_keeps_every_edge_with_times():
    document = to_json(diamond_with_cycle(), "report", Direction.UPSTREAM, as_of=T)
    assert document["as_of"] == "2026-11-30T10:00:00Z"
    assert document["complete"] is False and document["incomplete_reason"] == "max_depth"
    assert len(document["edges"]) == 5
    assert {
        "input": "raw",
        "output": "fx",
        "job": "fx-job",
        "transform": "",
        "run_id": "r3",
        "record_time": "2026-11-30T10:00:00Z",
        "end_time": "2026-11-30T10:00:00Z",
    } in document["edges"]


def test_dot_escapes_ids_and_flags_incomplete_placeholders_and_ended_edges():
    traversal = Traversal(
        (LineageNode('s3://q/"quoted"\\x', 0), LineageNode("p", 1, placeholder=True)),
        (Edge("p", 's3://q/"quoted"\\x', "j", "anonymize", end_time=T),),
        complete=False,
        incomplete_reason="timeout",
    )
    dot = to_dot(traversal, 's3://q/"quoted"\\x', Direction.UPSTREAM)
    assert 'label="lineage of s3://q/\\"quoted\\"\\\\x (upstream) INCOMPLETE: timeout";' in dot
    assert '"p" [tooltip="depth 1", style=dashed];' in dot
    assert '"p" -> "s3://q/\\"quoted\\"\\\\x" [label="j\\n[anonymize]", style=dotted];' in dot
