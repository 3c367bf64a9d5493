//! The intents of logged decisions (a caller asked whether it may store or process a dataset
//! in a region), counted for the access records over a whole flush interval.
//!
//! The decision log's writer adds each written batch's decisions; the access records take the
//! counts once per flush, as one aggregate per (caller, dataset, operation, region, UTC day)
//! with its count and first and last time. Names are interned for the interval and the
//! aggregates kept in one table keyed by numbers: a decision costs one probe of it. A batch's
//! datasets come with their nodes in the engine's index (`Batch::nodes`), which lead to their
//! interned names without reading the names again.

use std::ops::Range;

use hashbrown::HashMap;

use crate::engine::{Batch, NO_NODE};
use crate::index::NodeId;
use crate::policy::Operation;

/// Microseconds in a UTC day: aggregates are kept per day.
pub const DAY_US: i64 = 86_400_000_000;

/// What tells aggregates apart: interned dataset, caller and region, the operation and the
/// day's start (µs since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    dataset: u32,
    caller: u32,
    region: u32,
    operation: Operation,
    day: i64,
}

/// An aggregate's count with its first and last time (µs).
#[derive(Clone, Copy, Debug)]
struct Counted {
    count: u64,
    first: i64,
    last: i64,
}

/// The counts of one interval (see the module doc).
#[derive(Default)]
pub struct IntentTally {
    aggregates: HashMap<Key, Counted>,
    names: HashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
    /// For batches of engine `engine`: each node's interned dataset id plus one (0: not yet).
    nodes: Vec<u32>,
    engine: Option<u64>,
}

/// An aggregate as taken: indexes into `Taken::strings`, the operation, the day's start and
/// the count with its first and last time (µs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub caller: u32,
    pub dataset: u32,
    pub region: u32,
    pub operation: Operation,
    pub day: i64,
    pub count: u64,
    pub first: i64,
    pub last: i64,
}

/// An interval's aggregates, and the strings they name.
#[derive(Default)]
pub struct Taken {
    pub strings: Vec<Box<str>>,
    pub rows: Vec<Row>,
}

impl Taken {
    pub fn name(&self, index: u32) -> &str {
        &self.strings[index as usize]
    }
}

impl IntentTally {
    /// Aggregates counted since the last `take`.
    pub fn len(&self) -> usize {
        self.aggregates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aggregates.is_empty()
    }

    /// `n` decisions of `caller` on (`dataset`, `operation`, `region`) at `at` (µs).
    pub fn add(&mut self, caller: &str, dataset: &str, operation: Operation, region: &str, at: i64, n: u64) {
        let (caller, dataset, region) = (self.intern(caller), self.intern(dataset), self.intern(region));
        self.count(Key { dataset, caller, region, operation, day: at.div_euclid(DAY_US) * DAY_US }, n, at);
    }

    /// Decisions `range` of `batch`, all asked by `caller`, at `at` (µs).
    pub fn add_batch(&mut self, caller: &str, batch: &Batch, range: Range<usize>, at: i64) {
        let caller = self.intern(caller);
        let day = at.div_euclid(DAY_US) * DAY_US;
        let (engine, nodes) = batch.nodes();
        if self.engine != Some(engine) {
            self.nodes.clear();
            self.engine = Some(engine);
        }
        // A batch names its regions by their index in the policy's registry: each interned once.
        let mut regions: Vec<(u32, u32)> = Vec::new();
        for (index, question) in batch.questions.iter().enumerate().skip(range.start).take(range.len()) {
            let region = match regions.iter().find(|(registry, _)| *registry == question.region) {
                Some(&(_, index)) => index,
                None => {
                    let index = self.intern(batch.region_name(&question));
                    regions.push((question.region, index));
                    index
                }
            };
            let dataset = match nodes.get(index) {
                Some(&node) if node != NO_NODE => self.node_name(node, question.dataset_id),
                _ => self.intern(question.dataset_id),
            };
            self.count(Key { dataset, caller, region, operation: question.operation, day }, 1, at);
        }
    }

    /// Everything counted so far; the tally starts again empty (strings included).
    pub fn take(&mut self) -> Taken {
        let aggregates = std::mem::take(&mut self.aggregates);
        self.names = HashMap::new();
        self.nodes = Vec::new();
        let rows = aggregates
            .into_iter()
            .map(|(key, counted)| Row {
                caller: key.caller,
                dataset: key.dataset,
                region: key.region,
                operation: key.operation,
                day: key.day,
                count: counted.count,
                first: counted.first,
                last: counted.last,
            })
            .collect();
        Taken { strings: std::mem::take(&mut self.strings), rows }
    }

    /// The interned id of the dataset of `node` (named `name`) in the current engine's index.
    fn node_name(&mut self, node: NodeId, name: &str) -> u32 {
        let slot = node as usize;
        if let Some(&known) = self.nodes.get(slot).filter(|&&known| known != 0) {
            return known - 1;
        }
        let id = self.intern(name);
        if self.nodes.len() <= slot {
            self.nodes.resize(slot + 1, 0);
        }
        self.nodes[slot] = id + 1;
        id
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.names.get(name) {
            return index;
        }
        let index = u32::try_from(self.strings.len()).expect("fewer than 2^32 names in an interval");
        self.strings.push(name.into());
        self.names.insert(name.into(), index);
        index
    }

    fn count(&mut self, key: Key, n: u64, at: i64) {
        self.aggregates
            .entry(key)
            .and_modify(|counted| {
                counted.count += n;
                counted.first = counted.first.min(at);
                counted.last = counted.last.max(at);
            })
            .or_insert(Counted { count: n, first: at, last: at });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with its names: (caller, dataset, operation, region, day, count, first, last).
    type Named<'a> = (&'a str, &'a str, Operation, &'a str, i64, u64, i64, i64);

    fn rows(taken: &Taken) -> Vec<Named<'_>> {
        let mut rows: Vec<_> = taken
            .rows
            .iter()
            .map(|r| {
                (
                    taken.name(r.caller),
                    taken.name(r.dataset),
                    r.operation,
                    taken.name(r.region),
                    r.day,
                    r.count,
                    r.first,
                    r.last,
                )
            })
            .collect();
        rows.sort_by_key(|r| (r.0, r.1, r.2 as u8, r.3, r.4));
        rows
    }

    #[test]
    fn counts_per_caller_dataset_operation_region_and_day_with_first_and_last() {
        let mut tally = IntentTally::default();
        let noon = 10 * DAY_US + DAY_US / 2;
        tally.add("alice", "s3://a", Operation::Store, "eu", noon, 2);
        tally.add("alice", "s3://a", Operation::Store, "eu", noon - 5, 1);
        tally.add("alice", "s3://a", Operation::Process, "eu", noon, 1);
        tally.add("bob", "s3://a", Operation::Store, "eu", noon + DAY_US, 4);
        assert_eq!(tally.len(), 3);
        let taken = tally.take();
        assert_eq!(
            rows(&taken),
            vec![
                ("alice", "s3://a", Operation::Store, "eu", 10 * DAY_US, 3, noon - 5, noon),
                ("alice", "s3://a", Operation::Process, "eu", 10 * DAY_US, 1, noon, noon),
                ("bob", "s3://a", Operation::Store, "eu", 11 * DAY_US, 4, noon + DAY_US, noon + DAY_US),
            ]
        );
        assert!(tally.is_empty());
        assert!(tally.take().rows.is_empty() && tally.take().strings.is_empty());
    }

    #[test]
    fn a_dataset_with_many_aggregates_counts_each_once() {
        let mut tally = IntentTally::default();
        for round in 0..3 {
            for caller in 0..40 {
                tally.add(&format!("c{caller}"), "s3://shared", Operation::Process, "eu", 100 + round, 1);
            }
        }
        assert_eq!(tally.len(), 40);
        let taken = tally.take();
        assert_eq!(taken.rows.len(), 40);
        assert!(taken.rows.iter().all(|r| (r.count, r.first, r.last) == (3, 100, 102)));
    }

    #[test]
    fn a_time_before_the_epoch_falls_in_its_own_day() {
        let mut tally = IntentTally::default();
        tally.add("c", "d", Operation::Store, "r", -1, 1);
        assert_eq!(tally.take().rows[0].day, -DAY_US);
    }
}
