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
//!
//! The verdicts are laid out by dataset node (the index's dense ids): a lookup is an index and
//! a scan of the few verdicts of one dataset, and a batch reads many of them under one lock.

use std::sync::{Arc, OnceLock};

use parking_lot::{RwLock, RwLockReadGuard};

use crate::index::NodeId;
use crate::policy::{Operation, Verdict};
use crate::{log_entry, wire};

/// Verdicts held at most: past it the memo starts again (a bound on memory, not a policy: the
/// verdicts that are asked again come back at once). A DENY with its renderings takes ~1 kB.
const MEMO_LIMIT: usize = 131_072;

/// The memo (see the module doc). Readers look up and fill it concurrently.
#[derive(Default)]
pub struct Memo {
    slots: RwLock<Slots>,
}

#[derive(Default)]
struct Slots {
    /// By node: its verdicts (a node the memo never held may lie past the end).
    by_node: Vec<Vec<Memoised>>,
    len: usize,
}

struct Memoised {
    operation: Operation,
    region: u32,
    epoch: u32,
    judgement: Arc<Judgement>,
}

/// What a question names in the memo: (dataset node, operation, region).
pub type Asked = (NodeId, Operation, u32);

/// A verdict and its renderings for a BatchDecide, each made when first asked for.
pub struct Judgement {
    pub verdict: Arc<Verdict>,
    answer_fields: OnceLock<Box<[u8]>>,
    reason_pieces: OnceLock<Box<[u8]>>,
    log_reasons: OnceLock<Box<[u8]>>,
}

impl Judgement {
    pub fn new(verdict: Arc<Verdict>) -> Judgement {
        Judgement {
            verdict,
            answer_fields: OnceLock::new(),
            reason_pieces: OnceLock::new(),
            log_reasons: OnceLock::new(),
        }
    }

    /// The verdict's fields of a Decision in the wire format (`wire::verdict_fields`).
    pub fn answer_fields(&self) -> &[u8] {
        self.answer_fields.get_or_init(|| wire::verdict_fields(&self.verdict).into())
    }

    /// The verdict's reasons in the wire format, each as its text and its lineage path apart
    /// (`wire::reason_pieces`), for answers that share reason texts.
    pub fn reason_pieces(&self) -> &[u8] {
        self.reason_pieces.get_or_init(|| wire::reason_pieces(&self.verdict.reasons).into())
    }

    /// The verdict's reason set in a decision-log entry (`log_entry::reason_set_json`).
    pub fn log_reasons(&self) -> &[u8] {
        self.log_reasons.get_or_init(|| log_entry::reason_set_json(&self.verdict.reasons).into())
    }
}

/// The memo read: lookups without taking its lock again. Hold it briefly (a few hundred
/// lookups): a reader filling the memo waits for it.
pub struct Reader<'a>(RwLockReadGuard<'a, Slots>);

impl Reader<'_> {
    /// What is memoised for the question at `epoch`, if anything.
    pub fn get(&self, (node, operation, region): Asked, epoch: u32) -> Option<&Arc<Judgement>> {
        self.0
            .by_node
            .get(node as usize)?
            .iter()
            .find(|m| m.region == region && m.operation == operation && m.epoch == epoch)
            .map(|m| &m.judgement)
    }
}

impl Memo {
    pub fn read(&self) -> Reader<'_> {
        Reader(self.slots.read())
    }

    /// What is memoised for the question at `epoch`, if anything.
    pub fn get(&self, asked: Asked, epoch: u32) -> Option<Arc<Judgement>> {
        self.read().get(asked, epoch).cloned()
    }

    /// Remembers verdicts just made at `epoch` (a concurrent reader may have made some too:
    /// either copy is right).
    pub fn insert(&self, epoch: u32, made: impl IntoIterator<Item = (Asked, Arc<Judgement>)>) {
        let mut slots = self.slots.write();
        for ((node, operation, region), judgement) in made {
            if slots.len >= MEMO_LIMIT {
                slots.by_node.clear();
                slots.len = 0;
            }
            let node = node as usize;
            if node >= slots.by_node.len() {
                slots.by_node.resize_with(node + 1, Vec::new);
            }
            let found = &mut slots.by_node[node];
            if found.iter().any(|m| m.region == region && m.operation == operation && m.epoch == epoch) {
                continue;
            }
            // Verdicts of an earlier epoch are hardly asked again (time moves forward): drop them.
            let before = found.len();
            found.retain(|m| m.epoch >= epoch);
            found.push(Memoised { operation, region, epoch, judgement });
            let after = found.len();
            slots.len = slots.len + after - before;
        }
    }

    /// Forgets the verdicts of `nodes` (a writer's, holding the state exclusively).
    pub fn forget(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        let slots = self.slots.get_mut();
        for node in nodes {
            if let Some(found) = slots.by_node.get_mut(node as usize) {
                slots.len -= found.len();
                *found = Vec::new();
            }
        }
    }

    /// Forgets every verdict.
    pub fn clear(&mut self) {
        *self.slots.get_mut() = Slots::default();
    }
}
