//! `domicile.router._engine`: the residency engine (crates/engine) for Python.
//!
//! A handful of calls on one `Engine` object. The router passes validated data -- the
//! normalised policy document as JSON (router/policy_document.py), catalog changes as tuples --
//! and reads verdicts back as plain tuples:
//!
//! - verdict: `(outcome, allowed_regions, reasons, inherited_only)` with outcome 0 = allow,
//!   1 = deny; `allowed_regions` a tuple of region ids (one shared tuple per distinct set);
//! - reason: `(code, message, rule_id, citation, lineage_path)` with code the index of
//!   RULE_DENIED, DEFAULT_DENIED, UNKNOWN_DATASET, EXEMPTION_APPLIED, STALE_CATALOG;
//! - operations are 0 = store, 1 = process; times are microseconds since the Unix epoch.
//!
//! Work that can be long (applying changes, a BatchDecide) runs without the interpreter lock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use domicile_engine::dataset_ids;
use domicile_engine::engine::{Batch, Counts, Explanation, JobDecision, PolicyChange, Summary, Unapproved, Violation};
use domicile_engine::log_entry::{civil_from_days, head_json, EntryHead, EntryWriter, Row};
use domicile_engine::policy::{
    Attributes, CompiledPolicy, Operation, Outcome, Reason, ReasonCode, RegionList, Verdict,
};
use domicile_engine::reason_texts::{ReasonTexts, Reasons};
use domicile_engine::symbols::{Key, Symbols};
use domicile_engine::unary::{Judgement, LogLane as CoreLane};
use domicile_engine::wire::{AnswerShape, BatchError, DecisionContext, Encoder, Questions};
use domicile_engine::{Change, Engine as CoreEngine, Error};
use parking_lot::Mutex;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBytes, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyFrozenSet, PyList, PyString, PyTimeAccess,
    PyTuple, PyTzInfo,
};

mod access;
mod unary;

create_exception!(
    domicile.router._engine,
    UnknownRegion,
    PyException,
    "A region the active policy does not know: args (field, message)."
);
create_exception!(
    domicile.router._engine,
    MalformedRequest,
    PyException,
    "A BatchDecide request that is not in the wire format: args (message,)."
);
create_exception!(
    domicile.router._engine,
    LogRefused,
    PyException,
    "The decision log's lane took no decision (none was made): args (full,), True when it holds its most, False while the log takes no decisions."
);
create_exception!(
    domicile.router._engine,
    InvalidRequest,
    PyException,
    "A BatchDecide request with bad fields: args (violations,), each (field, description)."
);

fn policy_error(error: Error) -> PyErr {
    match error {
        Error::UnknownRegion { ref field, .. } => UnknownRegion::new_err((field.clone(), error.to_string())),
        Error::Policy(message) => PyValueError::new_err(message),
    }
}

fn operation(value: u8) -> PyResult<Operation> {
    match value {
        0 => Ok(Operation::Store),
        1 => Ok(Operation::Process),
        _ => Err(PyValueError::new_err(format!("operation {value}: 0 (store) or 1 (process)"))),
    }
}

/// The residency engine: a compiled policy and the effective-attributes index.
#[pyclass(frozen, module = "domicile.router._engine")]
struct Engine {
    core: CoreEngine,
    /// Allowed-region tuples by region list, for the policy they belong to.
    regions: Mutex<RegionTuples>,
    /// What the caller makes of a verdict tuple (None: the tuple itself).
    make_verdict: Option<Py<PyAny>>,
    /// The caller's value of each verdict the engine memoised, made once.
    verdicts: Mutex<VerdictValues>,
    /// The caller's values of store and process (None: 0 and 1).
    operations: Option<[Py<PyAny>; 2]>,
}

/// By the address of a verdict (kept alive here, so that no other takes it): the caller's value.
// (hashbrown: its hasher is a fraction of the default one's cost, on every unary decision.)
type VerdictValues = hashbrown::HashMap<usize, (Arc<Verdict>, Py<PyAny>)>;

/// Verdict values held at most by an `Engine` (past it, they are made again as asked).
const VERDICT_VALUES_LIMIT: usize = 131_072;

#[derive(Default)]
struct RegionTuples {
    policy: usize,
    tuples: HashMap<u32, Py<PyTuple>>,
}

fn compile(policy: &str) -> PyResult<CompiledPolicy> {
    CompiledPolicy::from_json(policy).map_err(policy_error)
}

/// A compiled policy on its own: what it grants, and its verdict on attributes a dataset carries
/// itself (a policy's inline tests). An `Engine` compiles its own copy of a document.
#[pyclass(frozen, module = "domicile.router._engine")]
struct Policy {
    policy: CompiledPolicy,
    /// Labels and origins of the attributes decided here (ids must not meet an engine's).
    symbols: Mutex<Symbols>,
}

#[pymethods]
impl Policy {
    #[new]
    fn new(policy: &str) -> PyResult<Policy> {
        Ok(Policy { policy: compile(policy)?, symbols: Mutex::default() })
    }

    /// Whether `job` may apply `transform` (False for a transform that is no declassifier).
    fn grants(&self, transform: &str, job: &str) -> bool {
        self.policy.declassifier(transform).is_some_and(|d| d.grants(job))
    }

    /// The first instant (microseconds) after `now` at which an exemption expires; None when
    /// none is left to expire.
    fn next_expiry(&self, now: i64) -> Option<i64> {
        self.policy.next_expiry(now)
    }

    /// The verdict on a dataset that carries `labels` and `origins` itself (lineage paths: the
    /// dataset alone) for one question at `now`. UnknownRegion for a region the policy does not know.
    #[allow(clippy::too_many_arguments)]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        dataset_id: &str,
        labels: Vec<String>,
        origins: Vec<String>,
        operation_value: u8,
        region: &str,
        now: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let op = operation(operation_value)?;
        let region = self
            .policy
            .region(region)
            .ok_or_else(|| policy_error(Error::UnknownRegion { field: "region".into(), region: region.into() }))?;
        let mut symbols = self.symbols.lock();
        let attrs = Carried::new(dataset_id, &labels, &origins, &mut symbols);
        let verdict = self.policy.decide(&attrs, &symbols, op, region, now);
        let reasons = verdict.reasons.iter().map(|r| reason(py, r)).collect::<PyResult<Vec<_>>>()?;
        (verdict.outcome as u8, strings(py, &verdict.allowed.names)?, PyTuple::new(py, reasons)?, false)
            .into_pyobject(py)
    }
}

/// Attributes a dataset carries itself: every path is the dataset alone.
struct Carried {
    dataset_id: Arc<str>,
    keys: Vec<Key>,
}

impl Carried {
    fn new(dataset_id: &str, labels: &[String], origins: &[String], symbols: &mut Symbols) -> Carried {
        let mut keys: Vec<Key> = labels.iter().map(|l| Key::label(symbols.intern_label(l))).collect();
        keys.extend(origins.iter().map(|o| Key::origin(symbols.origins.intern(o))));
        keys.sort_unstable();
        keys.dedup();
        Carried { dataset_id: Arc::from(dataset_id), keys }
    }
}

impl Attributes for Carried {
    fn dataset_id(&self) -> &Arc<str> {
        &self.dataset_id
    }

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.keys.iter().copied()
    }

    fn distance(&self, key: Key) -> Option<u32> {
        self.keys.contains(&key).then_some(0)
    }

    fn path(&self, _key: Key) -> Vec<Arc<str>> {
        vec![self.dataset_id.clone()]
    }
}

#[pymethods]
impl Engine {
    /// An engine with the policy (the normalised document, JSON) and an empty index.
    /// `verdict`, if given, turns a verdict tuple into the value every call hands out instead
    /// of the tuple; it is called once per verdict the engine memoised, and that value shared.
    /// `operations`, if given, are the caller's values of store and process, which
    /// `UnaryDecider.decide` takes and hands back (instead of 0 and 1).
    #[new]
    #[pyo3(signature = (policy, verdict=None, operations=None))]
    fn new(policy: &str, verdict: Option<Py<PyAny>>, operations: Option<(Py<PyAny>, Py<PyAny>)>) -> PyResult<Engine> {
        Ok(Engine {
            core: CoreEngine::new(compile(policy)?),
            regions: Mutex::default(),
            make_verdict: verdict,
            verdicts: Mutex::default(),
            operations: operations.map(|(store, process)| [store, process]),
        })
    }

    /// Makes another policy active (recomputing only what its declassifiers change).
    fn set_policy(&self, py: Python<'_>, policy: &str) -> PyResult<()> {
        let compiled = compile(policy)?;
        py.detach(|| self.core.set_policy(compiled));
        self.verdicts.lock().clear();
        Ok(())
    }

    /// Applies catalog changes in order, then recomputes once. Each change is a tuple:
    /// `("dataset", id, labels, origins, locations)`, `("deleted", id)`, `("placeholder", id)`,
    /// `("edge", input, output, job, transform, recorded)` or `("edge_ended", ...)` with the
    /// same fields (`recorded`: microseconds, or None when unknown). Returns the ids whose
    /// answers may differ now (the changed datasets and the downstream closure recomputed;
    /// none for the first batch into an empty index: everything is new).
    fn apply<'py>(&self, py: Python<'py>, changes: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let mut parsed = Vec::new();
        for item in changes.try_iter()? {
            parsed.push(change(&item?)?);
        }
        let touched = py.detach(|| self.core.apply(&parsed));
        PyList::new(py, touched.iter().map(|id| &**id))
    }

    /// Loads a catalog snapshot (the router's start-up): `datasets` as (id, labels, origins,
    /// locations) tuples of described datasets, `placeholders` as ids, `edges` as (input,
    /// output, job, transform) tuples of current edges -- what `apply` would do with the
    /// matching changes -- then builds every value. The rows are read in place, holding the
    /// interpreter lock throughout.
    fn load(
        &self,
        datasets: &Bound<'_, PyAny>,
        placeholders: &Bound<'_, PyAny>,
        edges: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.core.load(|loader| {
            let mut texts: [Vec<Bound<'_, PyString>>; 3] = Default::default();
            for row in datasets.try_iter()? {
                let row = row?;
                let row = row.cast::<PyTuple>()?;
                for (index, found) in texts.iter_mut().enumerate() {
                    found.clear();
                    for item in row.get_borrowed_item(index + 1)?.try_iter()? {
                        found.push(item?.cast_into::<PyString>()?);
                    }
                }
                let [labels, origins, locations] = &texts;
                let id = row.get_item(0)?.cast_into::<PyString>()?;
                loader.described(id.to_str()?, strs(labels)?, strs(origins)?, strs(locations)?);
            }
            for id in placeholders.try_iter()? {
                loader.placeholder(id?.cast::<PyString>()?.to_str()?);
            }
            for row in edges.try_iter()? {
                let row = row?;
                let row = row.cast::<PyTuple>()?;
                let text = |index: usize| row.get_item(index)?.cast_into::<PyString>().map_err(PyErr::from);
                let (input, output, job, transform) = (text(0)?, text(1)?, text(2)?, text(3)?);
                loader.edge(input.to_str()?, output.to_str()?, job.to_str()?, transform.to_str()?);
            }
            Ok(())
        })
    }

    /// The verdict for one question at `now`; with `stale` (the view cannot be trusted), DENY /
    /// STALE_CATALOG with that message. UnknownRegion (field `region`) for a region the policy
    /// does not know.
    #[pyo3(signature = (dataset_id, operation_value, region, now, stale=None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        dataset_id: &str,
        operation_value: u8,
        region: &str,
        now: i64,
        stale: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = operation(operation_value)?;
        let state = self.core.read();
        let region = state.region("region", region).map_err(policy_error)?;
        let verdict = match stale {
            Some(message) => state.stale_verdict(message),
            None => state.decide(dataset_id, op, region, now),
        };
        self.verdict(py, &state.policy, &verdict)
    }

    /// The decisions of a job's pre-flight check: `(dataset_id, operation, region, verdict)`
    /// for each input (process in `run_region`), then each output (store in `output_region`).
    #[allow(clippy::too_many_arguments)]
    fn check_job<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<String>,
        outputs: Vec<String>,
        run_region: &str,
        output_region: &str,
        transform: &str,
        job: &str,
        now: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let state = self.core.read();
        let run = if inputs.is_empty() { 0 } else { state.region("run_region", run_region).map_err(policy_error)? };
        let output =
            if outputs.is_empty() { 0 } else { state.region("output_region", output_region).map_err(policy_error)? };
        let decisions = state.check_job(&inputs, &outputs, run, output, transform, job, now);
        let items = decisions
            .iter()
            .map(|JobDecision { dataset_id, operation, region, verdict }| {
                let region = state.policy.region_name(*region);
                (&**dataset_id, *operation as u8, &**region, self.verdict(py, &state.policy, verdict)?)
                    .into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// `(classifications, origins, store_regions, process_regions, inherited_only)` with each
    /// attribute `(value, lineage_path)` sorted by value; None for an unknown dataset.
    fn explain<'py>(&self, py: Python<'py>, dataset_id: &str, now: i64) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let state = self.core.read();
        let Some(Explanation { classifications, origins, store_regions, process_regions, inherited_only }) =
            state.explain(dataset_id, now)
        else {
            return Ok(None);
        };
        let attributes = |items: &[(Arc<str>, Vec<Arc<str>>)]| -> PyResult<Bound<'py, PyTuple>> {
            let converted = items
                .iter()
                .map(|(value, path)| (&**value, strings(py, path)?).into_pyobject(py))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, converted)
        };
        let result = (
            attributes(&classifications)?,
            attributes(&origins)?,
            self.regions(py, &state.policy, &store_regions)?,
            self.regions(py, &state.policy, &process_regions)?,
            inherited_only,
        );
        Ok(Some(result.into_pyobject(py)?))
    }

    /// `(dataset_id, region, verdict)` for every described dataset stored where the policy does
    /// not allow it, by dataset id then location.
    fn scan_violations<'py>(&self, py: Python<'py>, now: i64) -> PyResult<Bound<'py, PyList>> {
        let state = self.core.read();
        let violations = state.scan_violations(now);
        let items = violations
            .iter()
            .map(|Violation { dataset_id, region, verdict }| {
                (&**dataset_id, &**region, self.verdict(py, &state.policy, verdict)?).into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// `scan_violations` for `dataset_ids` only, in the order given.
    fn violations_of<'py>(&self, py: Python<'py>, dataset_ids: Vec<String>, now: i64) -> PyResult<Bound<'py, PyList>> {
        let state = self.core.read();
        let violations = py.detach(|| state.violations_of(&dataset_ids, now));
        let items = violations
            .iter()
            .map(|Violation { dataset_id, region, verdict }| {
                (&**dataset_id, &**region, self.verdict(py, &state.policy, verdict)?).into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// The described datasets stored somewhere (those that can violate the policy).
    fn stored_datasets<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let state = self.core.read();
        PyList::new(py, state.stored_datasets().iter().map(|id| &**id))
    }

    /// `(state, locations)` for each of `dataset_ids`: state 0 = described, 1 = derived (judged
    /// by what it inherits), 2 = undescribed (a lineage root nobody described, deleted, or
    /// derived from such data), 3 = unknown; locations for a described dataset only.
    fn residency<'py>(&self, py: Python<'py>, dataset_ids: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let state = self.core.read();
        let items = dataset_ids
            .iter()
            .map(|id| {
                let (residency, locations) = state.residency(id);
                (residency as u8, strings(py, &locations)?).into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// What making `policy` active would change: `(dataset_id, operation, added_regions,
    /// removed_regions, new_violations)` per dataset and operation with a change.
    fn impact<'py>(&self, py: Python<'py>, policy: &str, now: i64) -> PyResult<Bound<'py, PyList>> {
        let candidate = compile(policy)?;
        let changes = py.detach(|| self.core.impact(candidate, now));
        let items = changes
            .iter()
            .map(|PolicyChange { dataset_id, operation, added_regions, removed_regions, new_violations }| {
                (
                    &**dataset_id,
                    *operation as u8,
                    strings(py, added_regions)?,
                    strings(py, removed_regions)?,
                    strings(py, new_violations)?,
                )
                    .into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Why decisions cannot judge `dataset_id`: the message of its DENY / UNKNOWN_DATASET.
    fn unknown_message(&self, dataset_id: &str) -> String {
        self.core.read().unknown(dataset_id).reasons[0].message.to_string()
    }

    /// The transform of the current edge `output DERIVED_FROM input` by `job`; None if none.
    fn edge_transform(&self, py: Python<'_>, input: &str, output: &str, job: &str) -> Option<String> {
        py.detach(|| self.core.edge_transform(input, output, job)).map(|t| t.to_string())
    }

    /// {dataset_id: frozenset of effective labels and origins (UNDESCRIBED included)} for the
    /// datasets and, with `downstream`, everything lineage leads to from them.
    fn constraints<'py>(
        &self,
        py: Python<'py>,
        dataset_ids: Vec<String>,
        downstream: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let found = py.detach(|| self.core.constraints(&dataset_ids, downstream));
        let result = PyDict::new(py);
        for (id, values) in found {
            result.set_item(&*id, PyFrozenSet::new(py, values.iter().map(|v| &**v))?)?;
        }
        Ok(result)
    }

    /// `(input, output, job, transform, labels)` for each edge on the dataset's label paths that
    /// claims a transform the policy does not grant its job; None for an unknown dataset.
    fn unapproved<'py>(&self, py: Python<'py>, dataset_id: &str) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(found) = py.detach(|| self.core.unapproved(dataset_id)) else { return Ok(None) };
        let items = found
            .iter()
            .map(|Unapproved { input, output, job, transform, labels }| {
                (&**input, &**output, &**job, &**transform, strings(py, labels)?).into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Some(PyList::new(py, items)?))
    }

    /// `(datasets, classifications, origins, regions)`: the datasets decisions judge, counted by
    /// effective label and origin ({value: count}) and location ({region: (stored, classified)}).
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let Summary { datasets, classifications, origins, regions } = self.core.read().summary();
        let counts = |items: &std::collections::BTreeMap<Arc<str>, usize>| -> PyResult<Bound<'py, PyDict>> {
            let dict = PyDict::new(py);
            for (key, count) in items {
                dict.set_item(&**key, count)?;
            }
            Ok(dict)
        };
        let by_region = PyDict::new(py);
        for (region, pair) in &regions {
            by_region.set_item(&**region, pair)?;
        }
        (datasets, counts(&classifications)?, counts(&origins)?, by_region).into_pyobject(py)
    }

    /// Where the catalog says a dataset decisions judge is stored (empty for any other).
    fn locations<'py>(&self, py: Python<'py>, dataset_id: &str) -> PyResult<Bound<'py, PyTuple>> {
        strings(py, &self.core.read().locations(dataset_id))
    }

    /// The effective classification labels of a dataset decisions judge (empty for any other).
    fn labels<'py>(&self, py: Python<'py>, dataset_id: &str) -> PyResult<Bound<'py, PyTuple>> {
        strings(py, &self.core.read().labels(dataset_id))
    }

    /// Decides a serialized BatchDecideRequest (at most `max_batch` questions) and returns
    /// `(answer, batch)`: the serialized BatchDecideResponse and the `DecidedBatch` (what the
    /// decision log and the metrics need). With `stale` (a STALE_CATALOG message) every
    /// decision is that fail-closed DENY. Decision ids are `lane`'s: its prefix and counters
    /// taken from it once the questions are counted, so calls on several threads never share
    /// one. Raises MalformedRequest or InvalidRequest (no id taken).
    #[allow(clippy::too_many_arguments)]
    fn batch_decide_wire<'py>(
        &self,
        py: Python<'py>,
        request: &[u8],
        now: i64,
        stale: Option<&str>,
        catalog_revision: i64,
        lane: &LogLane,
        max_batch: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, DecidedBatch)> {
        let ids = &lane.lane;
        let id_prefix = &*lane.id_prefix;
        let answer = py.detach(|| {
            let state = self.core.read();
            let batch: Batch = state.batch_decide(request, max_batch, now, stale)?;
            let first_id = ids.take_ids(batch.judgements.len() as u64);
            let (wire, counts) = state.encode_batch(&batch, catalog_revision, now, id_prefix, first_id);
            Ok::<_, BatchError>((wire, batch, counts, first_id, state.policy.clone()))
        });
        match answer {
            Ok((wire, batch, counts, first_id, policy)) => Ok((
                PyBytes::new(py, &wire),
                DecidedBatch::new(batch, counts, id_prefix, first_id, now, &policy, catalog_revision),
            )),
            Err(BatchError::Malformed(message)) => Err(MalformedRequest::new_err((message,))),
            Err(BatchError::Invalid(violations)) => {
                let violations: Vec<(String, String)> =
                    violations.into_iter().map(|v| (v.field, v.description)).collect();
                Err(InvalidRequest::new_err((violations,)))
            }
        }
    }

    /// Decides `questions`, each `(dataset_id, operation, region)`, at `now` (as
    /// `batch_decide_wire`, the ids named as given, theirs taken from `lane`): the
    /// `DecidedBatch`. UnknownRegion (field `requests[i].region`) before anything is decided.
    fn batch_decide(
        &self,
        py: Python<'_>,
        questions: Vec<(String, u8, String)>,
        now: i64,
        stale: Option<&str>,
        catalog_revision: i64,
        lane: &LogLane,
    ) -> PyResult<DecidedBatch> {
        let ids = &lane.lane;
        let (batch, counts, first_id, policy) = py.detach(|| {
            let state = self.core.read();
            let mut checked = Questions::with_capacity(questions.len(), questions.iter().map(|q| q.0.len()).sum());
            for (i, (dataset_id, operation_value, region)) in questions.iter().enumerate() {
                let operation = operation(*operation_value)?;
                let region = state.region(&format!("requests[{i}].region"), region).map_err(policy_error)?;
                checked.push(dataset_id, operation, region);
            }
            let batch = state.decide_batch(checked, AnswerShape::default(), now, stale);
            let first_id = ids.take_ids(batch.judgements.len() as u64);
            let counts = batch.counts();
            Ok::<_, PyErr>((batch, counts, first_id, state.policy.clone()))
        })?;
        Ok(DecidedBatch::new(batch, counts, &lane.id_prefix, first_id, now, &policy, catalog_revision))
    }
}

/// The decisions of one batch (a BatchDecide's, `Router.batch_decide`'s) as the engine made
/// them: rendered into decision-log entries
/// and counted for the metrics and the access records without a Python object per decision;
/// read one at a time only when asked (tracing, tests).
#[pyclass(frozen, module = "domicile.router._engine")]
struct DecidedBatch {
    batch: Batch,
    /// What the metrics count of it, counted as it was decided (its verdicts then in cache).
    counts: Counts,
    id_prefix: String,
    first_id: u64,
    decide_time: i64,
    policy_version: Arc<str>,
    /// The content hash of the policy that decided, for the log's entries.
    policy_hash: String,
    catalog_revision: i64,
    /// Allowed-region tuples by region list: decisions with one list share one tuple.
    region_tuples: Mutex<HashMap<u32, Py<PyTuple>>>,
}

#[pymethods]
impl DecidedBatch {
    fn __len__(&self) -> usize {
        self.batch.judgements.len()
    }

    /// The version of the policy that decided.
    #[getter]
    fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// The content hash of the policy that decided.
    #[getter]
    fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// `(decision_id, dataset_id, operation, region, verdict)` of decision `index`.
    fn get<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyTuple>> {
        let (Some(question), Some(judgement)) = (self.batch.questions.get(index), self.batch.judgements.get(index))
        else {
            return Err(pyo3::exceptions::PyIndexError::new_err(index));
        };
        let verdict = &judgement.verdict;
        let mut id = String::new();
        domicile_engine::engine::decision_id(&mut id, &self.id_prefix, self.first_id + index as u64);
        let allowed = {
            let mut cache = self.region_tuples.lock();
            match cache.get(&verdict.allowed.id) {
                Some(tuple) => tuple.bind(py).clone(),
                None => {
                    let tuple = strings(py, &verdict.allowed.names)?;
                    cache.insert(verdict.allowed.id, tuple.clone().unbind());
                    tuple
                }
            }
        };
        let reasons = verdict.reasons.iter().map(|r| reason(py, r)).collect::<PyResult<Vec<_>>>()?;
        let verdict = (verdict.outcome as u8, allowed, PyTuple::new(py, reasons)?, verdict.inherited_only);
        let region = self.batch.region_name(&question);
        (id, question.dataset_id, question.operation as u8, &**region, verdict).into_pyobject(py)
    }

    /// `(by_outcome, by_reason)`: decisions counted by (operation, outcome) and reasons by
    /// (code, rule_id), for the metrics.
    #[allow(clippy::type_complexity)]
    fn counts(&self) -> (Vec<((u8, u8), usize)>, Vec<((u8, &str), usize)>) {
        let counts = &self.counts;
        (
            counts.by_outcome.iter().map(|&((op, outcome), n)| ((op as u8, outcome as u8), n)).collect(),
            counts.by_reason.iter().map(|((code, rule_id), n)| ((*code as u8, &**rule_id), *n)).collect(),
        )
    }

    /// The decision-log entries (format 4) of decisions `start..stop`, at most `per_entry`
    /// decisions each, rendered without the interpreter lock into one `LogBuffer`, one after
    /// another: `(buffer, [(where the entry ends in it, its decision ids), ...])`, the ids a
    /// `DecisionIds`.
    #[allow(clippy::too_many_arguments)]
    fn log_entries(
        &self,
        py: Python<'_>,
        start: usize,
        stop: usize,
        kind: &str,
        caller: &str,
        policy_hash: &str,
        context: Vec<(String, String)>,
        per_entry: usize,
    ) -> PyResult<(LogBuffer, Vec<(usize, DecisionIds)>)> {
        let range = self.range(start, stop)?;
        let head = EntryHead {
            kind,
            caller,
            policy_version: &self.policy_version,
            policy_hash,
            catalog_revision: self.catalog_revision,
            context: &context,
        };
        let head = head_json(&head);
        let per_entry = per_entry.max(1);
        let (bytes, ends) = py.detach(|| {
            let mut out = Vec::new();
            let ends = self.batch.log_entries(
                range.clone(),
                &self.id_prefix,
                self.first_id,
                self.decide_time,
                per_entry,
                &head,
                &mut out,
            );
            (out, ends)
        });
        let entries = ends
            .into_iter()
            .enumerate()
            .map(|(n, end)| {
                let first = range.start + n * per_entry;
                let count = per_entry.min(range.end - first);
                (end, DecisionIds { prefix: self.id_prefix.clone(), first: self.first_id + first as u64, count })
            })
            .collect();
        Ok((LogBuffer { bytes }, entries))
    }
}

/// Bytes the engine rendered (a batch's decision-log entries), read in place through the
/// buffer protocol (`memoryview`): nothing copies them on their way to the log file.
#[pyclass(frozen, module = "domicile.router._engine")]
struct LogBuffer {
    bytes: Vec<u8>,
}

#[pymethods]
impl LogBuffer {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// A read-only buffer over the bytes, which never change or move while the object lives
    /// (and the view holds it).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        let bytes = &slf.get().bytes;
        let len = pyo3::ffi::Py_ssize_t::try_from(bytes.len()).expect("a buffer fits an ssize_t");
        // SAFETY: `view` is the caller's to fill; the bytes live as long as `slf`, which the
        // view holds a reference to (PyBuffer_FillInfo takes one) until it is released.
        let filled = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), bytes.as_ptr() as *mut std::ffi::c_void, len, 1, flags)
        };
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }
}

impl DecidedBatch {
    fn new(
        batch: Batch,
        counts: Counts,
        id_prefix: &str,
        first_id: u64,
        decide_time: i64,
        policy: &CompiledPolicy,
        catalog_revision: i64,
    ) -> DecidedBatch {
        DecidedBatch {
            batch,
            counts,
            id_prefix: id_prefix.to_owned(),
            first_id,
            decide_time,
            policy_version: policy.version.clone(),
            policy_hash: policy.content_hash.clone(),
            catalog_revision,
            region_tuples: Mutex::default(),
        }
    }

    fn range(&self, start: usize, stop: usize) -> PyResult<std::ops::Range<usize>> {
        if start > stop || stop > self.batch.judgements.len() {
            return Err(pyo3::exceptions::PyIndexError::new_err((start, stop)));
        }
        Ok(start..stop)
    }
}

/// The ids of consecutive decisions (of one batch, or one entry of the lane): `prefix` and a
/// counter from `first`, made as text only when read.
#[pyclass(frozen, sequence, module = "domicile.router._engine")]
struct DecisionIds {
    prefix: String,
    first: u64,
    count: usize,
}

#[pymethods]
impl DecisionIds {
    fn __len__(&self) -> usize {
        self.count
    }

    fn __getitem__(&self, index: isize) -> PyResult<String> {
        let index = if index < 0 { index + self.count as isize } else { index };
        if index < 0 || index as usize >= self.count {
            return Err(pyo3::exceptions::PyIndexError::new_err(index));
        }
        let mut id = String::new();
        domicile_engine::engine::decision_id(&mut id, &self.prefix, self.first + index as u64);
        Ok(id)
    }

    fn __contains__(&self, decision_id: &str) -> bool {
        decision_id.strip_prefix(self.prefix.as_str()).is_some_and(|counter| {
            counter.len() == 10
                && counter.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && u64::from_str_radix(counter, 16).is_ok_and(|n| n >= self.first && n - self.first < self.count as u64)
        })
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut id = String::new();
        let ids = (0..self.count).map(|n| {
            id.clear();
            domicile_engine::engine::decision_id(&mut id, &self.prefix, self.first + n as u64);
            PyString::new(py, &id)
        });
        PyList::new(py, ids)?.try_iter().map(Bound::into_any)
    }
}

/// The decision log's queue of decisions made one at a time (crates/engine/src/unary.rs):
/// `UnaryDecider.decide` queues each decision on it; the log writer takes them in bulk, rendered
/// then. `wake` is called when a decision lands in an empty lane. It numbers the decisions:
/// decisions logged another way draw their ids' counters from it (`take_ids`).
#[pyclass(frozen, module = "domicile.router._engine")]
struct LogLane {
    lane: CoreLane,
    id_prefix: Arc<str>,
    wake: Py<PyAny>,
}

#[pymethods]
impl LogLane {
    /// Decision ids `id_prefix` and a ten-digit counter; at most `per_entry` decisions an
    /// entry; LogRefused past `max_queue` waiting decisions.
    #[new]
    fn new(id_prefix: &str, per_entry: usize, max_queue: usize, wake: Py<PyAny>) -> LogLane {
        LogLane { lane: CoreLane::new(id_prefix, per_entry, max_queue), id_prefix: Arc::from(id_prefix), wake }
    }

    /// While `refusing`, no decision is made on this lane (LogRefused).
    fn set_refusing(&self, refusing: bool) {
        self.lane.set_refusing(refusing);
    }

    /// Decisions queued since the lane was made.
    fn appended(&self) -> u64 {
        self.lane.appended()
    }

    /// The first of `count` consecutive decision-id counters, for decisions logged another way.
    fn take_ids(&self, count: u64) -> u64 {
        self.lane.take_ids(count)
    }

    /// The counter the next decision id will have.
    fn next_id(&self) -> u64 {
        self.lane.next_id()
    }

    /// The decisions taken since the last call, counted as `DecidedBatch.counts` counts.
    #[allow(clippy::type_complexity)]
    fn take_counts(&self) -> (Vec<((u8, u8), u64)>, Vec<((u8, String), u64)>) {
        let counts = self.lane.take_counts();
        (
            counts.by_outcome.into_iter().map(|((op, outcome), n)| ((op as u8, outcome as u8), n)).collect(),
            counts.by_reason.into_iter().map(|((code, rule_id), n)| ((code as u8, rule_id.to_string()), n)).collect(),
        )
    }

    /// Decisions waiting for the writer.
    fn waiting(&self) -> usize {
        self.lane.waiting()
    }

    /// Everything queued, rendered here (without the interpreter lock), and counted for
    /// `take_counts`: `(entries, appended, intents)` with each entry `(JSON, decision ids
    /// (a `DecisionIds`), catalog revision)`, `appended` as `appended()` counts it with them,
    /// and the intents `((caller, dataset_id, operation, region), count)` of the decisions taken.
    #[allow(clippy::type_complexity)]
    fn take<'py>(
        &self,
        py: Python<'py>,
    ) -> (Vec<(Bound<'py, PyBytes>, DecisionIds, i64)>, u64, Vec<((String, String, u8, String), usize)>) {
        let taken = py.detach(|| self.lane.take());
        let entries = taken
            .entries
            .iter()
            .map(|entry| {
                let ids = DecisionIds {
                    prefix: self.id_prefix.to_string(),
                    first: entry.ids.start,
                    count: (entry.ids.end - entry.ids.start) as usize,
                };
                (PyBytes::new(py, &entry.json), ids, entry.catalog_revision)
            })
            .collect();
        let intents = taken
            .intents
            .into_iter()
            .map(|((caller, dataset, op, region), n)| ((caller, dataset, op as u8, region), n))
            .collect();
        (entries, taken.appended, intents)
    }
}

/// A decision made by `UnaryDecider.decide`: the fields of the router's `Decision`, read when
/// asked (the verdict's from the engine's value of it, made when first read), and the Decide
/// answer in the wire format (`answer`).
#[pyclass(frozen, module = "domicile.router._engine")]
struct UnaryDecision {
    engine: Py<Engine>,
    policy: Arc<CompiledPolicy>,
    judgement: Arc<Judgement>,
    id_prefix: Arc<str>,
    id: u64,
    dataset_id: Py<PyString>,
    operation: Py<PyAny>,
    region: Py<PyString>,
    catalog_revision: i64,
    decide_time: i64,
    caller: Py<PyString>,
}

#[pymethods]
impl UnaryDecision {
    #[getter]
    fn decision_id(&self) -> String {
        let mut id = String::with_capacity(self.id_prefix.len() + 10);
        domicile_engine::engine::decision_id(&mut id, &self.id_prefix, self.id);
        id
    }

    #[getter]
    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.verdict(py)?.get_item(0)
    }

    #[getter]
    fn dataset_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.dataset_id.bind(py).clone()
    }

    #[getter]
    fn operation<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.operation.bind(py).clone()
    }

    #[getter]
    fn region<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.region.bind(py).clone()
    }

    #[getter]
    fn allowed_regions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.verdict(py)?.get_item(1)
    }

    #[getter]
    fn reasons<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.verdict(py)?.get_item(2)
    }

    #[getter]
    fn policy_version(&self) -> &str {
        &self.policy.version
    }

    #[getter]
    fn catalog_revision(&self) -> i64 {
        self.catalog_revision
    }

    /// The decide time, an aware datetime in UTC.
    #[getter]
    fn decide_time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime(py, self.decide_time)
    }

    #[getter]
    fn caller<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.caller.bind(py).clone()
    }

    #[getter]
    fn inherited_only(&self) -> bool {
        self.judgement.verdict.inherited_only
    }

    /// The serialized DecideResponse holding this decision (its allowed regions listed).
    fn answer<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let context = DecisionContext {
            policy_version: &self.policy.version,
            catalog_revision: self.catalog_revision,
            decide_time: self.decide_time,
        };
        let mut out = Vec::with_capacity(256);
        let operation = self.engine.get().operation_of(self.operation.bind(py))?;
        Encoder::new(context, AnswerShape::default(), &self.policy.reason_texts).decision(
            &mut out,
            1, // DecideResponse.decision
            &self.decision_id(),
            self.dataset_id.bind(py).to_str()?,
            operation,
            self.region.bind(py).to_str()?,
            &self.judgement,
        );
        Ok(PyBytes::new(py, &out))
    }

    /// Equal to a `Decision` (or another unary decision) with the same fields.
    fn __eq__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let fields = self.fields(py)?;
        if let Ok(other) = other.cast::<UnaryDecision>() {
            return Ok(fields.eq(other.get().fields(py)?)?.into_pyobject(py)?.to_owned().into_any().unbind());
        }
        match other.cast::<PyTuple>() {
            Ok(decision) => Ok(fields.eq(decision)?.into_pyobject(py)?.to_owned().into_any().unbind()),
            Err(_) => Ok(py.NotImplemented()),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "UnaryDecision(decision_id={:?}, outcome={}, dataset_id={}, region={}, catalog_revision={})",
            self.decision_id(),
            self.outcome(py)?.repr()?,
            self.dataset_id.bind(py).repr()?,
            self.region.bind(py).repr()?,
            self.catalog_revision
        ))
    }
}

impl UnaryDecision {
    /// The engine's value of the verdict (made once per verdict it memoised).
    fn verdict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.engine.get().verdict(py, &self.policy, &self.judgement.verdict)
    }

    /// The fields in the order of the router's `Decision`.
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let verdict = self.verdict(py)?;
        PyTuple::new(
            py,
            [
                self.decision_id().into_pyobject(py)?.into_any(),
                verdict.get_item(0)?,
                self.dataset_id.bind(py).clone().into_any(),
                self.operation.bind(py).clone(),
                self.region.bind(py).clone().into_any(),
                verdict.get_item(1)?,
                verdict.get_item(2)?,
                PyString::new(py, &self.policy.version).into_any(),
                self.catalog_revision.into_pyobject(py)?.into_any(),
                datetime(py, self.decide_time)?.into_any(),
                self.caller.bind(py).clone().into_any(),
                verdict.get_item(3)?,
            ],
        )
    }
}

/// The system clock's now, in microseconds since the Unix epoch.
fn system_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |elapsed| elapsed.as_micros() as i64)
}

/// An aware datetime in UTC from microseconds since the Unix epoch.
fn datetime(py: Python<'_>, micros: i64) -> PyResult<Bound<'_, PyDateTime>> {
    let (days, of_day) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
    let (year, month, day) = civil_from_days(days);
    let seconds = of_day / 1_000_000;
    let year = i32::try_from(year).map_err(|_| PyValueError::new_err("decide time out of range"))?;
    PyDateTime::new(
        py,
        year,
        month as u8,
        day as u8,
        (seconds / 3600) as u8,
        (seconds / 60 % 60) as u8,
        (seconds % 60) as u8,
        (of_day % 1_000_000) as u32,
        Some(&PyTzInfo::utc(py)?.to_owned()),
    )
}

/// The decision-log entry (format 4) of decisions the router made (`domicile.router.types.Decision`
/// named tuples), which share their caller, policy version and catalog revision (the first
/// decision's are written); `context` facts as given. ValueError for a text that is not valid
/// Unicode or a naive time.
#[pyfunction]
fn log_entry<'py>(
    py: Python<'py>,
    decisions: &Bound<'py, PyAny>,
    context: Vec<(String, String)>,
    kind: &str,
    policy_hash: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut writer = EntryWriter::default();
    let mut first: Option<(String, String, i64)> = None;
    // (The entry's texts interned here: equal texts of its decisions are rendered once.)
    let texts = ReasonTexts::default();
    let mut read = Vec::new();
    for decision in decisions.try_iter()? {
        let decision = decision?;
        let field = |index: usize| decision.get_item(index);
        let text = |index: usize| -> PyResult<String> { field(index)?.extract() };
        let value = |index: usize| -> PyResult<String> { field(index)?.getattr("value")?.extract() };
        if first.is_none() {
            first = Some((text(7)?, text(10)?, field(8)?.extract()?));
        }
        let allowed = field(5)?;
        let region_names: Vec<String> =
            allowed.try_iter()?.map(|name| name?.extract::<String>()).collect::<PyResult<_>>()?;
        let region_set = writer.region_set(allowed.as_ptr() as usize, region_names.iter().map(String::as_str));
        let reasons = field(6)?;
        read.clear();
        for item in reasons.try_iter()? {
            let item = item?;
            let part =
                |index: usize| -> PyResult<Arc<str>> { Ok(Arc::from(item.get_item(index)?.extract::<String>()?)) };
            let name: String = item.get_item(0)?.getattr("value")?.extract()?;
            let code = ReasonCode::from_name(&name)
                .ok_or_else(|| PyValueError::new_err(format!("unknown reason code {name:?}")))?;
            let path = item
                .get_item(4)?
                .try_iter()?
                .map(|step| Ok(Arc::from(step?.extract::<String>()?)))
                .collect::<PyResult<_>>()?;
            read.push(Reason { code, message: part(1)?, rule_id: part(2)?, citation: part(3)?, path });
        }
        let reason_set = writer.reason_set(reasons.as_ptr() as usize, &Reasons::new(&read, &texts));
        let operation = match value(3)?.as_str() {
            "store" => Operation::Store,
            "process" => Operation::Process,
            other => return Err(PyValueError::new_err(format!("operation {other:?}"))),
        };
        let outcome = match value(1)?.as_str() {
            "allow" => Outcome::Allow,
            "deny" => Outcome::Deny,
            other => return Err(PyValueError::new_err(format!("outcome {other:?}"))),
        };
        writer.row(&Row {
            decision_id: &text(0)?,
            dataset_id: &text(2)?,
            operation,
            region: &text(4)?,
            outcome,
            region_set,
            reason_set,
            decide_time: micros(&field(9)?)?,
            inherited_only: field(11)?.is_truthy()?,
        });
    }
    let Some((policy_version, caller, catalog_revision)) = first else {
        return Err(PyValueError::new_err("an entry holds at least one decision"));
    };
    let head = EntryHead {
        kind,
        caller: &caller,
        policy_version: &policy_version,
        policy_hash,
        catalog_revision,
        context: &context,
    };
    Ok(PyBytes::new(py, &writer.finish(&head)))
}

/// Microseconds since the Unix epoch of an aware datetime.
fn micros(time: &Bound<'_, PyAny>) -> PyResult<i64> {
    let time = time.cast::<PyDateTime>()?;
    let offset = time.call_method0("utcoffset")?;
    if offset.is_none() {
        return Err(PyValueError::new_err("naive datetime: Domicile times must be timezone-aware"));
    }
    let offset = offset.cast::<PyDelta>()?;
    let offset_micros = (i64::from(offset.get_days()) * 86_400 + i64::from(offset.get_seconds())) * 1_000_000
        + i64::from(offset.get_microseconds());
    let days = days_from_civil(i64::from(time.get_year()), time.get_month().into(), time.get_day().into());
    let seconds = days * 86_400
        + i64::from(time.get_hour()) * 3600
        + i64::from(time.get_minute()) * 60
        + i64::from(time.get_second());
    Ok(seconds * 1_000_000 + i64::from(time.get_microsecond()) - offset_micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Engine {
    /// The caller's value of a verdict: made once for a verdict the engine memoised (one the
    /// engine shares), and then handed out again.
    fn verdict<'py>(
        &self,
        py: Python<'py>,
        policy: &Arc<CompiledPolicy>,
        verdict: &Arc<Verdict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = Arc::as_ptr(verdict) as usize;
        if let Some((_, value)) = self.verdicts.lock().get(&key) {
            return Ok(value.bind(py).clone());
        }
        let reasons = verdict.reasons.iter().map(|r| reason(py, r)).collect::<PyResult<Vec<_>>>()?;
        let raw = (
            verdict.outcome as u8,
            self.regions(py, policy, &verdict.allowed)?,
            PyTuple::new(py, reasons)?,
            verdict.inherited_only,
        )
            .into_pyobject(py)?
            .into_any();
        // (Called without holding the cache's lock: it runs Python code.)
        let value = match &self.make_verdict {
            Some(make) => make.bind(py).call1((raw,))?,
            None => raw,
        };
        // A verdict only this call holds (an unknown id's, a job output's) is not asked again.
        if Arc::strong_count(verdict) > 1 {
            let mut verdicts = self.verdicts.lock();
            if verdicts.len() >= VERDICT_VALUES_LIMIT {
                verdicts.clear();
            }
            verdicts.insert(key, (verdict.clone(), value.clone().unbind()));
        }
        Ok(value)
    }

    /// The tuple of a region list, shared by every verdict with that list.
    fn regions<'py>(
        &self,
        py: Python<'py>,
        policy: &Arc<CompiledPolicy>,
        list: &RegionList,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let mut cache = self.regions.lock();
        let owner = Arc::as_ptr(policy) as usize;
        if cache.policy != owner {
            cache.policy = owner;
            cache.tuples.clear();
        }
        if let Some(tuple) = cache.tuples.get(&list.id) {
            return Ok(tuple.bind(py).clone());
        }
        let tuple = strings(py, &list.names)?;
        cache.tuples.insert(list.id, tuple.clone().unbind());
        Ok(tuple)
    }
}

/// The text of Python strings, borrowed.
fn strs<'a>(items: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    items.iter().map(|item| item.to_str()).collect()
}

fn reason<'py>(py: Python<'py>, reason: &Reason) -> PyResult<Bound<'py, PyTuple>> {
    (reason.code as u8, &*reason.message, &*reason.rule_id, &*reason.citation, strings(py, &reason.path)?)
        .into_pyobject(py)
}

fn strings<'py>(py: Python<'py>, items: &[Arc<str>]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, items.iter().map(|s| &**s))
}

fn change(item: &Bound<'_, PyAny>) -> PyResult<Change> {
    let tag: String = item.get_item(0)?.extract()?;
    let text = |index: usize| -> PyResult<String> { item.get_item(index)?.extract() };
    let texts = |index: usize| -> PyResult<Vec<String>> {
        item.get_item(index)?.try_iter()?.map(|value| value?.extract()).collect()
    };
    Ok(match tag.as_str() {
        "dataset" => Change::Described { id: text(1)?, labels: texts(2)?, origins: texts(3)?, locations: texts(4)? },
        "deleted" => Change::Deleted { id: text(1)? },
        "placeholder" => Change::Mentioned { id: text(1)? },
        "edge" | "edge_ended" => {
            let (input, output, job, transform) = (text(1)?, text(2)?, text(3)?, text(4)?);
            let recorded: Option<i64> = item.get_item(5)?.extract()?;
            if tag == "edge" {
                Change::EdgeAdded { input, output, job, transform, recorded }
            } else {
                Change::EdgeEnded { input, output, job, transform, recorded }
            }
        }
        other => return Err(PyValueError::new_err(format!("unknown change kind {other:?}"))),
    })
}

/// `(normal, problems)`: the id in normal form, or the id as written and the rules it breaks
/// (crates/engine/src/dataset_ids.rs).
#[pyfunction]
fn parse_dataset_id<'py>(value: &Bound<'py, PyString>) -> (Bound<'py, PyString>, Vec<String>) {
    let parsed = match value.to_str() {
        Ok(text) => {
            let parsed = dataset_ids::parse_dataset_id(text);
            if parsed.problems.is_empty() && parsed.normal != text {
                return (PyString::new(value.py(), &parsed.normal), Vec::new());
            }
            parsed
        }
        Err(_) => dataset_ids::parse_dataset_id_with_surrogates(&value.to_string_lossy()),
    };
    (value.clone(), parsed.problems)
}

/// An exemption's dataset pattern in the normal form of the ids it is to match.
#[pyfunction]
fn normalize_pattern<'py>(pattern: &Bound<'py, PyString>) -> Bound<'py, PyString> {
    match pattern.to_str() {
        Ok(text) => match dataset_ids::normalize_pattern(text) {
            Cow::Owned(normal) => PyString::new(pattern.py(), &normal),
            Cow::Borrowed(_) => pattern.clone(),
        },
        // A pattern that cannot match a valid id (`pattern_problems` says why).
        Err(_) => pattern.clone(),
    }
}

/// Why an exemption's dataset pattern can match no valid id, if it cannot.
#[pyfunction]
fn pattern_problems(pattern: &Bound<'_, PyString>) -> Vec<String> {
    match pattern.to_str() {
        Ok(text) => dataset_ids::pattern_problems(text),
        Err(_) => dataset_ids::pattern_problems_with_surrogates(&pattern.to_string_lossy()),
    }
}

#[pymodule]
fn _engine(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<Engine>()?;
    module.add_class::<Policy>()?;
    module.add_class::<DecidedBatch>()?;
    module.add_class::<DecisionIds>()?;
    module.add_class::<LogBuffer>()?;
    module.add_class::<LogLane>()?;
    module.add_class::<UnaryDecision>()?;
    module.add_class::<unary::UnaryDecider>()?;
    module.add_function(wrap_pyfunction!(log_entry, module)?)?;
    module.add_function(wrap_pyfunction!(parse_dataset_id, module)?)?;
    module.add_function(wrap_pyfunction!(normalize_pattern, module)?)?;
    module.add_function(wrap_pyfunction!(pattern_problems, module)?)?;
    access::register(module)?;
    module.add("UnknownRegion", py.get_type::<UnknownRegion>())?;
    module.add("MalformedRequest", py.get_type::<MalformedRequest>())?;
    module.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    module.add("LogRefused", py.get_type::<LogRefused>())?;
    Ok(())
}
