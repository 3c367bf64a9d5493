//! The intents of logged decisions (a caller asked whether it may store or process a dataset
//! in a region), counted for the access records over a whole flush interval.
//!
//! The decision log's writer adds each written batch's decisions; the access records take the
//! counts once per flush, as one aggregate per (caller, dataset, operation, region, UTC day)
//! with its count and first and last time. Aggregates are kept per dataset (most datasets have
//! a handful: a caller's operations and regions of the day; one with more gets an index of
//! its own), callers and regions interned for the interval: a decision costs one hash probe
//! and a short scan, and no allocation once its dataset was seen.

use std::ops::Range;

use hashbrown::HashMap;

use crate::engine::Batch;
use crate::policy::Operation;

/// Microseconds in a UTC day: aggregates are kept per day.
pub const DAY_US: i64 = 86_400_000_000;

/// One aggregate of a dataset: interned caller and region, the operation, the day's start (µs
/// since the epoch), and the count with its first and last time (µs).
#[derive(Clone, Copy, Debug)]
struct Aggregate {
    caller: u32,
    region: u32,
    operation: Operation,
    day: i64,
    count: u64,
    first: i64,
    last: i64,
}

/// (caller, region, operation, day) of an aggregate: what tells a dataset's aggregates apart.
type Within = (u32, u32, Operation, i64);

/// A dataset's aggregates, scanned while they are few and indexed beyond `SCANNED`.
#[derive(Default)]
struct DatasetAggregates {
    list: Vec<Aggregate>,
    index: Option<HashMap<Within, usize>>,
}

const SCANNED: usize = 16;

impl DatasetAggregates {
    fn find(&mut self, within: Within) -> Option<&mut Aggregate> {
        let position = match &self.index {
            Some(index) => index.get(&within).copied(),
            None => self.list.iter().position(|a| (a.caller, a.region, a.operation, a.day) == within),
        };
        position.map(|i| &mut self.list[i])
    }

    fn push(&mut self, aggregate: Aggregate) {
        let within = (aggregate.caller, aggregate.region, aggregate.operation, aggregate.day);
        self.list.push(aggregate);
        match &mut self.index {
            Some(index) => {
                index.insert(within, self.list.len() - 1);
            }
            None if self.list.len() > SCANNED => {
                let index = self.list.iter().enumerate().map(|(i, a)| ((a.caller, a.region, a.operation, a.day), i));
                self.index = Some(index.collect());
            }
            None => {}
        }
    }
}

/// The counts of one interval (see the module doc).
#[derive(Default)]
pub struct IntentTally {
    datasets: HashMap<Box<str>, DatasetAggregates>,
    names: HashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
    len: usize,
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
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` decisions of `caller` on (`dataset`, `operation`, `region`) at `at` (µs).
    pub fn add(&mut self, caller: &str, dataset: &str, operation: Operation, region: &str, at: i64, n: u64) {
        let (caller, region) = (self.intern(caller), self.intern(region));
        self.count(dataset, caller, region, operation, at.div_euclid(DAY_US) * DAY_US, n, at);
    }

    /// Decisions `range` of `batch`, all asked by `caller`, at `at` (µs).
    pub fn add_batch(&mut self, caller: &str, batch: &Batch, range: Range<usize>, at: i64) {
        let caller = self.intern(caller);
        let day = at.div_euclid(DAY_US) * DAY_US;
        // A batch names its regions by their index in the policy's registry: each interned once.
        let mut regions: Vec<(u32, u32)> = Vec::new();
        for question in batch.questions.iter().skip(range.start).take(range.len()) {
            let region = match regions.iter().find(|(registry, _)| *registry == question.region) {
                Some(&(_, index)) => index,
                None => {
                    let index = self.intern(batch.region_name(&question));
                    regions.push((question.region, index));
                    index
                }
            };
            self.count(question.dataset_id, caller, region, question.operation, day, 1, at);
        }
    }

    /// Everything counted so far; the tally starts again empty (strings included).
    pub fn take(&mut self) -> Taken {
        let datasets = std::mem::take(&mut self.datasets);
        self.names = HashMap::new();
        let mut strings = std::mem::take(&mut self.strings);
        let mut rows = Vec::with_capacity(std::mem::take(&mut self.len));
        for (dataset_id, aggregates) in datasets {
            let dataset = u32::try_from(strings.len()).expect("fewer than 2^32 names in an interval");
            strings.push(dataset_id);
            rows.extend(aggregates.list.into_iter().map(|a| Row {
                caller: a.caller,
                dataset,
                region: a.region,
                operation: a.operation,
                day: a.day,
                count: a.count,
                first: a.first,
                last: a.last,
            }));
        }
        Taken { strings, rows }
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

    #[allow(clippy::too_many_arguments)]
    fn count(&mut self, dataset: &str, caller: u32, region: u32, operation: Operation, day: i64, n: u64, at: i64) {
        let aggregates = match self.datasets.get_mut(dataset) {
            Some(aggregates) => aggregates,
            None => self.datasets.entry(dataset.into()).or_default(),
        };
        match aggregates.find((caller, region, operation, day)) {
            Some(aggregate) => {
                aggregate.count += n;
                aggregate.first = aggregate.first.min(at);
                aggregate.last = aggregate.last.max(at);
            }
            None => {
                aggregates.push(Aggregate { caller, region, operation, day, count: n, first: at, last: at });
                self.len += 1;
            }
        }
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
