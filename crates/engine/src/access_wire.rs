//! The access records' summaries in the protobuf wire format: GetAccessPatterns' actors and
//! ListActorAccess's datasets, encoded with the types generated from
//! protos/domicile/v1/access.proto. A busy dataset has ten thousand actors; built field by field
//! in Python, its answer costs more than reading it from the store.

use std::borrow::Cow;
use std::collections::HashMap;

use prost::Message;
use serde::Deserialize;

use crate::wire::proto::{
    AccessSummary, ActorAccess, DatasetAccess, GetAccessPatternsResponse, ListActorAccessResponse,
};
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
    packed.sort_unstable_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    let totals = packed
        .iter()
        .map(|PackedTotal(name, operation, region, count, first, last)| {
            let Some(&number) = operations.get(operation.as_ref()) else {
                return Err(PackedError::UnknownOperation(operation.to_string()));
            };
            Ok(Total { name, operation: number, region, count: *count, first_seen_us: *first, last_seen_us: *last })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(encode(&totals))
}

/// One summary per total and, per run of consecutive totals with one name, their sum and
/// their earliest first and latest last seen, made into a message by `group`.
fn grouped<M>(totals: &[Total<'_>], group: impl Fn(String, Vec<AccessSummary>, i64, i64, i64) -> M) -> Vec<M> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < totals.len() {
        let name = totals[start].name;
        let end = start + totals[start..].iter().take_while(|t| t.name == name).count();
        let members = &totals[start..end];
        let summaries = members
            .iter()
            .map(|t| AccessSummary {
                operation: t.operation,
                region: t.region.to_owned(),
                count: t.count,
                first_seen: Some(timestamp(t.first_seen_us)),
                last_seen: Some(timestamp(t.last_seen_us)),
            })
            .collect();
        let count = members.iter().map(|t| t.count).sum();
        let first = members.iter().map(|t| t.first_seen_us).min().unwrap_or_default();
        let last = members.iter().map(|t| t.last_seen_us).max().unwrap_or_default();
        groups.push(group(name.to_owned(), summaries, count, first, last));
        start = end;
    }
    groups
}

/// A serialized GetAccessPatternsResponse: one ActorAccess per actor, in the order of `totals`
/// (a store's order, by actor).
pub fn access_patterns(totals: &[Total<'_>]) -> Vec<u8> {
    let actors = grouped(totals, |actor, accesses, total_count, first, last| ActorAccess {
        actor,
        accesses,
        total_count,
        first_seen: Some(timestamp(first)),
        last_seen: Some(timestamp(last)),
    });
    GetAccessPatternsResponse { actors }.encode_to_vec()
}

/// A serialized ListActorAccessResponse holding only its datasets: one DatasetAccess per
/// dataset, in the order of `totals` (by dataset). Its runs are the caller's to add.
pub fn actor_datasets(totals: &[Total<'_>]) -> Vec<u8> {
    let datasets = grouped(totals, |dataset_id, accesses, total_count, first, last| DatasetAccess {
        dataset_id,
        accesses,
        total_count,
        first_seen: Some(timestamp(first)),
        last_seen: Some(timestamp(last)),
    });
    ListActorAccessResponse { datasets, runs: Vec::new() }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
