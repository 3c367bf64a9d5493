//! Verdicts already made, per question: a verdict (a DENY's reasons with their lineage paths
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
//! The verdicts are filed by the question as the index names it -- (dataset id, operation,
//! region) -- in an open-addressing table of two cache lines per verdict, holding the dataset's
//! id (its bytes, when they fit) and node beside the verdict: a question asked again reads its
//! two lines at once and then, independently of each other, its node's generation and the
//! verdict, without the index's name table in between. A dataset is
//! forgotten by moving its node to the next generation: the verdicts of an earlier one are
//! dead, and their lines are taken again by the same question, or dropped when the table is
//! rebuilt. A dataset id asked in another form than the index's (`View::node`) is not filed
//! under that form: found through the index, then under its name.

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use hashbrown::DefaultHashBuilder;
use parking_lot::{RwLock, RwLockReadGuard};

use crate::index::NodeId;
use crate::policy::{Operation, Outcome, RegionList, Verdict};
use crate::reason_texts::{ReasonTexts, Reasons};
use crate::wire;

/// Verdicts held at most: past it the memo starts again (a bound on memory, not a policy: the
/// verdicts that are asked again come back at once). A DENY with its renderings takes ~0.5 kB
/// (its reasons' texts are shared: `reason_texts`).
const MEMO_LIMIT: usize = 131_072;

/// Lines of a table just made (it grows by doubling, at most to twice `MEMO_LIMIT`).
const FIRST_LINES: usize = 1024;

/// The memo (see the module doc). Readers look up and fill it concurrently.
#[derive(Default)]
pub struct Memo {
    hasher: DefaultHashBuilder,
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    /// Empty, or a power of two of lines, at most half of them taken.
    lines: Vec<Line>,
    /// Lines taken (by live verdicts or dead ones).
    taken: usize,
    /// Per node: its generation (a node the memo never held may lie past the end).
    generations: Vec<u32>,
}

/// One line of the table (two cache lines): a verdict and the question it answers, or nothing.
#[derive(Default)]
#[repr(align(128))]
struct Line(Option<Filed>);

const _: () = assert!(std::mem::size_of::<Line>() == 128);

// (In this order: what a probe compares first, then the id, lies in the first cache line.)
#[repr(C)]
struct Filed {
    hash: u64,
    node: NodeId,
    /// The node's generation when the verdict was made.
    generation: u32,
    epoch: u32,
    region: u32,
    operation: Operation,
    judgement: Arc<Judgement>,
    /// The dataset's id as the index names it.
    dataset_id: Key,
}

/// Dataset ids up to this long are held in the line.
const INLINE: usize = 86;

/// A dataset id as a line holds it: its bytes, when they fit (a question asked again then
/// reads nothing else to confirm it), else shared with the index's names.
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Key {
    fn new(id: Arc<str>) -> Key {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                Key::Inline { len, bytes }
            }
            _ => Key::Shared(id),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Shared(id) => id.as_bytes(),
        }
    }
}

/// A question as the memo files it: (dataset id, operation, region), with its hash.
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    dataset_id: &'a str,
    operation: Operation,
    region: u32,
    hash: u64,
}

/// A verdict to file: made for `node` (named `dataset_id` in the index) on (operation, region).
pub struct Made {
    pub dataset_id: Arc<str>,
    pub node: NodeId,
    pub operation: Operation,
    pub region: u32,
    pub judgement: Arc<Judgement>,
}

/// A verdict and its renderings for a BatchDecide, each made when first asked for.
///
/// What a batch reads of every decision lies here, beside the renderings, in the order read
/// (the verdict's outcome, flag and allowed list copied out of it): encoding an answer, counting
/// it and rendering its log entries read the judgement's lines and its renderings, not the
/// verdict behind another pointer.
#[repr(C)]
pub struct Judgement {
    pub verdict: Arc<Verdict>,
    allowed: Arc<RegionList>,
    // (An answer's encoder reads one or the other: side by side.)
    reasons: OnceLock<Reasons>,
    answer_fields: OnceLock<Box<[u8]>>,
    outcome: Outcome,
    inherited_only: bool,
}

impl Judgement {
    pub fn new(verdict: Arc<Verdict>) -> Judgement {
        Judgement {
            allowed: verdict.allowed.clone(),
            outcome: verdict.outcome,
            inherited_only: verdict.inherited_only,
            verdict,
            reasons: OnceLock::new(),
            answer_fields: OnceLock::new(),
        }
    }

    /// The verdict's outcome.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The verdict's `inherited_only`.
    pub fn inherited_only(&self) -> bool {
        self.inherited_only
    }

    /// The verdict's allowed regions.
    pub fn allowed(&self) -> &Arc<RegionList> {
        &self.allowed
    }

    /// The verdict's fields of a Decision in the wire format (`wire::verdict_fields`).
    pub fn answer_fields(&self) -> &[u8] {
        self.answer_fields.get_or_init(|| wire::verdict_fields(&self.verdict).into())
    }

    /// The verdict's reasons, their texts interned in `texts` (the policy's) when first asked
    /// for: for answers that share reason texts and for decision-log entries.
    pub fn reasons(&self, texts: &ReasonTexts) -> &Reasons {
        self.reasons.get_or_init(|| Reasons::new(&self.verdict.reasons, texts))
    }
}

/// The memo read: lookups without taking its lock again. Hold it briefly (a few hundred
/// lookups): a reader filling the memo waits for it.
pub struct Reader<'a>(RwLockReadGuard<'a, Table>);

impl Reader<'_> {
    /// The node and the verdict memoised for the question at `epoch`, if any.
    pub fn get(&self, asked: &Asked<'_>, epoch: u32) -> Option<(NodeId, &Arc<Judgement>)> {
        let table = &self.0;
        let filed = table.lines[table.position(asked).ok()?].0.as_ref()?;
        let live = filed.epoch == epoch && table.generations[filed.node as usize] == filed.generation;
        live.then_some((filed.node, &filed.judgement))
    }
}

impl Memo {
    /// The question (`dataset_id` as asked) as the memo files it.
    pub fn asked<'a>(&self, dataset_id: &'a str, operation: Operation, region: u32) -> Asked<'a> {
        Asked { dataset_id, operation, region, hash: self.hasher.hash_one((dataset_id, operation, region)) }
    }

    pub fn read(&self) -> Reader<'_> {
        Reader(self.table.read())
    }

    /// The node and the verdict memoised for the question at `epoch`, if any.
    pub fn get(&self, asked: &Asked<'_>, epoch: u32) -> Option<(NodeId, Arc<Judgement>)> {
        self.read().get(asked, epoch).map(|(node, judgement)| (node, judgement.clone()))
    }

    /// Remembers verdicts just made at `epoch` (a concurrent reader may have made some too:
    /// either copy is right).
    pub fn insert(&self, epoch: u32, made: impl IntoIterator<Item = Made>) {
        let mut table = self.table.write();
        for made in made {
            let hash = self.asked(&made.dataset_id, made.operation, made.region).hash;
            table.file(hash, epoch, made);
        }
    }

    /// Forgets the verdicts of `nodes` (a writer's, holding the state exclusively).
    pub fn forget(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        let generations = &mut self.table.get_mut().generations;
        for node in nodes {
            if let Some(generation) = generations.get_mut(node as usize) {
                *generation = generation.wrapping_add(1);
            }
        }
    }

    /// Forgets every verdict.
    pub fn clear(&mut self) {
        *self.table.get_mut() = Table::default();
    }

    /// Lines taken (by live verdicts or dead ones) and lines held.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let table = self.table.read();
        (table.taken, table.lines.len())
    }
}

impl Table {
    /// Where the question is filed (`Ok`), else the free line where it would be (`Err`).
    fn position(&self, asked: &Asked<'_>) -> Result<usize, usize> {
        if self.lines.is_empty() {
            return Err(0);
        }
        let mask = self.lines.len() - 1;
        let mut at = asked.hash as usize & mask;
        // (Ends: at most half of the lines are taken.)
        loop {
            match &self.lines[at].0 {
                None => return Err(at),
                Some(filed)
                    if filed.hash == asked.hash
                        && filed.operation == asked.operation
                        && filed.region == asked.region
                        && filed.dataset_id.bytes() == asked.dataset_id.as_bytes() =>
                {
                    return Ok(at)
                }
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    fn file(&mut self, hash: u64, epoch: u32, made: Made) {
        let node = made.node as usize;
        if node >= self.generations.len() {
            self.generations.resize(node + 1, 0);
        }
        if (self.taken + 1) * 2 > self.lines.len() {
            self.make_room(epoch);
        }
        let asked = Asked { dataset_id: &made.dataset_id, operation: made.operation, region: made.region, hash };
        let at = match self.position(&asked) {
            Ok(at) => at,
            Err(at) => {
                self.taken += 1;
                at
            }
        };
        self.lines[at] = Line(Some(Filed {
            hash,
            generation: self.generations[node],
            dataset_id: Key::new(made.dataset_id),
            judgement: made.judgement,
            node: made.node,
            epoch,
            region: made.region,
            operation: made.operation,
        }));
    }

    /// Rebuilds the table with the live verdicts of `epoch` and later (those of an earlier
    /// epoch are hardly asked again: time moves forward): in as many lines when the dead ones
    /// were most, else in twice as many up to the limit, past which the memo starts again.
    fn make_room(&mut self, epoch: u32) {
        let held = self.lines.len();
        let generations = &self.generations;
        let live = |filed: &Filed| filed.epoch >= epoch && generations[filed.node as usize] == filed.generation;
        let alive = self.lines.iter().filter(|line| line.0.as_ref().is_some_and(live)).count();
        let (lines, keep) = if held == 0 {
            (FIRST_LINES, false)
        } else if alive * 4 <= held {
            (held, true)
        } else if held < 2 * MEMO_LIMIT {
            (held * 2, true)
        } else {
            (held, false)
        };
        let old = std::mem::replace(&mut self.lines, std::iter::repeat_with(Line::default).take(lines).collect());
        self.taken = 0;
        if !keep {
            return;
        }
        let mask = lines - 1;
        for filed in old.into_iter().filter_map(|line| line.0).filter(|filed| live(filed)) {
            let mut at = filed.hash as usize & mask;
            while self.lines[at].0.is_some() {
                at = (at + 1) & mask;
            }
            self.lines[at] = Line(Some(filed));
            self.taken += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompiledPolicy, Outcome};

    fn judgement() -> Arc<Judgement> {
        let policy = CompiledPolicy::from_json(
            r#"{"version": "1", "content_hash": "h", "regions": ["r"], "rules": [], "declassifiers": [],
                "exemptions": [], "defaults": {"classified": "deny", "unclassified": "allow",
                "undescribed_outputs": "inherit"}}"#,
        )
        .expect("a valid document");
        let verdict = Verdict {
            outcome: Outcome::Allow,
            allowed: policy.no_regions().clone(),
            reasons: Vec::new(),
            inherited_only: false,
        };
        Arc::new(Judgement::new(Arc::new(verdict)))
    }

    fn made(node: NodeId, operation: Operation, region: u32, judgement: &Arc<Judgement>) -> Made {
        Made { dataset_id: Arc::from(format!("s3://d/{node}")), node, operation, region, judgement: judgement.clone() }
    }

    fn found(memo: &Memo, node: NodeId, operation: Operation, region: u32, epoch: u32) -> Option<Arc<Judgement>> {
        let name = format!("s3://d/{node}");
        let (filed_node, judgement) = memo.get(&memo.asked(&name, operation, region), epoch)?;
        assert_eq!(filed_node, node);
        Some(judgement)
    }

    #[test]
    fn a_verdict_is_found_by_its_question_until_its_dataset_is_forgotten() {
        let mut memo = Memo::default();
        let (one, two) = (judgement(), judgement());
        memo.insert(0, [made(1, Operation::Store, 0, &one), made(2, Operation::Store, 0, &two)]);
        assert!(Arc::ptr_eq(&found(&memo, 1, Operation::Store, 0, 0).unwrap(), &one));
        assert!(Arc::ptr_eq(&found(&memo, 2, Operation::Store, 0, 0).unwrap(), &two));
        assert!(found(&memo, 1, Operation::Process, 0, 0).is_none(), "another operation");
        assert!(found(&memo, 1, Operation::Store, 1, 0).is_none(), "another region");
        assert!(found(&memo, 1, Operation::Store, 0, 1).is_none(), "another expiry epoch");
        assert!(memo.get(&memo.asked("S3://d/1", Operation::Store, 0), 0).is_none(), "filed as the index names it");
        memo.forget([1, 7]);
        assert!(found(&memo, 1, Operation::Store, 0, 0).is_none(), "forgotten");
        assert!(found(&memo, 2, Operation::Store, 0, 0).is_some(), "not forgotten");
        // Made again: filed in the same line, live again.
        memo.insert(0, [made(1, Operation::Store, 0, &two)]);
        assert!(Arc::ptr_eq(&found(&memo, 1, Operation::Store, 0, 0).unwrap(), &two));
        assert_eq!(memo.size(), (2, FIRST_LINES));
        // An id too long for the line is shared with the index's names.
        let long: Arc<str> = Arc::from(format!("s3://d/{}", "x".repeat(INLINE)));
        let judgement = judgement();
        let made = Made { dataset_id: long.clone(), node: 3, operation: Operation::Store, region: 0, judgement };
        memo.insert(0, [made]);
        assert_eq!(memo.get(&memo.asked(&long, Operation::Store, 0), 0).map(|(node, _)| node), Some(3));
        assert!(memo.get(&memo.asked(&long[..long.len() - 1], Operation::Store, 0), 0).is_none());
        memo.clear();
        assert!(found(&memo, 2, Operation::Store, 0, 0).is_none());
    }

    #[test]
    fn the_table_grows_keeps_live_verdicts_and_starts_again_past_its_limit() {
        let memo = Memo::default();
        let one = judgement();
        let count = |memo: &Memo, nodes: std::ops::Range<u32>, epoch| {
            nodes.filter(|&n| found(memo, n, Operation::Store, 0, epoch).is_some()).count()
        };
        memo.insert(0, (0..3000).map(|n| made(n, Operation::Store, 0, &one)));
        assert_eq!(memo.size(), (3000, 8192));
        assert_eq!(count(&memo, 0..3000, 0), 3000);
        // Verdicts of an earlier epoch are dropped when the table is rebuilt.
        memo.insert(1, (3000..4097).map(|n| made(n, Operation::Store, 0, &one)));
        assert_eq!(memo.size(), (1097, 8192));
        assert_eq!(count(&memo, 3000..4097, 1), 1097);
        memo.insert(1, (0..MEMO_LIMIT as u32).map(|n| made(n, Operation::Process, 0, &one)));
        let (taken, lines) = memo.size();
        assert_eq!(lines, 2 * MEMO_LIMIT);
        assert!(taken <= MEMO_LIMIT, "{taken}");
        assert!(taken < MEMO_LIMIT / 2, "started again: {taken}");
    }
}
