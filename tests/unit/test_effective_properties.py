"""EffectiveIndex, incrementally maintained, always equals a from-scratch fixpoint.

Random lineage graphs (cycles, self-loops, parallel edges, placeholders, declassifying
transforms granted to some jobs) and random edit sequences; after every step the index's
labels, origins, path lengths and kinds must equal the reference below (which finds derived
placeholders by reachability, not by components), and every reported path must be a real
lineage path that carries its value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domicile.catalog.model import Change, ChangeKind, Dataset, Edge, EdgeKey, EdgeRow, Field, label_matches
from domicile.router.effective import UNDESCRIBED, EffectiveIndex, Removes

NODES = ("a", "b", "c", "d", "e", "f")
LABELS = ("PII", "PII.CONTACT", "FINANCIAL.PAYMENT", "HEALTH")
ORIGINS = ("DE", "IN", "US")
JOBS = ("j1", "j2")
TRANSFORMS = ("", "anonymize", "aggregate")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def declassifier(table: dict[str, tuple[str, ...]], jobs: tuple[str, ...] = JOBS) -> Removes:
    return lambda transform, job, label: (
        job in jobs and any(label_matches(removed, label) for removed in table.get(transform, ()))
    )


POLICIES = (
    declassifier({"anonymize": ("PII",), "aggregate": ("PII", "FINANCIAL.PAYMENT")}),
    declassifier({"aggregate": ("PII.CONTACT",), "anonymize": ("HEALTH",)}),
    declassifier({"anonymize": ("PII",), "aggregate": ("PII", "FINANCIAL.PAYMENT")}, jobs=("j1",)),
)


@dataclass
class Model:
    """What the reference computes from: the catalog as plain dicts."""

    datasets: dict[str, Dataset]  # described datasets and placeholders
    edges: dict[EdgeKey, Edge]
    removes: Removes
    inherit: bool = True


def derived_placeholders(model: Model) -> set[str]:
    """Placeholders judged by inheritance, by the definition: with `inherit`, a placeholder some
    node outside its strongly connected component reaches, or whose component holds a node
    that is not a placeholder."""
    if not model.inherit:
        return set()
    nodes = set(model.datasets) | {e.input for e in model.edges.values()} | {e.output for e in model.edges.values()}
    successors = {n: {e.output for e in model.edges.values() if e.input == n and e.output != n} for n in nodes}
    reach = {}
    for n in nodes:
        seen, frontier = set(), [n]
        while frontier:
            for successor in successors[frontier.pop()]:
                if successor not in seen:
                    seen.add(successor)
                    frontier.append(successor)
        reach[n] = seen
    placeholders = {id for id, d in model.datasets.items() if d.placeholder}
    return {
        p
        for p in placeholders
        if any(p in reach[x] and (x not in reach[p] or x not in placeholders) for x in nodes if x != p)
    }


def reference(model: Model) -> dict[str, tuple[dict[str, int], dict[str, int], bool]]:
    """Shortest distances of every label/origin per dataset `get` answers, by plain iteration,
    and whether it is a derived placeholder.

    Start from the own values at distance 0 and relax every edge until nothing changes
    (Bellman-Ford); this reaches exactly the least fixpoint of the equations.
    """
    nodes = set(model.datasets) | {e.input for e in model.edges.values()} | {e.output for e in model.edges.values()}
    derived = derived_placeholders(model)
    labels = {n: {} for n in nodes}
    # Nodes neither described nor derived own the pseudo-origin UNDESCRIBED (fail closed).
    origins = {n: ({} if n in derived else {UNDESCRIBED: 0}) for n in nodes}
    for id, dataset in model.datasets.items():
        if not dataset.placeholder:
            labels[id] = dict.fromkeys(dataset.all_classifications, 0)
            origins[id] = dict.fromkeys(dataset.origins, 0)
    changed = True
    while changed:
        changed = False
        for edge in model.edges.values():
            for label, distance in list(labels[edge.input].items()):
                if (
                    not model.removes(edge.transform, edge.job, label)
                    and labels[edge.output].get(label, distance + 2) > distance + 1
                ):
                    labels[edge.output][label] = distance + 1
                    changed = True
            for origin, distance in list(origins[edge.input].items()):
                if origins[edge.output].get(origin, distance + 2) > distance + 1:
                    origins[edge.output][origin] = distance + 1
                    changed = True
    answered = {id for id, d in model.datasets.items() if not d.placeholder} | derived
    return {id: (labels[id], origins[id], id in derived) for id in answered}


def check(index: EffectiveIndex, model: Model) -> None:
    want = reference(model)
    assert set(index.datasets()) == set(want)
    for id in NODES:
        attributes = index.get(id)
        if id not in want:
            assert attributes is None
            continue
        assert attributes is not None
        want_labels, want_origins, inherited_only = want[id]
        assert {k: len(p) - 1 for k, p in attributes.classifications.items()} == want_labels
        assert {k: len(p) - 1 for k, p in attributes.origins.items()} == want_origins
        assert attributes.inherited_only == inherited_only
        for label, path in attributes.classifications.items():
            check_path(model, path, id, label, is_label=True)
        for origin, path in attributes.origins.items():
            check_path(model, path, id, origin, is_label=False)
        assert attributes.locations == (() if inherited_only else model.datasets[id].locations)


def check_path(model: Model, path: tuple[str, ...], id: str, value: str, *, is_label: bool) -> None:
    assert path[-1] == id
    if not is_label and value == UNDESCRIBED:
        source = model.datasets.get(path[0])
        assert (source is None or source.placeholder) and path[0] not in derived_placeholders(model), (
            "UNDESCRIBED must come from an undescribed node"
        )
    else:
        source = model.datasets[path[0]]
        assert not source.placeholder
        assert value in (source.all_classifications if is_label else source.origins)
    for upstream, downstream in itertools.pairwise(path):
        assert any(
            e.input == upstream
            and e.output == downstream
            and not (is_label and model.removes(e.transform, e.job, value))
            for e in model.edges.values()
        ), f"{upstream} -> {downstream} does not carry {value}"


described = st.builds(
    lambda id, labels, field_labels, origins, location: Dataset.create(
        id,
        classifications=labels,
        origins=origins,
        locations=(location,),
        fields=(Field("f", field_labels),) if field_labels else (),
    ),
    st.sampled_from(NODES),
    st.lists(st.sampled_from(LABELS), max_size=2),
    st.lists(st.sampled_from(LABELS), max_size=1),
    st.lists(st.sampled_from(ORIGINS), max_size=2),
    st.sampled_from(("aws:eu-central-1", "aws:ap-south-1")),
)
placeholders = st.builds(lambda id: Dataset.create(id, placeholder=True), st.sampled_from(NODES))
datasets = st.one_of(described, placeholders)
edges = st.builds(
    lambda input, output, job, transform: Edge(input, output, job, transform=transform, record_time=T0),
    st.sampled_from(NODES),
    st.sampled_from(NODES),
    st.sampled_from(JOBS),
    st.sampled_from(TRANSFORMS),
)
edge_keys = st.builds(EdgeKey, st.sampled_from(NODES), st.sampled_from(NODES), st.sampled_from(JOBS))
steps = st.one_of(
    st.tuples(st.just("set_dataset"), datasets),
    st.tuples(st.just("remove_dataset"), st.sampled_from(NODES)),
    st.tuples(st.just("add_edge"), edges),
    st.tuples(st.just("remove_edge"), edge_keys),
    st.tuples(st.just("policy"), st.sampled_from(range(len(POLICIES)))),
    st.tuples(st.just("set_inheritance"), st.booleans()),
)


def apply_to_model(model: Model, step: tuple) -> None:
    kind, value = step
    if kind == "set_dataset":
        model.datasets[value.id] = value
    elif kind == "remove_dataset":
        model.datasets.pop(value, None)
    elif kind == "add_edge":
        model.edges[value.key] = value
    elif kind == "remove_edge":
        model.edges.pop(value, None)
    elif kind == "set_inheritance":
        model.inherit = value
    else:
        model.removes = POLICIES[value]


def apply_to_index(index: EffectiveIndex, step: tuple) -> None:
    kind, value = step
    if kind == "policy":
        index.set_declassifier(POLICIES[value])
    else:
        getattr(index, kind)(value)


def as_change(step: tuple, model_before: Model) -> Change | None:
    """The change-feed entry for a step (None for policy steps, which are not in the feed:
    batches leave them out)."""
    kind, value = step
    if kind == "set_dataset":
        return Change(1, ChangeKind.DATASET_UPSERTED, T0, dataset=value)
    if kind == "remove_dataset":
        return Change(1, ChangeKind.DATASET_DELETED, T0, dataset_id=value)
    if kind == "add_edge":
        return Change(1, ChangeKind.EDGE_ADDED, T0, edge=value)
    if kind == "remove_edge":
        current = model_before.edges.get(value)
        ended = current if current is not None else Edge(value.input, value.output, value.job)
        return Change(1, ChangeKind.EDGE_ENDED, T0, edge=Edge(**{**ended.__dict__, "end_time": T0}))
    return None


initial_graphs = st.tuples(
    st.lists(datasets, max_size=len(NODES)),
    st.lists(edges, max_size=12),
    st.sampled_from(range(len(POLICIES))),
    st.booleans(),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def from_snapshot(model: Model) -> EffectiveIndex:
    """The index as the router builds it at start-up, from a store's residency snapshot."""
    rows = [d.residency_row() for d in model.datasets.values() if not d.placeholder]
    edge_rows = [EdgeRow(e.input, e.output, e.job, e.transform) for e in model.edges.values()]
    placeholder_ids = [id for id, d in model.datasets.items() if d.placeholder]
    return EffectiveIndex.from_snapshot(
        rows, edge_rows, model.removes, placeholders=placeholder_ids, inherit=model.inherit
    )


def built(model: Model) -> EffectiveIndex:
    return EffectiveIndex.build(model.datasets.values(), model.edges.values(), model.removes, inherit=model.inherit)


@SETTINGS
@given(initial=initial_graphs)
def test_build_equals_reference(initial) -> None:
    dataset_list, edge_list, policy, inherit = initial
    model = Model({d.id: d for d in dataset_list}, {e.key: e for e in edge_list}, POLICIES[policy], inherit)
    check(built(model), model)
    check(from_snapshot(model), model)


@SETTINGS
@given(initial=initial_graphs, edits=st.lists(steps, max_size=25))
def test_single_edits_keep_the_index_equal_to_a_fresh_computation(initial, edits) -> None:
    dataset_list, edge_list, policy, inherit = initial
    model = Model({d.id: d for d in dataset_list}, {e.key: e for e in edge_list}, POLICIES[policy], inherit)
    index = built(model)
    for step in edits:
        apply_to_model(model, step)
        apply_to_index(index, step)
        check(index, model)


@SETTINGS
@given(
    initial=initial_graphs,
    batches=st.lists(
        st.lists(steps.filter(lambda step: step[0] not in ("policy", "set_inheritance")), max_size=8), max_size=6
    ),
    snapshot=st.booleans(),
)
def test_batched_change_feed_keeps_the_index_equal_to_a_fresh_computation(initial, batches, snapshot) -> None:
    dataset_list, edge_list, policy, inherit = initial
    model = Model({d.id: d for d in dataset_list}, {e.key: e for e in edge_list}, POLICIES[policy], inherit)
    # Edges indexed from a snapshot carry no record time.
    index = from_snapshot(model) if snapshot else built(model)
    for batch in batches:
        changes = []
        for step in batch:
            change = as_change(step, model)
            apply_to_model(model, step)
            changes.append(change)
        index.apply(changes)
        check(index, model)
