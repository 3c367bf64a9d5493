"""Effective classifications and origins along lineage, kept up to date incrementally.

DESIGN ("Effective attributes"):

    classifications*(d) = own(d) ∪ ⋃ over edges d←i: classifications*(i) − removed_by(edge.transform)
    origins*(d)         = own_origins(d) ∪ ⋃ over edges d←i: origins*(i)

`own(d)` is `Dataset.all_classifications` (labels of the dataset and of its fields). Lineage
may contain cycles; the index holds the *least* fixpoint, so a label circulating in a cycle
that no dataset in or upstream of the cycle owns is not effective anywhere. Every effective
label and origin keeps one shortest lineage path (contributor first, the dataset last).

How it is kept (the reasoning the incremental code relies on):

- Per node and label the index stores `(distance, via)`: the length of a shortest path from a
  dataset owning the label, and the upstream neighbour that path comes through (`None` when
  the node owns it). Paths are built on the first `get` by following `via` (up to the first
  dataset whose view is already built) and cached until a change reaches the dataset; a
  node's `via` always has the label at `distance - 1`, so the walk ends at an owner.
- A change (dataset attributes, an edge added/removed, a declassifier) can only alter the
  values of its *downstream closure*. Those values are recomputed from the values outside the
  closure, which are final, in topological order: the acyclic part in Kahn order, then the
  strongly connected components of the rest (Tarjan), upstream ones first. A component none
  of whose members is a changed node and none of whose external upstream neighbours changed
  value is skipped: its inputs are what they were.
- A multi-node component starts from the bottom (no labels) and is iterated with a worklist
  to its least fixpoint (a label-correcting shortest-path computation); a self-loop never
  contributes (the label is already there, one step closer), so it is ignored.
- Undescribed provenance fails closed. A node that is not a registered dataset -- a
  placeholder that lineage created, a dataset that was deleted, or an edge endpoint nobody
  described -- owns the pseudo-origin `UNDESCRIBED`, which flows downstream like any origin
  (no transform removes it): we cannot know what such data contains, so whatever is derived
  from it carries that doubt, with the lineage path to the undescribed node. The router
  answers DENY / UNKNOWN_DATASET for datasets carrying it. Deleting a source therefore never
  declassifies the copies derived from it. Its lineage edges stay (the store keeps them too)
  and labels keep flowing through it.

Memory: labels, origins, locations and dataset ids of datasets are interned, datasets with
equal own label/origin sets share one frozenset, and nodes without labels/origins hold no
table at all. Edges are kept as given: `EdgeRow`s from a start-up snapshot, `Edge` values from
the change feed (they hold the strings anyway).

The index is not thread-safe: one owner (the router runtime, on its event loop) mutates and
reads it.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import NamedTuple

from domicile.catalog.model import Change, ChangeKind, Dataset, Edge, EdgeKey, EdgeRow, ResidencyRow
from domicile.router.types import UNDESCRIBED, EffectiveAttributes

Removes = Callable[[str, str], bool]
"""`removes(transform, label)`: True when a lineage edge with `transform` strips `label`.

Comes from the compiled policy's declassifiers; it must be hierarchical itself (a transform
removing `PII` answers True for `PII.CONTACT`) and pure (the index asks once per transform
and label, and again only on `set_declassifier`).
"""

# (distance, via): how a node got a label/origin. Own values share one tuple.
_Step = tuple[int, "str | None"]
_OWN: _Step = (0, None)
_Table = dict[str, _Step]
_NO_VALUES: _Table = {}  # read-only stand-in for "no table"; never mutated


def _removes_nothing(transform: str, label: str) -> bool:
    return False


class _Own(NamedTuple):
    """A dataset's own attributes (a NamedTuple: cheap to build 100k of them)."""

    labels: frozenset[str]
    origins: frozenset[str]
    locations: tuple[str, ...]


class EffectiveIndex:
    """In-memory effective attributes of every dataset, maintained under catalog changes.

    Mutations (`set_dataset`, `remove_dataset`, `add_edge`, `remove_edge`,
    `set_declassifier`, `apply`) return only when every affected dataset is up to date, so
    the next `get` reflects them. `apply` recomputes once for a whole batch, which is how
    the router follows the change feed and how `build` loads a full catalog.
    """

    def __init__(self, removes: Removes | None = None) -> None:
        self._removes: Removes = removes or _removes_nothing
        # Every label some dataset owns (only those can flow), and for every transform on an
        # edge the ones among them it removes: `removes` is asked once per (transform, label).
        self._known_labels: set[str] = set()
        self._removed_by: dict[str, frozenset[str]] = {}
        self._shared_sets: dict[frozenset[str], frozenset[str]] = {}
        self._own: dict[str, _Own] = {}
        # output -> (input, job) -> edge: the incoming edges, keyed by the rest of the EdgeKey.
        self._in: dict[str, dict[tuple[str, str], Edge | EdgeRow]] = {}
        self._out: dict[str, dict[str, int]] = {}  # input -> output -> number of edges
        self._labels: dict[str, _Table] = {}
        self._origins: dict[str, _Table] = {}
        self._views: dict[str, EffectiveAttributes] = {}

    @classmethod
    def build(
        cls, datasets: Iterable[Dataset], edges: Iterable[Edge], removes: Removes | None = None
    ) -> EffectiveIndex:
        """An index over `datasets` and the current `edges`, computed once from scratch."""
        index = cls(removes)
        for dataset in datasets:
            index._put_dataset(dataset)
        for edge in edges:
            index._put_current_edge(edge)
        nodes = index._nodes()
        index._recompute(nodes, closure=nodes)
        return index

    @classmethod
    def from_snapshot(
        cls, datasets: Iterable[ResidencyRow], edges: Iterable[EdgeRow], removes: Removes | None = None
    ) -> EffectiveIndex:
        """`build` from a store's `residency_snapshot` (described datasets and current edges,
        reduced to what the index reads: the router's start-up)."""
        index = cls(removes)
        for row in datasets:
            index._put_row(row)
        for edge in edges:
            index._put_edge(edge)
        nodes = index._nodes()
        index._recompute(nodes, closure=nodes)
        return index

    # ---- reads -------------------------------------------------------------------------

    def get(self, dataset_id: str) -> EffectiveAttributes | None:
        """The effective attributes of a registered dataset, or None if it is unknown/deleted.

        Label and origin mappings are sorted by value; each path runs from the contributing
        dataset to `dataset_id` and is a shortest such path. The returned value is immutable
        and cached until a change reaches the dataset.
        """
        view = self._views.get(dataset_id)
        if view is not None:
            return view
        own = self._own.get(dataset_id)
        if own is None:
            return None
        view = EffectiveAttributes(
            dataset_id=dataset_id,
            classifications=self._paths(dataset_id, self._labels, "classifications"),
            origins=self._paths(dataset_id, self._origins, "origins"),
            locations=own.locations,
        )
        self._views[dataset_id] = view
        return view

    @property
    def built_views(self) -> Mapping[str, EffectiveAttributes]:
        """The views built so far, by dataset id: what `get` returns without building anything
        (a dataset missing here may still be known; ask `get`). The index's own dict, live: read
        it, never change it."""
        return self._views

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._own

    def __len__(self) -> int:
        return len(self._own)

    def views_built(self) -> int:
        """How many datasets' views are built and cached: grows as `get` meets datasets for
        the first time, shrinks when changes invalidate views."""
        return len(self._views)

    def datasets(self) -> Iterator[str]:
        """Ids of the registered datasets (in no particular order)."""
        return iter(tuple(self._own))

    # ---- single changes ----------------------------------------------------------------

    def set_dataset(self, dataset: Dataset) -> None:
        """Register or update a dataset (own labels incl. field labels, origins, locations)."""
        self._recompute(self._put_dataset(dataset))

    def remove_dataset(self, dataset_id: str) -> None:
        """Forget a dataset's own attributes; its edges stay. Unknown ids are ignored."""
        self._recompute(self._drop_dataset(dataset_id))

    def add_edge(self, edge: Edge) -> None:
        """Add a current lineage edge, or replace the one with the same key."""
        self._recompute(self._put_current_edge(edge))

    def remove_edge(self, key: EdgeKey) -> None:
        """Remove the edge with this key; unknown keys are ignored."""
        self._recompute(self._drop_edge(key))

    def set_declassifier(self, removes: Removes) -> None:
        """Switch to another policy's declassifiers.

        Only datasets downstream of edges whose transform now removes a different set of
        labels are recomputed; a policy change that leaves declassifiers alone costs one
        `removes` call per transform and label, and no propagation.
        """
        self._removes = removes
        before = self._removed_by
        self._removed_by = {transform: self._removed_labels(transform, self._known_labels) for transform in before}
        changed_transforms = {
            transform for transform, removed in before.items() if self._removed_by[transform] != removed
        }
        if not changed_transforms:
            return
        seeds = {
            output
            for output, edges in self._in.items()
            if any(edge.transform in changed_transforms for edge in edges.values())
        }
        self._recompute(seeds)

    # ---- batches -----------------------------------------------------------------------

    def apply(self, changes: Iterable[Change]) -> None:
        """Apply change-feed entries in order, then recompute once for all of them.

        EDGE_ENDED removes the edge only when the indexed edge under that key is the one that
        ended (same transform and record time); a newer edge under the same key, added by a
        run with another transform, is kept.
        """
        seeds: set[str] = set()
        try:
            for change in changes:
                if change.kind is ChangeKind.DATASET_UPSERTED:
                    if change.dataset is None:
                        raise ValueError(f"revision {change.revision}: DATASET_UPSERTED without a dataset")
                    seeds |= self._put_dataset(change.dataset)
                elif change.kind is ChangeKind.DATASET_DELETED:
                    seeds |= self._drop_dataset(change.dataset_id)
                elif change.kind is ChangeKind.EDGE_ADDED:
                    if change.edge is None:
                        raise ValueError(f"revision {change.revision}: EDGE_ADDED without an edge")
                    seeds |= self._put_current_edge(change.edge)
                elif change.kind is ChangeKind.EDGE_ENDED:
                    if change.edge is None:
                        raise ValueError(f"revision {change.revision}: EDGE_ENDED without an edge")
                    ended = change.edge
                    current = self._in.get(ended.output, _NO_EDGES).get((ended.input, ended.job))
                    if current is not None and _same_version(current, ended):
                        seeds |= self._drop_edge(ended.key)
        finally:
            # Even when a malformed change stops the batch, what was applied is propagated.
            self._recompute(seeds)

    # ---- mutation without recomputation: each returns the nodes whose inputs changed ----

    def _put_dataset(self, dataset: Dataset) -> set[str]:
        if dataset.placeholder:
            # Known only by name (lineage mentioned it): undescribed, like an unknown node.
            return self._drop_dataset(dataset.id)
        return self._put_row(dataset.residency_row())

    def _put_row(self, row: ResidencyRow) -> set[str]:
        node = sys.intern(row.id)
        labels = row.classifications
        if not labels <= self._known_labels:
            self._learn_labels(labels - self._known_labels)
        own = _Own(
            self._share(labels),
            self._share(row.origins),
            tuple([sys.intern(location) for location in row.locations]),
        )
        previous = self._own.get(node)
        self._own[node] = own
        self._views.pop(node, None)
        if previous is not None and previous.labels == own.labels and previous.origins == own.origins:
            return set()
        return {node}

    def _drop_dataset(self, dataset_id: str) -> set[str]:
        if self._own.pop(dataset_id, None) is None:
            return set()
        self._views.pop(dataset_id, None)
        return {dataset_id}

    def _put_current_edge(self, edge: Edge) -> set[str]:
        if edge.end_time is not None:
            raise ValueError(f"edge {edge.key} ended at {edge.end_time}: only current edges are indexed")
        return self._put_edge(edge)

    def _put_edge(self, edge: Edge | EdgeRow) -> set[str]:
        output = edge.output
        incoming = self._in.get(output)
        if incoming is None:
            incoming = self._in[output] = {}
        if edge.transform not in self._removed_by:
            self._removed_by[edge.transform] = self._removed_labels(edge.transform, self._known_labels)
        slot = (edge.input, edge.job)  # the EdgeKey without the output (cheaper to build)
        previous = incoming.get(slot)
        incoming[slot] = edge
        if previous is not None:
            return set() if previous.transform == edge.transform else {output}
        successors = self._out.get(edge.input)
        if successors is None:
            successors = self._out[edge.input] = {}
        successors[output] = successors.get(output, 0) + 1
        if edge.input not in self._own and edge.input not in self._origins:
            # An undescribed input seen for the first time: it must get its UNDESCRIBED
            # origin (its downstream closure includes `output`).
            return {edge.input}
        return {output}

    def _drop_edge(self, key: EdgeKey) -> set[str]:
        incoming = self._in.get(key.output)
        if incoming is None or incoming.pop((key.input, key.job), None) is None:
            return set()
        if not incoming:
            del self._in[key.output]
        successors = self._out[key.input]
        remaining = successors[key.output] - 1
        if remaining:
            successors[key.output] = remaining
        else:
            del successors[key.output]
            if not successors:
                del self._out[key.input]
        return {key.output}

    # ---- computation -------------------------------------------------------------------

    def _nodes(self) -> set[str]:
        return set(self._own) | set(self._in) | set(self._out)

    def _recompute(self, seeds: set[str], closure: set[str] | None = None) -> None:
        """Bring the downstream closure of `seeds` to the least fixpoint (see module doc).

        `closure` may be passed when it is known (a full build: every node).
        """
        if not seeds:
            return
        if closure is None:
            closure = self._downstream(seeds)
        views = self._views
        for node in closure:
            views.pop(node, None)
        changed: set[str] = set()
        acyclic, components = self._order(closure)
        for node in acyclic:
            if node in seeds or self._has_changed_input(node, changed, ()):
                labels, origins = self._evaluate(node)
                if self._store(node, labels, origins):
                    changed.add(node)
        for component in components:
            if len(component) == 1:  # a self-loop, or downstream of a cycle
                node = component[0]
                if node in seeds or self._has_changed_input(node, changed, component):
                    labels, origins = self._evaluate(node)
                    if self._store(node, labels, origins):
                        changed.add(node)
                continue
            members = set(component)
            if not seeds.isdisjoint(members) or any(
                self._has_changed_input(node, changed, members) for node in component
            ):
                changed.update(self._solve_component(component, members))

    def _downstream(self, seeds: set[str]) -> set[str]:
        closure = set(seeds)
        frontier = list(seeds)
        out = self._out
        while frontier:
            successors = out.get(frontier.pop())
            if successors:
                for successor in successors:
                    if successor not in closure:
                        closure.add(successor)
                        frontier.append(successor)
        return closure

    def _order(self, nodes: set[str]) -> tuple[list[str], list[list[str]]]:
        """An evaluation order for `nodes`: first every node not in or below a cycle, in
        topological order (Kahn), then the strongly connected components of the rest,
        upstream ones first. Lineage is mostly acyclic, and Kahn is the cheaper pass."""
        out = self._out
        pending: dict[str, int] = dict.fromkeys(nodes, 0)  # inputs within `nodes` not yet ordered
        for node in nodes:
            for successor in out.get(node, _NO_SUCCESSORS):
                if successor in pending:
                    pending[successor] += 1
        ready = [node for node, count in pending.items() if count == 0]
        acyclic: list[str] = []
        while ready:
            node = ready.pop()
            acyclic.append(node)
            for successor in out.get(node, _NO_SUCCESSORS):
                count = pending.get(successor)
                if count is not None:
                    if count == 1:
                        ready.append(successor)
                    pending[successor] = count - 1
        if len(acyclic) == len(nodes):
            return acyclic, []
        rest = nodes.difference(acyclic)
        return acyclic, self._components(rest)

    def _components(self, nodes: set[str]) -> list[list[str]]:
        """Strongly connected components of the subgraph on `nodes`, upstream ones first.

        Iterative Tarjan: it emits a component after every component reachable from it, so
        the reversed emission order is a topological order.
        """
        out = self._out
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        emitted: list[list[str]] = []
        for root in nodes:
            if root in index:
                continue
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            work = [(root, iter(out.get(root, _NO_SUCCESSORS)))]
            while work:
                node, successors = work[-1]
                for successor in successors:
                    if successor not in nodes:
                        continue
                    if successor not in index:
                        index[successor] = low[successor] = len(index)
                        stack.append(successor)
                        on_stack.add(successor)
                        work.append((successor, iter(out.get(successor, _NO_SUCCESSORS))))
                        break
                    if successor in on_stack and index[successor] < low[node]:
                        low[node] = index[successor]
                else:
                    work.pop()
                    if work:
                        parent = work[-1][0]
                        low[parent] = min(low[parent], low[node])
                    if low[node] == index[node]:
                        component = []
                        while True:
                            member = stack.pop()
                            on_stack.discard(member)
                            component.append(member)
                            if member == node:
                                break
                        emitted.append(component)
        emitted.reverse()
        return emitted

    def _has_changed_input(self, node: str, changed: set[str], component: Collection[str]) -> bool:
        """True when an input of `node` outside its component got a new value in this pass."""
        incoming = self._in.get(node)
        if not incoming or not changed:
            return False
        return any(edge.input in changed and edge.input not in component for edge in incoming.values())

    def _solve_component(self, component: list[str], members: set[str]) -> set[str]:
        """Least fixpoint of a cyclic component from the bottom; returns members whose value changed."""
        before = {node: (self._labels.pop(node, _NO_VALUES), self._origins.pop(node, _NO_VALUES)) for node in component}
        queue = deque(component)
        queued = set(component)
        while queue:
            node = queue.popleft()
            queued.discard(node)
            labels, origins = self._evaluate(node)
            if self._store(node, labels, origins):
                for successor in self._out.get(node, _NO_SUCCESSORS):
                    if successor in members and successor not in queued:
                        queued.add(successor)
                        queue.append(successor)
        return {
            node
            for node, (labels, origins) in before.items()
            if self._labels.get(node, _NO_VALUES) != labels or self._origins.get(node, _NO_VALUES) != origins
        }

    def _evaluate(self, node: str) -> tuple[_Table, _Table]:
        """One application of the defining equations to `node` from its inputs' current values."""
        own = self._own.get(node)
        labels: _Table = dict.fromkeys(own.labels, _OWN) if own else {}
        origins: _Table = dict.fromkeys(own.origins, _OWN) if own else {UNDESCRIBED: _OWN}
        incoming = self._in.get(node)
        if not incoming:
            return labels, origins
        all_labels, all_origins, removed_by = self._labels, self._origins, self._removed_by
        for edge in incoming.values():
            source = edge.input
            if source == node:
                continue  # a self-loop never brings anything new (see module doc)
            upstream = all_labels.get(source)
            if upstream:
                removed = removed_by[edge.transform]
                if not labels and not removed:
                    # The first contribution, nothing removed: no comparisons needed.
                    labels = {label: (distance + 1, source) for label, (distance, _) in upstream.items()}
                else:
                    for label, (distance, _) in upstream.items():
                        if label in removed:
                            continue
                        current = labels.get(label)
                        if current is None or current[0] > distance + 1:
                            labels[label] = (distance + 1, source)
            upstream = all_origins.get(source)
            if upstream:
                if not origins:
                    origins = {origin: (distance + 1, source) for origin, (distance, _) in upstream.items()}
                else:
                    for origin, (distance, _) in upstream.items():
                        current = origins.get(origin)
                        if current is None or current[0] > distance + 1:
                            origins[origin] = (distance + 1, source)
        return labels, origins

    def _store(self, node: str, labels: _Table, origins: _Table) -> bool:
        """Set `node`'s tables; True when they differ from what was stored."""
        changed = False
        for tables, value in ((self._labels, labels), (self._origins, origins)):
            if tables.get(node, _NO_VALUES) != value:
                changed = True
                if value:
                    tables[node] = value
                else:
                    del tables[node]
        return changed

    def _paths(self, node: str, tables: dict[str, _Table], field: str) -> MappingProxyType[str, tuple[str, ...]]:
        """Shortest paths of `node`'s values, walking `via` upstream until a node whose view is
        already built (its path is the prefix: it is unchanged, or its view would be gone)."""
        table = tables.get(node)
        if not table:
            return _EMPTY_PATHS
        views = self._views
        paths = {}
        for value in sorted(table):
            path = [node]
            prefix: tuple[str, ...] = ()
            step = table[value]
            while step[1] is not None:
                via = step[1]
                view = views.get(via)
                if view is not None:
                    prefix = getattr(view, field)[value]
                    break
                path.append(via)
                previous_distance, step = step[0], tables[via][value]
                # Distances strictly decrease along `via`; checking it makes the walk finite
                # even if that invariant were ever broken.
                if step[0] != previous_distance - 1:
                    raise RuntimeError(f"effective index inconsistent at {via!r} for {value!r}")
            path.reverse()
            paths[value] = prefix + tuple(path)
        return MappingProxyType(paths)

    def _learn_labels(self, new_labels: frozenset[str]) -> None:
        """Add labels to the known ones, extending every transform's removed set."""
        self._known_labels |= new_labels
        for transform, removed in self._removed_by.items():
            newly_removed = self._removed_labels(transform, new_labels)
            if newly_removed:
                self._removed_by[transform] = removed | newly_removed

    def _removed_labels(self, transform: str, labels: Iterable[str]) -> frozenset[str]:
        return frozenset(label for label in labels if self._removes(transform, label))

    def _share(self, values: frozenset[str]) -> frozenset[str]:
        shared = self._shared_sets.get(values)
        if shared is None:
            shared = frozenset(sys.intern(value) for value in values)
            self._shared_sets[shared] = shared
        return shared


def _same_version(indexed: Edge | EdgeRow, ended: Edge) -> bool:
    if indexed.transform != ended.transform:
        return False
    # An edge indexed from a start-up snapshot has no record time: the transform decides.
    # (The change feed then replays every change after the snapshot's revision, in order, so
    # an edge dropped here by an older version's end is added again by its own change.)
    indexed_time = getattr(indexed, "record_time", None)
    return indexed_time is None or ended.record_time is None or indexed_time == ended.record_time


_NO_EDGES: dict[tuple[str, str], Edge] = {}
_NO_SUCCESSORS: dict[str, int] = {}
_EMPTY_PATHS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({})
