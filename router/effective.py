"""Effective classifications and origins along lineage, kept up to date incrementally.

The equations (docs/router.md, "Effective attributes"):

    classifications*(d) = own(d) ∪ ⋃ over edges d←i: classifications*(i) − removed_by(edge)
    origins*(d)         = own_origins(d) ∪ ⋃ over edges d←i: origins*(i)

`own(d)` is `Dataset.all_classifications` (labels of the dataset and of its fields).
`removed_by(edge)` is what the edge's transform removes *when the edge's job is granted that
transform* by the policy's declassifiers (`Removes`): a transform claimed by any other job is
a plain copy. Lineage may contain cycles; the index holds the *least* fixpoint, so a label
circulating in a cycle that no dataset in or upstream of the cycle owns is not effective
anywhere. Every effective label and origin keeps one shortest lineage path (contributor
first, the dataset last).

What a node of the lineage graph is (the residency semantics of derived data):

- A *described* dataset (registered, not deleted) owns its labels and origins.
- A *derived placeholder* -- known only from lineage (a placeholder the store created for an
  id lineage named), never deleted, and *derived*: some current edge from outside its
  strongly connected component of placeholders reaches it (in the acyclic case: it has a
  current incoming edge other than a self-loop) -- owns nothing and inherits, exactly like a
  described dataset with no labels of its own. Its view says `inherited_only`.
- Every other node is *undescribed*: a placeholder that nothing described flows into (a
  lineage root nobody described; a cycle of placeholders nothing enters from outside), a
  deleted dataset whatever its inputs, an edge endpoint the index was told nothing about,
  and, with `inherit=False` (the policy's `defaults.undescribed_outputs: deny`), every
  placeholder. It owns the pseudo-origin `UNDESCRIBED`, which flows downstream like any
  origin (no transform removes it): we cannot know what such data contains, so whatever is
  derived from it carries that doubt, with the lineage path to the undescribed node, and the
  router answers DENY / UNKNOWN_DATASET for it. Deleting a source therefore never
  declassifies the copies derived from it. Its lineage edges stay (the store keeps them too)
  and labels keep flowing through it. `get` answers None for an undescribed node itself.

How it is kept (the reasoning the incremental code relies on):

- Per node and label the index stores `(distance, via)`: the length of a shortest path from a
  node owning the label, and the upstream neighbour that path comes through (`None` when
  the node owns it). Paths are built on the first `get` by following `via` (up to the first
  dataset whose view is already built) and cached until a change reaches the dataset; a
  node's `via` always has the label at `distance - 1`, so the walk ends at an owner.
- A change (dataset attributes or kind, an edge added/removed, a declassifier, the
  inheritance switch) can only alter the values of its *downstream closure*. Those values
  are recomputed from the values outside the closure, which are final, in topological order:
  the acyclic part in Kahn order, then the strongly connected components of the rest
  (Tarjan), upstream ones first. Whether a placeholder is derived depends only on its
  component and the edges entering it, all inside the closure, so it is settled there first;
  a component none of whose members is a changed node or changed kind, and none of whose
  external upstream neighbours changed value, is skipped: its inputs are what they were.
- A multi-node component starts from the bottom (no labels) and is iterated with a worklist
  to its least fixpoint (a label-correcting shortest-path computation); a self-loop never
  contributes (the label is already there, one step closer), so it is ignored.
- What an edge removes is asked of `Removes` once per (transform, job, label) among the
  labels some dataset owns, and kept per (transform, job): a policy change recomputes only
  downstream of edges whose removed set changed, so granting a job a transform later also
  honours its past runs.

Memory: labels, origins, locations and dataset ids of datasets are interned, datasets with
equal own label/origin sets share one frozenset, and nodes without labels/origins hold no
table at all. Edges are kept as given: `EdgeRow`s from a start-up snapshot, `Edge` values from
the change feed (they hold the strings anyway).

The index is not thread-safe: one owner (the router runtime, on its event loop) mutates and
reads it; `copy` gives another thread a private index to change (the router folds large
batches of changes that way, then swaps the result in).
"""

from __future__ import annotations

import enum
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from types import MappingProxyType
from typing import NamedTuple

from domicile.catalog.model import Change, ChangeKind, Dataset, Edge, EdgeKey, EdgeRow, ResidencyRow
from domicile.router.types import UNDESCRIBED, EffectiveAttributes

Removes = Callable[[str, str, str], bool]
"""`removes(transform, job, label)`: True when a lineage edge recorded by `job` with
`transform` strips `label` -- the transform removes the label and the job is granted it.

Comes from the compiled policy's declassifiers; it must be hierarchical itself (a transform
removing `PII` answers True for `PII.CONTACT`) and pure (the index asks once per transform,
job and label, and again only on `set_declassifier`). The empty transform (a plain copy or
join, which no policy can name) removes nothing and is not asked about.
"""

# (distance, via): how a node got a label/origin. Own values share one tuple.
_Step = tuple[int, "str | None"]
_OWN: _Step = (0, None)
_Table = dict[str, _Step]
_NO_VALUES: _Table = {}  # read-only stand-in for "no table"; never mutated


def _removes_nothing(transform: str, job: str, label: str) -> bool:
    return False


class NodeKind(enum.Enum):
    """What the index knows of an id (see the module docstring)."""

    DESCRIBED = "described"
    DERIVED = "derived"  # a derived placeholder: judged by what it inherits
    UNDESCRIBED_PLACEHOLDER = "undescribed placeholder"  # a lineage root nobody described, or any with inherit off
    DELETED = "deleted"  # on lineage edges, neither described nor a placeholder: deleted (or never told)
    UNKNOWN = "unknown"


class _Own(NamedTuple):
    """A dataset's own attributes (a NamedTuple: cheap to build 100k of them)."""

    labels: frozenset[str]
    origins: frozenset[str]
    locations: tuple[str, ...]


class EffectiveIndex:
    """In-memory effective attributes of every dataset, maintained under catalog changes.

    Mutations (`set_dataset`, `remove_dataset`, `add_edge`, `remove_edge`,
    `set_declassifier`, `set_inheritance`, `apply`) return only when every affected dataset
    is up to date, so the next `get` reflects them. `apply` recomputes once for a whole
    batch, which is how the router follows the change feed and how `build` loads a full
    catalog.

    `inherit` is the policy's `defaults.undescribed_outputs`: True (`inherit`) judges derived
    placeholders by what they inherit, False (`deny`) leaves every placeholder undescribed.
    """

    def __init__(self, removes: Removes | None = None, *, inherit: bool = True) -> None:
        self._removes: Removes = removes or _removes_nothing
        self._inherit = inherit
        # Every label some dataset owns (only those can flow), and for every (transform, job)
        # on an edge the ones among them it removes: `removes` is asked once per pair and label.
        self._known_labels: set[str] = set()
        self._removed_by: dict[str, dict[str, frozenset[str]]] = {}  # transform -> job -> labels
        self._shared_sets: dict[frozenset[str], frozenset[str]] = {}
        self._own: dict[str, _Own] = {}
        self._placeholders: set[str] = set()
        self._derived: set[str] = set()  # the placeholders judged by inheritance now
        # output -> (input, job) -> edge: the incoming edges, keyed by the rest of the EdgeKey.
        self._in: dict[str, dict[tuple[str, str], Edge | EdgeRow]] = {}
        self._out: dict[str, dict[str, int]] = {}  # input -> output -> number of edges
        self._labels: dict[str, _Table] = {}
        self._origins: dict[str, _Table] = {}
        self._views: dict[str, EffectiveAttributes] = {}

    @classmethod
    def build(
        cls, datasets: Iterable[Dataset], edges: Iterable[Edge], removes: Removes | None = None, *, inherit: bool = True
    ) -> EffectiveIndex:
        """An index over `datasets` (placeholders among them are known as such) and the
        current `edges`, computed once from scratch."""
        index = cls(removes, inherit=inherit)
        for dataset in datasets:
            index._put_dataset(dataset)
        for edge in edges:
            index._put_current_edge(edge)
        nodes = index._nodes()
        index._recompute(nodes, closure=nodes)
        return index

    @classmethod
    def from_snapshot(
        cls,
        datasets: Iterable[ResidencyRow],
        edges: Iterable[EdgeRow],
        removes: Removes | None = None,
        *,
        placeholders: Iterable[str] = (),
        inherit: bool = True,
    ) -> EffectiveIndex:
        """`build` from a store's `residency_snapshot` (described datasets, placeholder ids and
        current edges, reduced to what the index reads: the router's start-up)."""
        index = cls(removes, inherit=inherit)
        for row in datasets:
            index._put_row(row)
        for dataset_id in placeholders:
            index._put_placeholder(dataset_id)
        for edge in edges:
            index._put_edge(edge)
        nodes = index._nodes()
        index._recompute(nodes, closure=nodes)
        return index

    def copy(self) -> EffectiveIndex:
        """An independent index with the same content, to change aside while this one answers.

        Safe to call on another thread while the owner only reads this index (`get` caches
        views, and the views are copied in one step): what the two share -- edges, attribute
        tables, own attributes -- is never changed in place, only replaced.
        """
        twin = EffectiveIndex.__new__(EffectiveIndex)
        twin._views = self._views.copy()
        twin._removes = self._removes
        twin._inherit = self._inherit
        twin._known_labels = set(self._known_labels)
        twin._removed_by = {transform: dict(by_job) for transform, by_job in self._removed_by.items()}
        twin._shared_sets = dict(self._shared_sets)
        twin._own = dict(self._own)
        twin._placeholders = set(self._placeholders)
        twin._derived = set(self._derived)
        twin._in = {output: dict(edges) for output, edges in self._in.items()}
        twin._out = {input: dict(outputs) for input, outputs in self._out.items()}
        twin._labels = dict(self._labels)
        twin._origins = dict(self._origins)
        return twin

    # ---- reads -------------------------------------------------------------------------

    def get(self, dataset_id: str) -> EffectiveAttributes | None:
        """The effective attributes of a described dataset or a derived placeholder (its view
        says `inherited_only`); None for anything undescribed or unknown (`kind` says which).

        Label and origin mappings are sorted by value; each path runs from the contributing
        dataset to `dataset_id` and is a shortest such path. The returned value is immutable
        and cached until a change reaches the dataset.
        """
        view = self._views.get(dataset_id)
        if view is not None:
            return view
        own = self._own.get(dataset_id)
        if own is None:
            if dataset_id not in self._derived:
                return None
            locations: tuple[str, ...] = ()
        else:
            locations = own.locations
        view = EffectiveAttributes(
            dataset_id=dataset_id,
            classifications=self._paths(dataset_id, self._labels, "classifications"),
            origins=self._paths(dataset_id, self._origins, "origins"),
            locations=locations,
            inherited_only=own is None,
        )
        self._views[dataset_id] = view
        return view

    def kind(self, dataset_id: str) -> NodeKind:
        """What the index knows of `dataset_id` (see the module docstring)."""
        if dataset_id in self._own:
            return NodeKind.DESCRIBED
        if dataset_id in self._derived:
            return NodeKind.DERIVED
        if dataset_id in self._placeholders:
            return NodeKind.UNDESCRIBED_PLACEHOLDER
        if dataset_id in self._in or dataset_id in self._out:
            return NodeKind.DELETED
        return NodeKind.UNKNOWN

    def values(self, dataset_id: str) -> tuple[Iterable[str], Iterable[str], tuple[str, ...]] | None:
        """(effective labels, effective origins, locations) of what `get` answers for, without
        building its view (no paths): for counting over the whole catalog. None otherwise."""
        own = self._own.get(dataset_id)
        if own is None and dataset_id not in self._derived:
            return None
        return (
            self._labels.get(dataset_id, _NO_VALUES).keys(),
            self._origins.get(dataset_id, _NO_VALUES).keys(),
            own.locations if own is not None else (),
        )

    def constraints(self, node: str) -> frozenset[str]:
        """The effective labels and origins of any node, `UNDESCRIBED` included (what a
        lineage change can loosen); empty for a node the index holds nothing for."""
        return frozenset((*self._labels.get(node, _NO_VALUES), *self._origins.get(node, _NO_VALUES)))

    def downstream(self, nodes: Iterable[str]) -> set[str]:
        """`nodes` and every node lineage leads to from them."""
        return self._downstream(set(nodes))

    def edges_into(self, node: str) -> list[tuple[str, str, str]]:
        """(input, job, transform) of the current edges into `node`."""
        return [(edge.input, edge.job, edge.transform) for edge in self._in.get(node, _NO_EDGES).values()]

    def edge_transform(self, input: str, output: str, job: str) -> str | None:
        """The transform of the current edge `output DERIVED_FROM input` by `job`; None if none."""
        edge = self._in.get(output, _NO_EDGES).get((input, job))
        return None if edge is None else edge.transform

    @property
    def inherit(self) -> bool:
        """Whether derived placeholders are judged by inheritance (see the class docstring)."""
        return self._inherit

    def __contains__(self, dataset_id: object) -> bool:
        """True for the ids `get` answers: described datasets and derived placeholders."""
        return dataset_id in self._own or dataset_id in self._derived

    def __len__(self) -> int:
        return len(self._own) + len(self._derived)

    def views_built(self) -> int:
        """How many datasets' views are built and cached: grows as `get` meets datasets for
        the first time, shrinks when changes invalidate views."""
        return len(self._views)

    def datasets(self) -> Iterator[str]:
        """Ids `get` answers (described datasets and derived placeholders), in no particular order."""
        return iter((*self._own, *self._derived))

    # ---- single changes ----------------------------------------------------------------

    def set_dataset(self, dataset: Dataset) -> None:
        """Register or update a dataset (own labels incl. field labels, origins, locations);
        a `placeholder` dataset is known by name only."""
        self._recompute(self._put_dataset(dataset))

    def remove_dataset(self, dataset_id: str) -> None:
        """Forget a dataset or placeholder: it is deleted, so undescribed; its edges stay.
        Unknown ids are ignored."""
        self._recompute(self._drop_dataset(dataset_id))

    def add_edge(self, edge: Edge) -> None:
        """Add a current lineage edge, or replace the one with the same key."""
        self._recompute(self._put_current_edge(edge))

    def remove_edge(self, key: EdgeKey) -> None:
        """Remove the edge with this key; unknown keys are ignored."""
        self._recompute(self._drop_edge(key))

    def set_declassifier(self, removes: Removes) -> None:
        """Switch to another policy's declassifiers.

        Only datasets downstream of edges whose (transform, job) now removes a different set
        of labels are recomputed; a policy change that leaves declassifiers alone costs one
        `removes` call per (transform, job) and label, and no propagation.
        """
        self._removes = removes
        changed: dict[str, set[str]] = {}
        for transform, by_job in self._removed_by.items():
            for job, removed in by_job.items():
                now_removed = self._removed_labels(transform, job, self._known_labels)
                if now_removed != removed:
                    by_job[job] = now_removed
                    changed.setdefault(transform, set()).add(job)
        if not changed:
            return
        seeds = {
            output
            for output, edges in self._in.items()
            if any(edge.job in changed.get(edge.transform, ()) for edge in edges.values())
        }
        self._recompute(seeds)

    def set_inheritance(self, inherit: bool) -> None:
        """Switch `defaults.undescribed_outputs` (True: inherit, False: deny); recomputes
        downstream of every placeholder when it changes."""
        if inherit == self._inherit:
            return
        self._inherit = inherit
        self._recompute(set(self._placeholders))

    # ---- batches -----------------------------------------------------------------------

    def apply(self, changes: Iterable[Change]) -> set[str]:
        """Apply change-feed entries in order, then recompute once for all of them. Returns
        the ids whose `get` answer may differ now (the changed datasets, whatever changed in
        them, locations included, and the downstream closure that was recomputed).

        EDGE_ENDED removes the edge only when the indexed edge under that key is the one that
        ended (same transform and record time); a newer edge under the same key, added by a
        run with another transform, is kept.
        """
        seeds: set[str] = set()
        touched: set[str] = set()
        try:
            for change in changes:
                if change.kind is ChangeKind.DATASET_UPSERTED:
                    if change.dataset is None:
                        raise ValueError(f"revision {change.revision}: DATASET_UPSERTED without a dataset")
                    touched.add(change.dataset.id)
                    seeds |= self._put_dataset(change.dataset)
                elif change.kind is ChangeKind.DATASET_DELETED:
                    touched.add(change.dataset_id)
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
            touched |= self._recompute(seeds)
        return touched

    # ---- mutation without recomputation: each returns the nodes whose inputs changed ----

    def _put_dataset(self, dataset: Dataset) -> set[str]:
        if dataset.placeholder:
            return self._put_placeholder(dataset.id)
        return self._put_row(dataset.residency_row())

    def _put_placeholder(self, dataset_id: str) -> set[str]:
        node = sys.intern(dataset_id)
        if node in self._placeholders:
            return set()
        self._own.pop(node, None)
        self._views.pop(node, None)
        self._placeholders.add(node)
        return {node}

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
        self._placeholders.discard(node)
        self._views.pop(node, None)
        if previous is not None and previous.labels == own.labels and previous.origins == own.origins:
            return set()
        return {node}

    def _drop_dataset(self, dataset_id: str) -> set[str]:
        known = self._own.pop(dataset_id, None) is not None
        if dataset_id in self._placeholders:
            self._placeholders.discard(dataset_id)
            known = True
        if not known:
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
        by_job = self._removed_by.get(edge.transform)
        if by_job is None:
            by_job = self._removed_by[edge.transform] = {}
        if edge.job not in by_job:
            by_job[edge.job] = self._removed_labels(edge.transform, edge.job, self._known_labels)
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
            # An input seen for the first time without a value: it must be settled (its
            # downstream closure includes `output`).
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
        return set(self._own) | self._placeholders | set(self._in) | set(self._out)

    def _recompute(self, seeds: set[str], closure: set[str] | None = None) -> set[str]:
        """Bring the downstream closure of `seeds` to the least fixpoint (see module doc);
        returns that closure.

        `closure` may be passed when it is known (a full build: every node).
        """
        if not seeds:
            return set()
        if closure is None:
            closure = self._downstream(seeds)
        views = self._views
        for node in closure:
            views.pop(node, None)
        changed: set[str] = set()
        acyclic, components = self._order(closure)
        for node in acyclic:
            recast = self._settle_kind(node, self._has_outside_input(node, ()))
            if recast or node in seeds or self._has_changed_input(node, changed, ()):
                labels, origins = self._evaluate(node)
                if self._store(node, labels, origins):
                    changed.add(node)
        for component in components:
            if len(component) == 1:  # a self-loop, or downstream of a cycle
                node = component[0]
                recast = self._settle_kind(node, self._has_outside_input(node, component))
                if recast or node in seeds or self._has_changed_input(node, changed, component):
                    labels, origins = self._evaluate(node)
                    if self._store(node, labels, origins):
                        changed.add(node)
                continue
            members = set(component)
            # Placeholders of a component are derived together: when something described (or
            # deleted) is among them, or an edge enters the component from outside.
            derived = any(node not in self._placeholders for node in component) or any(
                self._has_outside_input(node, members) for node in component
            )
            recast = False
            for node in component:
                recast |= self._settle_kind(node, derived)
            if (
                recast
                or not seeds.isdisjoint(members)
                or any(self._has_changed_input(node, changed, members) for node in component)
            ):
                changed.update(self._solve_component(component, members))
        return closure

    def _settle_kind(self, node: str, entered: bool) -> bool:
        """Make `node` derived or not, `entered` telling whether lineage from outside its
        component reaches it; True when that changed."""
        derived = entered and self._inherit and node in self._placeholders
        if derived == (node in self._derived):
            return False
        if derived:
            self._derived.add(node)
        else:
            self._derived.discard(node)
        return True

    def _has_outside_input(self, node: str, component: Collection[str]) -> bool:
        incoming = self._in.get(node)
        if not incoming:
            return False
        return any(edge.input != node and edge.input not in component for edge in incoming.values())

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
        if own is not None:
            labels: _Table = dict.fromkeys(own.labels, _OWN)
            origins: _Table = dict.fromkeys(own.origins, _OWN)
        else:
            labels = {}
            origins = {} if node in self._derived else {UNDESCRIBED: _OWN}
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
                removed = removed_by[edge.transform][edge.job]
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
        """Add labels to the known ones, extending every (transform, job)'s removed set."""
        self._known_labels |= new_labels
        for transform, by_job in self._removed_by.items():
            for job, removed in by_job.items():
                newly_removed = self._removed_labels(transform, job, new_labels)
                if newly_removed:
                    by_job[job] = removed | newly_removed

    def _removed_labels(self, transform: str, job: str, labels: Iterable[str]) -> frozenset[str]:
        if not transform:
            return _NOTHING  # a plain copy or join (no policy names the empty transform)
        return frozenset(label for label in labels if self._removes(transform, job, label))

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


_NOTHING: frozenset[str] = frozenset()
_NO_EDGES: dict[tuple[str, str], Edge] = {}
_NO_SUCCESSORS: dict[str, int] = {}
_EMPTY_PATHS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({})
