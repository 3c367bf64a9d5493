//! Decisions asked one at a time (Decide, Route), each made and queued for the decision log in
//! one engine call.
//!
//! A decision's log row is rendered as it is made, into the entry of the decisions queued just
//! before it when they share its head (kind, caller, policy, catalog revision, context) and the
//! entry has room; the log writer takes the rendered entries in bulk (`LogLane::take`), with
//! the decisions' intents counted (what access records count). Entries are format 3 (see
//! `log_entry`), as a BatchDecide's are.
//!
//! The lane refuses decisions while the log cannot take them (`set_refusing`) and when it holds
//! `max_queue` decisions (the log's backpressure): a decision is made only once it is sure to
//! be queued.
//!
//! The lane numbers the decisions: each one queued takes the next counter of its decision id,
//! and decisions logged another way draw theirs from it too (`take_ids`), so that one counter
//! numbers every decision of the process. It also counts them by operation and outcome and
//! their reasons by code and rule (`take_counts`: what the metrics count).

use std::ops::Range;
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};
use parking_lot::Mutex;

use crate::engine::{decision_id, State};
use crate::log_entry::{EntryHead, EntryWriter, Row};
/// A decision's verdict with its renderings (what `Decided` carries).
pub use crate::memo::Judgement;
use crate::policy::{Operation, Outcome, ReasonCode, Verdict};
use crate::Error;

/// Why the lane takes no decision now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The log cannot take decisions (it cannot write, is out of disk space, or is closed).
    Refusing,
    /// `max_queue` decisions wait for the writer.
    Full,
}

/// The decision log's queue of decisions made one at a time (see the module doc).
pub struct LogLane {
    lane: Mutex<Lane>,
}

struct Lane {
    id_prefix: String,
    per_entry: usize,
    max_queue: usize,
    refusing: bool,
    /// The counter of the next decision id.
    next_id: u64,
    /// The text of the decision id being written (its buffer reused).
    id_text: String,
    open: Option<Open>,
    done: Vec<LaneEntry>,
    /// Decisions queued since the lane was made.
    appended: u64,
    /// Decisions queued and not taken yet.
    waiting: usize,
    intents: HashMap<Intent, usize>,
    /// Decisions queued and not counted yet, per verdict (by address, kept alive here) and
    /// operation.
    counted: HashMap<(usize, Operation), (Arc<Verdict>, u64)>,
}

/// Decisions counted by `take_counts`: per (operation, outcome), and their reasons per (code,
/// rule id).
pub struct Counts {
    pub by_outcome: Vec<((Operation, Outcome), u64)>,
    pub by_reason: Vec<((ReasonCode, Arc<str>), u64)>,
}

/// (caller, dataset id, operation, region) of a decision: one of the caller's intents.
pub type Intent = (String, String, Operation, String);

/// An `Intent` borrowed, to count one already known without copying its texts (it hashes as
/// the `Intent` it equals).
#[derive(Hash)]
struct IntentOf<'a>((&'a str, &'a str, Operation, &'a str));

impl Equivalent<Intent> for IntentOf<'_> {
    fn equivalent(&self, key: &Intent) -> bool {
        let (caller, dataset_id, operation, region) = self.0;
        key.0 == caller && key.1 == dataset_id && key.2 == operation && key.3 == region
    }
}

/// One rendered entry: its JSON, its decisions' ids (consecutive counters after the lane's id
/// prefix) and the catalog revision they name.
pub struct LaneEntry {
    pub json: Vec<u8>,
    pub ids: Range<u64>,
    pub catalog_revision: i64,
}

/// What the writer takes: the entries, the lane's count of decisions ever queued (with them),
/// and the intents of the decisions taken.
pub struct Taken {
    pub entries: Vec<LaneEntry>,
    pub appended: u64,
    pub intents: Vec<(Intent, usize)>,
}

/// The entry being filled, and what its rows refer to.
struct Open {
    kind: String,
    caller: String,
    policy_version: Arc<str>,
    policy_hash: String,
    catalog_revision: i64,
    context: Vec<(String, String)>,
    writer: EntryWriter,
    ids: Range<u64>,
    /// The verdicts whose rows are written (with their renderings): the entry numbers their
    /// sets by address, so they must outlive it.
    judgements: Vec<Arc<Judgement>>,
}

impl Open {
    fn holds(&self, head: &EntryHead<'_>) -> bool {
        self.catalog_revision == head.catalog_revision
            && *self.policy_version == *head.policy_version
            && self.caller == head.caller
            && self.kind == head.kind
            && self.policy_hash == head.policy_hash
            && self.context == head.context
    }

    fn finish(self) -> LaneEntry {
        let head = EntryHead {
            kind: &self.kind,
            caller: &self.caller,
            policy_version: &self.policy_version,
            policy_hash: &self.policy_hash,
            catalog_revision: self.catalog_revision,
            context: &self.context,
        };
        LaneEntry { json: self.writer.finish(&head), ids: self.ids, catalog_revision: self.catalog_revision }
    }
}

/// One decision to queue: `head` as its entry would state it, and its row's own fields.
pub struct Queued<'a> {
    pub head: EntryHead<'a>,
    pub dataset_id: &'a str,
    pub operation: Operation,
    pub region: &'a str,
    pub judgement: &'a Arc<Judgement>,
    /// Microseconds since the Unix epoch.
    pub decide_time: i64,
}

/// A question asked alone, and what its decision's log entry states besides the verdict.
pub struct Asked<'a> {
    pub dataset_id: &'a str,
    pub operation: Operation,
    pub region: &'a str,
    /// Microseconds since the Unix epoch.
    pub now: i64,
    /// Why the router's view cannot be trusted now: then the decision is DENY / STALE_CATALOG
    /// with this message.
    pub stale: Option<&'a str>,
    pub kind: &'a str,
    pub caller: &'a str,
    pub catalog_revision: i64,
    pub context: &'a [(String, String)],
}

/// A decision queued by `decide_queued`: its verdict (with its renderings), its decision id's
/// counter, and whether the lane held no decision before (the writer may be waiting for work).
pub struct Decided {
    pub judgement: Arc<Judgement>,
    pub id: u64,
    pub first: bool,
}

/// Why a question asked alone was not decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotDecided {
    /// A region the policy does not know (field `region`).
    UnknownRegion(Error),
    /// The log takes no decision now (see `LogLane::admit`).
    Refused(Refusal),
}

impl State {
    /// Decides `asked` and queues its decision on `lane`. Nothing is decided when the region is
    /// unknown or the lane refuses.
    pub fn decide_queued(&self, lane: &LogLane, asked: &Asked<'_>) -> Result<Decided, NotDecided> {
        let region = self.region("region", asked.region).map_err(NotDecided::UnknownRegion)?;
        lane.admit().map_err(NotDecided::Refused)?;
        let judgement = match asked.stale {
            Some(message) => Arc::new(Judgement::new(self.stale_verdict(message))),
            None => self.judge(asked.dataset_id, asked.operation, region, asked.now),
        };
        let (id, first) = lane.push(&Queued {
            head: EntryHead {
                kind: asked.kind,
                caller: asked.caller,
                policy_version: &self.policy.version,
                policy_hash: &self.policy.content_hash,
                catalog_revision: asked.catalog_revision,
                context: asked.context,
            },
            dataset_id: asked.dataset_id,
            operation: asked.operation,
            region: self.policy.region_name(region),
            judgement: &judgement,
            decide_time: asked.now,
        });
        Ok(Decided { judgement, id, first })
    }
}

impl LogLane {
    /// A lane writing decision ids as `id_prefix` and a counter (from 1), at most `per_entry`
    /// decisions an entry, refusing past `max_queue` waiting decisions.
    pub fn new(id_prefix: &str, per_entry: usize, max_queue: usize) -> LogLane {
        LogLane {
            lane: Mutex::new(Lane {
                id_prefix: id_prefix.to_owned(),
                per_entry: per_entry.max(1),
                max_queue: max_queue.max(1),
                refusing: false,
                next_id: 1,
                id_text: String::new(),
                open: None,
                done: Vec::new(),
                appended: 0,
                waiting: 0,
                intents: HashMap::new(),
                counted: HashMap::new(),
            }),
        }
    }

    /// Whether a decision can be queued now (check before making it).
    pub fn admit(&self) -> Result<(), Refusal> {
        let lane = self.lane.lock();
        if lane.refusing {
            Err(Refusal::Refusing)
        } else if lane.waiting >= lane.max_queue {
            Err(Refusal::Full)
        } else {
            Ok(())
        }
    }

    /// While `refusing`, `admit` refuses every decision (the log cannot take them).
    pub fn set_refusing(&self, refusing: bool) {
        self.lane.lock().refusing = refusing;
    }

    /// Renders and queues one decision: its decision id's counter, and true when the lane held
    /// none before (the writer may be waiting for work).
    pub fn push(&self, decision: &Queued<'_>) -> (u64, bool) {
        let mut guard = self.lane.lock();
        let lane = &mut *guard;
        let first = lane.waiting == 0;
        let counter = lane.next_id;
        lane.next_id += 1;
        let head = &decision.head;
        // An entry's ids are consecutive: a decision numbered after others logged another way
        // starts a new one.
        if lane.open.as_ref().is_some_and(|open| {
            !open.holds(head) || open.ids.end != counter || (open.ids.end - open.ids.start) as usize >= lane.per_entry
        }) {
            let open = lane.open.take().expect("an open entry");
            lane.done.push(open.finish());
        }
        let open = lane.open.get_or_insert_with(|| Open {
            kind: head.kind.to_owned(),
            caller: head.caller.to_owned(),
            policy_version: Arc::from(head.policy_version),
            policy_hash: head.policy_hash.to_owned(),
            catalog_revision: head.catalog_revision,
            context: head.context.to_vec(),
            writer: EntryWriter::default(),
            ids: counter..counter,
            judgements: Vec::new(),
        });
        let judgement = decision.judgement;
        let verdict = &judgement.verdict;
        let allowed = &verdict.allowed;
        let region_set =
            open.writer.region_set(Arc::as_ptr(allowed) as usize, allowed.names.iter().map(|name| &**name));
        let reason_set = open
            .writer
            .reason_set_with(Arc::as_ptr(verdict) as usize, |out| out.extend_from_slice(judgement.log_reasons()));
        let id = &mut lane.id_text;
        id.clear();
        decision_id(id, &lane.id_prefix, counter);
        open.writer.row(&Row {
            decision_id: id,
            dataset_id: decision.dataset_id,
            operation: decision.operation,
            region: decision.region,
            outcome: verdict.outcome,
            region_set,
            reason_set,
            decide_time: decision.decide_time,
            inherited_only: verdict.inherited_only,
        });
        open.ids.end = counter + 1;
        open.judgements.push(judgement.clone());
        let intent = IntentOf((head.caller, decision.dataset_id, decision.operation, decision.region));
        match lane.intents.get_mut(&intent) {
            Some(count) => *count += 1,
            None => {
                let (caller, dataset_id, operation, region) = intent.0;
                lane.intents.insert((caller.to_owned(), dataset_id.to_owned(), operation, region.to_owned()), 1);
            }
        }
        lane.counted
            .entry((Arc::as_ptr(verdict) as usize, decision.operation))
            .or_insert_with(|| (verdict.clone(), 0))
            .1 += 1;
        lane.appended += 1;
        lane.waiting += 1;
        (counter, first)
    }

    /// The decisions queued since the last call, counted (see `Counts`).
    pub fn take_counts(&self) -> Counts {
        let counted = std::mem::take(&mut self.lane.lock().counted);
        let mut by_outcome: HashMap<(Operation, Outcome), u64> = HashMap::new();
        let mut by_reason: HashMap<(ReasonCode, Arc<str>), u64> = HashMap::new();
        for ((_, operation), (verdict, count)) in counted {
            *by_outcome.entry((operation, verdict.outcome)).or_default() += count;
            for reason in &verdict.reasons {
                *by_reason.entry((reason.code, reason.rule_id.clone())).or_default() += count;
            }
        }
        Counts { by_outcome: by_outcome.into_iter().collect(), by_reason: by_reason.into_iter().collect() }
    }

    /// The first of `count` consecutive decision-id counters, for decisions logged another way.
    pub fn take_ids(&self, count: u64) -> u64 {
        let mut lane = self.lane.lock();
        let first = lane.next_id;
        lane.next_id += count;
        first
    }

    /// The counter the next decision id will have.
    pub fn next_id(&self) -> u64 {
        self.lane.lock().next_id
    }

    /// Decisions queued since the lane was made.
    pub fn appended(&self) -> u64 {
        self.lane.lock().appended
    }

    /// Decisions waiting for the writer.
    pub fn waiting(&self) -> usize {
        self.lane.lock().waiting
    }

    /// Everything queued, rendered: the writer's bulk take.
    pub fn take(&self) -> Taken {
        let mut lane = self.lane.lock();
        if let Some(open) = lane.open.take() {
            lane.done.push(open.finish());
        }
        lane.waiting = 0;
        Taken {
            entries: std::mem::take(&mut lane.done),
            appended: lane.appended,
            intents: std::mem::take(&mut lane.intents).into_iter().collect(),
        }
    }

    /// The text of decision id `counter`.
    pub fn decision_id(&self, counter: u64) -> String {
        let lane = self.lane.lock();
        let mut id = String::new();
        decision_id(&mut id, &lane.id_prefix, counter);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompiledPolicy, Outcome, ReasonCode};

    fn policy() -> CompiledPolicy {
        CompiledPolicy::from_json(
            r#"{"version": "1", "content_hash": "h", "regions": ["aws:eu-central-1"], "rules": [],
                "declassifiers": [], "exemptions": [],
                "defaults": {"classified": "deny", "unclassified": "allow", "undescribed_outputs": "inherit"}}"#,
        )
        .expect("a valid document")
    }

    fn verdict() -> Arc<Judgement> {
        Arc::new(Judgement::new(Arc::new(Verdict {
            outcome: Outcome::Allow,
            allowed: policy().no_regions().clone(),
            reasons: Vec::new(),
            inherited_only: false,
        })))
    }

    fn asked<'a>(region: &'a str, stale: Option<&'a str>) -> Asked<'a> {
        Asked {
            dataset_id: "s3://nowhere",
            operation: Operation::Store,
            region,
            now: 0,
            stale,
            kind: "decide",
            caller: "alice",
            catalog_revision: 3,
            context: &[],
        }
    }

    #[test]
    fn a_question_asked_alone_is_decided_and_queued_or_refused_whole() {
        let engine = crate::Engine::new(policy());
        let state = engine.read();
        let lane = LogLane::new("r:ab", 10, 2);
        let decided = state.decide_queued(&lane, &asked("aws:eu-central-1", None)).unwrap();
        assert!(decided.first);
        assert_eq!((decided.judgement.verdict.reasons[0].code, decided.id), (ReasonCode::UnknownDataset, 1));
        let stale = state.decide_queued(&lane, &asked("aws:eu-central-1", Some("fail closed: x"))).unwrap();
        assert!(!stale.first);
        assert_eq!(stale.id, 2);
        let stale = stale.judgement.verdict.clone();
        assert_eq!((stale.outcome, stale.reasons[0].code), (Outcome::Deny, ReasonCode::StaleCatalog));
        assert_eq!(&*stale.reasons[0].message, "fail closed: x");
        // An unknown region is refused even when stale, and a full lane before anything is decided.
        let unknown = state.decide_queued(&lane, &asked("aws:nowhere-9", Some("x")));
        assert!(matches!(unknown, Err(NotDecided::UnknownRegion(_))));
        let full = state.decide_queued(&lane, &asked("aws:eu-central-1", None));
        assert!(matches!(full, Err(NotDecided::Refused(Refusal::Full))));
        assert_eq!(lane.next_id(), 3, "no id taken by a decision not made");
        let counts = lane.take_counts();
        let mut by_reason: Vec<(ReasonCode, u64)> = counts.by_reason.iter().map(|((code, _), n)| (*code, *n)).collect();
        by_reason.sort_by_key(|(code, _)| *code as u8);
        assert_eq!(counts.by_outcome, vec![((Operation::Store, Outcome::Deny), 2)]);
        assert_eq!(by_reason, vec![(ReasonCode::UnknownDataset, 1), (ReasonCode::StaleCatalog, 1)]);
        assert!(lane.take_counts().by_outcome.is_empty(), "counted once");
        let taken = lane.take();
        assert_eq!(taken.appended, 2);
        let json = std::str::from_utf8(&taken.entries[0].json).unwrap();
        assert!(json.contains("\"STALE_CATALOG\"") && json.contains("\"catalog_revision\":3"), "{json}");
    }

    fn head<'a>(caller: &'a str, revision: i64) -> EntryHead<'a> {
        EntryHead {
            kind: "decide",
            caller,
            policy_version: "1",
            policy_hash: "h",
            catalog_revision: revision,
            context: &[],
        }
    }

    fn queue(lane: &LogLane, caller: &str, revision: i64, judgement: &Arc<Judgement>) -> bool {
        lane.push(&Queued {
            head: head(caller, revision),
            dataset_id: "s3://a",
            operation: Operation::Store,
            region: "aws:eu-central-1",
            judgement,
            decide_time: 0,
        })
        .1
    }

    #[test]
    fn decisions_sharing_a_head_share_an_entry_of_bounded_size() {
        let lane = LogLane::new("r:ab", 2, 100);
        let verdict = verdict();
        assert!(queue(&lane, "alice", 1, &verdict));
        assert!(!queue(&lane, "alice", 1, &verdict));
        assert!(!queue(&lane, "alice", 1, &verdict)); // the entry is full: a new one
        assert!(!queue(&lane, "bob", 1, &verdict)); // another caller: a new one
        assert!(!queue(&lane, "bob", 2, &verdict)); // another revision: a new one
        let taken = lane.take();
        let ids: Vec<Range<u64>> = taken.entries.iter().map(|e| e.ids.clone()).collect();
        assert_eq!(ids, vec![1..3, 3..4, 4..5, 5..6]);
        assert_eq!(taken.appended, 5);
        assert_eq!(taken.entries[3].catalog_revision, 2);
        let json = std::str::from_utf8(&taken.entries[0].json).unwrap();
        assert!(json.contains("\"r:ab0000000001\"") && json.contains("\"r:ab0000000002\""), "{json}");
        let mut intents: Vec<(&str, usize)> = taken.intents.iter().map(|(key, n)| (key.0.as_str(), *n)).collect();
        intents.sort();
        assert_eq!(intents, vec![("alice", 3), ("bob", 2)]);
        assert!(queue(&lane, "alice", 1, &verdict), "empty again after the take");
        assert_eq!(lane.take().appended, 6);
    }

    #[test]
    fn decisions_logged_another_way_draw_their_ids_from_the_lane() {
        let lane = LogLane::new("r:ab", 10, 100);
        let verdict = verdict();
        queue(&lane, "alice", 1, &verdict);
        assert_eq!(lane.take_ids(3), 2);
        assert_eq!(lane.next_id(), 5);
        queue(&lane, "alice", 1, &verdict);
        queue(&lane, "alice", 1, &verdict);
        // Consecutive ids share an entry; the gap starts another.
        let ids: Vec<Range<u64>> = lane.take().entries.iter().map(|e| e.ids.clone()).collect();
        assert_eq!(ids, vec![1..2, 5..7]);
    }

    #[test]
    fn a_refusing_or_full_lane_admits_nothing() {
        let lane = LogLane::new("r:ab", 10, 2);
        let verdict = verdict();
        assert_eq!(lane.admit(), Ok(()));
        queue(&lane, "alice", 1, &verdict);
        queue(&lane, "alice", 1, &verdict);
        assert_eq!(lane.admit(), Err(Refusal::Full));
        lane.take();
        assert_eq!(lane.admit(), Ok(()));
        lane.set_refusing(true);
        assert_eq!(lane.admit(), Err(Refusal::Refusing));
        lane.set_refusing(false);
        assert_eq!(lane.admit(), Ok(()));
    }
}
