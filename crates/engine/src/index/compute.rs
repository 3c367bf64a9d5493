//! Computing the index's values: a full build, a worklist for edges that only add, and the
//! recomputation of a downstream closure for everything else (see the module doc of `index`).

use std::collections::{HashMap, HashSet, VecDeque};

use super::graph::{is_removed, Grants, Graph, Kind};
use super::{Delta, Entry, NodeId, NodeValue, Status, View};
use crate::symbols::{Key, Symbols};

/// How many nodes `Graph::anchored` looks at before giving up (the caller then recomputes the
/// closure instead).
const ANCHOR_SEARCH_LIMIT: usize = 10_000;

/// Node values as a computation reads and writes them.
trait Values {
    fn value(&self, node: NodeId) -> (Status, &[Entry]);
    fn set(&mut self, node: NodeId, value: NodeValue);
}

/// A full build's values, one per node.
impl Values for Vec<NodeValue> {
    fn value(&self, node: NodeId) -> (Status, &[Entry]) {
        let value = &self[node as usize];
        (value.status, &value.values)
    }

    fn set(&mut self, node: NodeId, value: NodeValue) {
        self[node as usize] = value;
    }
}

/// The view with a delta over it.
struct Overlay<'a> {
    view: &'a View,
    delta: &'a mut Delta,
}

impl Values for Overlay<'_> {
    fn value(&self, node: NodeId) -> (Status, &[Entry]) {
        self.delta.get(self.view, node)
    }

    fn set(&mut self, node: NodeId, value: NodeValue) {
        self.delta.values.insert(node, value);
    }
}

impl Graph {
    /// Every node's value from scratch, indexed by node.
    pub(crate) fn build(&self, grants: &mut Grants, symbols: &Symbols) -> Vec<NodeValue> {
        let count = self.nodes.len();
        let mut values: Vec<NodeValue> = vec![NodeValue::default(); count];
        let mut evaluation = Evaluation { graph: self, grants, symbols };
        // Kahn: a node is ready once all its inputs are evaluated (one count per edge).
        let mut pending: Vec<u32> = self.nodes.iter().map(|n| n.inputs.len() as u32).collect();
        let mut ready: Vec<NodeId> = (0..count as NodeId).filter(|&n| pending[n as usize] == 0).collect();
        while let Some(node) = ready.pop() {
            let value = evaluation.evaluate(node, None, &values);
            values[node as usize] = value;
            for &next in &self.nodes[node as usize].outputs {
                let left = &mut pending[next as usize];
                *left -= 1;
                if *left == 0 {
                    ready.push(next);
                }
            }
        }
        // What is left: the cycles and what lies below them.
        let rest: Vec<NodeId> = (0..count as NodeId).filter(|&n| pending[n as usize] > 0).collect();
        for component in self.components(&rest, |n| pending[n as usize] > 0) {
            if let [node] = component[..] {
                let value = evaluation.evaluate(node, None, &values);
                values[node as usize] = value;
            } else {
                let members: HashSet<NodeId> = component.iter().copied().collect();
                evaluation.solve_component(&component, &members, &mut values);
            }
        }
        values
    }

    /// Whether edges just added (`added`, as (input, output)) leave every node's status as it
    /// was, so that values can only grow (the worklist of `propagate` is then exact). With
    /// placeholders judged by their lineage, a status changes only when an edge enters a
    /// placeholder nothing entered, or closes a cycle that nothing enters any more.
    pub(crate) fn only_adds(&self, added: &[(NodeId, NodeId)], view: &View, inherit: bool) -> bool {
        !inherit
            || added.iter().all(|&(input, output)| {
                input == output || (view.get(output).status != Status::UndescribedPlaceholder && self.anchored(input))
            })
    }

    /// Whether some node upstream of `node` (itself included) enters every strongly connected
    /// component below it: one that is not a placeholder, or that has no input but itself.
    /// A cycle that nothing enters is made of placeholders whose every ancestor is in it, so
    /// a cycle through `node` is entered when this holds. False when the search is too long.
    fn anchored(&self, node: NodeId) -> bool {
        let mut seen: HashSet<NodeId> = HashSet::from([node]);
        let mut stack = vec![node];
        while let Some(current) = stack.pop() {
            let graph_node = &self.nodes[current as usize];
            if graph_node.kind != Kind::Placeholder || !graph_node.has_external_input(current) {
                return true;
            }
            if seen.len() > ANCHOR_SEARCH_LIMIT {
                return false;
            }
            for edge in &graph_node.inputs {
                if seen.insert(edge.input) {
                    stack.push(edge.input);
                }
            }
        }
        false
    }

    /// Re-evaluates `seeds` and, downstream of them, every node an input of which changed
    /// value, into `delta`. Exact only when values can only grow (see `only_adds`); statuses
    /// stay as they are, except for nodes named for the first time.
    pub(crate) fn propagate(&self, grants: &mut Grants, view: &View, seeds: &HashSet<NodeId>, delta: &mut Delta) {
        let mut evaluation = Evaluation { graph: self, grants, symbols: &view.symbols };
        let mut values = Overlay { view, delta };
        let mut queue: VecDeque<NodeId> = seeds.iter().copied().collect();
        let mut queued: HashSet<NodeId> = seeds.clone();
        while let Some(node) = queue.pop_front() {
            queued.remove(&node);
            let entered = match view.get(node).status {
                Status::Unknown => None,
                status => Some(status == Status::Derived),
            };
            let value = evaluation.evaluate(node, entered, &values);
            let (status, current) = values.value(node);
            if status == value.status && *current == *value.values {
                continue;
            }
            values.set(node, value);
            for &next in &self.nodes[node as usize].outputs {
                if queued.insert(next) {
                    queue.push_back(next);
                }
            }
        }
    }

    /// Brings the downstream closure of `seeds` to the least fixpoint, into `delta` (which then
    /// holds only values that differ from the view's).
    pub(crate) fn recompute(&self, grants: &mut Grants, view: &View, seeds: &HashSet<NodeId>, delta: &mut Delta) {
        if seeds.is_empty() {
            return;
        }
        let closure = self.downstream(seeds);
        let (acyclic, components) = self.order(&closure);
        let mut changed: HashSet<NodeId> = HashSet::new();
        let inherit = grants.inherits();
        let mut evaluation = Evaluation { graph: self, grants, symbols: &view.symbols };
        let mut values = Overlay { view, delta };
        // A placeholder's status depends on the lineage's structure (whether anything enters its
        // strongly connected component), not only on its inputs' values: a cycle that an ended
        // edge broke leaves undescribed placeholders that lineage now enters.
        let undescribed = |node: NodeId| {
            inherit
                && self.nodes[node as usize].kind == Kind::Placeholder
                && view.get(node).status == Status::UndescribedPlaceholder
        };
        for node in acyclic {
            let entered_now = || undescribed(node) && self.nodes[node as usize].has_external_input(node);
            if seeds.contains(&node) || entered_now() || self.has_changed_input(node, &changed, None) {
                let value = evaluation.evaluate(node, None, &values);
                if store(&mut values, node, value) {
                    changed.insert(node);
                }
            }
        }
        for component in components {
            let members: HashSet<NodeId> = component.iter().copied().collect();
            let entered_now = || {
                component.iter().any(|&n| undescribed(n))
                    && component.iter().any(|&n| {
                        let node = &self.nodes[n as usize];
                        node.kind != Kind::Placeholder || node.inputs.iter().any(|e| !members.contains(&e.input))
                    })
            };
            let touched = component.iter().any(|n| seeds.contains(n))
                || entered_now()
                || component.iter().any(|&n| self.has_changed_input(n, &changed, Some(&members)));
            if !touched {
                continue;
            }
            if let [node] = component[..] {
                let value = evaluation.evaluate(node, None, &values);
                if store(&mut values, node, value) {
                    changed.insert(node);
                }
                continue;
            }
            let before: Vec<NodeValue> = component.iter().map(|&n| owned(&values, n)).collect();
            evaluation.solve_component(&component, &members, &mut values);
            for (&node, old) in component.iter().zip(before) {
                let view_value = view.get(node);
                let delta = &mut *values.delta;
                if delta
                    .values
                    .get(&node)
                    .is_some_and(|new| new.status == view_value.status && new.values == view_value.values)
                {
                    delta.values.remove(&node);
                }
                if owned(&values, node) != old {
                    changed.insert(node);
                }
            }
        }
    }

    /// The nodes whose answers `delta` changes: those whose status, effective attributes or
    /// locations it sets, and those whose lineage path for a label or origin runs through a
    /// node whose entry for it changed (a path is read through `via`, so a node can keep its
    /// entry and still get another path).
    pub(crate) fn affected(&self, view: &View, delta: &Delta) -> Vec<NodeId> {
        let mut found: HashSet<NodeId> = delta.locations.iter().map(|(node, _)| *node).collect();
        let mut pending: Vec<(NodeId, Key)> = Vec::new();
        for (&node, value) in &delta.values {
            found.insert(node);
            let before = &view.get(node).values;
            pending.extend(value.values.iter().filter(|e| !before.contains(e)).map(|e| (node, e.key)));
        }
        let mut seen: HashSet<(NodeId, Key)> = pending.iter().copied().collect();
        while let Some((node, key)) = pending.pop() {
            for &next in &self.nodes[node as usize].outputs {
                let (_, values) = delta.get(view, next);
                let through = values.binary_search_by_key(&key, |e| e.key).is_ok_and(|at| values[at].via == node);
                if through && seen.insert((next, key)) {
                    found.insert(next);
                    pending.push((next, key));
                }
            }
        }
        let mut nodes: Vec<NodeId> = found.into_iter().collect();
        nodes.sort_unstable();
        nodes
    }

    /// An evaluation order for `nodes`: first every node not in or below a cycle, in
    /// topological order (Kahn), then the strongly connected components of the rest, upstream
    /// ones first. Lineage is mostly acyclic, and Kahn is the cheaper pass.
    fn order(&self, nodes: &[NodeId]) -> (Vec<NodeId>, Vec<Vec<NodeId>>) {
        let mut pending: HashMap<NodeId, u32> = nodes.iter().map(|&n| (n, 0)).collect();
        for &node in nodes {
            for next in &self.nodes[node as usize].outputs {
                if let Some(count) = pending.get_mut(next) {
                    *count += 1;
                }
            }
        }
        let mut ready: Vec<NodeId> = nodes.iter().copied().filter(|n| pending[n] == 0).collect();
        let mut acyclic = Vec::with_capacity(nodes.len());
        while let Some(node) = ready.pop() {
            acyclic.push(node);
            for next in &self.nodes[node as usize].outputs {
                if let Some(count) = pending.get_mut(next) {
                    *count -= 1;
                    if *count == 0 {
                        ready.push(*next);
                    }
                }
            }
        }
        if acyclic.len() == nodes.len() {
            return (acyclic, Vec::new());
        }
        let rest: Vec<NodeId> = nodes.iter().copied().filter(|n| pending[n] > 0).collect();
        let components = self.components(&rest, |n| pending.get(&n).is_some_and(|&count| count > 0));
        (acyclic, components)
    }

    /// Strongly connected components of the subgraph on `nodes` (those `member` holds for),
    /// upstream ones first (iterative Tarjan: it emits a component after every component
    /// reachable from it).
    fn components(&self, nodes: &[NodeId], member: impl Fn(NodeId) -> bool) -> Vec<Vec<NodeId>> {
        if nodes.is_empty() {
            return Vec::new();
        }
        // Per node: 0 while unvisited, else its visit number + 1; and its low link.
        let count = self.nodes.len();
        let mut index = vec![0u32; count];
        let mut low = vec![0u32; count];
        let mut on_stack = vec![false; count];
        let mut visited = 0u32;
        let mut stack: Vec<NodeId> = Vec::new();
        let mut emitted = Vec::new();
        for &root in nodes {
            if index[root as usize] != 0 {
                continue;
            }
            let mut work: Vec<(NodeId, usize)> = vec![(root, 0)];
            visited += 1;
            index[root as usize] = visited;
            low[root as usize] = visited;
            stack.push(root);
            on_stack[root as usize] = true;
            while let Some(&mut (node, ref mut position)) = work.last_mut() {
                let outputs = &self.nodes[node as usize].outputs;
                if *position < outputs.len() {
                    let next = outputs[*position];
                    *position += 1;
                    if !member(next) {
                        continue;
                    }
                    if index[next as usize] == 0 {
                        visited += 1;
                        index[next as usize] = visited;
                        low[next as usize] = visited;
                        stack.push(next);
                        on_stack[next as usize] = true;
                        work.push((next, 0));
                    } else if on_stack[next as usize] {
                        low[node as usize] = low[node as usize].min(index[next as usize]);
                    }
                    continue;
                }
                work.pop();
                let node_low = low[node as usize];
                if let Some(&(parent, _)) = work.last() {
                    low[parent as usize] = low[parent as usize].min(node_low);
                }
                if node_low == index[node as usize] {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack[member as usize] = false;
                        component.push(member);
                        if member == node {
                            break;
                        }
                    }
                    emitted.push(component);
                }
            }
        }
        emitted.reverse();
        emitted
    }

    /// Whether an input of `node` outside its component got a new value in this pass.
    fn has_changed_input(&self, node: NodeId, changed: &HashSet<NodeId>, component: Option<&HashSet<NodeId>>) -> bool {
        !changed.is_empty()
            && self.nodes[node as usize]
                .inputs
                .iter()
                .any(|e| changed.contains(&e.input) && !component.is_some_and(|c| c.contains(&e.input)))
    }
}

/// Records `value` for `node`; true when it differs from what the node had.
fn store(values: &mut Overlay<'_>, node: NodeId, value: NodeValue) -> bool {
    let (status, current) = values.value(node);
    if status == value.status && *current == *value.values {
        return false;
    }
    values.set(node, value);
    true
}

fn owned(values: &impl Values, node: NodeId) -> NodeValue {
    let (status, entries) = values.value(node);
    NodeValue { status, values: entries.into() }
}

/// One computation: the structure, the grants and the labels' hierarchy.
struct Evaluation<'a> {
    graph: &'a Graph,
    grants: &'a mut Grants,
    symbols: &'a Symbols,
}

impl Evaluation<'_> {
    /// One application of the defining equations to `node` from its inputs' current values.
    /// `entered` says whether a placeholder is entered when that is decided elsewhere (for a
    /// component as a whole); else it is entered when it has an input other than itself.
    fn evaluate(&mut self, node: NodeId, entered: Option<bool>, values: &impl Values) -> NodeValue {
        let graph_node = &self.graph.nodes[node as usize];
        let undescribed = Entry { key: Key::UNDESCRIBED, distance: 0, via: node };
        let (status, mut found): (Status, Vec<Entry>) = match graph_node.kind {
            Kind::Described => {
                (Status::Described, graph_node.own.iter().map(|&key| Entry { key, distance: 0, via: node }).collect())
            }
            Kind::Deleted => (Status::Deleted, vec![undescribed]),
            Kind::Placeholder => {
                let entered = entered.unwrap_or_else(|| graph_node.has_external_input(node));
                if self.grants.inherits() && entered {
                    (Status::Derived, Vec::new())
                } else {
                    (Status::UndescribedPlaceholder, vec![undescribed])
                }
            }
        };
        for edge in &graph_node.inputs {
            if edge.input == node {
                continue; // a self-loop never brings anything new
            }
            let (_, upstream) = values.value(edge.input);
            if upstream.is_empty() {
                continue;
            }
            let removed = self.grants.removed(self.graph, self.symbols, edge.transform, edge.job);
            for entry in upstream {
                if let Some(removed) = &removed {
                    if !entry.key.is_origin() && is_removed(removed, entry.key.id(), self.symbols) {
                        continue;
                    }
                }
                found.push(Entry { key: entry.key, distance: entry.distance + 1, via: edge.input });
            }
        }
        // Shortest first per key; the sort is stable, so ties keep the earlier edge.
        found.sort_by_key(|e| (e.key, e.distance));
        found.dedup_by_key(|e| e.key);
        NodeValue { status, values: found.into_boxed_slice() }
    }

    /// Least fixpoint of a cyclic component from the bottom (nothing inherited).
    fn solve_component(&mut self, component: &[NodeId], members: &HashSet<NodeId>, values: &mut impl Values) {
        // Its placeholders are derived together: when something described (or deleted) is among
        // them, or an edge enters the component from outside.
        let nodes = &self.graph.nodes;
        let entered = component.iter().any(|&n| nodes[n as usize].kind != Kind::Placeholder)
            || component.iter().any(|&n| nodes[n as usize].inputs.iter().any(|e| !members.contains(&e.input)));
        for &node in component {
            values.set(node, NodeValue::default());
        }
        let mut queue: VecDeque<NodeId> = component.iter().copied().collect();
        let mut queued: HashSet<NodeId> = members.clone();
        while let Some(node) = queue.pop_front() {
            queued.remove(&node);
            let value = self.evaluate(node, Some(entered), values);
            let (status, current) = values.value(node);
            if status == value.status && *current == *value.values {
                continue;
            }
            values.set(node, value);
            for &next in &self.graph.nodes[node as usize].outputs {
                if members.contains(&next) && queued.insert(next) {
                    queue.push_back(next);
                }
            }
        }
    }
}
