//! `domicile.router._engine`: the residency engine (crates/engine) for Python.
//!
//! A handful of calls on one `Engine` object. Python hands over validated data -- the
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

use std::collections::HashMap;
use std::sync::Arc;

use domicile_engine::engine::{Batch, Explanation, JobDecision, PolicyChange, Routed, Violation};
use domicile_engine::policy::{CompiledPolicy, Operation, Reason, RegionList, Verdict};
use domicile_engine::wire::BatchError;
use domicile_engine::{Change, Engine as CoreEngine, Error};
use parking_lot::Mutex;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

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
}

#[derive(Default)]
struct RegionTuples {
    policy: usize,
    tuples: HashMap<u32, Py<PyTuple>>,
}

fn compile(policy: &str) -> PyResult<CompiledPolicy> {
    CompiledPolicy::from_json(policy).map_err(policy_error)
}

#[pymethods]
impl Engine {
    /// An engine with the policy (the normalised document, JSON) and an empty index.
    #[new]
    fn new(policy: &str) -> PyResult<Engine> {
        Ok(Engine { core: CoreEngine::new(compile(policy)?), regions: Mutex::default() })
    }

    /// Makes another policy active (recomputing only what its declassifiers change).
    fn set_policy(&self, py: Python<'_>, policy: &str) -> PyResult<()> {
        let compiled = compile(policy)?;
        py.detach(|| self.core.set_policy(compiled));
        Ok(())
    }

    /// Applies catalog changes in order, then recomputes once. Each change is a tuple:
    /// `("dataset", id, labels, origins, locations)`, `("deleted", id)`, `("placeholder", id)`,
    /// `("edge", input, output, job, transform, recorded)` or `("edge_ended", ...)` with the
    /// same fields (`recorded`: microseconds, or None when unknown).
    fn apply(&self, py: Python<'_>, changes: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut parsed = Vec::new();
        for item in changes.try_iter()? {
            parsed.push(change(&item?)?);
        }
        py.detach(|| self.core.apply(&parsed));
        Ok(())
    }

    /// The verdict for one question at `now`. UnknownRegion (field `region`) for a region the
    /// policy does not know.
    fn decide<'py>(
        &self,
        py: Python<'py>,
        dataset_id: &str,
        operation_value: u8,
        region: &str,
        now: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let op = operation(operation_value)?;
        let state = self.core.read();
        let region = state.region("region", region).map_err(policy_error)?;
        let verdict = state.decide(dataset_id, op, region, now);
        self.verdict(py, &state.policy, &verdict)
    }

    /// `(chosen, decided, verdict)`: the index of the first candidate where `op` is allowed
    /// (-1 when none is) and the verdict for it, or for the first candidate.
    fn route<'py>(
        &self,
        py: Python<'py>,
        dataset_id: &str,
        operation_value: u8,
        candidates: Vec<String>,
        now: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let op = operation(operation_value)?;
        let state = self.core.read();
        let mut regions = Vec::with_capacity(candidates.len());
        for (i, candidate) in candidates.iter().enumerate() {
            regions.push(state.region(&format!("candidates[{i}]"), candidate).map_err(policy_error)?);
        }
        let Routed { chosen, decided, verdict } = state.route(dataset_id, op, &regions, now);
        let chosen = chosen.map_or(-1, |c| c as i64);
        (chosen, decided, self.verdict(py, &state.policy, &verdict)?).into_pyobject(py)
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

    /// Decides a serialized BatchDecideRequest (at most `max_batch` questions) and returns
    /// `(answer, count)`: the serialized BatchDecideResponse and the number of decisions. With
    /// `stale` (a STALE_CATALOG message) every decision is that fail-closed DENY. Decision ids
    /// are `id_prefix` + `first_id`, `first_id + 1`, ... Raises MalformedRequest or
    /// InvalidRequest.
    #[allow(clippy::too_many_arguments)]
    fn batch_decide_wire<'py>(
        &self,
        py: Python<'py>,
        request: &[u8],
        now: i64,
        stale: Option<&str>,
        catalog_revision: i64,
        id_prefix: &str,
        first_id: u64,
        max_batch: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        let answer = py.detach(|| {
            let state = self.core.read();
            let batch: Batch = state.batch_decide(request, max_batch, now, stale)?;
            Ok::<_, BatchError>((
                state.encode_batch(&batch, catalog_revision, now, id_prefix, first_id),
                batch.verdicts.len(),
            ))
        });
        match answer {
            Ok((wire, count)) => Ok((PyBytes::new(py, &wire), count)),
            Err(BatchError::Malformed(message)) => Err(MalformedRequest::new_err((message,))),
            Err(BatchError::Invalid(violations)) => {
                let violations: Vec<(String, String)> =
                    violations.into_iter().map(|v| (v.field, v.description)).collect();
                Err(InvalidRequest::new_err((violations,)))
            }
        }
    }
}

impl Engine {
    fn verdict<'py>(
        &self,
        py: Python<'py>,
        policy: &Arc<CompiledPolicy>,
        verdict: &Verdict,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let reasons = verdict.reasons.iter().map(|r| reason(py, r)).collect::<PyResult<Vec<_>>>()?;
        (
            verdict.outcome as u8,
            self.regions(py, policy, &verdict.allowed)?,
            PyTuple::new(py, reasons)?,
            verdict.inherited_only,
        )
            .into_pyobject(py)
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

#[pymodule]
fn _engine(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<Engine>()?;
    module.add("UnknownRegion", py.get_type::<UnknownRegion>())?;
    module.add("MalformedRequest", py.get_type::<MalformedRequest>())?;
    module.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    Ok(())
}
