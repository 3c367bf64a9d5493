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
//!   shortest path from a node owning it and the upstream neighbour that path comes through
//!   (the first input edge, in the order edges were added, among the shortest). Paths are read
//!   by following `via` (distances strictly decrease along it). With finite distances the
//!   defining equations have one solution, so whatever order a node is evaluated in, once every
//!   node agrees with its inputs the values are the least fixpoint -- provided no value was
//!   ever larger than the least fixpoint (a label circulating in a cycle never dies out).
//! - A full build (a snapshot, or the first batch) evaluates every node once in topological
//!   order (Kahn over node-indexed arrays), and solves the strongly connected components of
//!   only what that leaves (cycles and what lies below them).
//! - Edges added where no node's status depends on them (see `compute::only_adds`) can only
//!   add labels or shorten paths: starting from the current values, which are below the new
//!   least fixpoint, a worklist re-evaluates the new edges' outputs and goes on downstream only
//!   where a value changed.
//! - Any other change (a description, a deletion, an ended edge, the policy's grants) can
//!   shrink values: its downstream closure is recomputed from the values outside it, which are
//!   final, in topological order: the acyclic part in Kahn order, then the strongly connected
//!   components of the rest (Tarjan), upstream ones first. A unit none of whose members changed
//!   and none of whose external inputs changed value is skipped. A multi-node component starts
//!   from the bottom (nothing inherited) and is iterated with a worklist to its least fixpoint
//!   (label-correcting shortest paths); a self-loop never contributes.
//!
//! The structure (edges, what each node owns) belongs to the writer; readers see a published
//! `View` of the values. A batch of changes is computed against the view into a `Delta` and
//! installed at once, so readers always see one consistent state.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::dataset_ids::lookup_form;
use crate::policy::Attributes;
use crate::symbols::{Key, Symbols};

mod compute;
mod graph;

pub use graph::{Change, Loader};
pub(crate) use graph::{Grants, Graph};

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

    /// Installs the values of a full build (one per node) and every node's locations.
    pub(crate) fn install_all(&mut self, values: Vec<NodeValue>, locations: Vec<Box<[u32]>>) {
        debug_assert_eq!(values.len(), locations.len());
        self.nodes = values
            .into_iter()
            .zip(locations)
            .map(|(value, locations)| NodeView { status: value.status, locations, values: value.values })
            .collect();
        self.cover_names();
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

/// New values for the nodes a batch of changes affected, to install at once.
#[derive(Default)]
pub(crate) struct Delta {
    /// Only values that differ from the view's.
    values: HashMap<NodeId, NodeValue>,
    locations: Vec<(NodeId, Box<[u32]>)>,
}

impl Delta {
    /// The locations the delta sets, per node.
    pub(crate) fn into_locations(self) -> Vec<(NodeId, Box<[u32]>)> {
        self.locations
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

/// A node's status and effective attributes (sorted by key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeValue {
    status: Status,
    values: Box<[Entry]>,
}
