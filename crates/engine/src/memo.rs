//! Verdicts already made, per dataset: a verdict (a DENY's reasons with their lineage paths
//! above all) is built once per (dataset, operation, region, expiry epoch) and then shared.
//!
//! A verdict is a function of the policy, the dataset's effective values, the values along its
//! lineage paths (through `via`), and of time only through which exemptions are unexpired
//! (`CompiledPolicy::expiry_epoch`). So the memo is correct as long as the engine forgets
//! every dataset whose status, values *or lineage paths* a change alters -- what
//! `Engine::apply` reports -- and everything on a full build or when the policy changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::index::NodeId;
use crate::policy::{Operation, Verdict};

/// Verdicts held at most: past it the memo starts again (a bound on memory, not a policy: the
/// verdicts that are asked again come back at once).
const MEMO_LIMIT: usize = 131_072;

/// The memo (see the module doc). Readers look up and fill it concurrently.
#[derive(Default)]
pub struct Memo {
    by_node: RwLock<HashMap<NodeId, Vec<Memoised>>>,
    len: AtomicUsize,
}

struct Memoised {
    operation: Operation,
    region: u32,
    epoch: u32,
    verdict: Arc<Verdict>,
}

impl Memo {
    /// The verdict memoised for the question, if any.
    pub fn get(&self, node: NodeId, operation: Operation, region: u32, epoch: u32) -> Option<Arc<Verdict>> {
        let by_node = self.by_node.read();
        let found = by_node.get(&node)?;
        found
            .iter()
            .find(|m| m.region == region && m.operation == operation && m.epoch == epoch)
            .map(|m| m.verdict.clone())
    }

    /// Remembers a verdict just made (a concurrent reader may have made it too: either copy is
    /// right).
    pub fn insert(&self, node: NodeId, operation: Operation, region: u32, epoch: u32, verdict: Arc<Verdict>) {
        let mut by_node = self.by_node.write();
        if self.len.load(Ordering::Relaxed) >= MEMO_LIMIT {
            by_node.clear();
            self.len.store(0, Ordering::Relaxed);
        }
        let found = by_node.entry(node).or_default();
        if found.iter().any(|m| m.region == region && m.operation == operation && m.epoch == epoch) {
            return;
        }
        // Verdicts of an earlier epoch are hardly asked again (time moves forward): drop them.
        let before = found.len();
        found.retain(|m| m.epoch >= epoch);
        let dropped = before - found.len();
        found.push(Memoised { operation, region, epoch, verdict });
        if dropped == 0 {
            self.len.fetch_add(1, Ordering::Relaxed);
        } else {
            self.len.fetch_sub(dropped - 1, Ordering::Relaxed);
        }
    }

    /// Forgets the verdicts of `nodes` (a writer's, holding the state exclusively).
    pub fn forget(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        let by_node = self.by_node.get_mut();
        for node in nodes {
            if let Some(found) = by_node.remove(&node) {
                *self.len.get_mut() -= found.len();
            }
        }
    }

    /// Forgets every verdict.
    pub fn clear(&mut self) {
        self.by_node.get_mut().clear();
        *self.len.get_mut() = 0;
    }
}
