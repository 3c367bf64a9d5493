//! The engine: one compiled policy and one effective-attributes index, changed by one writer
//! at a time and read by any number of deciders.
//!
//! Readers take `read()` and decide from the `State` they get: the policy and the index values
//! it holds always belong together. A writer (`apply`, `set_policy`) computes its changes
//! against the published state while readers go on, and installs them at once -- forgetting,
//! in the same step, the memoised verdicts (`memo`) of every dataset the changes may alter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::index::{Change, Delta, Entry, Grants, Graph, Loader, NodeAttributes, NodeId, Status, View};
use crate::log_entry::{EntryWriter, Row};
use crate::memo::{Judgement, Made, Memo};
use crate::policy::{
    label_matches, Attributes, CompiledPolicy, Operation, Outcome, ReasonCode, RegionList, UndescribedOutputs, Verdict,
};
use crate::symbols::Key;
use crate::text::py_repr;
use crate::wire::{AnswerShape, BatchError, Question, Questions};
use crate::Error;

/// The residency engine (see the module doc).
pub struct Engine {
    state: RwLock<State>,
    writer: Mutex<Writer>,
}

/// What readers see: the active policy and the index values, consistent with each other.
pub struct State {
    pub view: View,
    pub policy: Arc<CompiledPolicy>,
    /// Verdicts made from this view and policy.
    memo: Memo,
    /// The engine's own number: node ids mean something only with it (`Batch::nodes`).
    engine: u64,
}

/// Numbers engines apart.
static ENGINES: AtomicU64 = AtomicU64::new(0);

struct Writer {
    graph: Graph,
    grants: Grants,
}

impl Engine {
    /// An engine with `policy` and an empty index.
    pub fn new(policy: CompiledPolicy) -> Engine {
        let policy = Arc::new(policy);
        let mut view = View::default();
        let graph = Graph::default();
        let grants = Grants::new(policy.clone(), &mut view.symbols, &graph);
        Engine {
            state: RwLock::new(State {
                view,
                policy,
                memo: Memo::default(),
                engine: ENGINES.fetch_add(1, Ordering::Relaxed),
            }),
            writer: Mutex::new(Writer { graph, grants }),
        }
    }

    /// The state to decide from; hold it only for the duration of a call (a writer installing
    /// its changes waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// Applies catalog changes in order and recomputes what they affect once; returns when
    /// readers see all of them. The first batch into an empty index is a full build.
    ///
    /// Returns the datasets whose answers may differ now: those whose status, effective
    /// attributes, lineage paths or locations changed. A full build returns none (everything
    /// is new).
    pub fn apply(&self, changes: &[Change]) -> Vec<Arc<str>> {
        let mut writer = self.writer.lock();
        let Writer { graph, grants } = &mut *writer;
        let (resolved, empty) = {
            let mut state = self.state.write();
            let empty = state.view.symbols.names.is_empty();
            let resolved = graph.resolve(changes, &mut state.view.symbols, grants);
            state.view.cover_names();
            (resolved, empty)
        };
        if empty {
            let locations = {
                let state = self.state.read();
                let mutation = graph.mutate(resolved, &state.view);
                let mut locations = vec![Box::default(); state.view.symbols.names.len()];
                for (node, located) in mutation.delta.into_locations() {
                    locations[node as usize] = located;
                }
                locations
            };
            self.install_build(graph, grants, locations);
            return Vec::new();
        }
        let (delta, changed) = {
            let state = self.state.read();
            let view = &state.view;
            let mut mutation = graph.mutate(resolved, view);
            match &mutation.only_added {
                Some(added) if graph.only_adds(added, view, grants.inherits()) => {
                    graph.propagate(grants, view, &mutation.seeds, &mut mutation.delta)
                }
                _ => graph.recompute(grants, view, &mutation.seeds, &mut mutation.delta),
            }
            let changed = graph.affected(view, &mutation.delta);
            (mutation.delta, changed)
        };
        let mut state = self.state.write();
        state.view.install(delta);
        // Every dataset whose status, values or lineage paths changed: its verdicts may differ.
        state.memo.forget(changed.iter().copied());
        changed.into_iter().map(|node| state.view.name(node).clone()).collect()
    }

    /// Fills the index from a catalog snapshot (`fill` gives its rows to the loader) and
    /// builds every value from scratch: the router's start-up. Into an index that holds
    /// something already, the rows are applied as `apply` would, before the same rebuild.
    /// When `fill` fails, what it gave so far is built all the same.
    pub fn load<E>(&self, fill: impl FnOnce(&mut Loader<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut writer = self.writer.lock();
        let Writer { graph, grants } = &mut *writer;
        let (filled, locations) = {
            let mut state = self.state.write();
            let view = &mut state.view;
            let located = view.nodes().map(|node| view.get(node).locations.clone()).collect();
            let mut loader = Loader::new(graph, &mut view.symbols, grants, located);
            let filled = fill(&mut loader);
            let locations = loader.finish();
            view.cover_names();
            (filled, locations)
        };
        self.install_build(graph, grants, locations);
        filled
    }

    /// Computes every value from the structure and installs them with `locations` (per node).
    fn install_build(&self, graph: &mut Graph, grants: &mut Grants, locations: Vec<Box<[u32]>>) {
        let values = {
            let state = self.state.read();
            graph.build(grants, &state.view.symbols)
        };
        let mut state = self.state.write();
        state.view.install_all(values, locations);
        state.memo.clear();
        state.view.shrink_to_fit();
        graph.shrink_to_fit();
    }

    /// Makes `policy` active. Only datasets downstream of edges whose removed labels differ
    /// under it (or of placeholders, when it judges them differently) are recomputed; readers
    /// see the new policy and those values together.
    pub fn set_policy(&self, policy: CompiledPolicy) {
        let policy = Arc::new(policy);
        let mut writer = self.writer.lock();
        let Writer { graph, grants } = &mut *writer;
        let mut new_grants = Grants::new(policy.clone(), &mut self.state.write().view.symbols, graph);
        let delta = {
            let state = self.state.read();
            regrant(graph, grants, &mut new_grants, &state.view)
        };
        let mut state = self.state.write();
        state.view.install(delta);
        state.policy = policy;
        state.memo.clear();
        *grants = new_grants;
    }

    /// What making `candidate` active would change, per dataset and operation (only entries
    /// with a change), sorted by dataset id and operation. Changes nothing.
    pub fn impact(&self, candidate: CompiledPolicy, now: i64) -> Vec<PolicyChange> {
        let candidate = Arc::new(candidate);
        let mut writer = self.writer.lock();
        let Writer { graph, grants } = &mut *writer;
        let mut candidate_grants = Grants::new(candidate.clone(), &mut self.state.write().view.symbols, graph);
        let state = self.state.read();
        let delta = regrant(graph, grants, &mut candidate_grants, &state.view);
        let view = &state.view;
        let mut changes = Vec::new();
        for node in view.nodes() {
            let now_known = view.get(node).status.is_known();
            let then_known = delta.get(view, node).0.is_known();
            if !now_known && !then_known {
                continue;
            }
            let after_attrs = DeltaAttributes { view, delta: &delta, node };
            for op in Operation::ALL {
                let before = match view.attributes(node) {
                    Some(attrs) => state.policy.allowed_regions(&attrs, &view.symbols, op, now),
                    None => state.policy.no_regions().clone(),
                };
                let after = if then_known {
                    candidate.allowed_regions(&after_attrs, &view.symbols, op, now)
                } else {
                    candidate.no_regions().clone()
                };
                let added = difference(&after, &before);
                let removed = difference(&before, &after);
                let mut new_violations = Vec::new();
                if op == Operation::Store {
                    for &location in view.get(node).locations.iter() {
                        let name = view.symbols.locations.resolve(location);
                        if contains(&before, name) && !contains(&after, name) {
                            new_violations.push(name.clone());
                        }
                    }
                }
                if !added.is_empty() || !removed.is_empty() || !new_violations.is_empty() {
                    changes.push(PolicyChange {
                        dataset_id: view.name(node).clone(),
                        operation: op,
                        added_regions: added,
                        removed_regions: removed,
                        new_violations,
                    });
                }
            }
        }
        changes.sort_by(|a, b| (&a.dataset_id, a.operation.as_str()).cmp(&(&b.dataset_id, b.operation.as_str())));
        changes
    }
}

impl Engine {
    /// The transform of the current edge `output DERIVED_FROM input` by `job`, if any.
    pub fn edge_transform(&self, input: &str, output: &str, job: &str) -> Option<Arc<str>> {
        let writer = self.writer.lock();
        let state = self.state.read();
        let (input, output) = (state.view.node(input)?, state.view.node(output)?);
        writer.graph.transform_of(input, output, job).cloned()
    }

    /// The effective labels and origins (UNDESCRIBED included) of `dataset_ids` and, with
    /// `downstream`, of every dataset lineage leads to from them: what a lineage change can
    /// loosen. An id the index holds nothing for has none.
    pub fn constraints(&self, dataset_ids: &[String], downstream: bool) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
        let writer = self.writer.lock();
        let state = self.state.read();
        let view = &state.view;
        let mut found: Vec<(Arc<str>, Vec<Arc<str>>)> = Vec::new();
        let mut known = HashSet::new();
        for id in dataset_ids {
            match view.node(id) {
                Some(node) => {
                    known.insert(node);
                }
                None => found.push((Arc::from(id.as_str()), Vec::new())),
            }
        }
        let nodes = if downstream { writer.graph.downstream(&known) } else { known.into_iter().collect() };
        for node in nodes {
            let values = view.get(node).values.iter().map(|e| view.symbols.key_text(e.key).clone()).collect();
            found.push((view.name(node).clone(), values));
        }
        found
    }

    /// The edges on the dataset's label paths that claim a transform which would have removed
    /// the label, had the active policy granted it to their job: recorded, but plain copies.
    /// Sorted by (input, output, job, transform); None for an unknown dataset.
    pub fn unapproved(&self, dataset_id: &str) -> Option<Vec<Unapproved>> {
        let writer = self.writer.lock();
        let state = self.state.read();
        let view = &state.view;
        let attrs = view.node(dataset_id).and_then(|node| view.attributes(node))?;
        // (input, output, job, transform) -> the labels it would have removed
        let mut found: BTreeMap<EdgeClaim, Vec<Arc<str>>> = BTreeMap::new();
        let mut labels: Vec<Key> = attrs.keys().filter(|k| !k.is_origin()).collect();
        labels.sort_by(|a, b| view.symbols.key_text(*a).cmp(view.symbols.key_text(*b)));
        for key in labels {
            let label = view.symbols.key_text(key);
            let path = attrs.path(key);
            for pair in path.windows(2) {
                let (Some(upstream), Some(downstream)) = (view.node(&pair[0]), view.node(&pair[1])) else {
                    continue;
                };
                for (input, job, transform) in writer.graph.edges_into(downstream) {
                    let claims = state.policy.declassifier(transform).filter(|d| !d.grants(job));
                    if input == upstream && claims.is_some_and(|d| d.removes.iter().any(|r| label_matches(r, label))) {
                        let entry = (pair[0].clone(), pair[1].clone(), job.clone(), transform.clone());
                        found.entry(entry).or_default().push(label.clone());
                    }
                }
            }
        }
        Some(
            found
                .into_iter()
                .map(|((input, output, job, transform), labels)| Unapproved { input, output, job, transform, labels })
                .collect(),
        )
    }
}

/// (input, output, job, transform) of a lineage edge.
type EdgeClaim = (Arc<str>, Arc<str>, Arc<str>, Arc<str>);

/// A lineage edge claiming a declassifying transform its job is not granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unapproved {
    pub input: Arc<str>,
    pub output: Arc<str>,
    pub job: Arc<str>,
    pub transform: Arc<str>,
    /// The labels on the dataset's paths through the edge that it would have removed.
    pub labels: Vec<Arc<str>>,
}

/// The delta that switching the index from `before` to `after` grants makes.
fn regrant(graph: &Graph, before: &mut Grants, after: &mut Grants, view: &View) -> Delta {
    let mut seeds = graph.regranted(before, after, &view.symbols);
    if before.inherits() != after.inherits() {
        seeds.extend(graph.placeholders());
    }
    let mut delta = Delta::default();
    graph.recompute(after, view, &seeds, &mut delta);
    delta
}

fn difference(a: &RegionList, b: &RegionList) -> Vec<Arc<str>> {
    a.names.iter().filter(|name| !contains(b, name)).cloned().collect()
}

fn contains(list: &RegionList, name: &str) -> bool {
    list.names.binary_search_by(|n| (**n).cmp(name)).is_ok()
}

/// How a candidate policy changes one dataset's allowed regions for one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyChange {
    pub dataset_id: Arc<str>,
    pub operation: Operation,
    pub added_regions: Vec<Arc<str>>,
    pub removed_regions: Vec<Arc<str>>,
    /// (store only) the dataset's locations that the current policy allows and the candidate
    /// would not.
    pub new_violations: Vec<Arc<str>>,
}

/// A dataset's effective attributes and where it may be stored and processed now.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// Sorted by label, each with its lineage path.
    pub classifications: Vec<(Arc<str>, Vec<Arc<str>>)>,
    pub origins: Vec<(Arc<str>, Vec<Arc<str>>)>,
    pub store_regions: Arc<RegionList>,
    pub process_regions: Arc<RegionList>,
    pub inherited_only: bool,
}

/// One decision of a job check.
#[derive(Clone, Debug)]
pub struct JobDecision {
    pub dataset_id: Arc<str>,
    pub operation: Operation,
    pub region: u32,
    pub verdict: Arc<Verdict>,
}

/// A dataset stored where the policy does not allow it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub dataset_id: Arc<str>,
    pub region: Arc<str>,
    pub verdict: Arc<Verdict>,
}

/// The outcome of `route`: the chosen candidate (None when none is allowed) and the verdict
/// for it, or for the first candidate when none is allowed.
#[derive(Clone, Debug)]
pub struct Routed {
    pub chosen: Option<usize>,
    pub decided: usize,
    pub verdict: Arc<Verdict>,
}

/// The datasets decisions judge (described ones and derived placeholders), counted by effective
/// classification, origin (UNDESCRIBED left out) and location; per location (datasets stored
/// there, those of them with an effective classification).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub datasets: usize,
    pub classifications: BTreeMap<Arc<str>, usize>,
    pub origins: BTreeMap<Arc<str>, usize>,
    pub regions: BTreeMap<Arc<str>, (usize, usize)>,
}

impl State {
    /// See `Summary`.
    pub fn summary(&self) -> Summary {
        let view = &self.view;
        let mut summary = Summary::default();
        for node in view.nodes() {
            let Some(attrs) = view.attributes(node) else { continue };
            summary.datasets += 1;
            let mut classified = false;
            for key in attrs.keys() {
                if key == Key::UNDESCRIBED {
                    continue;
                }
                let counts = if key.is_origin() { &mut summary.origins } else { &mut summary.classifications };
                classified |= !key.is_origin();
                *counts.entry(view.symbols.key_text(key).clone()).or_default() += 1;
            }
            for &location in view.get(node).locations.iter() {
                let counts = summary.regions.entry(view.symbols.locations.resolve(location).clone()).or_default();
                counts.0 += 1;
                counts.1 += usize::from(classified);
            }
        }
        summary
    }

    /// Where the catalog says a dataset decisions judge is stored (none for any other).
    pub fn locations(&self, dataset_id: &str) -> Vec<Arc<str>> {
        let view = &self.view;
        match view.node(dataset_id).filter(|&node| view.get(node).status.is_known()) {
            Some(node) => view.get(node).locations.iter().map(|&l| view.symbols.locations.resolve(l).clone()).collect(),
            None => Vec::new(),
        }
    }

    /// The effective classification labels of a dataset decisions judge, sorted (none for any
    /// other).
    pub fn labels(&self, dataset_id: &str) -> Vec<Arc<str>> {
        let view = &self.view;
        let Some(attrs) = view.node(dataset_id).and_then(|node| view.attributes(node)) else {
            return Vec::new();
        };
        let mut labels: Vec<Arc<str>> =
            attrs.keys().filter(|k| !k.is_origin()).map(|k| view.symbols.key_text(k).clone()).collect();
        labels.sort();
        labels
    }

    /// The index of a region of the active policy's registry.
    pub fn region(&self, field: &str, region: &str) -> Result<u32, Error> {
        self.policy
            .region(region)
            .ok_or_else(|| Error::UnknownRegion { field: field.to_owned(), region: region.to_owned() })
    }

    /// The fail-closed verdict of a view that cannot be trusted: DENY / STALE_CATALOG with
    /// `message`.
    pub fn stale_verdict(&self, message: &str) -> Arc<Verdict> {
        Arc::new(self.policy.plain_denial(ReasonCode::StaleCatalog, Arc::from(message), Vec::new()))
    }

    /// May `op` happen on the dataset in the region (an index from `region`) at `now`?
    /// An unknown dataset is DENY / UNKNOWN_DATASET. Verdicts on datasets the index holds are
    /// memoised: asked again, the same verdict comes back.
    pub fn decide(&self, dataset_id: &str, op: Operation, region: u32, now: i64) -> Arc<Verdict> {
        self.judge(dataset_id, op, region, now).verdict.clone()
    }

    fn decide_node(&self, node: NodeId, op: Operation, region: u32, now: i64) -> Arc<Verdict> {
        self.judge_node(node, op, region, now).verdict.clone()
    }

    /// `decide` with the verdict's renderings for a BatchDecide (memoised with it).
    pub fn judge(&self, dataset_id: &str, op: Operation, region: u32, now: i64) -> Arc<Judgement> {
        let epoch = self.policy.expiry_epoch(now);
        if let Some((_, judgement)) = self.memo.get(&self.memo.asked(dataset_id, op, region), epoch) {
            return judgement;
        }
        match self.view.node(dataset_id) {
            // Named as asked: the memo was just asked under the index's name.
            Some(node) if **self.view.name(node) == *dataset_id => self.judge_made(node, op, region, now, epoch),
            Some(node) => self.judge_node(node, op, region, now),
            None => Arc::new(Judgement::new(Arc::new(self.unknown(dataset_id)))),
        }
    }

    fn judge_node(&self, node: NodeId, op: Operation, region: u32, now: i64) -> Arc<Judgement> {
        let epoch = self.policy.expiry_epoch(now);
        if let Some((_, judgement)) = self.memo.get(&self.memo.asked(self.view.name(node), op, region), epoch) {
            return judgement;
        }
        self.judge_made(node, op, region, now, epoch)
    }

    /// The verdict on a dataset the index holds, made and memoised.
    fn judge_made(&self, node: NodeId, op: Operation, region: u32, now: i64, epoch: u32) -> Arc<Judgement> {
        let judgement = self.judge_anew(node, op, region, now);
        let made = Made { dataset_id: self.view.name(node).clone(), node, operation: op, region, judgement };
        let judgement = made.judgement.clone();
        self.memo.insert(epoch, [made]);
        judgement
    }

    /// The verdict on a dataset the index holds, made without the memo.
    fn judge_anew(&self, node: NodeId, op: Operation, region: u32, now: i64) -> Arc<Judgement> {
        let verdict = Arc::new(match self.view.attributes(node) {
            Some(attrs) => self.decide_known(&attrs, op, region, now),
            None => self.unknown(self.view.name(node)),
        });
        Arc::new(Judgement::new(verdict))
    }

    fn decide_known(&self, attrs: &NodeAttributes<'_>, op: Operation, region: u32, now: i64) -> Verdict {
        let mut verdict = self.policy.decide(attrs, &self.view.symbols, op, region, now);
        verdict.inherited_only = attrs.inherited_only();
        verdict
    }

    /// DENY / UNKNOWN_DATASET for a dataset decisions cannot judge: unknown, deleted, or a
    /// placeholder judged undescribed. A legacy policy's decisions keep the message they had.
    pub fn unknown(&self, dataset_id: &str) -> Verdict {
        let status = self.view.node(dataset_id).map_or(Status::Unknown, |node| self.view.get(node).status);
        let quoted = py_repr(dataset_id);
        let message = match status {
            Status::UndescribedPlaceholder if self.policy.undescribed_outputs() == UndescribedOutputs::Inherit => {
                format!(
                    "dataset {quoted} is known only from lineage and no described data flows into it \
                     (a lineage root nobody described): register it to decide"
                )
            }
            Status::UndescribedPlaceholder if !self.policy.legacy() => format!(
                "dataset {quoted} is known only from lineage, and the policy judges such datasets undescribed \
                 (defaults.undescribed_outputs: deny): register it to decide"
            ),
            _ => format!("dataset {quoted} is not in the catalog"),
        };
        self.policy.plain_denial(ReasonCode::UnknownDataset, Arc::from(message), Vec::new())
    }

    /// The first candidate (region indexes, most preferred first) where `op` is allowed, with
    /// its verdict; when none is, the verdict for the first candidate.
    pub fn route(&self, dataset_id: &str, op: Operation, candidates: &[u32], now: i64) -> Routed {
        let Some(&first) = candidates.first() else {
            return Routed { chosen: None, decided: 0, verdict: Arc::new(self.unknown(dataset_id)) };
        };
        let verdict = self.decide(dataset_id, op, first, now);
        if verdict.outcome == Outcome::Allow {
            return Routed { chosen: Some(0), decided: 0, verdict };
        }
        for (index, &candidate) in candidates.iter().enumerate().skip(1) {
            if verdict.allowed.contains(candidate) {
                return Routed {
                    chosen: Some(index),
                    decided: index,
                    verdict: self.decide(dataset_id, op, candidate, now),
                };
            }
        }
        Routed { chosen: None, decided: 0, verdict }
    }

    /// Pre-flight check of a pipeline job: a PROCESS decision for each input in `run_region`,
    /// then a STORE decision for each output in `output_region` on the attributes it would
    /// have after the job -- its current ones plus every input's, minus what `transform`
    /// removes when the policy grants it to `job`. An input the catalog does not describe
    /// brings UNDESCRIBED.
    #[allow(clippy::too_many_arguments)]
    pub fn check_job(
        &self,
        inputs: &[String],
        outputs: &[String],
        run_region: u32,
        output_region: u32,
        transform: &str,
        job: &str,
        now: i64,
    ) -> Vec<JobDecision> {
        let mut decisions: Vec<JobDecision> = inputs
            .iter()
            .map(|input| JobDecision {
                dataset_id: Arc::from(input.as_str()),
                operation: Operation::Process,
                region: run_region,
                verdict: self.decide(input, Operation::Process, run_region, now),
            })
            .collect();
        let removes = self.policy.declassifier(transform).filter(|d| d.grants(job)).map(|d| &d.removes);
        for output in outputs {
            let attrs = self.inherited(inputs, output, removes.map(Vec::as_slice).unwrap_or_default());
            let mut verdict = self.policy.decide(&attrs, &self.view.symbols, Operation::Store, output_region, now);
            // The output would be a derived placeholder: not described, and the policy judges
            // such outputs by what they inherit.
            verdict.inherited_only = self.policy.undescribed_outputs() == UndescribedOutputs::Inherit
                && self.view.node(output).is_none_or(|node| self.view.get(node).status != Status::Described);
            decisions.push(JobDecision {
                dataset_id: attrs.dataset_id.clone(),
                operation: Operation::Store,
                region: output_region,
                verdict: Arc::new(verdict),
            });
        }
        decisions
    }

    /// The attributes `output` would have after a job reading `inputs`: its current ones plus
    /// every input's (paths extended by `output`) minus the labels in `removes` and their
    /// descendants; the shortest path wins.
    fn inherited(&self, inputs: &[String], output: &str, removes: &[String]) -> Materialized {
        let output_name: Arc<str> = match self.view.node(output) {
            Some(node) => self.view.name(node).clone(),
            None => Arc::from(output),
        };
        let mut found: HashMap<Key, Vec<Arc<str>>> = HashMap::new();
        if let Some(current) = self.view.node(output).and_then(|node| self.view.attributes(node)) {
            for key in current.keys() {
                found.insert(key, current.path(key));
            }
        }
        let mut keep = |key: Key, path: Vec<Arc<str>>| {
            if found.get(&key).is_none_or(|existing| path.len() < existing.len()) {
                found.insert(key, path);
            }
        };
        for input in inputs {
            match self.view.node(input).and_then(|node| self.view.attributes(node)) {
                None => keep(Key::UNDESCRIBED, vec![Arc::from(input.as_str()), output_name.clone()]),
                Some(attrs) => {
                    for key in attrs.keys() {
                        if !key.is_origin() {
                            let label = self.view.symbols.key_text(key);
                            if removes.iter().any(|removed| label_matches(removed, label)) {
                                continue;
                            }
                        }
                        let mut path = attrs.path(key);
                        path.push(output_name.clone());
                        keep(key, path);
                    }
                }
            }
        }
        let mut entries: Vec<(Key, Vec<Arc<str>>)> = found.into_iter().collect();
        entries.sort_by_key(|(key, _)| *key);
        Materialized { dataset_id: output_name, entries }
    }

    /// A dataset's effective labels and origins (each with its lineage path) and where the
    /// policy lets it be stored and processed at `now`; None when the dataset is unknown.
    pub fn explain(&self, dataset_id: &str, now: i64) -> Option<Explanation> {
        let attrs = self.view.node(dataset_id).and_then(|node| self.view.attributes(node))?;
        let symbols = &self.view.symbols;
        let mut classifications = Vec::new();
        let mut origins = Vec::new();
        for key in attrs.keys() {
            let item = (symbols.key_text(key).clone(), attrs.path(key));
            if key.is_origin() {
                origins.push(item);
            } else {
                classifications.push(item);
            }
        }
        classifications.sort_by(|a, b| a.0.cmp(&b.0));
        origins.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Explanation {
            classifications,
            origins,
            store_regions: self.policy.allowed_regions(&attrs, symbols, Operation::Store, now),
            process_regions: self.policy.allowed_regions(&attrs, symbols, Operation::Process, now),
            inherited_only: attrs.inherited_only(),
        })
    }

    /// Every (dataset, location) where a described dataset is stored but the policy does not
    /// allow storing it, by dataset id then location order, each with its DENY verdict. A
    /// location the registry does not know is a violation too.
    pub fn scan_violations(&self, now: i64) -> Vec<Violation> {
        let view = &self.view;
        let mut stored: Vec<NodeId> = view.nodes().filter(|&n| self.is_stored(n)).collect();
        stored.sort_by(|&a, &b| view.name(a).cmp(view.name(b)));
        let mut found = Vec::new();
        for node in stored {
            self.node_violations(node, now, &mut found);
        }
        found
    }

    /// `scan_violations` for `dataset_ids` only, in the order given (ids of no stored
    /// described dataset have none).
    pub fn violations_of(&self, dataset_ids: &[String], now: i64) -> Vec<Violation> {
        let mut found = Vec::new();
        for id in dataset_ids {
            if let Some(node) = self.view.node(id).filter(|&node| self.is_stored(node)) {
                self.node_violations(node, now, &mut found);
            }
        }
        found
    }

    /// The described datasets stored somewhere (those that can violate the policy).
    pub fn stored_datasets(&self) -> Vec<Arc<str>> {
        self.view.nodes().filter(|&n| self.is_stored(n)).map(|n| self.view.name(n).clone()).collect()
    }

    fn is_stored(&self, node: NodeId) -> bool {
        let value = self.view.get(node);
        value.status == Status::Described && !value.locations.is_empty()
    }

    fn node_violations(&self, node: NodeId, now: i64, found: &mut Vec<Violation>) {
        let view = &self.view;
        let attrs = view.attributes(node).expect("a described dataset");
        for &location in view.get(node).locations.iter() {
            let name = view.symbols.locations.resolve(location);
            let verdict = match self.policy.region(name) {
                Some(region) => self.decide_node(node, Operation::Store, region, now),
                None => {
                    let message =
                        format!("{} is not a region of this policy's registry, so no rule can allow it", py_repr(name));
                    Arc::new(Verdict {
                        allowed: self.policy.allowed_regions(&attrs, &view.symbols, Operation::Store, now),
                        ..self.policy.plain_denial(ReasonCode::DefaultDenied, Arc::from(message), Vec::new())
                    })
                }
            };
            if verdict.outcome == Outcome::Deny {
                found.push(Violation { dataset_id: view.name(node).clone(), region: name.clone(), verdict });
            }
        }
    }

    /// Where a dataset stands against the policy, and where the catalog says it is stored (for
    /// a described dataset only).
    pub fn residency(&self, dataset_id: &str) -> (Residency, Vec<Arc<str>>) {
        let view = &self.view;
        let Some(node) = view.node(dataset_id) else { return (Residency::Unknown, Vec::new()) };
        let value = view.get(node);
        let state = match value.status {
            Status::Described => Residency::Described,
            // A derived placeholder that inherits doubt is as undescribed as its source.
            Status::Derived if value.values.iter().any(|e| e.key == Key::UNDESCRIBED) => Residency::Undescribed,
            Status::Derived => Residency::Derived,
            Status::UndescribedPlaceholder | Status::Deleted => Residency::Undescribed,
            Status::Unknown => Residency::Unknown,
        };
        let locations = if state == Residency::Described {
            value.locations.iter().map(|&l| view.symbols.locations.resolve(l).clone()).collect()
        } else {
            Vec::new()
        };
        (state, locations)
    }
}

/// Where a dataset stands (`State::residency`); a described one is allowed or in violation
/// depending on its locations' verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    Described,
    /// Known only as the output of described lineage: judged by what it inherits.
    Derived,
    /// Nothing is known of its content: a lineage root nobody described, a deleted dataset, a
    /// placeholder derived from such data.
    Undescribed,
    /// Not in the catalog.
    Unknown,
}

/// Attributes given in full (a job's would-be output).
struct Materialized {
    dataset_id: Arc<str>,
    /// Sorted by key.
    entries: Vec<(Key, Vec<Arc<str>>)>,
}

impl Attributes for Materialized {
    fn dataset_id(&self) -> &Arc<str> {
        &self.dataset_id
    }

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.entries.iter().map(|(key, _)| *key)
    }

    fn distance(&self, key: Key) -> Option<u32> {
        self.find(key).map(|path| path.len().saturating_sub(1) as u32)
    }

    fn path(&self, key: Key) -> Vec<Arc<str>> {
        self.find(key).cloned().unwrap_or_default()
    }
}

impl Materialized {
    fn find(&self, key: Key) -> Option<&Vec<Arc<str>>> {
        self.entries.binary_search_by_key(&key, |(k, _)| *k).ok().map(|i| &self.entries[i].1)
    }
}

/// A node's attributes as a delta not yet installed would make them (policy impact).
struct DeltaAttributes<'a> {
    view: &'a View,
    delta: &'a Delta,
    node: NodeId,
}

impl DeltaAttributes<'_> {
    fn values(&self, node: NodeId) -> &[Entry] {
        self.delta.get(self.view, node).1
    }
}

impl Attributes for DeltaAttributes<'_> {
    fn dataset_id(&self) -> &Arc<str> {
        self.view.name(self.node)
    }

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.values(self.node).iter().map(|e| e.key)
    }

    fn distance(&self, key: Key) -> Option<u32> {
        let values = self.values(self.node);
        values.binary_search_by_key(&key, |e| e.key).ok().map(|i| values[i].distance)
    }

    fn path(&self, key: Key) -> Vec<Arc<str>> {
        crate::index::walk_path(self.node, key, |n| self.view.name(n), |n| self.values(n))
    }
}

/// The questions of one BatchDecide and their verdicts, in request order.
pub struct Batch {
    pub questions: Questions,
    pub judgements: Vec<Arc<Judgement>>,
    /// The answer's shape the request asked for.
    pub shape: AnswerShape,
    /// The policy that decided (whose registry the questions' regions index).
    policy: Arc<CompiledPolicy>,
    /// Per question decided from the index: its dataset's node where the index names the
    /// dataset exactly as asked, else `NO_NODE` (the access records count intents by node).
    nodes: Vec<NodeId>,
    /// The engine whose index numbered `nodes`.
    engine: u64,
}

/// No node: the dataset is unknown, or named otherwise than asked (`Batch::nodes`).
pub const NO_NODE: NodeId = NodeId::MAX;

/// Decisions counted for the metrics (`Batch::counts`).
pub struct Counts {
    /// Per (operation, outcome).
    pub by_outcome: Vec<((Operation, Outcome), usize)>,
    /// Their reasons per (code, rule id).
    pub by_reason: Vec<((ReasonCode, Arc<str>), usize)>,
}

/// A decision row's bytes in a log entry besides its dataset id: ~120 and the decision id's
/// prefix, with room to spare.
const ROW_BYTES: usize = 160;

/// A decision's bytes in an answer besides its dataset id, most often (a DENY's lineage paths
/// with shared reason texts, its id, region and shared fields).
const ANSWER_BYTES: usize = 256;

/// Questions judged between two looks at the memo's lock (a writer waits at most that long).
const JUDGED_PER_READ: usize = 256;

impl Batch {
    /// The name of a question's region.
    pub fn region_name(&self, question: &Question<'_>) -> &Arc<str> {
        self.policy.region_name(question.region)
    }

    /// The engine that decided, and per question its dataset's node or `NO_NODE` (empty when
    /// the batch was not decided from the index: a stale catalog's).
    pub fn nodes(&self) -> (u64, &[NodeId]) {
        (self.engine, &self.nodes)
    }

    /// The decision-log entries of decisions `range` (ids as `State::encode_batch` gave them),
    /// at most `per_entry` decisions each, each after `head` (`log_entry::head_json`), written
    /// one after another at the end of `out`; returns where each entry ends in `out`. One
    /// buffer for the batch: its reader writes the entries from where they lie.
    #[allow(clippy::too_many_arguments)]
    pub fn log_entries(
        &self,
        range: Range<usize>,
        id_prefix: &str,
        first_id: u64,
        decide_time: i64,
        per_entry: usize,
        head: &[u8],
        out: &mut Vec<u8>,
    ) -> Vec<usize> {
        let per_entry = per_entry.max(1);
        let mut ends = Vec::with_capacity(range.len().div_ceil(per_entry));
        let mut id = String::new();
        let mut decided = self.questions.iter().zip(&self.judgements).enumerate().skip(range.start).take(range.len());
        // One writer for every entry, emptied between them: its buffers and tables keep their
        // room. Enough for the first entry's rows (more than enough where decisions share
        // verdicts); the later entries find it.
        let first = range.len().min(per_entry);
        let rows = first * ROW_BYTES + self.questions.id_bytes(range.start..range.start + first);
        let mut writer = EntryWriter::with_room(rows, rows);
        let mut read = Vec::with_capacity(first);
        let texts = &self.policy.reason_texts;
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + per_entry);
            // What each row reads of its verdict, read first in a loop of its own: the verdicts
            // lie apart in memory, and these reads, not waiting on one another, overlap.
            read.clear();
            read.extend(self.judgements[start..end].iter().map(|judgement| {
                (
                    Arc::as_ptr(&judgement.verdict) as usize,
                    judgement.allowed(),
                    judgement.reasons(texts),
                    judgement.outcome(),
                    judgement.inherited_only(),
                )
            }));
            for ((index, (question, _)), &(verdict, allowed, reasons, outcome, inherited_only)) in
                decided.by_ref().take(end - start).zip(&read)
            {
                id.clear();
                decision_id(&mut id, id_prefix, first_id + index as u64);
                let region_set =
                    writer.region_set(Arc::as_ptr(allowed) as usize, allowed.names.iter().map(|name| &**name));
                let reason_set = writer.reason_set(verdict, reasons);
                writer.row(&Row {
                    decision_id: &id,
                    dataset_id: question.dataset_id,
                    operation: question.operation,
                    region: self.region_name(&question),
                    outcome,
                    region_set,
                    reason_set,
                    decide_time,
                    inherited_only,
                });
            }
            if ends.is_empty() {
                // The whole range at the first entry's size per decision, with room to spare.
                let entries = range.len().div_ceil(per_entry);
                out.reserve(writer.len_with(head) * entries + writer.len_with(head) / 8);
            }
            writer.write_to(head, out);
            ends.push(out.len());
            writer.clear();
            start = end;
        }
        ends
    }

    /// What the metrics count of the decisions. Cheapest right after the batch was decided
    /// or encoded, while its verdicts are still in cache (`State::encode_batch` counts them as
    /// it encodes them).
    pub fn counts(&self) -> Counts {
        // Per (verdict, operation) first: decisions share memoised verdicts, and their address
        // hashes faster than their reasons.
        let mut by_verdict: hashbrown::HashMap<(usize, Operation), (&Verdict, usize)> =
            hashbrown::HashMap::with_capacity(self.judgements.len());
        for (question, judgement) in self.questions.iter().zip(&self.judgements) {
            let verdict = &judgement.verdict;
            by_verdict.entry((Arc::as_ptr(verdict) as usize, question.operation)).or_insert((verdict, 0)).1 += 1;
        }
        let mut counter = Counter::default();
        for ((_, operation), (verdict, count)) in by_verdict {
            counter.add(operation, verdict, count);
        }
        counter.counts()
    }
}

/// Decisions counted for the metrics (`Counts`) as they come.
#[derive(Default)]
struct Counter<'a> {
    /// By operation, then outcome.
    by_outcome: [[usize; 2]; 2],
    /// By code and the address of the rule id (verdicts share their rule ids' strings, and an
    /// address hashes faster than the id; equal ids apart are summed in `counts`).
    by_reason: hashbrown::HashMap<(ReasonCode, usize), (&'a Arc<str>, usize)>,
}

impl<'a> Counter<'a> {
    /// `count` decisions of `operation` with `verdict`.
    fn add(&mut self, operation: Operation, verdict: &'a Verdict, count: usize) {
        self.add_outcome(operation, verdict.outcome, count);
        for reason in &verdict.reasons {
            self.add_reason(reason.code, &reason.rule_id, count);
        }
    }

    /// `count` decisions of `operation` with `outcome`, their reasons left to `add_reason`.
    fn add_outcome(&mut self, operation: Operation, outcome: Outcome, count: usize) {
        self.by_outcome[operation as usize][outcome as usize] += count;
    }

    /// `count` reasons of `code` and `rule_id`.
    fn add_reason(&mut self, code: ReasonCode, rule_id: &'a Arc<str>, count: usize) {
        let at = Arc::as_ptr(rule_id).cast::<u8>() as usize;
        self.by_reason.entry((code, at)).or_insert((rule_id, 0)).1 += count;
    }

    fn counts(self) -> Counts {
        let mut by_outcome = Vec::new();
        for operation in [Operation::Store, Operation::Process] {
            for outcome in [Outcome::Allow, Outcome::Deny] {
                let n = self.by_outcome[operation as usize][outcome as usize];
                if n > 0 {
                    by_outcome.push(((operation, outcome), n));
                }
            }
        }
        let mut by_reason: hashbrown::HashMap<(ReasonCode, &Arc<str>), usize> = hashbrown::HashMap::new();
        for ((code, _), (rule_id, n)) in self.by_reason {
            *by_reason.entry((code, rule_id)).or_default() += n;
        }
        Counts {
            by_outcome,
            by_reason: by_reason.into_iter().map(|((code, rule_id), n)| ((code, rule_id.clone()), n)).collect(),
        }
    }
}

impl State {
    /// Parses a serialized BatchDecideRequest of at most `max` questions and decides each at
    /// `now`. With `stale` (the message of a STALE_CATALOG reason), every decision is that
    /// fail-closed DENY instead.
    pub fn batch_decide(&self, request: &[u8], max: usize, now: i64, stale: Option<&str>) -> Result<Batch, BatchError> {
        let (questions, shape) = crate::wire::parse_batch(request, &self.policy, max)?;
        Ok(self.decide_batch(questions, shape, now, stale))
    }

    /// Decides `questions` (regions of this state's policy) at `now`, as `batch_decide` does.
    pub fn decide_batch(&self, questions: Questions, shape: AnswerShape, now: i64, stale: Option<&str>) -> Batch {
        let (judgements, nodes) = match stale {
            Some(message) => {
                // One judgement for the batch: its renderings are made once.
                let judgement = Arc::new(Judgement::new(self.stale_verdict(message)));
                (vec![judgement; questions.len()], Vec::new())
            }
            None => self.judge_all(&questions, now),
        };
        Batch { questions, judgements, shape, policy: self.policy.clone(), nodes, engine: self.engine }
    }

    /// `judge` for each question: the memo read a few hundred questions at a time, the
    /// verdicts it lacked made once each and memoised together at the end. With them, each
    /// question's node as `Batch::nodes` keeps it.
    fn judge_all(&self, questions: &Questions, now: i64) -> (Vec<Arc<Judgement>>, Vec<NodeId>) {
        let epoch = self.policy.expiry_epoch(now);
        let mut judgements = Vec::with_capacity(questions.len());
        let mut nodes = Vec::with_capacity(questions.len());
        let mut made: hashbrown::HashMap<(NodeId, Operation, u32), Arc<Judgement>> = hashbrown::HashMap::new();
        let mut asked = questions.iter();
        let mut chunk = Vec::with_capacity(JUDGED_PER_READ);
        while asked.len() > 0 {
            chunk.clear();
            chunk.extend(
                asked.by_ref().take(JUDGED_PER_READ).map(|q| (q, self.memo.asked(q.dataset_id, q.operation, q.region))),
            );
            let memo = self.memo.read();
            for (question, filed_as) in &chunk {
                if let Some((node, judgement)) = memo.get(filed_as, epoch) {
                    // (Filed under the index's name: named as asked.)
                    judgements.push(judgement.clone());
                    nodes.push(node);
                    continue;
                }
                let Some(node) = self.view.node(question.dataset_id) else {
                    judgements.push(Arc::new(Judgement::new(Arc::new(self.unknown(question.dataset_id)))));
                    nodes.push(NO_NODE);
                    continue;
                };
                let name = self.view.name(node);
                let exact = **name == *question.dataset_id;
                nodes.push(if exact { node } else { NO_NODE });
                let (op, region) = (question.operation, question.region);
                let memoised = match exact {
                    true => None,
                    false => {
                        memo.get(&self.memo.asked(name, op, region), epoch).map(|(_, judgement)| judgement.clone())
                    }
                };
                let judgement = memoised.unwrap_or_else(|| {
                    made.entry((node, op, region)).or_insert_with(|| self.judge_anew(node, op, region, now)).clone()
                });
                judgements.push(judgement);
            }
        }
        if !made.is_empty() {
            let view = &self.view;
            self.memo.insert(
                epoch,
                made.into_iter().map(|((node, operation, region), judgement)| Made {
                    dataset_id: view.name(node).clone(),
                    node,
                    operation,
                    region,
                    judgement,
                }),
            );
        }
        (judgements, nodes)
    }

    /// The serialized BatchDecideResponse of `batch` (decision ids are `id_prefix` followed
    /// by `first_id`, `first_id + 1`, ... in ten lower-case hex digits) and its decisions
    /// counted for the metrics, as `Batch::counts` counts them.
    pub fn encode_batch(
        &self,
        batch: &Batch,
        catalog_revision: i64,
        decide_time: i64,
        id_prefix: &str,
        first_id: u64,
    ) -> (Vec<u8>, Counts) {
        let context =
            crate::wire::DecisionContext { policy_version: &batch.policy.version, catalog_revision, decide_time };
        let mut encoder = crate::wire::Encoder::new(context, batch.shape, &batch.policy.reason_texts);
        // Room for most answers at once, estimated without reading the judgements (read
        // ahead of the encoder, they would be out of cache again by the time it reads them):
        // each decision's dataset id and ANSWER_BYTES; past that the buffer grows.
        let texts_shared = batch.shape.shared_reason_texts;
        let room = batch.questions.id_bytes(0..batch.questions.len()) + batch.questions.len() * ANSWER_BYTES;
        let mut out = Vec::with_capacity(room);
        let mut id = String::new();
        let mut counter = Counter::default();
        for (n, (question, judgement)) in batch.questions.iter().zip(&batch.judgements).enumerate() {
            id.clear();
            decision_id(&mut id, id_prefix, first_id + n as u64);
            let region = batch.region_name(&question);
            encoder.decision(&mut out, 1, &id, question.dataset_id, question.operation, region, judgement);
            // Counted here, its judgement just read: a pass of its own would wait for memory.
            // Reasons whose texts the answer names once are counted by text, in the end.
            if texts_shared {
                counter.add_outcome(question.operation, judgement.outcome(), 1);
            } else {
                counter.add(question.operation, &judgement.verdict, 1);
            }
        }
        for (text, count) in encoder.texts_named() {
            counter.add_reason(text.code, &text.rule_id, count as usize);
        }
        let counts = counter.counts();
        encoder.finish(&mut out);
        (out, counts)
    }
}

/// A decision id: the process's prefix and a counter in ten lower-case hex digits (more when
/// it needs them).
pub fn decision_id(out: &mut String, prefix: &str, counter: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - counter.leading_zeros()).div_ceil(4).max(10) as usize;
    // (Written on the stack, then appended at once: a batch makes one per decision, twice.)
    let mut text = [0; 16];
    for (n, digit) in text[..digits].iter_mut().rev().enumerate() {
        *digit = HEX[(counter >> (4 * n)) as usize & 0xf];
    }
    out.push_str(prefix);
    out.push_str(std::str::from_utf8(&text[..digits]).expect("hex digits are ASCII"));
}
