//! The access records' side of the binding: the intents of logged decisions counted by the
//! engine over a flush interval (`IntentTally`, handed over as `IntentRows`), and the
//! GetAccessPatterns / ListActorAccess summaries encoded from the store's packed totals.

use std::collections::HashMap;

use domicile_engine::access_wire::{self, PackedError};
use domicile_engine::intents::{IntentTally as CoreTally, Taken};
use domicile_engine::policy::Operation;
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::DecidedBatch;

/// The intents of logged decisions since the last `take`, one aggregate per (caller, dataset,
/// operation, region, UTC day). The decision log's writer adds to it (any thread); the access
/// records take it once per flush. `operations` names the access operation of a store and of a
/// process intent; `anonymous` is the actor of decisions without a caller.
#[pyclass(frozen, module = "domicile.router._engine")]
pub struct IntentTally {
    tally: Mutex<CoreTally>,
    operations: [Py<PyString>; 2],
    anonymous: Py<PyString>,
}

#[pymethods]
impl IntentTally {
    #[new]
    fn new(operations: (Py<PyString>, Py<PyString>), anonymous: Py<PyString>) -> IntentTally {
        IntentTally { tally: Mutex::default(), operations: [operations.0, operations.1], anonymous }
    }

    /// Aggregates counted since the last `take`.
    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.tally.lock().len())
    }

    /// Decisions `start..stop` of `batch`, asked by `caller`, logged at `at` (µs). Counted
    /// without the interpreter lock: the event loop, which waited for the log writer's thread
    /// while it counted, goes on serving meanwhile.
    fn add_decided(
        &self,
        py: Python<'_>,
        batch: &DecidedBatch,
        start: usize,
        stop: usize,
        caller: &str,
        at: i64,
    ) -> PyResult<()> {
        let range = batch.range(start, stop)?;
        py.detach(|| self.tally.lock().add_batch(caller, &batch.batch, range, at));
        Ok(())
    }

    /// `((caller, dataset_id, operation, region), count)` pairs (operation 0 = store,
    /// 1 = process), logged at `at` (µs).
    fn add(&self, counts: Vec<((String, String, u8, String), u64)>, at: i64) -> PyResult<()> {
        let mut tally = self.tally.lock();
        for ((caller, dataset, operation, region), n) in counts {
            tally.add(&caller, &dataset, crate::operation(operation)?, &region, at, n);
        }
        Ok(())
    }

    /// Everything counted so far, as rows; the tally starts again empty.
    fn take(&self, py: Python<'_>) -> IntentRows {
        let taken = py.detach(|| self.tally.lock().take());
        let names = taken.strings.iter().map(|name| PyString::new(py, name).unbind()).collect();
        IntentRows {
            taken,
            names,
            operations: [self.operations[0].clone_ref(py), self.operations[1].clone_ref(py)],
            anonymous: self.anonymous.clone_ref(py),
        }
    }
}

/// An interval's intents: a sequence of `(actor, dataset_id, operation, region, count,
/// first_seen_us, last_seen_us, day_us)` rows, each made when read (a store binds them one
/// after the other), no Python object kept per row.
#[pyclass(frozen, sequence, module = "domicile.router._engine")]
pub struct IntentRows {
    taken: Taken,
    names: Vec<Py<PyString>>,
    operations: [Py<PyString>; 2],
    anonymous: Py<PyString>,
}

#[pymethods]
impl IntentRows {
    fn __len__(&self) -> usize {
        self.taken.rows.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyTuple>> {
        let count = self.taken.rows.len() as isize;
        let index = if index < 0 { index + count } else { index };
        if index < 0 || index >= count {
            return Err(pyo3::exceptions::PyIndexError::new_err(index));
        }
        let row = &self.taken.rows[index as usize];
        let name = |index: u32| self.names[index as usize].bind(py);
        let actor = if self.taken.name(row.caller).is_empty() { self.anonymous.bind(py) } else { name(row.caller) };
        let operation = match row.operation {
            Operation::Store => &self.operations[0],
            Operation::Process => &self.operations[1],
        };
        (actor, name(row.dataset), operation.bind(py), name(row.region), row.count, row.first, row.last, row.day)
            .into_pyobject(py)
    }
}

/// GetAccessPatterns' answer, serialized, from a dataset's packed totals
/// (`domicile.access.model.AccessTotals.rows`: the names are its actors); `operations` maps
/// each operation value to its AccessOperation number.
#[pyfunction]
fn access_patterns_wire<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyString>,
    operations: HashMap<String, i32>,
) -> PyResult<Bound<'py, PyBytes>> {
    encode_packed(py, rows, &operations, access_wire::access_patterns)
}

/// ListActorAccess's answer with its datasets only, serialized, from an actor's packed totals
/// (the names are its datasets), as for `access_patterns_wire`.
#[pyfunction]
fn actor_datasets_wire<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyString>,
    operations: HashMap<String, i32>,
) -> PyResult<Bound<'py, PyBytes>> {
    encode_packed(py, rows, &operations, access_wire::actor_datasets)
}

/// `encode` of packed totals, parsed and ordered without the interpreter lock.
fn encode_packed<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyString>,
    operations: &HashMap<String, i32>,
    encode: fn(&[access_wire::Total<'_>]) -> Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let text = rows.to_str()?;
    match py.detach(|| access_wire::encode_packed(text, operations, encode)) {
        Ok(answer) => Ok(PyBytes::new(py, &answer)),
        Err(PackedError::Malformed(message)) => Err(PyValueError::new_err(format!("packed totals: {message}"))),
        Err(PackedError::UnknownOperation(operation)) => {
            Err(PyValueError::new_err(format!("operation {operation:?} has no number")))
        }
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<IntentTally>()?;
    module.add_class::<IntentRows>()?;
    module.add_function(wrap_pyfunction!(access_patterns_wire, module)?)?;
    module.add_function(wrap_pyfunction!(actor_datasets_wire, module)?)?;
    Ok(())
}
