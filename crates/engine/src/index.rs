//! The effective-attributes index: every dataset's effective classifications and origins along
//! lineage, each with one shortest lineage path, kept up to date incrementally.
//!
//! ```text
//! classifications*(d) = own(d) ∪ ⋃ over edges d←i: classifications*(i) − removed(edge)
//! origins*(d)         = own_origins(d) ∪ ⋃ over edges d←i: origins*(i)
//! ```
//!
//! `removed(edge)` are the labels (and their descendants) of the declassifier for the edge's
//! transform, when the policy grants it to the edge's job. Lineage may contain cycles: the
//! index holds the *least* fixpoint.
//!
//! What a node owns:
//! - a *described* dataset (registered, not deleted): its labels (fields' included) and origins;
//! - a *derived placeholder* (known only from lineage, never deleted, and *entered*: some
//!   current edge from outside its strongly connected component reaches it, or a described or
//!   deleted dataset is in that component -- on acyclic lineage: it has an input other than
//!   itself): nothing, it inherits like a described dataset without labels;
//! - an *undescribed* node: a placeholder nothing enters (a lineage root nobody described, a
//!   cycle of placeholders nothing enters from outside), every placeholder when the policy says
//!   `undescribed_outputs: deny`, and a deleted dataset whatever its inputs (an edge endpoint
//!   the index was told nothing about counts as deleted). It owns the pseudo-origin
//!   UNDESCRIBED, which flows downstream like an origin no transform removes, so that whatever
//!   derives from it fails closed.
//!
//! How it is kept (the reasoning the incremental code relies on):
//! - Per node the index stores, per effective label/origin, `(distance, via)`: the length of a
//!   shortest path from a node owning it and the upstream neighbour that path comes through.
//!   Paths are read by following `via` (distances strictly decrease along it).
//! - A change (a dataset, an edge, the policy's grants) can only alter the values of its
//!   downstream closure. Those are recomputed from the values outside the closure, which are
//!   final, in topological order: the acyclic part in Kahn order, then the strongly connected
//!   components of the rest (Tarjan), upstream ones first. A unit none of whose members
//!   changed and none of whose external inputs changed value is skipped.
//! - A multi-node component starts from the bottom (nothing inherited) and is iterated with a
//!   worklist to its least fixpoint (label-correcting shortest paths); a self-loop never
//!   contributes.
//!
//! The structure (edges, what each node owns) belongs to the writer; readers see a published
//! `View` of the values. A batch of changes is computed against the view into a `Delta` and
//! installed at once, so readers always see one consistent state.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::dataset_ids::lookup_form;
use crate::policy::{Attributes, CompiledPolicy, UndescribedOutputs};
use crate::symbols::{Interner, Key, Symbols};

pub type NodeId = u32;

/// One effective label or origin of a node: how far the nearest node owning it is, and the
/// upstream neighbour on a shortest path to it (the node itself when it owns it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub distance: u32,
    pub via: NodeId,
}

/// What a node is, for decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Status {
    /// Mentioned by a change not yet applied, or never.
    #[default]
    Unknown,
    Described,
    /// A derived placeholder: judged by what it inherits.
    Derived,
    /// A placeholder that is not derived: nothing enters it, or the policy judges no
    /// placeholder.
    UndescribedPlaceholder,
    /// Deleted, or an edge endpoint the index was told nothing about.
    Deleted,
}

impl Status {
    /// Whether decisions judge the node by its attributes (else it is unknown).
    pub fn is_known(self) -> bool {
        matches!(self, Status::Described | Status::Derived)
    }
}

/// A node as readers see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    pub status: Status,
    /// Location ids (`Symbols::locations`), as the dataset lists them.
    pub locations: Box<[u32]>,
    /// Sorted by key.
    pub values: Box<[Entry]>,
}

/// The published state of the index: names and values, consistent with each other.
#[derive(Default)]
pub struct View {
    pub symbols: Symbols,
    nodes: Vec<NodeView>,
    unknown: NodeView,
}

impl View {
    /// The node of a dataset id, if any change ever mentioned it: under the id as written (as
    /// stored: ids stored before the naming rules applied may break them), else under its
    /// normal form (`S3://Bank-EU/x` is `s3://bank-eu/x`).
    pub fn node(&self, dataset_id: &str) -> Option<NodeId> {
        self.symbols.names.get(dataset_id).or_else(|| match lookup_form(dataset_id) {
            Cow::Owned(normal) => self.symbols.names.get(&normal),
            Cow::Borrowed(_) => None,
        })
    }

    pub fn get(&self, node: NodeId) -> &NodeView {
        self.nodes.get(node as usize).unwrap_or(&self.unknown)
    }

    pub fn name(&self, node: NodeId) -> &Arc<str> {
        self.symbols.names.resolve(node)
    }

    /// The attributes decisions read of a node that is known (described or derived).
    pub fn attributes(&self, node: NodeId) -> Option<NodeAttributes<'_>> {
        self.get(node).status.is_known().then_some(NodeAttributes { view: self, node })
    }

    /// Every node id, for scans.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> {
        0..self.nodes.len() as NodeId
    }

    /// How many datasets are described.
    pub fn described(&self) -> usize {
        self.nodes.iter().filter(|n| n.status == Status::Described).count()
    }

    fn value(&self, node: NodeId) -> &[Entry] {
        &self.get(node).values
    }

    /// A shortest lineage path of `key` ending at `node`, from the node owning it.
    pub fn path(&self, node: NodeId, key: Key) -> Vec<Arc<str>> {
        walk_path(node, key, |n| self.name(n), |n| self.value(n))
    }

    /// Grows the node table to cover every interned name.
    pub(crate) fn cover_names(&mut self) {
        let count = self.symbols.names.len();
        if self.nodes.len() < count {
            self.nodes.resize_with(count, NodeView::default);
        }
    }

    /// Installs a computed delta.
    pub(crate) fn install(&mut self, delta: Delta) {
        self.cover_names();
        for (node, locations) in delta.locations {
            self.nodes[node as usize].locations = locations;
        }
        for (node, value) in delta.values {
            let view = &mut self.nodes[node as usize];
            view.status = value.status;
            view.values = value.values;
        }
    }

    pub fn shrink_to_fit(&mut self) {
        self.symbols.shrink_to_fit();
        self.nodes.shrink_to_fit();
    }
}

/// The lineage path of `key` ending at `node`: `via` followed upstream to the node owning it,
/// reversed (contributor first).
pub(crate) fn walk_path<'a>(
    node: NodeId,
    key: Key,
    name: impl Fn(NodeId) -> &'a Arc<str>,
    values: impl Fn(NodeId) -> &'a [Entry],
) -> Vec<Arc<str>> {
    let mut path = Vec::new();
    let mut current = node;
    let mut bound: Option<u32> = None;
    loop {
        path.push(name(current).clone());
        let Some(entry) = find(values(current), key) else { break };
        // Distances strictly decrease along `via`: checking it keeps the walk finite even if
        // that invariant were ever broken.
        if entry.distance == 0 || bound.is_some_and(|b| entry.distance >= b) {
            break;
        }
        bound = Some(entry.distance);
        current = entry.via;
    }
    path.reverse();
    path
}

fn find(values: &[Entry], key: Key) -> Option<&Entry> {
    values.binary_search_by_key(&key, |e| e.key).ok().map(|i| &values[i])
}

/// A known node's attributes, read from the view.
pub struct NodeAttributes<'v> {
    view: &'v View,
    node: NodeId,
}

impl NodeAttributes<'_> {
    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn inherited_only(&self) -> bool {
        self.view.get(self.node).status == Status::Derived
    }
}

impl Attributes for NodeAttributes<'_> {
    fn dataset_id(&self) -> &Arc<str> {
        self.view.name(self.node)
    }

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.view.value(self.node).iter().map(|e| e.key)
    }

    fn distance(&self, key: Key) -> Option<u32> {
        find(self.view.value(self.node), key).map(|e| e.distance)
    }

    fn path(&self, key: Key) -> Vec<Arc<str>> {
        self.view.path(self.node, key)
    }
}

// ---- the structure (writer side) ---------------------------------------------------------

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
enum Kind {
    /// Deleted, or never told (an edge endpoint without a record).
    #[default]
    Deleted,
    Described,
    /// Known only by name.
    Placeholder,
}

#[derive(Clone, Copy, Debug)]
struct InEdge {
    input: NodeId,
    job: u32,
    transform: u32,
    /// i64::MIN: unknown (an edge from a start-up snapshot).
    recorded: i64,
}

#[derive(Default)]
struct GraphNode {
    kind: Kind,
    own: Box<[Key]>,
    /// Incoming edges in the order they were added (ties between equally short paths go to
    /// the earlier edge).
    inputs: Vec<InEdge>,
    /// One entry per outgoing edge.
    outputs: Vec<NodeId>,
}

impl GraphNode {
    fn has_external_input(&self, node: NodeId) -> bool {
        self.inputs.iter().any(|e| e.input != node)
    }
}

/// Lineage and what each node owns; mutated only by the writer.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<GraphNode>,
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
    fn removed(&mut self, graph: &Graph, symbols: &Symbols, transform: u32, job: u32) -> Option<Arc<[u32]>> {
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

fn is_removed(removed: &[u32], label: u32, symbols: &Symbols) -> bool {
    let mut current = Some(label);
    while let Some(id) = current {
        if removed.contains(&id) {
            return true;
        }
        current = symbols.label_parent(id);
    }
    false
}

/// New values for the nodes a batch of changes affected, to install at once.
#[derive(Default)]
pub(crate) struct Delta {
    values: HashMap<NodeId, NodeValue>,
    locations: Vec<(NodeId, Box<[u32]>)>,
}

impl Delta {
    /// The nodes whose locations the delta sets.
    pub(crate) fn located(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.locations.iter().map(|(node, _)| *node)
    }

    /// The value a node has once the delta is installed.
    pub(crate) fn get<'a>(&'a self, view: &'a View, node: NodeId) -> (Status, &'a [Entry]) {
        match self.values.get(&node) {
            Some(value) => (value.status, &value.values),
            None => {
                let current = view.get(node);
                (current.status, &current.values)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeValue {
    status: Status,
    values: Box<[Entry]>,
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

impl Graph {
    /// Interns every string of `changes` (new names become nodes readers see as unknown until
    /// the delta is installed).
    pub(crate) fn resolve(&mut self, changes: &[Change], symbols: &mut Symbols, grants: &Grants) -> Vec<Resolved> {
        let resolved = changes
            .iter()
            .map(|change| match change {
                Change::Described { id, labels, origins, locations } => {
                    let mut own: Vec<Key> = labels.iter().map(|l| Key::label(symbols.intern_label(l))).collect();
                    own.extend(origins.iter().map(|o| Key::origin(symbols.origins.intern(o))));
                    own.sort_unstable();
                    own.dedup();
                    Resolved::Described {
                        node: symbols.names.intern(id),
                        own: own.into(),
                        locations: locations.iter().map(|l| symbols.locations.intern(l)).collect(),
                    }
                }
                Change::Deleted { id } => Resolved::Deleted { node: symbols.names.intern(id) },
                Change::Mentioned { id } => Resolved::Mentioned { node: symbols.names.intern(id) },
                Change::EdgeAdded { input, output, job, transform, recorded }
                | Change::EdgeEnded { input, output, job, transform, recorded } => {
                    let input = symbols.names.intern(input);
                    let output = symbols.names.intern(output);
                    let job = self.jobs.intern(job);
                    let known = self.transforms.len();
                    let transform_id = self.transforms.intern(transform);
                    if self.transforms.len() > known {
                        grants.learn_transform(transform, symbols);
                    }
                    let recorded = recorded.unwrap_or(i64::MIN);
                    if matches!(change, Change::EdgeAdded { .. }) {
                        Resolved::EdgeAdded { input, output, job, transform: transform_id, recorded }
                    } else {
                        Resolved::EdgeEnded { input, output, job, transform: transform_id, recorded }
                    }
                }
            })
            .collect();
        let count = symbols.names.len();
        if self.nodes.len() < count {
            self.nodes.resize_with(count, GraphNode::default);
        }
        resolved
    }

    /// Applies resolved changes to the structure; returns the nodes whose own values or inputs
    /// changed (the seeds of the recomputation) and the delta's location updates.
    pub(crate) fn mutate(&mut self, changes: Vec<Resolved>, view: &View) -> (HashSet<NodeId>, Delta) {
        // A node named for the first time is evaluated even when the change leaves its kind as
        // it was (a deletion, or an edge endpoint nobody described): it is no longer unknown.
        let mut seeds: HashSet<NodeId> =
            changes.iter().flat_map(Resolved::nodes).filter(|&node| view.get(node).status == Status::Unknown).collect();
        let mut delta = Delta::default();
        let mut locations: HashMap<NodeId, Box<[u32]>> = HashMap::new();
        for change in changes {
            match change {
                Resolved::Described { node, own, locations: new_locations } => {
                    let graph_node = &mut self.nodes[node as usize];
                    if graph_node.kind != Kind::Described || graph_node.own != own {
                        seeds.insert(node);
                    }
                    graph_node.kind = Kind::Described;
                    graph_node.own = own;
                    locations.insert(node, new_locations);
                }
                Resolved::Deleted { node } => {
                    let graph_node = &mut self.nodes[node as usize];
                    if graph_node.kind != Kind::Deleted {
                        seeds.insert(node);
                    }
                    graph_node.kind = Kind::Deleted;
                    graph_node.own = Box::new([]);
                    locations.insert(node, Box::new([]));
                }
                Resolved::Mentioned { node } => {
                    let graph_node = &mut self.nodes[node as usize];
                    if graph_node.kind != Kind::Placeholder {
                        seeds.insert(node);
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
                            }
                            edge.transform = transform;
                            edge.recorded = recorded;
                        }
                        None => {
                            inputs.push(InEdge { input, job, transform, recorded });
                            self.nodes[input as usize].outputs.push(output);
                            seeds.insert(output);
                            if view.get(input).status == Status::Unknown {
                                seeds.insert(input);
                            }
                        }
                    }
                }
                Resolved::EdgeEnded { input, output, job, transform, recorded } => {
                    let inputs = &mut self.nodes[output as usize].inputs;
                    let position = inputs.iter().position(|e| {
                        e.input == input
                            && e.job == job
                            && e.transform == transform
                            && (e.recorded == i64::MIN || recorded == i64::MIN || e.recorded == recorded)
                    });
                    if let Some(position) = position {
                        inputs.remove(position);
                        let outputs = &mut self.nodes[input as usize].outputs;
                        if let Some(at) = outputs.iter().position(|&o| o == output) {
                            outputs.swap_remove(at);
                        }
                        seeds.insert(output);
                    }
                }
            }
        }
        for (node, new_locations) in locations {
            if view.get(node).locations != new_locations {
                delta.locations.push((node, new_locations));
            }
        }
        (seeds, delta)
    }

    /// The nodes whose value depends on how the policy judges placeholders.
    pub(crate) fn placeholders(&self) -> HashSet<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&n| {
                let node = &self.nodes[n as usize];
                node.kind == Kind::Placeholder
            })
            .collect()
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

    /// Every node (a full build).
    pub(crate) fn all(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId).collect()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        for node in &mut self.nodes {
            node.inputs.shrink_to_fit();
            node.outputs.shrink_to_fit();
        }
        self.nodes.shrink_to_fit();
    }

    // ---- recomputation ---------------------------------------------------------------------

    /// Brings the downstream closure of `seeds` to the least fixpoint, into `delta`; returns
    /// that closure. `everything` skips computing the closure when it is known to be every node.
    pub(crate) fn recompute(
        &self,
        grants: &mut Grants,
        view: &View,
        seeds: &HashSet<NodeId>,
        everything: bool,
        delta: &mut Delta,
    ) -> Vec<NodeId> {
        if seeds.is_empty() {
            return Vec::new();
        }
        let closure = if everything { self.all() } else { self.downstream(seeds) };
        let (acyclic, components) = self.order(&closure);
        let mut changed: HashSet<NodeId> = HashSet::new();
        let inherit = grants.inherits();
        let mut context = Evaluation { graph: self, grants, view };
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
                let value = context.evaluate(node, None, delta);
                if context.store(node, value, delta) {
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
            if component.len() == 1 {
                let node = component[0];
                let value = context.evaluate(node, None, delta);
                if context.store(node, value, delta) {
                    changed.insert(node);
                }
            } else {
                changed.extend(context.solve_component(&component, &members, delta));
            }
        }
        closure
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
        let done: HashSet<NodeId> = acyclic.iter().copied().collect();
        let rest: Vec<NodeId> = nodes.iter().copied().filter(|n| !done.contains(n)).collect();
        let components = self.components(&rest);
        (acyclic, components)
    }

    /// Strongly connected components of the subgraph on `nodes`, upstream ones first
    /// (iterative Tarjan: it emits a component after every component reachable from it).
    fn components(&self, nodes: &[NodeId]) -> Vec<Vec<NodeId>> {
        let members: HashSet<NodeId> = nodes.iter().copied().collect();
        let mut index: HashMap<NodeId, u32> = HashMap::new();
        let mut low: HashMap<NodeId, u32> = HashMap::new();
        let mut stack: Vec<NodeId> = Vec::new();
        let mut on_stack: HashSet<NodeId> = HashSet::new();
        let mut emitted = Vec::new();
        for &root in nodes {
            if index.contains_key(&root) {
                continue;
            }
            let mut work: Vec<(NodeId, usize)> = vec![(root, 0)];
            let next_index = index.len() as u32;
            index.insert(root, next_index);
            low.insert(root, next_index);
            stack.push(root);
            on_stack.insert(root);
            while let Some(&mut (node, ref mut position)) = work.last_mut() {
                let outputs = &self.nodes[node as usize].outputs;
                if *position < outputs.len() {
                    let next = outputs[*position];
                    *position += 1;
                    if !members.contains(&next) {
                        continue;
                    }
                    if !index.contains_key(&next) {
                        let next_index = index.len() as u32;
                        index.insert(next, next_index);
                        low.insert(next, next_index);
                        stack.push(next);
                        on_stack.insert(next);
                        work.push((next, 0));
                    } else if on_stack.contains(&next) {
                        let next_index = index[&next];
                        let current = low.get_mut(&node).expect("visited");
                        *current = (*current).min(next_index);
                    }
                    continue;
                }
                work.pop();
                let node_low = low[&node];
                if let Some(&(parent, _)) = work.last() {
                    let parent_low = low.get_mut(&parent).expect("visited");
                    *parent_low = (*parent_low).min(node_low);
                }
                if node_low == index[&node] {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack.remove(&member);
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

/// One recomputation: the structure, the grants and the values so far (the delta over the view).
struct Evaluation<'a> {
    graph: &'a Graph,
    grants: &'a mut Grants,
    view: &'a View,
}

impl Evaluation<'_> {
    /// One application of the defining equations to `node` from its inputs' current values.
    /// `component_entered` is given for members of a multi-node component (decided for the
    /// component as a whole).
    fn evaluate(&mut self, node: NodeId, component_entered: Option<bool>, delta: &Delta) -> NodeValue {
        let graph_node = &self.graph.nodes[node as usize];
        let undescribed = [Entry { key: Key::UNDESCRIBED, distance: 0, via: node }];
        let (status, own): (Status, Vec<Entry>) = match graph_node.kind {
            Kind::Described => {
                (Status::Described, graph_node.own.iter().map(|&key| Entry { key, distance: 0, via: node }).collect())
            }
            Kind::Deleted => (Status::Deleted, undescribed.to_vec()),
            Kind::Placeholder => {
                let entered = component_entered.unwrap_or_else(|| graph_node.has_external_input(node));
                if self.grants.inherit && entered {
                    (Status::Derived, Vec::new())
                } else {
                    (Status::UndescribedPlaceholder, undescribed.to_vec())
                }
            }
        };
        let mut values = own;
        for edge in &graph_node.inputs {
            if edge.input == node {
                continue; // a self-loop never brings anything new
            }
            let (_, upstream) = delta.get(self.view, edge.input);
            if upstream.is_empty() {
                continue;
            }
            let removed = self.grants.removed(self.graph, &self.view.symbols, edge.transform, edge.job);
            for entry in upstream {
                if let Some(removed) = &removed {
                    if !entry.key.is_origin() && is_removed(removed, entry.key.id(), &self.view.symbols) {
                        continue;
                    }
                }
                values.push(Entry { key: entry.key, distance: entry.distance + 1, via: edge.input });
            }
        }
        // Shortest first per key; the sort is stable, so ties keep the earlier edge.
        values.sort_by_key(|e| (e.key, e.distance));
        values.dedup_by_key(|e| e.key);
        NodeValue { status, values: values.into_boxed_slice() }
    }

    /// Records `value` for `node`; true when it differs from what the node had.
    fn store(&self, node: NodeId, value: NodeValue, delta: &mut Delta) -> bool {
        let (status, values) = delta.get(self.view, node);
        if status == value.status && *values == *value.values {
            return false;
        }
        delta.values.insert(node, value);
        true
    }

    /// Least fixpoint of a cyclic component from the bottom; returns the members whose value
    /// changed.
    fn solve_component(&mut self, component: &[NodeId], members: &HashSet<NodeId>, delta: &mut Delta) -> Vec<NodeId> {
        // Its placeholders are derived together: when something described (or deleted) is among
        // them, or an edge enters the component from outside.
        let entered = component.iter().any(|&n| self.graph.nodes[n as usize].kind != Kind::Placeholder)
            || component
                .iter()
                .any(|&n| self.graph.nodes[n as usize].inputs.iter().any(|e| !members.contains(&e.input)));
        let before: Vec<NodeValue> = component.iter().map(|&n| current(delta, self.view, n)).collect();
        for &node in component {
            delta.values.insert(node, NodeValue { status: Status::Unknown, values: Box::new([]) });
        }
        let mut queue: VecDeque<NodeId> = component.iter().copied().collect();
        let mut queued: HashSet<NodeId> = members.clone();
        while let Some(node) = queue.pop_front() {
            queued.remove(&node);
            let value = self.evaluate(node, Some(entered), delta);
            if delta.values.get(&node) != Some(&value) {
                delta.values.insert(node, value);
                for &next in &self.graph.nodes[node as usize].outputs {
                    if members.contains(&next) && queued.insert(next) {
                        queue.push_back(next);
                    }
                }
            }
        }
        let mut changed = Vec::new();
        for (&node, old) in component.iter().zip(before) {
            let view = self.view.get(node);
            let unchanged_from_view =
                delta.values.get(&node).is_some_and(|new| new.status == view.status && new.values == view.values);
            if unchanged_from_view {
                delta.values.remove(&node);
            }
            if current(delta, self.view, node) != old {
                changed.push(node);
            }
        }
        changed
    }
}

/// A node's value once the delta is installed.
fn current(delta: &Delta, view: &View, node: NodeId) -> NodeValue {
    let (status, values) = delta.get(view, node);
    NodeValue { status, values: values.into() }
}
