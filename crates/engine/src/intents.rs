//! The intents of logged decisions (a caller asked whether it may store or process a dataset
//! in a region), counted for the access records over a whole flush interval.
//!
//! The decision log's writer adds each written batch's decisions; the access records take the
//! counts once per flush, as one aggregate per (caller, dataset, operation, region, UTC day)
//! with its count and first and last time. Strings are interned for the interval, so a
//! decision costs a hash probe and no allocation once its key was seen.

use std::ops::Range;

use hashbrown::HashMap;

use crate::engine::Batch;
use crate::policy::Operation;

/// Microseconds in a UTC day: aggregates are kept per day.
pub const DAY_US: i64 = 86_400_000_000;

/// One aggregate's identity: interned caller, dataset and region, the operation, and the
/// day's start (µs since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    caller: u32,
    dataset: u32,
    region: u32,
    operation: Operation,
    day: i64,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    count: u64,
    first: i64,
    last: i64,
}

/// The counts of one interval (see the module doc).
#[derive(Default)]
pub struct IntentTally {
    names: HashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
    counts: HashMap<Key, Seen>,
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
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// `n` decisions of `caller` on (`dataset`, `operation`, `region`) at `at` (µs).
    pub fn add(&mut self, caller: &str, dataset: &str, operation: Operation, region: &str, at: i64, n: u64) {
        let key = Key {
            caller: self.intern(caller),
            dataset: self.intern(dataset),
            region: self.intern(region),
            operation,
            day: at.div_euclid(DAY_US) * DAY_US,
        };
        self.count(key, n, at);
    }

    /// Decisions `range` of `batch`, all asked by `caller`, at `at` (µs).
    pub fn add_batch(&mut self, caller: &str, batch: &Batch, range: Range<usize>, at: i64) {
        let caller = self.intern(caller);
        let day = at.div_euclid(DAY_US) * DAY_US;
        for question in batch.questions.iter().skip(range.start).take(range.len()) {
            let key = Key {
                caller,
                dataset: self.intern(question.dataset_id),
                region: self.intern(batch.region_name(&question)),
                operation: question.operation,
                day,
            };
            self.count(key, 1, at);
        }
    }

    /// Everything counted so far; the tally starts again empty (strings included).
    pub fn take(&mut self) -> Taken {
        let counts = std::mem::take(&mut self.counts);
        self.names = HashMap::new();
        let rows = counts
            .into_iter()
            .map(|(key, seen)| Row {
                caller: key.caller,
                dataset: key.dataset,
                region: key.region,
                operation: key.operation,
                day: key.day,
                count: seen.count,
                first: seen.first,
                last: seen.last,
            })
            .collect();
        Taken { strings: std::mem::take(&mut self.strings), rows }
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
        self.counts
            .entry(key)
            .and_modify(|seen| {
                seen.count += n;
                seen.first = seen.first.min(at);
                seen.last = seen.last.max(at);
            })
            .or_insert(Seen { count: n, first: at, last: at });
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
    fn a_time_before_the_epoch_falls_in_its_own_day() {
        let mut tally = IntentTally::default();
        tally.add("c", "d", Operation::Store, "r", -1, 1);
        assert_eq!(tally.take().rows[0].day, -DAY_US);
    }
}
