"""Rendering a lineage subgraph (`Traversal`) for people and tools: a text tree, JSON and
Graphviz DOT. Pure functions; used by `domicile lineage show|export`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from typing import Any

from domicile.catalog.model import Direction, Edge, EdgeKey, Traversal

INCOMPLETE_HINTS = {
    "max_depth": "deeper lineage exists; raise --depth",
    "max_nodes": "the node limit (lineage.max_nodes) was reached",
    "timeout": "the time limit (lineage.timeout_seconds) was reached",
}


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _edge_note(edges: list[Edge], unapproved: Collection[EdgeKey]) -> str:
    parts = []
    for edge in sorted(edges, key=lambda e: (e.job, e.transform)):
        claim = f"{edge.transform}, not granted" if edge.key in unapproved else edge.transform
        text = edge.job + (f" [{claim}]" if edge.transform else "")
        if edge.end_time is not None:
            text += f" (ended {_time(edge.end_time)})"
        parts.append(text)
    return "; ".join(parts)


def render_tree(
    traversal: Traversal, root: str, direction: Direction, unapproved: Collection[EdgeKey] = frozenset()
) -> str:
    """An indented tree from `root`: each dataset under the one it was reached from along
    a shortest path, with the job (and transform) of the edge -- `[T, not granted]` for the
    `unapproved` edges, whose declassifying transform the policy does not grant their job (a
    plain copy for residency). A dataset reached again is
    shown once more with `(see above)` instead of its subtree, so cycles and diamonds stay
    finite. With BOTH, `<-` marks an upstream step (derived from) and `->` a downstream one.
    Ends with a line saying why, when the answer is incomplete."""
    depth = {n.dataset_id: n.depth for n in traversal.nodes}
    placeholder = {n.dataset_id for n in traversal.nodes if n.placeholder}
    # neighbour lists: (dataset, arrow, edges between the two)
    pairs: dict[tuple[str, str, str], list[Edge]] = defaultdict(list)
    for edge in traversal.edges:
        if direction in (Direction.UPSTREAM, Direction.BOTH):
            pairs[(edge.output, edge.input, "<-")].append(edge)
        if direction in (Direction.DOWNSTREAM, Direction.BOTH):
            pairs[(edge.input, edge.output, "->")].append(edge)
    children: dict[str, list[tuple[str, str, list[Edge]]]] = defaultdict(list)
    for (parent, child, arrow), edges in pairs.items():
        if parent in depth and child in depth and depth[child] == depth[parent] + 1:
            children[parent].append((child, arrow, edges))
    for entries in children.values():
        entries.sort(key=lambda entry: (entry[0], entry[1]))

    def label(dataset: str) -> str:
        return dataset + (" (placeholder)" if dataset in placeholder else "")

    lines = [label(root)]
    expanded = {root}

    def walk(parent: str, prefix: str) -> None:
        entries = children.get(parent, [])
        for index, (child, arrow, edges) in enumerate(entries):
            last = index == len(entries) - 1
            marker = f"{arrow} " if direction is Direction.BOTH else ""
            seen = child in expanded
            suffix = "  (see above)" if seen and children.get(child) else ""
            lines.append(
                f"{prefix}{'└── ' if last else '├── '}{marker}{label(child)}  ⟨{_edge_note(edges, unapproved)}⟩{suffix}"
            )
            if not seen:
                expanded.add(child)
                walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    if root not in depth:
        lines.append("(dataset not in the answer)")
    if not traversal.complete:
        reason = traversal.incomplete_reason
        lines.append(f"(incomplete: {reason}: {INCOMPLETE_HINTS.get(reason, 'a limit cut the answer')})")
    return "\n".join(lines)


def to_json(traversal: Traversal, root: str, direction: Direction, as_of: datetime | None = None) -> dict[str, Any]:
    """The subgraph as a JSON-able document (nodes with depth, edges with their labels)."""
    return {
        "root": root,
        "direction": direction.value,
        "as_of": _time(as_of),
        "complete": traversal.complete,
        "incomplete_reason": traversal.incomplete_reason,
        "nodes": [{"id": n.dataset_id, "depth": n.depth, "placeholder": n.placeholder} for n in traversal.nodes],
        "edges": [
            {
                "input": e.input,
                "output": e.output,
                "job": e.job,
                "transform": e.transform,
                "run_id": e.run_id,
                "record_time": _time(e.record_time),
                "end_time": _time(e.end_time),
            }
            for e in traversal.edges
        ],
    }


def to_json_text(traversal: Traversal, root: str, direction: Direction, as_of: datetime | None = None) -> str:
    return json.dumps(to_json(traversal, root, direction, as_of), indent=2, ensure_ascii=False)


def _dot_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(traversal: Traversal, root: str, direction: Direction, as_of: datetime | None = None) -> str:
    """Graphviz DOT: data flows left to right (input -> output), edges labelled with job and
    transform; the root is bold, placeholders dashed, ended edges dotted. An incomplete
    answer says so in the graph label, so a rendered picture cannot pass for the whole."""
    title = f"lineage of {root} ({direction.value})"
    if as_of is not None:
        title += f" as of {_time(as_of)}"
    if not traversal.complete:
        title += f" INCOMPLETE: {traversal.incomplete_reason}"
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        f"  label={_dot_string(title)};",
        "  labelloc=t;",
        '  node [shape=box, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in traversal.nodes:
        attributes = [f"tooltip={_dot_string(f'depth {node.depth}')}"]
        if node.dataset_id == root:
            attributes.append("penwidth=2.5")
        if node.placeholder:
            attributes.append("style=dashed")
        lines.append(f"  {_dot_string(node.dataset_id)} [{', '.join(attributes)}];")
    for edge in traversal.edges:
        text = edge.job + (f"\n[{edge.transform}]" if edge.transform else "")
        attributes = [f"label={_dot_string(text)}"]
        if edge.end_time is not None:
            attributes.append("style=dotted")
        lines.append(f"  {_dot_string(edge.input)} -> {_dot_string(edge.output)} [{', '.join(attributes)}];")
    lines.append("}")
    return "\n".join(lines)
