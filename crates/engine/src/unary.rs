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

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::engine::{decision_id, State};
use crate::log_entry::{EntryHead, EntryWriter, Row};
use crate::memo::Judgement;
use crate::policy::{Operation, Verdict};
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
    open: Option<Open>,
    done: Vec<LaneEntry>,
    /// Decisions queued since the lane was made.
    appended: u64,
    /// Decisions queued and not taken yet.
    waiting: usize,
    intents: HashMap<Intent, usize>,
}

/// (caller, dataset id, operation, region) of a decision: one of the caller's intents.
pub type Intent = (String, String, Operation, String);

/// One rendered entry: its JSON, its decisions' ids (counters after the lane's id prefix) and
/// the catalog revision they name.
pub struct LaneEntry {
    pub json: Vec<u8>,
    pub ids: Vec<u64>,
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
    ids: Vec<u64>,
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
    pub id: u64,
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
    /// The decision id's counter.
    pub id: u64,
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
    /// Decides `asked` and queues its decision on `lane`: its verdict, and whether the lane was
    /// empty before. Nothing is decided when the region is unknown or the lane refuses.
    pub fn decide_queued(&self, lane: &LogLane, asked: &Asked<'_>) -> Result<(Arc<Verdict>, bool), NotDecided> {
        let region = self.region("region", asked.region).map_err(NotDecided::UnknownRegion)?;
        lane.admit().map_err(NotDecided::Refused)?;
        let judgement = match asked.stale {
            Some(message) => Arc::new(Judgement::new(self.stale_verdict(message))),
            None => self.judge(asked.dataset_id, asked.operation, region, asked.now),
        };
        let first = lane.push(&Queued {
            head: EntryHead {
                kind: asked.kind,
                caller: asked.caller,
                policy_version: &self.policy.version,
                policy_hash: &self.policy.content_hash,
                catalog_revision: asked.catalog_revision,
                context: asked.context,
            },
            id: asked.id,
            dataset_id: asked.dataset_id,
            operation: asked.operation,
            region: self.policy.region_name(region),
            judgement: &judgement,
            decide_time: asked.now,
        });
        Ok((judgement.verdict.clone(), first))
    }
}

impl LogLane {
    /// A lane writing decision ids as `id_prefix` and a counter, at most `per_entry` decisions
    /// an entry, refusing past `max_queue` waiting decisions.
    pub fn new(id_prefix: &str, per_entry: usize, max_queue: usize) -> LogLane {
        LogLane {
            lane: Mutex::new(Lane {
                id_prefix: id_prefix.to_owned(),
                per_entry: per_entry.max(1),
                max_queue: max_queue.max(1),
                refusing: false,
                open: None,
                done: Vec::new(),
                appended: 0,
                waiting: 0,
                intents: HashMap::new(),
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

    /// Renders and queues one decision; true when the lane held none before (the writer may be
    /// waiting for work).
    pub fn push(&self, decision: &Queued<'_>) -> bool {
        let mut guard = self.lane.lock();
        let lane = &mut *guard;
        let first = lane.waiting == 0;
        let head = &decision.head;
        if lane.open.as_ref().is_some_and(|open| !open.holds(head) || open.ids.len() >= lane.per_entry) {
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
            ids: Vec::new(),
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
        let mut id = String::with_capacity(lane.id_prefix.len() + 10);
        decision_id(&mut id, &lane.id_prefix, decision.id);
        open.writer.row(&Row {
            decision_id: &id,
            dataset_id: decision.dataset_id,
            operation: decision.operation,
            region: decision.region,
            outcome: verdict.outcome,
            region_set,
            reason_set,
            decide_time: decision.decide_time,
            inherited_only: verdict.inherited_only,
        });
        open.ids.push(decision.id);
        open.judgements.push(judgement.clone());
        let intent =
            (head.caller.to_owned(), decision.dataset_id.to_owned(), decision.operation, decision.region.to_owned());
        *lane.intents.entry(intent).or_default() += 1;
        lane.appended += 1;
        lane.waiting += 1;
        first
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

    fn asked<'a>(region: &'a str, stale: Option<&'a str>, id: u64) -> Asked<'a> {
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
            id,
        }
    }

    #[test]
    fn a_question_asked_alone_is_decided_and_queued_or_refused_whole() {
        let engine = crate::Engine::new(policy());
        let state = engine.read();
        let lane = LogLane::new("r:ab", 10, 2);
        let (verdict, first) = state.decide_queued(&lane, &asked("aws:eu-central-1", None, 1)).unwrap();
        assert!(first);
        assert_eq!(verdict.reasons[0].code, ReasonCode::UnknownDataset);
        let (stale, first) = state.decide_queued(&lane, &asked("aws:eu-central-1", Some("fail closed: x"), 2)).unwrap();
        assert!(!first);
        assert_eq!((stale.outcome, stale.reasons[0].code), (Outcome::Deny, ReasonCode::StaleCatalog));
        assert_eq!(&*stale.reasons[0].message, "fail closed: x");
        // An unknown region is refused even when stale, and a full lane before anything is decided.
        let unknown = state.decide_queued(&lane, &asked("aws:nowhere-9", Some("x"), 3));
        assert!(matches!(unknown, Err(NotDecided::UnknownRegion(_))));
        let full = state.decide_queued(&lane, &asked("aws:eu-central-1", None, 4));
        assert_eq!(full.err(), Some(NotDecided::Refused(Refusal::Full)));
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

    fn queue(lane: &LogLane, caller: &str, revision: i64, id: u64, judgement: &Arc<Judgement>) -> bool {
        lane.push(&Queued {
            head: head(caller, revision),
            id,
            dataset_id: "s3://a",
            operation: Operation::Store,
            region: "aws:eu-central-1",
            judgement,
            decide_time: 0,
        })
    }

    #[test]
    fn decisions_sharing_a_head_share_an_entry_of_bounded_size() {
        let lane = LogLane::new("r:ab", 2, 100);
        let verdict = verdict();
        assert!(queue(&lane, "alice", 1, 1, &verdict));
        assert!(!queue(&lane, "alice", 1, 2, &verdict));
        assert!(!queue(&lane, "alice", 1, 3, &verdict)); // the entry is full: a new one
        assert!(!queue(&lane, "bob", 1, 4, &verdict)); // another caller: a new one
        assert!(!queue(&lane, "bob", 2, 5, &verdict)); // another revision: a new one
        let taken = lane.take();
        let ids: Vec<Vec<u64>> = taken.entries.iter().map(|e| e.ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2], vec![3], vec![4], vec![5]]);
        assert_eq!(taken.appended, 5);
        assert_eq!(taken.entries[3].catalog_revision, 2);
        let json = std::str::from_utf8(&taken.entries[0].json).unwrap();
        assert!(json.contains("\"r:ab0000000001\"") && json.contains("\"r:ab0000000002\""), "{json}");
        let mut intents: Vec<(&str, usize)> = taken.intents.iter().map(|(key, n)| (key.0.as_str(), *n)).collect();
        intents.sort();
        assert_eq!(intents, vec![("alice", 3), ("bob", 2)]);
        assert!(queue(&lane, "alice", 1, 6, &verdict), "empty again after the take");
        assert_eq!(lane.take().appended, 6);
    }

    #[test]
    fn a_refusing_or_full_lane_admits_nothing() {
        let lane = LogLane::new("r:ab", 10, 2);
        let verdict = verdict();
        assert_eq!(lane.admit(), Ok(()));
        queue(&lane, "alice", 1, 1, &verdict);
        queue(&lane, "alice", 1, 2, &verdict);
        assert_eq!(lane.admit(), Err(Refusal::Full));
        lane.take();
        assert_eq!(lane.admit(), Ok(()));
        lane.set_refusing(true);
        assert_eq!(lane.admit(), Err(Refusal::Refusing));
        lane.set_refusing(false);
        assert_eq!(lane.admit(), Ok(()));
    }
}
