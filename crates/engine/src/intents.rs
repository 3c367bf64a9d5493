//! The intents of logged decisions (a caller asked whether it may store or process a dataset
//! in a region), counted for the access records over a whole flush interval.
//!
//! The decision log's writer adds each written batch's decisions; the access records take the
//! counts once per flush, as one aggregate per (caller, dataset, operation, region, UTC day)
//! with its count and first and last time. Names are interned for the interval, and a batch's
//! datasets come with their nodes in the engine's index (`Batch::nodes`), which lead to their
//! interned names without reading the names again.
//!
//! A decision is appended to a list, not looked up in a table: a table of an interval's
//! aggregates (tens of thousands) is out of cache by the time the next batch comes, so each
//! lookup waited for memory. The list is sorted and merged into the aggregates, kept sorted by
//! key, once it holds as many decisions as there are aggregates (or 65,536): both are read in
//! order, and each merge costs the decisions since the last one a constant share. A listed
//! decision is one 16-byte number, its aggregate's key and the number of the call that added
//! it (the calls' times and counts are kept once per call); a key names the caller, region and
//! day by a number of the interval (their context). So the list is small, and sorted by a few
//! radix passes over the bits its keys use rather than a comparison sort.

use std::ops::Range;

use hashbrown::HashMap;

use crate::engine::{Batch, NO_NODE};
use crate::index::NodeId;
use crate::policy::Operation;

/// Microseconds in a UTC day: aggregates are kept per day.
pub const DAY_US: i64 = 86_400_000_000;

/// Decisions kept unmerged at least (1 MiB).
const MERGED_AFTER: usize = 65_536;

/// An aggregate's key, packed to sort as one number: the interned dataset (32 bits), the
/// context -- (caller, region, day) numbered for the interval (31 bits) -- and the operation.
type Key = u64;

fn key(dataset: u32, context: u32, operation: Operation) -> Key {
    let operation = match operation {
        Operation::Store => 0,
        Operation::Process => 1,
    };
    (dataset as u64) << 32 | (context as u64) << 1 | operation
}

/// A listed decision: its aggregate's key, then the index of its call in `IntentTally::calls`.
fn listed(key: Key, call: u32) -> u128 {
    (key as u128) << 64 | call as u128
}

/// Bits of a radix sort's digit: its 2,048 counters stay in the first-level cache.
const DIGIT_BITS: u32 = 11;

/// Bits that number `n` things (0 to n - 1).
fn bits(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// Listed decisions in key order (`scratch`: working space): a stable radix sort, a digit at a
/// time from the least significant, of the key's bits in use -- the context and operation
/// (`low_bits`), then the dataset (`dataset_bits`) -- a few passes over the list where a
/// comparison sort makes about sixteen.
fn sort_listed(listed: &mut Vec<u128>, scratch: &mut Vec<u128>, low_bits: u32, dataset_bits: u32) {
    scratch.clear();
    scratch.resize(listed.len(), 0);
    for (field, field_bits) in [(64, low_bits), (96, dataset_bits)] {
        let mut done = 0;
        while done < field_bits {
            let (shift, width) = (field + done, DIGIT_BITS.min(field_bits - done));
            done += width;
            let mask = (1usize << width) - 1;
            let mut starts = [0usize; 1 << DIGIT_BITS];
            for &item in listed.iter() {
                starts[(item >> shift) as usize & mask] += 1;
            }
            let mut total = 0;
            for start in &mut starts[..=mask] {
                (*start, total) = (total, total + *start);
            }
            for &item in listed.iter() {
                let digit = (item >> shift) as usize & mask;
                scratch[starts[digit]] = item;
                starts[digit] += 1;
            }
            std::mem::swap(listed, scratch);
        }
    }
}

/// Counted decisions: `n` at `at` (µs), or an aggregate's count with its first and last time.
#[derive(Clone, Copy, Debug)]
struct Counted {
    count: u64,
    first: i64,
    last: i64,
}

impl Counted {
    fn add(&mut self, other: Counted) {
        self.count += other.count;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// The counts of one interval (see the module doc).
#[derive(Default)]
pub struct IntentTally {
    /// Aggregates, sorted by key, each key once.
    merged: Vec<(Key, Counted)>,
    /// Decisions since the last merge, in arrival order (see `listed`).
    pending: Vec<u128>,
    /// The count and time of each call that listed decisions since the last merge.
    calls: Vec<Counted>,
    /// Where a merge writes (its buffer kept: fresh memory costs more than the merge).
    spare: Vec<(Key, Counted)>,
    /// Where the sort before a merge writes (kept likewise).
    sorted: Vec<u128>,
    /// (caller, region, day) by context number, and the numbers.
    contexts: Vec<(u32, u32, i64)>,
    context_numbers: HashMap<(u32, u32, i64), u32>,
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
    /// Aggregates counted since the last `take` (decisions not merged yet are merged first).
    pub fn len(&mut self) -> usize {
        self.merge();
        self.merged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty() && self.pending.is_empty()
    }

    /// `n` decisions of `caller` on (`dataset`, `operation`, `region`) at `at` (µs).
    pub fn add(&mut self, caller: &str, dataset: &str, operation: Operation, region: &str, at: i64, n: u64) {
        let (caller, dataset, region) = (self.intern(caller), self.intern(dataset), self.intern(region));
        let context = self.context(caller, region, at.div_euclid(DAY_US));
        let call = self.call(Counted { count: n, first: at, last: at });
        self.pending.push(listed(key(dataset, context, operation), call));
        self.merge_when_due();
    }

    /// Decisions `range` of `batch`, all asked by `caller`, at `at` (µs).
    pub fn add_batch(&mut self, caller: &str, batch: &Batch, range: Range<usize>, at: i64) {
        let caller = self.intern(caller);
        let day = at.div_euclid(DAY_US);
        let (engine, nodes) = batch.nodes();
        if self.engine != Some(engine) {
            self.nodes.clear();
            self.engine = Some(engine);
        }
        let call = self.call(Counted { count: 1, first: at, last: at });
        self.pending.reserve(range.len());
        // A batch names its regions by their index in the policy's registry: each one's
        // context found once.
        let mut regions: Vec<(u32, u32)> = Vec::new();
        for (index, question) in batch.questions.iter().enumerate().skip(range.start).take(range.len()) {
            let context = match regions.iter().find(|(registry, _)| *registry == question.region) {
                Some(&(_, context)) => context,
                None => {
                    let region = self.intern(batch.region_name(&question));
                    let context = self.context(caller, region, day);
                    regions.push((question.region, context));
                    context
                }
            };
            let dataset = match nodes.get(index) {
                Some(&node) if node != NO_NODE => self.node_name(node, question.dataset_id),
                _ => self.intern(question.dataset_id),
            };
            self.pending.push(listed(key(dataset, context, question.operation), call));
        }
        self.merge_when_due();
    }

    /// Everything counted so far; the tally starts again empty (strings included).
    pub fn take(&mut self) -> Taken {
        self.merge();
        let rows = self
            .merged
            .iter()
            .map(|&(key, counted)| {
                let (caller, region, day) = self.contexts[(key as u32 >> 1) as usize];
                Row {
                    dataset: (key >> 32) as u32,
                    caller,
                    region,
                    operation: if key & 1 == 0 { Operation::Store } else { Operation::Process },
                    day: day * DAY_US,
                    count: counted.count,
                    first: counted.first,
                    last: counted.last,
                }
            })
            .collect();
        let taken = Taken { strings: std::mem::take(&mut self.strings), rows };
        *self = IntentTally::default();
        taken
    }

    fn merge_when_due(&mut self) {
        if self.pending.len() >= MERGED_AFTER.max(self.merged.len()) {
            self.merge();
        }
    }

    /// The pending decisions sorted, and merged with the aggregates in one ordered pass.
    fn merge(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut sorted = std::mem::take(&mut self.sorted);
        sort_listed(&mut self.pending, &mut sorted, bits(self.contexts.len() * 2), bits(self.strings.len()));
        self.sorted = sorted;
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        out.reserve(self.merged.len() + self.pending.len());
        let mut merged = self.merged.iter().copied().peekable();
        for &listed in &self.pending {
            let (key, counted) = ((listed >> 64) as Key, self.calls[listed as u32 as usize]);
            while let Some(older) = merged.next_if(|&(existing, _)| existing < key) {
                out.push(older);
            }
            match out.last_mut() {
                Some((last, aggregate)) if *last == key => aggregate.add(counted),
                _ => {
                    let mut aggregate = counted;
                    if let Some((_, existing)) = merged.next_if(|&(existing, _)| existing == key) {
                        aggregate.add(existing);
                    }
                    out.push((key, aggregate));
                }
            }
        }
        out.extend(merged);
        self.pending.clear();
        self.calls.clear();
        self.spare = std::mem::replace(&mut self.merged, out);
    }

    /// The number of call `counted` (its decisions listed with it).
    fn call(&mut self, counted: Counted) -> u32 {
        self.calls.push(counted);
        u32::try_from(self.calls.len() - 1).expect("fewer than 2^32 calls between merges")
    }

    /// The context number of (`caller`, `region`, `day`).
    fn context(&mut self, caller: u32, region: u32, day: i64) -> u32 {
        let contexts = &mut self.contexts;
        *self.context_numbers.entry((caller, region, day)).or_insert_with(|| {
            contexts.push((caller, region, day));
            u32::try_from(contexts.len() - 1)
                .ok()
                .filter(|&n| n < 1 << 31)
                .expect("fewer than 2^31 contexts in an interval")
        })
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
    fn the_radix_sort_orders_by_key_over_several_digits_of_each_field() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // 13 bits of context and operation and 17 of dataset: two digits each.
        let mut items: Vec<u128> = (0..50_000)
            .map(|call| {
                let (dataset, low) = ((next() % (1 << 17)) as u32, (next() % (1 << 13)) as u32);
                listed((dataset as u64) << 32 | low as u64, call)
            })
            .collect();
        let mut want: Vec<Key> = items.iter().map(|&item| (item >> 64) as Key).collect();
        want.sort_unstable();
        sort_listed(&mut items, &mut Vec::new(), 13, 17);
        assert_eq!(items.iter().map(|&item| (item >> 64) as Key).collect::<Vec<_>>(), want);
        assert_eq!((bits(0), bits(1), bits(2), bits(2048), bits(2049)), (0, 0, 1, 11, 12));
    }

    #[test]
    fn a_time_before_the_epoch_falls_in_its_own_day() {
        let mut tally = IntentTally::default();
        tally.add("c", "d", Operation::Store, "r", -1, 1);
        assert_eq!(tally.take().rows[0].day, -DAY_US);
    }

    #[test]
    fn merges_keep_every_aggregate_as_counting_one_by_one_would() {
        let mut tally = IntentTally::default();
        type Counts = std::collections::HashMap<(String, String, u8, String, i64), (u64, i64, i64)>;
        let mut model = Counts::new();
        let base = 20_000 * DAY_US;
        for i in 0..200_000i64 {
            let (caller, dataset) = (format!("c{}", i % 7), format!("d{}", (i * 7919) % 30_011));
            let operation = if i % 2 == 0 { Operation::Store } else { Operation::Process };
            let region = format!("r{}", i % 3);
            let at = base + (i % 5) * (DAY_US / 2) - i;
            let n = 1 + (i % 3) as u64;
            tally.add(&caller, &dataset, operation, &region, at, n);
            let entry = model
                .entry((caller, dataset, operation as u8, region, at.div_euclid(DAY_US) * DAY_US))
                .or_insert((0, at, at));
            *entry = (entry.0 + n, entry.1.min(at), entry.2.max(at));
            if i == 100_000 {
                assert_eq!(tally.len(), model.len());
            }
        }
        assert_eq!(tally.len(), model.len());
        let taken = tally.take();
        let mut got = rows(&taken);
        let mut want: Vec<Named<'_>> = model
            .iter()
            .map(|((caller, dataset, operation, region, day), &(count, first, last))| {
                let operation =
                    if *operation == Operation::Store as u8 { Operation::Store } else { Operation::Process };
                (caller.as_str(), dataset.as_str(), operation, region.as_str(), *day, count, first, last)
            })
            .collect();
        want.sort_by_key(|r| (r.0, r.1, r.2 as u8, r.3, r.4));
        got.sort_by_key(|r| (r.0, r.1, r.2 as u8, r.3, r.4));
        assert_eq!(got, want);
    }
}
