//! `UnaryDecider`: the router's Decide in one call from Python (`Router.decide` is its
//! `decide`), Route and CheckJob likewise. It holds what every
//! question asked alone shares -- the engine, the decision log's lane (which numbers the
//! decisions), the catalog revision the index reflects and until when that view is fresh, the
//! clock -- so that a call passes only the question and who asks.

use std::time::{Duration, Instant};

use std::sync::Arc;

use domicile_engine::policy::{CompiledPolicy, Operation};
use domicile_engine::unary::{Decided, Head, NotDecided, Queued, Refusal, Request};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::{policy_error, system_now, Engine, LogLane, LogRefused, UnaryDecision};

/// The catalog view decisions are made from: its revision, and until when it is fresh.
struct View {
    catalog_revision: i64,
    fresh_until: Instant,
}

/// Decides questions asked alone and queues each decision on the lane (see the module doc).
#[pyclass(frozen, module = "domicile.router._engine")]
pub struct UnaryDecider {
    engine: Py<Engine>,
    lane: Py<LogLane>,
    view: Mutex<View>,
    /// Microseconds since the Unix epoch (None: the system clock).
    clock: Option<Py<PyAny>>,
    /// Decides what `decide` does not (see there).
    undecided: Py<PyAny>,
}

#[pymethods]
impl UnaryDecider {
    /// Decisions of `engine` queued on `lane`; `clock`, if given, is called for each decide time
    /// (microseconds since the Unix epoch); `undecided` decides what `decide` does not. The
    /// view is stale until `set_view` says otherwise.
    #[new]
    #[pyo3(signature = (engine, lane, undecided, clock=None))]
    fn new(engine: Py<Engine>, lane: Py<LogLane>, undecided: Py<PyAny>, clock: Option<Py<PyAny>>) -> UnaryDecider {
        let view = View { catalog_revision: 0, fresh_until: Instant::now() };
        UnaryDecider { engine, lane, view: Mutex::new(view), clock, undecided }
    }

    /// The index reflects `catalog_revision`, and the view is fresh for `fresh_for` seconds
    /// from now (none when it is not positive).
    fn set_view(&self, catalog_revision: i64, fresh_for: f64) {
        let now = Instant::now();
        // At most a year: an unbounded view is refreshed long before.
        let fresh_for = Duration::from_secs_f64(fresh_for.clamp(0.0, 365.0 * 86_400.0));
        *self.view.lock() = View { catalog_revision, fresh_until: now + fresh_for };
    }

    /// The router's Decide (`Router.decide`): the decision on one question, made and queued
    /// for the decision log here when it can be -- no `context`, the view fresh, the region
    /// known, the lane taking it. Anything else goes to `undecided(dataset_id, op,
    /// region, context, caller)` (the router's own path: the follower's word on the view, the
    /// log's on the lane, the context's facts, the errors), whose answer is returned.
    #[pyo3(signature = (dataset_id, op, region, context=None, *, caller=None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        dataset_id: Bound<'py, PyString>,
        op: Bound<'py, PyAny>,
        region: Bound<'py, PyString>,
        context: Option<Bound<'py, PyAny>>,
        caller: Option<Bound<'py, PyString>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let caller = caller.unwrap_or_else(|| intern!(py, "").clone());
        let alone = match &context {
            Some(context) => !context.is_truthy()?,
            None => true,
        };
        if alone {
            if let Some(decision) = self.decided(py, &dataset_id, &op, &region, &caller, None, None)? {
                return Ok(Bound::new(py, decision)?.into_any());
            }
        }
        let context = context.unwrap_or_else(|| py.None().into_bound(py));
        self.undecided.bind(py).call1((dataset_id, op, region, context, caller))
    }

    /// Decides one question and queues its decision for the decision log, the view's
    /// freshness as the caller found it: `stale` is '' for a fresh view, else the message of
    /// the DENY / STALE_CATALOG. `facts`: the context logged with the decision. Raises
    /// UnknownRegion (field `region`), or LogRefused when the lane takes no decision now.
    #[allow(clippy::too_many_arguments)] // (six from Python, besides `self` and `py`)
    fn decide_as<'py>(
        &self,
        py: Python<'py>,
        dataset_id: Bound<'py, PyString>,
        operation: Bound<'py, PyAny>,
        region: Bound<'py, PyString>,
        caller: Bound<'py, PyString>,
        facts: Option<Vec<(String, String)>>,
        stale: &str,
    ) -> PyResult<UnaryDecision> {
        let decided = self.decided(py, &dataset_id, &operation, &region, &caller, facts.as_deref(), Some(stale));
        match decided {
            Ok(Some(decision)) => Ok(decision),
            Ok(None) => unreachable!("a decision whose freshness is given is made or refused"),
            Err(error) => Err(error),
        }
    }

    /// A Route, its decision queued for the decision log: `(chosen, decided, decision)` with
    /// `chosen` the index of the first candidate where `operation` is allowed (-1 when none is)
    /// and `decided` the candidate the decision is for (that one, else the first; the first
    /// when the view is stale). None when the view's freshness ran out and `stale` was not
    /// given; UnknownRegion (field `candidates[i]`) and LogRefused as `decide_as`.
    #[pyo3(signature = (dataset_id, operation, candidates, caller, stale=None))]
    fn route<'py>(
        &self,
        py: Python<'py>,
        dataset_id: Bound<'py, PyString>,
        operation: Bound<'py, PyAny>,
        candidates: Vec<Bound<'py, PyString>>,
        caller: Bound<'py, PyString>,
        stale: Option<&str>,
    ) -> PyResult<Option<(i64, usize, UnaryDecision)>> {
        let Some(request) = self.request(py, "route", &caller, stale, &[])? else { return Ok(None) };
        let engine = self.engine.get();
        let op = engine.operation_of(&operation)?;
        let names = candidates.iter().map(|c| c.to_str()).collect::<PyResult<Vec<&str>>>()?;
        let state = engine.core.read();
        let routed = state.route_queued(&self.lane.get().lane, &request, dataset_id.to_str()?, op, &names);
        let routed = routed.map_err(not_decided)?;
        let region = candidates.get(routed.decided).cloned().unwrap_or_else(|| PyString::new(py, ""));
        let first = routed.decision.first;
        let decision =
            self.decision(py, &state.policy, &request, routed.decision, &dataset_id, &operation, &region, &caller);
        drop(state);
        self.woken(py, first)?;
        Ok(Some((routed.chosen.map_or(-1, |c| c as i64), routed.decided, decision)))
    }

    /// A job's pre-flight check (see `Engine.check_job`): its decisions, numbered but not
    /// queued -- `log` queues them, once the answer made of them can be sent. Fail closed
    /// (every decision DENY / STALE_CATALOG) with `stale`. None and UnknownRegion (fields
    /// `run_region`, `output_region`) as `route`.
    #[allow(clippy::too_many_arguments)] // (eight from Python, besides `self` and `py`)
    #[pyo3(signature = (inputs, outputs, run_region, output_region, transform, job, caller, stale=None))]
    fn check_job<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<Bound<'py, PyString>>,
        outputs: Vec<Bound<'py, PyString>>,
        run_region: Bound<'py, PyString>,
        output_region: Bound<'py, PyString>,
        transform: &str,
        job: &str,
        caller: Bound<'py, PyString>,
        stale: Option<&str>,
    ) -> PyResult<Option<Vec<UnaryDecision>>> {
        let Some(request) = self.request(py, "check_job", &caller, stale, &[])? else { return Ok(None) };
        let engine = self.engine.get();
        let texts = |ids: &[Bound<'py, PyString>]| -> PyResult<Vec<String>> {
            ids.iter().map(|id| Ok(id.to_str()?.to_owned())).collect()
        };
        let (input_ids, output_ids): (Vec<String>, Vec<String>) = (texts(&inputs)?, texts(&outputs)?);
        let state = engine.core.read();
        let judged = state.judge_job(
            &request,
            &input_ids,
            &output_ids,
            run_region.to_str()?,
            output_region.to_str()?,
            transform,
            job,
        );
        let judged = judged.map_err(not_decided)?;
        let lane = self.lane.get();
        let first_id = lane.lane.take_ids(judged.len() as u64);
        let datasets = inputs.into_iter().chain(outputs);
        let decisions = judged
            .into_iter()
            .zip(datasets)
            .enumerate()
            .map(|(n, ((decision, judgement), dataset_id))| {
                let (operation, region) = match decision.operation {
                    Operation::Process => (Operation::Process, run_region.clone()),
                    Operation::Store => (Operation::Store, output_region.clone()),
                };
                let decided = Decided { judgement, id: first_id + n as u64, first: false };
                let operation = engine.operation_value(py, operation)?;
                Ok(self.decision(py, &state.policy, &request, decided, &dataset_id, &operation, &region, &caller))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Some(decisions))
    }

    /// Queues decisions made by `check_job` for the decision log, in one entry of kind `kind`
    /// with the facts `context`. Raises LogRefused when the lane takes no decision now (none
    /// queued then).
    fn log(
        &self,
        py: Python<'_>,
        decisions: Vec<Bound<'_, UnaryDecision>>,
        kind: &str,
        context: Vec<(String, String)>,
    ) -> PyResult<()> {
        let engine = self.engine.get();
        let lane = &self.lane.get().lane;
        lane.admit().map_err(|refusal| LogRefused::new_err((refusal == Refusal::Full,)))?;
        let mut woken = false;
        for decision in &decisions {
            let decision = decision.get();
            let region = decision.region.bind(py).to_str()?;
            let queued = Queued {
                head: Head {
                    kind,
                    caller: decision.caller.bind(py).to_str()?,
                    policy: &decision.policy,
                    catalog_revision: decision.catalog_revision,
                    context: &context,
                },
                dataset_id: decision.dataset_id.bind(py).to_str()?,
                operation: engine.operation_of(decision.operation.bind(py))?,
                region: decision
                    .policy
                    .region(region)
                    .ok_or_else(|| PyValueError::new_err("a region of its policy"))?,
                judgement: &decision.judgement,
                decide_time: decision.decide_time,
            };
            // (Admitted above: the lane refuses only once the writer takes none, and a job's
            // decisions are few.)
            woken |= lane.push_numbered(decision.id, &queued).unwrap_or(false);
        }
        self.woken(py, woken)
    }
}

impl UnaryDecider {
    /// A decision made and queued, or None when the view's freshness ran out and `stale` was
    /// not given (or, without `stale`, when the region is unknown or the lane refuses: the
    /// caller then asks with it, and hears why).
    #[allow(clippy::too_many_arguments)]
    fn decided<'py>(
        &self,
        py: Python<'py>,
        dataset_id: &Bound<'py, PyString>,
        operation: &Bound<'py, PyAny>,
        region: &Bound<'py, PyString>,
        caller: &Bound<'py, PyString>,
        facts: Option<&[(String, String)]>,
        stale: Option<&str>,
    ) -> PyResult<Option<UnaryDecision>> {
        let Some(request) = self.request(py, "decide", caller, stale, facts.unwrap_or_default())? else {
            return Ok(None);
        };
        let engine = self.engine.get();
        let op = engine.operation_of(operation)?;
        let state = engine.core.read();
        let decided =
            match state.decide_queued(&self.lane.get().lane, &request, dataset_id.to_str()?, op, region.to_str()?) {
                Ok(decided) => decided,
                Err(_) if stale.is_none() => return Ok(None),
                Err(not) => return Err(not_decided(not)),
            };
        let first = decided.first;
        let decision = self.decision(py, &state.policy, &request, decided, dataset_id, operation, region, caller);
        drop(state);
        self.woken(py, first)?;
        Ok(Some(decision))
    }

    /// A request of `kind` from `caller`, made from the view's catalog revision at the decide
    /// time; None when the view's freshness ran out and `stale` (the caller's verdict on it) was
    /// not given.
    fn request<'a>(
        &self,
        py: Python<'_>,
        kind: &'a str,
        caller: &'a Bound<'_, PyString>,
        stale: Option<&'a str>,
        context: &'a [(String, String)],
    ) -> PyResult<Option<Request<'a>>> {
        let catalog_revision = {
            let view = self.view.lock();
            if stale.is_none() && Instant::now() >= view.fresh_until {
                return Ok(None);
            }
            view.catalog_revision
        };
        Ok(Some(Request {
            now: self.now(py)?,
            stale: stale.filter(|message| !message.is_empty()),
            kind,
            caller: caller.to_str()?,
            catalog_revision,
            context,
        }))
    }

    /// The decide time: microseconds since the Unix epoch.
    fn now(&self, py: Python<'_>) -> PyResult<i64> {
        match &self.clock {
            Some(clock) => clock.bind(py).call0()?.extract(),
            None => Ok(system_now()),
        }
    }

    /// Wakes the log writer when a decision landed in an empty lane (it may wait for work).
    fn woken(&self, py: Python<'_>, first: bool) -> PyResult<()> {
        if first {
            self.lane.get().wake.call0(py)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decision<'py>(
        &self,
        py: Python<'py>,
        policy: &Arc<CompiledPolicy>,
        request: &Request<'_>,
        decided: Decided,
        dataset_id: &Bound<'py, PyString>,
        operation: &Bound<'py, PyAny>,
        region: &Bound<'py, PyString>,
        caller: &Bound<'py, PyString>,
    ) -> UnaryDecision {
        UnaryDecision {
            engine: self.engine.clone_ref(py),
            policy: policy.clone(),
            judgement: decided.judgement,
            id_prefix: self.lane.get().id_prefix.clone(),
            id: decided.id,
            dataset_id: dataset_id.clone().unbind(),
            operation: operation.clone().unbind(),
            region: region.clone().unbind(),
            catalog_revision: request.catalog_revision,
            decide_time: request.now,
            caller: caller.clone().unbind(),
        }
    }
}

fn not_decided(not: NotDecided) -> PyErr {
    match not {
        NotDecided::UnknownRegion(error) => policy_error(error),
        NotDecided::Refused(refusal) => LogRefused::new_err((refusal == Refusal::Full,)),
    }
}

impl Engine {
    /// The operation of the caller's value of it (see `Engine.__new__`'s `operations`).
    pub(crate) fn operation_of(&self, operation: &Bound<'_, PyAny>) -> PyResult<Operation> {
        match &self.operations {
            Some([store, _]) if operation.is(store) => Ok(Operation::Store),
            Some([_, process]) if operation.is(process) => Ok(Operation::Process),
            Some(_) => Err(PyValueError::new_err("operation: not one of the engine's operations")),
            None => crate::operation(operation.extract()?),
        }
    }

    /// The caller's value of an operation (see `operation_of`).
    pub(crate) fn operation_value<'py>(&self, py: Python<'py>, operation: Operation) -> PyResult<Bound<'py, PyAny>> {
        match &self.operations {
            Some(values) => Ok(values[operation as usize].bind(py).clone()),
            None => Ok((operation as u8).into_pyobject(py)?.into_any()),
        }
    }
}
