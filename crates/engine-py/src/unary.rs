//! `UnaryDecider`: the router's Decide in one call with few arguments. It holds what every
//! question asked alone shares -- the engine, the decision log's lane (which numbers the
//! decisions), the catalog revision the index reflects and until when that view is fresh, the
//! clock -- so that a call passes only the question and who asks.

use std::time::{Duration, Instant};

use domicile_engine::policy::Operation;
use domicile_engine::unary::{Asked, NotDecided, Refusal};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
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
}

#[pymethods]
impl UnaryDecider {
    /// Decisions of `engine` queued on `lane`; `clock`, if given, is called for each decide time
    /// (microseconds since the Unix epoch). The view is stale until `set_view` says otherwise.
    #[new]
    #[pyo3(signature = (engine, lane, clock=None))]
    fn new(engine: Py<Engine>, lane: Py<LogLane>, clock: Option<Py<PyAny>>) -> UnaryDecider {
        let view = View { catalog_revision: 0, fresh_until: Instant::now() };
        UnaryDecider { engine, lane, view: Mutex::new(view), clock }
    }

    /// The index reflects `catalog_revision`, and the view is fresh for `fresh_for` seconds
    /// from now (none when it is not positive).
    fn set_view(&self, catalog_revision: i64, fresh_for: f64) {
        let now = Instant::now();
        // At most a year: an unbounded view is refreshed long before.
        let fresh_for = Duration::from_secs_f64(fresh_for.clamp(0.0, 365.0 * 86_400.0));
        *self.view.lock() = View { catalog_revision, fresh_until: now + fresh_for };
    }

    /// Decides one question and queues its decision for the decision log: the decision, or
    /// None -- nothing decided -- when the view's freshness ran out and `stale` was not given:
    /// the caller then asks again with `stale`, '' when it finds the view fresh after all, else
    /// the message of the DENY / STALE_CATALOG. `context`: the facts logged with the decision.
    /// Raises UnknownRegion (field `region`), or LogRefused when the lane takes no decision now.
    #[allow(clippy::too_many_arguments)] // (six from Python, besides `self` and `py`)
    #[pyo3(signature = (dataset_id, operation, region, caller, context=None, stale=None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        dataset_id: Bound<'py, PyString>,
        operation: Bound<'py, PyAny>,
        region: Bound<'py, PyString>,
        caller: Bound<'py, PyString>,
        context: Option<Vec<(String, String)>>,
        stale: Option<&str>,
    ) -> PyResult<Option<UnaryDecision>> {
        let catalog_revision = {
            let view = self.view.lock();
            if stale.is_none() && Instant::now() >= view.fresh_until {
                return Ok(None);
            }
            view.catalog_revision
        };
        let engine = self.engine.get();
        let op = engine.operation_of(&operation)?;
        let now = match &self.clock {
            Some(clock) => clock.bind(py).call0()?.extract()?,
            None => system_now(),
        };
        let lane = self.lane.get();
        let state = engine.core.read();
        let asked = Asked {
            dataset_id: dataset_id.to_str()?,
            operation: op,
            region: region.to_str()?,
            now,
            stale: stale.filter(|message| !message.is_empty()),
            kind: "decide",
            caller: caller.to_str()?,
            catalog_revision,
            context: context.as_deref().unwrap_or_default(),
        };
        let decided = match state.decide_queued(&lane.lane, &asked) {
            Ok(decided) => decided,
            Err(NotDecided::UnknownRegion(error)) => return Err(policy_error(error)),
            Err(NotDecided::Refused(refusal)) => return Err(LogRefused::new_err((refusal == Refusal::Full,))),
        };
        let decision = UnaryDecision {
            engine: self.engine.clone_ref(py),
            policy: state.policy.clone(),
            judgement: decided.judgement,
            id_prefix: lane.id_prefix.clone(),
            id: decided.id,
            dataset_id: dataset_id.unbind(),
            operation: operation.unbind(),
            region: region.unbind(),
            catalog_revision,
            decide_time: now,
            caller: caller.unbind(),
        };
        drop(state);
        if decided.first {
            lane.wake.call0(py)?;
        }
        Ok(Some(decision))
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
}
