//! The index's structure: lineage edges and what each node owns, changed by the writer only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Delta, NodeId, Status, View};
use crate::policy::{CompiledPolicy, UndescribedOutputs};
use crate::symbols::{Interner, Key, Symbols};

/// A change to the catalog, as the index reads it. Times are microseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A dataset registered or updated: its own labels (fields' included), origins, locations.
    Described { id: String, labels: Vec<String>, origins: Vec<String>, locations: Vec<String> },
    /// A dataset (or placeholder) deleted: undescribed from now on, whatever its inputs, until
    /// described again.
    Deleted { id: String },
    /// A dataset known only by name (a lineage placeholder); forgets a description.
    Mentioned { id: String },
    /// A current lineage edge `output DERIVED_FROM input` by `job`; replaces the edge with the
    /// same (input, output, job).
    EdgeAdded { input: String, output: String, job: String, transform: String, recorded: Option<i64> },
    /// An edge that ended: removed when the indexed edge under its key is that version (same
    /// transform and record time; an edge without a record time matches any).
    EdgeEnded { input: String, output: String, job: String, transform: String, recorded: Option<i64> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum Kind {
    /// Deleted, or never told (an edge endpoint without a record).
    #[default]
    Deleted,
    Described,
    /// Known only by name.
    Placeholder,
}

/// i64::MIN: an edge's record time is unknown (an edge from a start-up snapshot).
const UNRECORDED: i64 = i64::MIN;

#[derive(Clone, Copy, Debug)]
pub(super) struct InEdge {
    pub(super) input: NodeId,
    pub(super) job: u32,
    pub(super) transform: u32,
    pub(super) recorded: i64,
}

#[derive(Default)]
pub(super) struct GraphNode {
    pub(super) kind: Kind,
    pub(super) own: Box<[Key]>,
    /// Incoming edges in the order they were added (ties between equally short paths go to
    /// the earlier edge).
    pub(super) inputs: Vec<InEdge>,
    /// One entry per outgoing edge.
    pub(super) outputs: Vec<NodeId>,
}

impl GraphNode {
    pub(super) fn has_external_input(&self, node: NodeId) -> bool {
        self.inputs.iter().any(|e| e.input != node)
    }
}

/// Lineage and what each node owns; mutated only by the writer.
#[derive(Default)]
pub(crate) struct Graph {
    pub(super) nodes: Vec<GraphNode>,
    jobs: Interner,
    transforms: Interner,
}

/// What the index needs of a policy: which (transform, job) pairs remove which labels, and how
/// placeholders are judged. Removed sets are cached per pair.
pub(crate) struct Grants {
    policy: Arc<CompiledPolicy>,
    inherit: bool,
    removed: HashMap<(u32, u32), Option<Arc<[u32]>>>,
}

impl Grants {
    /// The grants of `policy`. Interns the labels its declassifiers remove, so that label ids
    /// learned later are compared correctly.
    pub(crate) fn new(policy: Arc<CompiledPolicy>, symbols: &mut Symbols, graph: &Graph) -> Grants {
        for transform in 0..graph.transforms.len() as u32 {
            if let Some(declassifier) = policy.declassifier(graph.transforms.resolve(transform)) {
                for label in &declassifier.removes {
                    symbols.intern_label(label);
                }
            }
        }
        let inherit = policy.undescribed_outputs() == UndescribedOutputs::Inherit;
        Grants { policy, inherit, removed: HashMap::new() }
    }

    /// Whether derived placeholders inherit (else every placeholder is undescribed).
    pub(crate) fn inherits(&self) -> bool {
        self.inherit
    }

    /// Interns what a new transform's declassifier removes.
    fn learn_transform(&self, transform: &str, symbols: &mut Symbols) {
        if let Some(declassifier) = self.policy.declassifier(transform) {
            for label in &declassifier.removes {
                symbols.intern_label(label);
            }
        }
    }

    /// The label ids an edge with this transform and job removes (with their descendants), or
    /// None when it removes nothing.
    pub(super) fn removed(&mut self, graph: &Graph, symbols: &Symbols, transform: u32, job: u32) -> Option<Arc<[u32]>> {
        if let Some(found) = self.removed.get(&(transform, job)) {
            return found.clone();
        }
        let removed = self
            .policy
            .declassifier(graph.transforms.resolve(transform))
            .filter(|d| d.grants(graph.jobs.resolve(job)))
            .map(|d| d.removes.iter().filter_map(|label| symbols.labels.get(label)).collect::<Arc<[u32]>>())
            .filter(|labels| !labels.is_empty());
        self.removed.insert((transform, job), removed.clone());
        removed
    }
}

pub(super) fn is_removed(removed: &[u32], label: u32, symbols: &Symbols) -> bool {
    let mut current = Some(label);
    while let Some(id) = current {
        if removed.contains(&id) {
            return true;
        }
        current = symbols.label_parent(id);
    }
    false
}

/// A change with its strings interned.
pub(crate) enum Resolved {
    Described { node: NodeId, own: Box<[Key]>, locations: Box<[u32]> },
    Deleted { node: NodeId },
    Mentioned { node: NodeId },
    EdgeAdded { input: NodeId, output: NodeId, job: u32, transform: u32, recorded: i64 },
    EdgeEnded { input: NodeId, output: NodeId, job: u32, transform: u32, recorded: i64 },
}

impl Resolved {
    fn nodes(&self) -> impl Iterator<Item = NodeId> {
        let (first, second) = match *self {
            Resolved::Described { node, .. } | Resolved::Deleted { node } | Resolved::Mentioned { node } => {
                (node, None)
            }
            Resolved::EdgeAdded { input, output, .. } | Resolved::EdgeEnded { input, output, .. } => {
                (input, Some(output))
            }
        };
        std::iter::once(first).chain(second)
    }
}

/// What a batch of changes did to the structure.
pub(crate) struct Mutation {
    /// The nodes whose own values or inputs changed, and those named for the first time.
    pub(crate) seeds: HashSet<NodeId>,
    /// The location updates (the values are still to compute).
    pub(crate) delta: Delta,
    /// The edges the batch added (not those it only re-recorded), as (input, output), when
    /// that is all it did to nodes the view already had; None otherwise.
    pub(crate) only_added: Option<Vec<(NodeId, NodeId)>>,
}

impl Graph {
    /// Interns every string of `changes` (new names become nodes readers see as unknown until
    /// the delta is installed).
    pub(crate) fn resolve(&mut self, changes: &[Change], symbols: &mut Symbols, grants: &Grants) -> Vec<Resolved> {
        let resolved = changes
            .iter()
            .map(|change| match change {
                Change::Described { id, labels, origins, locations } => Resolved::Described {
                    node: symbols.names.intern(id),
                    own: own_keys(symbols, labels.iter().map(String::as_str), origins.iter().map(String::as_str)),
                    locations: locations.iter().map(|l| symbols.locations.intern(l)).collect(),
                },
                Change::Deleted { id } => Resolved::Deleted { node: symbols.names.intern(id) },
                Change::Mentioned { id } => Resolved::Mentioned { node: symbols.names.intern(id) },
                Change::EdgeAdded { input, output, job, transform, recorded }
                | Change::EdgeEnded { input, output, job, transform, recorded } => {
                    let input = symbols.names.intern(input);
                    let output = symbols.names.intern(output);
                    let job = self.jobs.intern(job);
                    let transform = self.intern_transform(transform, symbols, grants);
                    let recorded = recorded.unwrap_or(UNRECORDED);
                    if matches!(change, Change::EdgeAdded { .. }) {
                        Resolved::EdgeAdded { input, output, job, transform, recorded }
                    } else {
                        Resolved::EdgeEnded { input, output, job, transform, recorded }
                    }
                }
            })
            .collect();
        self.cover(symbols.names.len());
        resolved
    }

    fn intern_transform(&mut self, transform: &str, symbols: &mut Symbols, grants: &Grants) -> u32 {
        let known = self.transforms.len();
        let id = self.transforms.intern(transform);
        if self.transforms.len() > known {
            grants.learn_transform(transform, symbols);
        }
        id
    }

    /// Grows the node table to `count` nodes.
    fn cover(&mut self, count: usize) {
        if self.nodes.len() < count {
            self.nodes.resize_with(count, GraphNode::default);
        }
    }

    /// Applies resolved changes to the structure.
    pub(crate) fn mutate(&mut self, changes: Vec<Resolved>, view: &View) -> Mutation {
        // A node named for the first time is evaluated even when the change leaves its kind as
        // it was (a deletion, or an edge endpoint nobody described): it is no longer unknown.
        let is_new = |node: NodeId| view.get(node).status == Status::Unknown;
        let mut seeds: HashSet<NodeId> = changes.iter().flat_map(Resolved::nodes).filter(|&n| is_new(n)).collect();
        let mut delta = Delta::default();
        let mut locations: HashMap<NodeId, Box<[u32]>> = HashMap::new();
        let mut added = Vec::new();
        let mut only_added = true;
        for change in changes {
            match change {
                Resolved::Described { node, own, locations: new_locations } => {
                    let graph_node = &mut self.nodes[node as usize];
                    if graph_node.kind != Kind::Described || graph_node.own != own {
                        seeds.insert(node);
                        only_added &= is_new(node);
                    }
                    graph_node.kind = Kind::Described;
                    graph_node.own = own;
                    locations.insert(node, new_locations);
                }
                Resolved::Deleted { node } => {
                    let graph_node = &mut self.nodes[node as usize];
                    if graph_node.kind != Kind::Deleted {
                        seeds.insert(node);
                        only_added &= is_new(node);
                    }
                    graph_node.kind = Kind::Deleted;
                    graph_node.own = Box::new([]);
                    locations.insert(node, Box::new([]));
                }
                Resolved::Mentioned { node } => {
                    let graph_node = &mut self.nodes[node as usize];
                    if graph_node.kind != Kind::Placeholder {
                        seeds.insert(node);
                        only_added &= is_new(node);
                    }
                    graph_node.kind = Kind::Placeholder;
                    graph_node.own = Box::new([]);
                    locations.insert(node, Box::new([]));
                }
                Resolved::EdgeAdded { input, output, job, transform, recorded } => {
                    let inputs = &mut self.nodes[output as usize].inputs;
                    match inputs.iter_mut().find(|e| e.input == input && e.job == job) {
                        Some(edge) => {
                            if edge.transform != transform {
                                seeds.insert(output);
                                only_added = false;
                            }
                            edge.transform = transform;
                            edge.recorded = recorded;
                        }
                        None => {
                            inputs.push(InEdge { input, job, transform, recorded });
                            self.nodes[input as usize].outputs.push(output);
                            seeds.insert(output);
                            added.push((input, output));
                        }
                    }
                }
                Resolved::EdgeEnded { input, output, job, transform, recorded } => {
                    let inputs = &mut self.nodes[output as usize].inputs;
                    let position = inputs.iter().position(|e| {
                        e.input == input
                            && e.job == job
                            && e.transform == transform
                            && (e.recorded == UNRECORDED || recorded == UNRECORDED || e.recorded == recorded)
                    });
                    if let Some(position) = position {
                        inputs.remove(position);
                        let outputs = &mut self.nodes[input as usize].outputs;
                        if let Some(at) = outputs.iter().position(|&o| o == output) {
                            outputs.swap_remove(at);
                        }
                        seeds.insert(output);
                        only_added = false;
                    }
                }
            }
        }
        for (node, new_locations) in locations {
            if view.get(node).locations != new_locations {
                delta.locations.push((node, new_locations));
            }
        }
        Mutation { seeds, delta, only_added: only_added.then_some(added) }
    }

    /// The nodes whose value depends on how the policy judges placeholders.
    pub(crate) fn placeholders(&self) -> HashSet<NodeId> {
        (0..self.nodes.len() as NodeId).filter(|&n| self.nodes[n as usize].kind == Kind::Placeholder).collect()
    }

    /// Outputs of the edges whose removed labels differ between two policies' grants.
    pub(crate) fn regranted(&self, before: &mut Grants, after: &mut Grants, symbols: &Symbols) -> HashSet<NodeId> {
        let mut seeds = HashSet::new();
        let mut verdicts: HashMap<(u32, u32), bool> = HashMap::new();
        for (output, node) in self.nodes.iter().enumerate() {
            for edge in &node.inputs {
                let changed = *verdicts.entry((edge.transform, edge.job)).or_insert_with(|| {
                    before.removed(self, symbols, edge.transform, edge.job)
                        != after.removed(self, symbols, edge.transform, edge.job)
                });
                if changed {
                    seeds.insert(output as NodeId);
                    break;
                }
            }
        }
        seeds
    }

    /// The transform of the current edge `output DERIVED_FROM input` by `job`.
    pub(crate) fn transform_of(&self, input: NodeId, output: NodeId, job: &str) -> Option<&Arc<str>> {
        let job = self.jobs.get(job)?;
        let edge = self.nodes.get(output as usize)?.inputs.iter().find(|e| e.input == input && e.job == job)?;
        Some(self.transforms.resolve(edge.transform))
    }

    /// (input, job, transform) of the current edges into `node`.
    pub(crate) fn edges_into(&self, node: NodeId) -> impl Iterator<Item = (NodeId, &Arc<str>, &Arc<str>)> + '_ {
        self.nodes
            .get(node as usize)
            .into_iter()
            .flat_map(|n| n.inputs.iter())
            .map(|e| (e.input, self.jobs.resolve(e.job), self.transforms.resolve(e.transform)))
    }

    /// `seeds` and every node lineage leads to from them.
    pub(crate) fn downstream(&self, seeds: &HashSet<NodeId>) -> Vec<NodeId> {
        let mut seen: HashSet<NodeId> = seeds.clone();
        let mut frontier: Vec<NodeId> = seeds.iter().copied().collect();
        let mut closure = frontier.clone();
        while let Some(node) = frontier.pop() {
            for &next in &self.nodes[node as usize].outputs {
                if seen.insert(next) {
                    closure.push(next);
                    frontier.push(next);
                }
            }
        }
        closure
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        for node in &mut self.nodes {
            node.inputs.shrink_to_fit();
            node.outputs.shrink_to_fit();
        }
        self.nodes.shrink_to_fit();
    }
}

/// A dataset's own labels and origins as sorted keys.
fn own_keys<'s>(
    symbols: &mut Symbols,
    labels: impl Iterator<Item = &'s str>,
    origins: impl Iterator<Item = &'s str>,
) -> Box<[Key]> {
    let mut own: Vec<Key> = labels.map(|l| Key::label(symbols.intern_label(l))).collect();
    own.extend(origins.map(|o| Key::origin(symbols.origins.intern(o))));
    own.sort_unstable();
    own.dedup();
    own.into()
}

/// Fills the structure from a catalog snapshot, row by row, without a `Change` (and its
/// strings) per row: described datasets, then placeholders, then current edges, with what
/// `apply` makes of the matching changes in that order (`Engine::load`).
pub struct Loader<'a> {
    graph: &'a mut Graph,
    symbols: &'a mut Symbols,
    grants: &'a Grants,
    /// Per node.
    locations: Vec<Box<[u32]>>,
    /// (output, edge) in the order given: sorted into the nodes at the end, so that each
    /// node's inputs are allocated once.
    edges: Vec<(NodeId, InEdge)>,
}

impl<'a> Loader<'a> {
    /// A loader into `graph`, whose nodes are located as `locations` says.
    pub(crate) fn new(
        graph: &'a mut Graph,
        symbols: &'a mut Symbols,
        grants: &'a Grants,
        mut locations: Vec<Box<[u32]>>,
    ) -> Self {
        locations.resize_with(graph.nodes.len(), Box::default);
        Loader { graph, symbols, grants, locations, edges: Vec::new() }
    }

    fn node(&mut self, id: &str) -> NodeId {
        let node = self.symbols.names.intern(id);
        if node as usize == self.graph.nodes.len() {
            self.graph.nodes.push(GraphNode::default());
            self.locations.push(Box::default());
        }
        node
    }

    /// A described dataset: its own labels (fields' included), origins and locations.
    pub fn described<'s>(
        &mut self,
        id: &str,
        labels: impl IntoIterator<Item = &'s str>,
        origins: impl IntoIterator<Item = &'s str>,
        locations: impl IntoIterator<Item = &'s str>,
    ) {
        let node = self.node(id);
        let own = own_keys(self.symbols, labels.into_iter(), origins.into_iter());
        let graph_node = &mut self.graph.nodes[node as usize];
        graph_node.kind = Kind::Described;
        graph_node.own = own;
        self.locations[node as usize] = locations.into_iter().map(|l| self.symbols.locations.intern(l)).collect();
    }

    /// A dataset known only by name.
    pub fn placeholder(&mut self, id: &str) {
        let node = self.node(id);
        let graph_node = &mut self.graph.nodes[node as usize];
        graph_node.kind = Kind::Placeholder;
        graph_node.own = Box::new([]);
        self.locations[node as usize] = Box::new([]);
    }

    /// A current edge `output DERIVED_FROM input` by `job` (record time unknown).
    pub fn edge(&mut self, input: &str, output: &str, job: &str, transform: &str) {
        let input = self.node(input);
        let output = self.node(output);
        let job = self.graph.jobs.intern(job);
        let transform = self.graph.intern_transform(transform, self.symbols, self.grants);
        self.edges.push((output, InEdge { input, job, transform, recorded: UNRECORDED }));
    }

    /// Puts the edges into the nodes (an edge given twice under one (input, output, job) keeps
    /// its first place and its last transform), and rebuilds every node's outputs; returns
    /// the locations per node.
    pub(crate) fn finish(self) -> Vec<Box<[u32]>> {
        let Loader { graph, locations, mut edges, .. } = self;
        // Stable: each node's new inputs stay in the order given, after the ones it had.
        edges.sort_by_key(|(output, _)| *output);
        let mut rest = &edges[..];
        while let Some(&(output, _)) = rest.first() {
            let count = rest.iter().take_while(|(o, _)| *o == output).count();
            let inputs = &mut graph.nodes[output as usize].inputs;
            inputs.reserve_exact(count);
            inputs.extend(rest[..count].iter().map(|(_, edge)| *edge));
            rest = &rest[count..];
        }
        drop(edges);
        let mut scratch = Vec::new();
        for node in &mut graph.nodes {
            merge_repeated_edges(&mut node.inputs, &mut scratch);
        }
        let mut fan_out = vec![0u32; graph.nodes.len()];
        for node in &graph.nodes {
            for edge in &node.inputs {
                fan_out[edge.input as usize] += 1;
            }
        }
        for (node, &count) in graph.nodes.iter_mut().zip(&fan_out) {
            node.outputs = Vec::with_capacity(count as usize);
        }
        for output in 0..graph.nodes.len() {
            for at in 0..graph.nodes[output].inputs.len() {
                let input = graph.nodes[output].inputs[at].input;
                graph.nodes[input as usize].outputs.push(output as NodeId);
            }
        }
        locations
    }
}

/// Merges edges with the same (input, job) into the first of them, with the last one's
/// transform and record time (a later edge replaces an earlier one under its key).
fn merge_repeated_edges(inputs: &mut Vec<InEdge>, scratch: &mut Vec<(NodeId, u32, u32)>) {
    if inputs.len() < 2 {
        return;
    }
    scratch.clear();
    scratch.extend(inputs.iter().enumerate().map(|(at, e)| (e.input, e.job, at as u32)));
    scratch.sort_unstable();
    if !scratch.windows(2).any(|pair| (pair[0].0, pair[0].1) == (pair[1].0, pair[1].1)) {
        return;
    }
    let mut keep = vec![true; inputs.len()];
    for run in scratch.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (first, last) = (run[0].2 as usize, run[run.len() - 1].2 as usize);
        inputs[first].transform = inputs[last].transform;
        inputs[first].recorded = inputs[last].recorded;
        for &(_, _, at) in &run[1..] {
            keep[at as usize] = false;
        }
    }
    let mut at = 0;
    inputs.retain(|_| {
        at += 1;
        keep[at - 1]
    });
}
