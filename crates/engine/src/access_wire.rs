//! The access records' summaries in the protobuf wire format: GetAccessPatterns' actors and
//! ListActorAccess's datasets (protos/domicile/v1/access.proto). A busy dataset has ten
//! thousand actors; built field by field in Python, its answer costs more than reading it from
//! the store.
//!
//! Both answers list groups (ActorAccess, DatasetAccess) of the same shape as their field 1,
//! and the groups are written straight from the totals with prost's encoding primitives: no
//! message, string or list made per group or summary. The tests hold the bytes to what the
//! generated types encode.

use std::borrow::Cow;
use std::collections::HashMap;

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use serde::Deserialize;

use crate::wire::timestamp;

/// An actor's operation on a dataset in a region, summed over a read's range. `name` is what
/// the answer groups by: the actor for GetAccessPatterns, the dataset for ListActorAccess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Total<'a> {
    pub name: &'a str,
    /// The AccessOperation enum's number.
    pub operation: i32,
    pub region: &'a str,
    pub count: i64,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
}

/// A total as a store packs it (`[name, operation value, region, count, first_seen_us,
/// last_seen_us]`, see domicile.access.model.AccessTotals), its strings borrowed from the text
/// where they need no unescaping.
#[derive(Deserialize)]
struct PackedTotal<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
    i64,
    i64,
);

/// Why packed totals cannot be encoded.
#[derive(Debug, PartialEq, Eq)]
pub enum PackedError {
    /// Not a JSON array of totals.
    Malformed(String),
    /// An operation value without a number in `operations`.
    UnknownOperation(String),
}

/// The encoding of packed totals (`access_patterns` or `actor_datasets`), ordered by name,
/// operation value and region as the answers are; `operations` gives each operation value its
/// AccessOperation number.
pub fn encode_packed(
    text: &str,
    operations: &HashMap<String, i32>,
    encode: fn(&[Total<'_>]) -> Vec<u8>,
) -> Result<Vec<u8>, PackedError> {
    let mut packed: Vec<PackedTotal<'_>> =
        serde_json::from_str(text).map_err(|error| PackedError::Malformed(error.to_string()))?;
    // A store reading a table by its key hands the totals over in order already.
    if !packed.is_sorted_by(|a, b| (&a.0, &a.1, &a.2) <= (&b.0, &b.1, &b.2)) {
        packed.sort_unstable_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    }
    let mut last: Option<(&str, i32)> = None;
    let totals = packed
        .iter()
        .map(|PackedTotal(name, operation, region, count, first, last_seen)| {
            let number = match last {
                Some((value, number)) if value == operation.as_ref() => number,
                _ => match operations.get(operation.as_ref()) {
                    Some(&number) => {
                        last = Some((operation.as_ref(), number));
                        number
                    }
                    None => return Err(PackedError::UnknownOperation(operation.to_string())),
                },
            };
            Ok(Total {
                name,
                operation: number,
                region,
                count: *count,
                first_seen_us: *first,
                last_seen_us: *last_seen,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(encode(&totals))
}

/// A serialized GetAccessPatternsResponse: one ActorAccess per actor, in the order of `totals`
/// (by actor).
pub fn access_patterns(totals: &[Total<'_>]) -> Vec<u8> {
    grouped(totals)
}

/// A serialized ListActorAccessResponse holding only its datasets: one DatasetAccess per
/// dataset, in the order of `totals` (by dataset). Its runs are the caller's to add.
pub fn actor_datasets(totals: &[Total<'_>]) -> Vec<u8> {
    grouped(totals)
}

/// Field 1 of the answer, once per run of consecutive totals with one name: the name (1), a
/// summary per total (2), their sum (3), earliest first (4) and latest last seen (5).
fn grouped(totals: &[Total<'_>]) -> Vec<u8> {
    let groups: Vec<Group<'_, '_>> = totals
        .chunk_by(|a, b| a.name == b.name)
        .map(|members| {
            let count = members.iter().map(|t| t.count).sum();
            let first = members.iter().map(|t| t.first_seen_us).min().unwrap_or_default();
            let last = members.iter().map(|t| t.last_seen_us).max().unwrap_or_default();
            let mut group = Group { members, count, first, last, len: 0 };
            group.len = group.encoded_len();
            group
        })
        .collect();
    let room = groups.iter().map(|g| key_len(1) + encoded_len_varint(g.len as u64) + g.len).sum();
    let mut out = Vec::with_capacity(room);
    for group in &groups {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(group.len as u64, &mut out);
        group.encode(&mut out);
    }
    out
}

/// One group of an answer (see `grouped`) and its encoded length.
struct Group<'t, 'a> {
    members: &'t [Total<'a>],
    count: i64,
    first: i64,
    last: i64,
    len: usize,
}

impl Group<'_, '_> {
    fn encoded_len(&self) -> usize {
        let summaries: usize = self.members.iter().map(|t| message_len(summary_len(t))).sum();
        string_len(self.members[0].name)
            + summaries
            + int64_len(self.count)
            + message_len(timestamp_len(self.first))
            + message_len(timestamp_len(self.last))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        string(1, self.members[0].name, out);
        for total in self.members {
            encode_key(2, WireType::LengthDelimited, out);
            encode_varint(summary_len(total) as u64, out);
            int64(1, total.operation.into(), out);
            string(2, total.region, out);
            int64(3, total.count, out);
            timestamp_field(4, total.first_seen_us, out);
            timestamp_field(5, total.last_seen_us, out);
        }
        int64(3, self.count, out);
        timestamp_field(4, self.first, out);
        timestamp_field(5, self.last, out);
    }
}

/// An AccessSummary's length: operation (1), region (2), count (3), first (4), last seen (5).
fn summary_len(total: &Total<'_>) -> usize {
    int64_len(total.operation.into())
        + string_len(total.region)
        + int64_len(total.count)
        + message_len(timestamp_len(total.first_seen_us))
        + message_len(timestamp_len(total.last_seen_us))
}

/// A present message field of `len` bytes, its key (fields below 16) and length included.
fn message_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A string field (fields below 16), absent when empty.
fn string_len(value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        message_len(value.len())
    }
}

fn string(field: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(value.len() as u64, out);
        out.extend_from_slice(value.as_bytes());
    }
}

/// An int64 (or enum, sign-extended) field, absent when zero.
fn int64_len(value: i64) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value as u64)
    }
}

fn int64(field: u32, value: i64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(field, WireType::Varint, out);
        encode_varint(value as u64, out);
    }
}

/// A google.protobuf.Timestamp's length: seconds (1) and nanos (2), each absent when zero.
fn timestamp_len(micros: i64) -> usize {
    let time = timestamp(micros);
    int64_len(time.seconds) + int64_len(time.nanos.into())
}

fn timestamp_field(field: u32, micros: i64, out: &mut Vec<u8>) {
    let time = timestamp(micros);
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(timestamp_len(micros) as u64, out);
    int64(1, time.seconds, out);
    int64(2, time.nanos.into(), out);
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::wire::proto::{
        AccessSummary, ActorAccess, DatasetAccess, GetAccessPatternsResponse, ListActorAccessResponse,
    };

    fn total(name: &str, operation: i32, count: i64, first: i64, last: i64) -> Total<'_> {
        Total { name, operation, region: "aws:eu-west-1", count, first_seen_us: first, last_seen_us: last }
    }

    #[test]
    fn one_actor_per_run_of_names_with_sums_and_extremes() {
        let totals = [
            total("a", 1, 2, 5_000_000, 9_000_000),
            total("a", 2, 3, 3_000_000, 4_000_000),
            total("b", 1, 7, -1, 1_500_001),
        ];
        let answer = GetAccessPatternsResponse::decode(&access_patterns(&totals)[..]).unwrap();
        assert_eq!(answer.actors.len(), 2);
        let a = &answer.actors[0];
        assert_eq!((a.actor.as_str(), a.total_count, a.accesses.len()), ("a", 5, 2));
        assert_eq!(a.first_seen, Some(timestamp(3_000_000)));
        assert_eq!(a.last_seen, Some(timestamp(9_000_000)));
        assert_eq!(a.accesses[1].operation, 2);
        assert_eq!(a.accesses[1].count, 3);
        let b = &answer.actors[1];
        // Before the epoch: seconds round down, nanos stay positive.
        assert_eq!(b.first_seen, Some(prost_types::Timestamp { seconds: -1, nanos: 999_999_000 }));
        assert_eq!(b.last_seen, Some(prost_types::Timestamp { seconds: 1, nanos: 500_001_000 }));
    }

    #[test]
    fn packed_totals_are_ordered_then_encoded() {
        let operations: HashMap<String, i32> = [("read".to_owned(), 1), ("write".to_owned(), 2)].into();
        let text = r#"[["b", "read", "aws:eu-west-1", 7, -1, 1500001],
                       ["a", "write", "aws:eu-west-1", 3, 3000000, 4000000],
                       ["a", "read", "aws:eu-west-1", 2, 5000000, 9000000]]"#;
        let packed = encode_packed(text, &operations, access_patterns).unwrap();
        let totals = [
            total("a", 1, 2, 5_000_000, 9_000_000),
            total("a", 2, 3, 3_000_000, 4_000_000),
            total("b", 1, 7, -1, 1_500_001),
        ];
        assert_eq!(packed, access_patterns(&totals));
        let escaped = r#"[["j\u00f6b \"x\"", "read", "r", 1, 0, 0]]"#;
        let answer =
            GetAccessPatternsResponse::decode(&encode_packed(escaped, &operations, access_patterns).unwrap()[..]);
        assert_eq!(answer.unwrap().actors[0].actor, "jöb \"x\"");
        assert_eq!(encode_packed("[]", &operations, access_patterns), Ok(Vec::new()));
        assert_eq!(
            encode_packed(r#"[["a", "peek", "r", 1, 0, 0]]"#, &operations, access_patterns),
            Err(PackedError::UnknownOperation("peek".to_owned()))
        );
        assert!(matches!(encode_packed("[[1]]", &operations, access_patterns), Err(PackedError::Malformed(_))));
    }

    #[test]
    fn datasets_group_the_same_way_and_nothing_is_empty() {
        let totals = [total("s3://b/x", 1, 1, 0, 0), total("s3://b/y", 1, 1, 0, 0)];
        let answer = ListActorAccessResponse::decode(&actor_datasets(&totals)[..]).unwrap();
        let ids: Vec<_> = answer.datasets.iter().map(|d| d.dataset_id.as_str()).collect();
        assert_eq!(ids, ["s3://b/x", "s3://b/y"]);
        assert!(answer.runs.is_empty());
        assert!(access_patterns(&[]).is_empty());
    }

    /// What the generated types encode for `totals` (grouped as the answers group them).
    fn generated(totals: &[Total<'_>]) -> (Vec<u8>, Vec<u8>) {
        let summary = |t: &Total<'_>| AccessSummary {
            operation: t.operation,
            region: t.region.to_owned(),
            count: t.count,
            first_seen: Some(timestamp(t.first_seen_us)),
            last_seen: Some(timestamp(t.last_seen_us)),
        };
        let groups: Vec<&[Total<'_>]> = totals.chunk_by(|a, b| a.name == b.name).collect();
        let sums = |g: &[Total<'_>]| {
            (
                g.iter().map(|t| t.count).sum::<i64>(),
                Some(timestamp(g.iter().map(|t| t.first_seen_us).min().unwrap())),
                Some(timestamp(g.iter().map(|t| t.last_seen_us).max().unwrap())),
            )
        };
        let actors = groups
            .iter()
            .map(|g| {
                let (total_count, first_seen, last_seen) = sums(g);
                let accesses = g.iter().map(summary).collect();
                ActorAccess { actor: g[0].name.to_owned(), accesses, total_count, first_seen, last_seen }
            })
            .collect();
        let datasets = groups
            .iter()
            .map(|g| {
                let (total_count, first_seen, last_seen) = sums(g);
                let accesses = g.iter().map(summary).collect();
                DatasetAccess { dataset_id: g[0].name.to_owned(), accesses, total_count, first_seen, last_seen }
            })
            .collect();
        (
            GetAccessPatternsResponse { actors }.encode_to_vec(),
            ListActorAccessResponse { datasets, runs: Vec::new() }.encode_to_vec(),
        )
    }

    #[test]
    fn the_bytes_are_the_generated_types_encoding() {
        let long = "x".repeat(300);
        let totals = [
            Total { name: "", operation: 0, region: "", count: 0, first_seen_us: 0, last_seen_us: 0 },
            Total { name: "a", operation: 1, region: "r", count: -5, first_seen_us: -1, last_seen_us: 999_999 },
            Total {
                name: "a",
                operation: 3,
                region: &long,
                count: 1 << 40,
                first_seen_us: 1_000_000,
                last_seen_us: i64::MAX,
            },
            Total {
                name: &long,
                operation: 2,
                region: "aws:eu-west-1",
                count: 7,
                first_seen_us: i64::MIN / 2,
                last_seen_us: 5,
            },
        ];
        for n in 0..=totals.len() {
            let (patterns, datasets) = generated(&totals[..n]);
            assert_eq!(access_patterns(&totals[..n]), patterns, "{n}");
            assert_eq!(actor_datasets(&totals[..n]), datasets, "{n}");
        }
    }
}
