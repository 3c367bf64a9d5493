//! Decisions asked one at a time (Decide, Route), each made and queued for the decision log in
//! one engine call.
//!
//! The caller's thread only decides and keeps what the log needs of the decision -- its verdict
//! (the memoised judgement, shared), its question, decide time and id -- beside the head it
//! shares with the decisions queued just before it (kind, caller, policy, catalog revision,
//! context). The log writer's thread renders the entries when it takes them (`LogLane::take`),
//! and counts the decisions' intents (what access records count) and verdicts (what the metrics
//! count) then. Entries are format 4 (see `log_entry`), as a BatchDecide's are.
//!
//! The lane refuses decisions while the log cannot take them (`set_refusing`) and when it holds
//! `max_queue` decisions (the log's backpressure): a decision -- its id, its place in the log --
//! is made only as the lane takes it, so a refusal leaves nothing decided.
//!
//! The lane numbers the decisions: each one queued takes the next counter of its decision id,
//! and decisions logged another way draw theirs from it too (`take_ids`), so that one counter
//! numbers every decision of the process. It also counts them by operation and outcome and
//! their reasons by code and rule (`take_counts`: what the metrics count), once taken.

use std::ops::Range;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::engine::{decision_id, JobDecision, Routed, State};
use crate::log_entry::{EntryHead, EntryWriter, Row};
/// A decision's verdict with its renderings (what `Decided` carries).
pub use crate::memo::Judgement;
use crate::policy::{CompiledPolicy, Operation, Outcome, ReasonCode, Verdict};
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
    id_prefix: Arc<str>,
    per_entry: usize,
    max_queue: usize,
    refusing: bool,
    /// The counter of the next decision id.
    next_id: u64,
    /// The decisions waiting for the writer.
    queue: Queue,
    /// An empty queue with the room the last one had, for the next (so that a queue does not
    /// grow anew after each take).
    spare: Queue,
    /// Decisions queued since the lane was made.
    appended: u64,
    /// Decisions taken and not counted yet, per verdict (by address, kept alive here) and
    /// operation.
    counted: HashMap<(usize, Operation), (Arc<Verdict>, u64)>,
}

/// Decisions queued, as made: runs of decisions sharing a head, and each decision's own fields.
#[derive(Default)]
struct Queue {
    heads: Vec<QueuedHead>,
    decisions: Vec<QueuedDecision>,
    /// The decisions' dataset ids, one after the other.
    dataset_ids: String,
}

/// What the decisions `decisions` (indexes in the queue) share.
struct QueuedHead {
    kind: String,
    caller: String,
    policy: Arc<CompiledPolicy>,
    catalog_revision: i64,
    context: Vec<(String, String)>,
    decisions: Range<usize>,
}

struct QueuedDecision {
    id: u64,
    /// Where its dataset id is in `Queue::dataset_ids`.
    dataset_id: Range<usize>,
    operation: Operation,
    region: u32,
    judgement: Arc<Judgement>,
    /// Microseconds since the Unix epoch.
    decide_time: i64,
}

/// Decisions counted by `take_counts`: per (operation, outcome), and their reasons per (code,
/// rule id).
pub struct Counts {
    pub by_outcome: Vec<((Operation, Outcome), u64)>,
    pub by_reason: Vec<((ReasonCode, Arc<str>), u64)>,
}

/// (caller, dataset id, operation, region) of a decision: one of the caller's intents.
pub type Intent = (String, String, Operation, String);

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

/// What the decisions of a request share in the log.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub kind: &'a str,
    pub caller: &'a str,
    /// The policy that made the decisions.
    pub policy: &'a Arc<CompiledPolicy>,
    pub catalog_revision: i64,
    pub context: &'a [(String, String)],
}

impl QueuedHead {
    fn holds(&self, head: &Head<'_>) -> bool {
        self.catalog_revision == head.catalog_revision
            && Arc::ptr_eq(&self.policy, head.policy)
            && self.caller == head.caller
            && self.kind == head.kind
            && self.context == head.context
    }

    fn entry_head(&self) -> EntryHead<'_> {
        EntryHead {
            kind: &self.kind,
            caller: &self.caller,
            policy_version: &self.policy.version,
            policy_hash: &self.policy.content_hash,
            catalog_revision: self.catalog_revision,
            context: &self.context,
        }
    }
}

/// One decision to queue: `head` as its entry would state it, and its row's own fields.
pub struct Queued<'a> {
    pub head: Head<'a>,
    pub dataset_id: &'a str,
    pub operation: Operation,
    /// The region's index in `head.policy`.
    pub region: u32,
    pub judgement: &'a Arc<Judgement>,
    /// Microseconds since the Unix epoch.
    pub decide_time: i64,
}

/// What the decisions of one request share besides the policy: when they are made, whether
/// the view can be trusted, and what their log entries state.
pub struct Request<'a> {
    /// Microseconds since the Unix epoch.
    pub now: i64,
    /// Why the router's view cannot be trusted now: then every decision is DENY /
    /// STALE_CATALOG with this message.
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

/// A Route's decision, queued: the index of the first candidate where the operation is
/// allowed (None when none is), the index of the candidate decided, and the decision.
pub struct RoutedQueued {
    pub chosen: Option<usize>,
    pub decided: usize,
    pub decision: Decided,
}

/// Why a question was not decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotDecided {
    /// A region the policy does not know (its field named).
    UnknownRegion(Error),
    /// The log takes no decision now (see `LogLane::admit`).
    Refused(Refusal),
}

impl State {
    /// Decides one question of `request` and queues its decision on `lane`. Nothing is decided
    /// when the region is unknown (field `region`) or the lane refuses.
    pub fn decide_queued(
        &self,
        lane: &LogLane,
        request: &Request<'_>,
        dataset_id: &str,
        operation: Operation,
        region: &str,
    ) -> Result<Decided, NotDecided> {
        let region = self.region("region", region).map_err(NotDecided::UnknownRegion)?;
        let judgement = match request.stale {
            Some(message) => Arc::new(Judgement::new(self.stale_verdict(message))),
            None => self.judge(dataset_id, operation, region, request.now),
        };
        self.queue(lane, request, dataset_id, operation, region, judgement)
    }

    /// A Route (see `State::route`), its decision queued on `lane`; fail closed, the decision
    /// is for the first candidate. Nothing is decided when a candidate is unknown (field
    /// `candidates[i]`) or the lane refuses.
    pub fn route_queued(
        &self,
        lane: &LogLane,
        request: &Request<'_>,
        dataset_id: &str,
        operation: Operation,
        candidates: &[&str],
    ) -> Result<RoutedQueued, NotDecided> {
        let mut regions = Vec::with_capacity(candidates.len());
        for (i, candidate) in candidates.iter().enumerate() {
            regions.push(self.region(&format!("candidates[{i}]"), candidate).map_err(NotDecided::UnknownRegion)?);
        }
        let Routed { chosen, decided, verdict } = match request.stale {
            Some(message) => Routed { chosen: None, decided: 0, verdict: self.stale_verdict(message) },
            None => self.route(dataset_id, operation, &regions, request.now),
        };
        let region = regions.get(decided).copied().unwrap_or_default();
        let decision = self.queue(lane, request, dataset_id, operation, region, Arc::new(Judgement::new(verdict)))?;
        Ok(RoutedQueued { chosen, decided, decision })
    }

    /// A job's pre-flight check (see `State::check_job`), fail closed when `request.stale`
    /// says so; not queued (see `LogLane::push_numbered`). Unknown regions are named (fields
    /// `run_region`, `output_region`; each checked only when it has datasets).
    #[allow(clippy::too_many_arguments)]
    pub fn judge_job(
        &self,
        request: &Request<'_>,
        inputs: &[String],
        outputs: &[String],
        run_region: &str,
        output_region: &str,
        transform: &str,
        job: &str,
    ) -> Result<Vec<(JobDecision, Arc<Judgement>)>, NotDecided> {
        let region = |field: &str, name: &str, used: bool| {
            if used {
                self.region(field, name).map_err(NotDecided::UnknownRegion)
            } else {
                Ok(0)
            }
        };
        let run = region("run_region", run_region, !inputs.is_empty())?;
        let output = region("output_region", output_region, !outputs.is_empty())?;
        let decisions = match request.stale {
            Some(message) => {
                let verdict = self.stale_verdict(message);
                let one = |dataset_id: &String, operation, region| JobDecision {
                    dataset_id: Arc::from(dataset_id.as_str()),
                    operation,
                    region,
                    verdict: verdict.clone(),
                };
                let mut decisions: Vec<JobDecision> =
                    inputs.iter().map(|input| one(input, Operation::Process, run)).collect();
                decisions.extend(outputs.iter().map(|output_id| one(output_id, Operation::Store, output)));
                decisions
            }
            None => self.check_job(inputs, outputs, run, output, transform, job, request.now),
        };
        Ok(decisions
            .into_iter()
            .map(|decision| {
                let judgement = Arc::new(Judgement::new(decision.verdict.clone()));
                (decision, judgement)
            })
            .collect())
    }

    fn queue(
        &self,
        lane: &LogLane,
        request: &Request<'_>,
        dataset_id: &str,
        operation: Operation,
        region: u32,
        judgement: Arc<Judgement>,
    ) -> Result<Decided, NotDecided> {
        let queued = lane.push(&Queued {
            head: Head {
                kind: request.kind,
                caller: request.caller,
                policy: &self.policy,
                catalog_revision: request.catalog_revision,
                context: request.context,
            },
            dataset_id,
            operation,
            region,
            judgement: &judgement,
            decide_time: request.now,
        });
        let (id, first) = queued.map_err(NotDecided::Refused)?;
        Ok(Decided { judgement, id, first })
    }
}

impl LogLane {
    /// A lane writing decision ids as `id_prefix` and a counter (from 1), at most `per_entry`
    /// decisions an entry, refusing past `max_queue` waiting decisions.
    pub fn new(id_prefix: &str, per_entry: usize, max_queue: usize) -> LogLane {
        LogLane {
            lane: Mutex::new(Lane {
                id_prefix: Arc::from(id_prefix),
                per_entry: per_entry.max(1),
                max_queue: max_queue.max(1),
                refusing: false,
                next_id: 1,
                queue: Queue::default(),
                spare: Queue::default(),
                appended: 0,
                counted: HashMap::new(),
            }),
        }
    }

    /// Whether a decision can be queued now (check before making it).
    pub fn admit(&self) -> Result<(), Refusal> {
        self.lane.lock().admit()
    }

    /// While `refusing`, `admit` refuses every decision (the log cannot take them).
    pub fn set_refusing(&self, refusing: bool) {
        self.lane.lock().refusing = refusing;
    }

    /// Queues one decision, numbered next: its decision id's counter, and true when the lane
    /// held none before (the writer may be waiting for work). Refused as `admit` refuses.
    pub fn push(&self, decision: &Queued<'_>) -> Result<(u64, bool), Refusal> {
        let mut lane = self.lane.lock();
        lane.admit()?;
        let counter = lane.next_id;
        lane.next_id += 1;
        Ok((counter, lane.push(counter, decision)))
    }

    /// Queues a decision made before, numbered `counter` (drawn by `take_ids`): true when the
    /// lane held none before. Refused as `admit` refuses.
    pub fn push_numbered(&self, counter: u64, decision: &Queued<'_>) -> Result<bool, Refusal> {
        let mut lane = self.lane.lock();
        lane.admit()?;
        Ok(lane.push(counter, decision))
    }

    /// The decisions taken since the last call, counted (see `Counts`).
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
        self.lane.lock().queue.decisions.len()
    }

    /// Everything queued, rendered: the writer's bulk take. The rendering and the counting
    /// happen here, on the taker's thread, without holding the lane.
    pub fn take(&self) -> Taken {
        let (mut queue, appended, id_prefix, per_entry) = {
            let mut lane = self.lane.lock();
            let spare = std::mem::take(&mut lane.spare);
            (std::mem::replace(&mut lane.queue, spare), lane.appended, lane.id_prefix.clone(), lane.per_entry)
        };
        let entries = queue.render(&id_prefix, per_entry);
        let intents = queue.intents();
        let counted = queue.counted();
        queue.clear();
        let mut lane = self.lane.lock();
        for (key, (verdict, count)) in counted {
            lane.counted.entry(key).or_insert((verdict, 0)).1 += count;
        }
        lane.spare = queue;
        Taken { entries, appended, intents }
    }

    /// The text of decision id `counter`.
    pub fn decision_id(&self, counter: u64) -> String {
        let id_prefix = self.lane.lock().id_prefix.clone();
        let mut id = String::new();
        decision_id(&mut id, &id_prefix, counter);
        id
    }
}

impl Lane {
    fn admit(&self) -> Result<(), Refusal> {
        if self.refusing {
            Err(Refusal::Refusing)
        } else if self.queue.decisions.len() >= self.max_queue {
            Err(Refusal::Full)
        } else {
            Ok(())
        }
    }

    fn push(&mut self, counter: u64, decision: &Queued<'_>) -> bool {
        self.appended += 1;
        let queue = &mut self.queue;
        let first = queue.decisions.is_empty();
        let at = queue.decisions.len();
        let head = &decision.head;
        match queue.heads.last_mut() {
            Some(last) if last.decisions.end == at && last.holds(head) => last.decisions.end = at + 1,
            _ => queue.heads.push(QueuedHead {
                kind: head.kind.to_owned(),
                caller: head.caller.to_owned(),
                policy: head.policy.clone(),
                catalog_revision: head.catalog_revision,
                context: head.context.to_vec(),
                decisions: at..at + 1,
            }),
        }
        let start = queue.dataset_ids.len();
        queue.dataset_ids.push_str(decision.dataset_id);
        queue.decisions.push(QueuedDecision {
            id: counter,
            dataset_id: start..queue.dataset_ids.len(),
            operation: decision.operation,
            region: decision.region,
            judgement: decision.judgement.clone(),
            decide_time: decision.decide_time,
        });
        first
    }
}

impl Queue {
    /// The decisions' log entries: a run sharing a head in entries of at most `per_entry`
    /// decisions with consecutive ids (a decision numbered after others logged another way
    /// starts a new one).
    fn render(&self, id_prefix: &str, per_entry: usize) -> Vec<LaneEntry> {
        let mut entries = Vec::new();
        let mut id = String::new();
        for head in &self.heads {
            let policy = &head.policy;
            let mut writer = EntryWriter::default();
            let mut ids = 0..0;
            for decision in &self.decisions[head.decisions.clone()] {
                let continues =
                    !ids.is_empty() && ids.end == decision.id && ((ids.end - ids.start) as usize) < per_entry;
                if !continues {
                    if !ids.is_empty() {
                        let json = std::mem::take(&mut writer).finish(&head.entry_head());
                        entries.push(LaneEntry { json, ids, catalog_revision: head.catalog_revision });
                    }
                    ids = decision.id..decision.id;
                }
                let judgement = &decision.judgement;
                let verdict = &judgement.verdict;
                let allowed = &verdict.allowed;
                // Sets are numbered by the address of what they render: the judgements outlive
                // the entry (the queue holds them).
                let region_set = writer.region_set(Arc::as_ptr(allowed) as usize, allowed.names.iter().map(|n| &**n));
                let reason_set =
                    writer.reason_set(Arc::as_ptr(verdict) as usize, judgement.reasons(&policy.reason_texts));
                id.clear();
                decision_id(&mut id, id_prefix, decision.id);
                writer.row(&Row {
                    decision_id: &id,
                    dataset_id: &self.dataset_ids[decision.dataset_id.clone()],
                    operation: decision.operation,
                    region: policy.region_name(decision.region),
                    outcome: verdict.outcome,
                    region_set,
                    reason_set,
                    decide_time: decision.decide_time,
                    inherited_only: verdict.inherited_only,
                });
                ids.end = decision.id + 1;
            }
            if !ids.is_empty() {
                let json = writer.finish(&head.entry_head());
                entries.push(LaneEntry { json, ids, catalog_revision: head.catalog_revision });
            }
        }
        entries
    }

    /// The decisions' intents, counted.
    fn intents(&self) -> Vec<(Intent, usize)> {
        let mut counted: HashMap<(&str, &str, Operation, &str), usize> = HashMap::new();
        for head in &self.heads {
            for decision in &self.decisions[head.decisions.clone()] {
                let dataset_id = &self.dataset_ids[decision.dataset_id.clone()];
                let region = head.policy.region_name(decision.region);
                *counted.entry((&head.caller, dataset_id, decision.operation, region)).or_default() += 1;
            }
        }
        counted
            .into_iter()
            .map(|((caller, dataset_id, operation, region), n)| {
                ((caller.to_owned(), dataset_id.to_owned(), operation, region.to_string()), n)
            })
            .collect()
    }

    /// The decisions counted per verdict (by address) and operation.
    fn counted(&self) -> HashMap<(usize, Operation), (Arc<Verdict>, u64)> {
        let mut counted: HashMap<(usize, Operation), (Arc<Verdict>, u64)> = HashMap::new();
        for decision in &self.decisions {
            let verdict = &decision.judgement.verdict;
            counted
                .entry((Arc::as_ptr(verdict) as usize, decision.operation))
                .or_insert_with(|| (verdict.clone(), 0))
                .1 += 1;
        }
        counted
    }

    fn clear(&mut self) {
        self.heads.clear();
        self.decisions.clear();
        self.dataset_ids.clear();
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

    fn request(stale: Option<&str>) -> Request<'_> {
        Request { now: 0, stale, kind: "decide", caller: "alice", catalog_revision: 3, context: &[] }
    }

    fn decide(state: &State, lane: &LogLane, region: &str, stale: Option<&str>) -> Result<Decided, NotDecided> {
        state.decide_queued(lane, &request(stale), "s3://nowhere", Operation::Store, region)
    }

    #[test]
    fn a_question_asked_alone_is_decided_and_queued_or_refused_whole() {
        let engine = crate::Engine::new(policy());
        let state = engine.read();
        let lane = LogLane::new("r:ab", 10, 2);
        let decided = decide(&state, &lane, "aws:eu-central-1", None).unwrap();
        assert!(decided.first);
        assert_eq!((decided.judgement.verdict.reasons[0].code, decided.id), (ReasonCode::UnknownDataset, 1));
        let stale = decide(&state, &lane, "aws:eu-central-1", Some("fail closed: x")).unwrap();
        assert!(!stale.first);
        assert_eq!(stale.id, 2);
        let stale = stale.judgement.verdict.clone();
        assert_eq!((stale.outcome, stale.reasons[0].code), (Outcome::Deny, ReasonCode::StaleCatalog));
        assert_eq!(&*stale.reasons[0].message, "fail closed: x");
        // An unknown region is refused even when stale, and a full lane before anything is decided.
        let unknown = decide(&state, &lane, "aws:nowhere-9", Some("x"));
        assert!(matches!(unknown, Err(NotDecided::UnknownRegion(_))));
        let full = decide(&state, &lane, "aws:eu-central-1", None);
        assert!(matches!(full, Err(NotDecided::Refused(Refusal::Full))));
        assert_eq!(lane.next_id(), 3, "no id taken by a decision not made");
        assert!(lane.take_counts().by_outcome.is_empty(), "counted when taken");
        let taken = lane.take();
        assert_eq!(taken.appended, 2);
        let json = std::str::from_utf8(&taken.entries[0].json).unwrap();
        assert!(json.contains("\"STALE_CATALOG\"") && json.contains("\"catalog_revision\":3"), "{json}");
        assert!(json.contains("\"s3://nowhere\"") && json.contains("\"aws:eu-central-1\""), "{json}");
        let counts = lane.take_counts();
        let mut by_reason: Vec<(ReasonCode, u64)> = counts.by_reason.iter().map(|((code, _), n)| (*code, *n)).collect();
        by_reason.sort_by_key(|(code, _)| *code as u8);
        assert_eq!(counts.by_outcome, vec![((Operation::Store, Outcome::Deny), 2)]);
        assert_eq!(by_reason, vec![(ReasonCode::UnknownDataset, 1), (ReasonCode::StaleCatalog, 1)]);
        assert!(lane.take_counts().by_outcome.is_empty(), "counted once");
    }

    fn queue(lane: &LogLane, caller: &str, revision: i64, judgement: &Arc<Judgement>) -> bool {
        thread_local!(static POLICY: Arc<CompiledPolicy> = Arc::new(policy()));
        POLICY.with(|policy| {
            lane.push(&Queued {
                head: Head { kind: "decide", caller, policy, catalog_revision: revision, context: &[] },
                dataset_id: "s3://a",
                operation: Operation::Store,
                region: policy.region("aws:eu-central-1").expect("a region of the policy"),
                judgement,
                decide_time: 0,
            })
            .expect("room in the lane")
            .1
        })
    }

    #[test]
    fn a_route_is_queued_and_a_stale_one_fails_closed_on_the_first_candidate() {
        let engine = crate::Engine::new(policy());
        let state = engine.read();
        let lane = LogLane::new("r:ab", 10, 10);
        let candidates = ["aws:eu-central-1", "aws:eu-central-1"];
        let routed = state.route_queued(&lane, &request(None), "s3://nowhere", Operation::Store, &candidates).unwrap();
        assert_eq!((routed.chosen, routed.decided, routed.decision.id), (None, 0, 1));
        let stale = Request { kind: "route", ..request(Some("fail closed: x")) };
        let routed = state.route_queued(&lane, &stale, "s3://a", Operation::Store, &candidates).unwrap();
        assert_eq!(routed.decision.judgement.verdict.reasons[0].code, ReasonCode::StaleCatalog);
        let unknown = state.route_queued(&lane, &stale, "s3://a", Operation::Store, &["aws:eu-central-1", "x"]);
        match unknown {
            Err(NotDecided::UnknownRegion(Error::UnknownRegion { field, .. })) => assert_eq!(field, "candidates[1]"),
            _ => panic!("an unknown candidate is named"),
        }
        let json = String::from_utf8(lane.take().entries[1].json.clone()).unwrap();
        assert!(json.contains("\"kind\":\"route\"") && json.contains("STALE_CATALOG"), "{json}");
    }

    #[test]
    fn a_stale_job_check_fails_closed_and_is_queued_under_its_own_ids() {
        let engine = crate::Engine::new(policy());
        let state = engine.read();
        let stale = Request { kind: "check_job", ..request(Some("fail closed: x")) };
        let (inputs, outputs) = (vec!["s3://in".to_owned()], vec!["s3://out".to_owned()]);
        let judged =
            state.judge_job(&stale, &inputs, &outputs, "aws:eu-central-1", "aws:eu-central-1", "", "").unwrap();
        let operations: Vec<Operation> = judged.iter().map(|(d, _)| d.operation).collect();
        assert_eq!(operations, vec![Operation::Process, Operation::Store]);
        assert!(judged.iter().all(|(_, j)| j.verdict.reasons[0].code == ReasonCode::StaleCatalog));
        let unknown = state.judge_job(&stale, &inputs, &[], "x", "also ignored: no outputs", "", "");
        assert!(matches!(unknown, Err(NotDecided::UnknownRegion(_))));
        let lane = LogLane::new("r:ab", 10, 10);
        let first = lane.take_ids(2);
        let policy = &state.policy;
        for (n, (decision, judgement)) in judged.iter().enumerate() {
            let queued = Queued {
                head: Head { kind: "check_job", caller: "alice", policy, catalog_revision: 3, context: &[] },
                dataset_id: &decision.dataset_id,
                operation: decision.operation,
                region: decision.region,
                judgement,
                decide_time: 0,
            };
            assert_eq!(lane.push_numbered(first + n as u64, &queued), Ok(n == 0));
        }
        let taken = lane.take();
        assert_eq!(taken.entries.iter().map(|e| e.ids.clone()).collect::<Vec<_>>(), vec![1..3]);
        lane.set_refusing(true);
        let refused = Queued {
            head: Head { kind: "check_job", caller: "alice", policy, catalog_revision: 3, context: &[] },
            dataset_id: "s3://in",
            operation: Operation::Process,
            region: 0,
            judgement: &judged[0].1,
            decide_time: 0,
        };
        assert_eq!(lane.push_numbered(9, &refused), Err(Refusal::Refusing));
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
