//! The access records' side of the binding: the intents of logged decisions counted by the
//! engine over a flush interval (`IntentTally`, handed over as `IntentRows`), and the
//! GetAccessPatterns / ListActorAccess summaries encoded from the store's totals.

use domicile_engine::access_wire;
use domicile_engine::intents::{IntentTally as CoreTally, Taken};
use domicile_engine::policy::Operation;
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

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
    fn __len__(&self) -> usize {
        self.tally.lock().len()
    }

    /// Decisions `start..stop` of `batch`, asked by `caller`, logged at `at` (µs).
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

/// GetAccessPatterns' answer, serialized, from `totals`: `domicile.access.model.AccessTotal`
/// tuples `(actor, dataset_id, operation, region, total, first_seen_us, last_seen_us)` ordered
/// by actor; `operations` maps each operation to its AccessOperation number.
#[pyfunction]
fn access_patterns_wire<'py>(
    py: Python<'py>,
    totals: &Bound<'py, PyAny>,
    operations: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyBytes>> {
    encode_access_totals(py, totals, 0, operations, access_wire::access_patterns)
}

/// ListActorAccess's answer with its datasets only, serialized, from `totals` (as for
/// `access_patterns_wire`) ordered by dataset.
#[pyfunction]
fn actor_datasets_wire<'py>(
    py: Python<'py>,
    totals: &Bound<'py, PyAny>,
    operations: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyBytes>> {
    encode_access_totals(py, totals, 1, operations, access_wire::actor_datasets)
}

/// `encode` of AccessTotal tuples grouped by their field `name` (0: actor, 1: dataset id),
/// without the GIL.
fn encode_access_totals<'py>(
    py: Python<'py>,
    totals: &Bound<'py, PyAny>,
    name: usize,
    operations: &Bound<'py, PyDict>,
    encode: fn(&[access_wire::Total<'_>]) -> Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let rows = access_rows(totals, name, operations)?;
    let totals = access_totals(&rows)?;
    Ok(PyBytes::new(py, &py.detach(|| encode(&totals))))
}

/// An AccessTotal tuple's fields: the name grouped by (tuple field `name`), the region, the
/// operation's number, count, first and last seen.
type AccessRow<'py> = (Bound<'py, PyString>, Bound<'py, PyString>, i32, i64, i64, i64);

fn access_rows<'py>(
    totals: &Bound<'py, PyAny>,
    name: usize,
    operations: &Bound<'py, PyDict>,
) -> PyResult<Vec<AccessRow<'py>>> {
    let mut rows = Vec::with_capacity(totals.len().unwrap_or(0));
    for total in totals.try_iter()? {
        let total = total?;
        let total = total.cast::<PyTuple>()?;
        let operation = total.get_item(2)?;
        let Some(number) = operations.get_item(&operation)? else {
            return Err(PyValueError::new_err(format!("operation {operation} has no number")));
        };
        rows.push((
            total.get_item(name)?.cast_into::<PyString>()?,
            total.get_item(3)?.cast_into::<PyString>()?,
            number.extract()?,
            total.get_item(4)?.extract()?,
            total.get_item(5)?.extract()?,
            total.get_item(6)?.extract()?,
        ));
    }
    Ok(rows)
}

fn access_totals<'a>(rows: &'a [AccessRow<'_>]) -> PyResult<Vec<access_wire::Total<'a>>> {
    rows.iter()
        .map(|(name, region, operation, count, first, last)| {
            Ok(access_wire::Total {
                name: name.to_str()?,
                operation: *operation,
                region: region.to_str()?,
                count: *count,
                first_seen_us: *first,
                last_seen_us: *last,
            })
        })
        .collect()
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<IntentTally>()?;
    module.add_class::<IntentRows>()?;
    module.add_function(wrap_pyfunction!(access_patterns_wire, module)?)?;
    module.add_function(wrap_pyfunction!(actor_datasets_wire, module)?)?;
    Ok(())
}
