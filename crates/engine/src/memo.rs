//! Verdicts already made, per dataset: a verdict (a DENY's reasons with their lineage paths
//! above all) is built once per (dataset, operation, region, expiry epoch) and then shared,
//! with what a BatchDecide makes of it (its answer's fields, its log entry's reason set), so
//! that a question asked again costs copies of bytes.
//!
//! A verdict is a function of the policy, the dataset's effective values, the values along its
//! lineage paths (through `via`), and of time only through which exemptions are unexpired
//! (`CompiledPolicy::expiry_epoch`). So the memo is correct as long as the engine forgets
//! every dataset whose status, values *or lineage paths* a change alters -- what
//! `Engine::apply` reports -- and everything on a full build or when the policy changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::index::NodeId;
use crate::policy::{Operation, Verdict};
use crate::{log_entry, wire};

/// Verdicts held at most: past it the memo starts again (a bound on memory, not a policy: the
/// verdicts that are asked again come back at once). A DENY with its renderings takes ~1 kB.
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
    judgement: Arc<Judgement>,
}

/// A verdict and its renderings for a BatchDecide, each made when first asked for.
pub struct Judgement {
    pub verdict: Arc<Verdict>,
    answer_fields: OnceLock<Box<[u8]>>,
    log_reasons: OnceLock<Box<[u8]>>,
}

impl Judgement {
    pub fn new(verdict: Arc<Verdict>) -> Judgement {
        Judgement { verdict, answer_fields: OnceLock::new(), log_reasons: OnceLock::new() }
    }

    /// The verdict's fields of a Decision in the wire format (`wire::verdict_fields`).
    pub fn answer_fields(&self) -> &[u8] {
        self.answer_fields.get_or_init(|| wire::verdict_fields(&self.verdict).into())
    }

    /// The verdict's reason set in a decision-log entry (`log_entry::reason_set_json`).
    pub fn log_reasons(&self) -> &[u8] {
        self.log_reasons.get_or_init(|| log_entry::reason_set_json(&self.verdict.reasons).into())
    }
}

impl Memo {
    /// What is memoised for the question, if anything.
    pub fn get(&self, node: NodeId, operation: Operation, region: u32, epoch: u32) -> Option<Arc<Judgement>> {
        let by_node = self.by_node.read();
        let found = by_node.get(&node)?;
        found
            .iter()
            .find(|m| m.region == region && m.operation == operation && m.epoch == epoch)
            .map(|m| m.judgement.clone())
    }

    /// Remembers a verdict just made (a concurrent reader may have made it too: either copy is
    /// right).
    pub fn insert(&self, node: NodeId, operation: Operation, region: u32, epoch: u32, judgement: Arc<Judgement>) {
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
        found.push(Memoised { operation, region, epoch, judgement });
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
