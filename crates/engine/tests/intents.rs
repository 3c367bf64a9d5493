//! Intents counted from decided batches: by node where the index names the dataset as asked,
//! by name otherwise, and the same aggregates either way.

mod common;

use domicile_engine::intents::{IntentTally, DAY_US};
use domicile_engine::policy::Operation;
use domicile_engine::{Change, Engine};

const NOW: i64 = 20_000 * DAY_US + 5;

fn request(items: &[(&str, i32, &str)]) -> Vec<u8> {
    common::request_shaped(items, Default::default())
}

fn engine() -> Engine {
    let engine = Engine::new(common::policy("1", "inherit", "null"));
    engine.apply(&[Change::Described {
        id: "s3://eu/a".into(),
        labels: vec!["PII".into()],
        origins: vec!["DE".into()],
        locations: vec![],
    }]);
    engine
}

/// (caller, dataset, operation, region, count) of every aggregate, sorted.
fn rows(tally: &mut IntentTally) -> Vec<(String, String, Operation, String, u64)> {
    let taken = tally.take();
    let mut rows: Vec<_> = taken
        .rows
        .iter()
        .map(|r| {
            assert_eq!(r.day, 20_000 * DAY_US);
            (
                taken.name(r.caller).to_owned(),
                taken.name(r.dataset).to_owned(),
                r.operation,
                taken.name(r.region).to_owned(),
                r.count,
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, &a.1, a.2 as u8, &a.3).cmp(&(&b.0, &b.1, b.2 as u8, &b.3)));
    rows
}

fn row(
    caller: &str,
    dataset: &str,
    operation: Operation,
    region: &str,
    count: u64,
) -> (String, String, Operation, String, u64) {
    (caller.into(), dataset.into(), operation, region.into(), count)
}

#[test]
fn a_batch_counts_by_node_and_by_name_alike() {
    let (first, second) = (engine(), engine());
    let items = [
        ("s3://eu/a", 1, "aws:eu-west-1"),
        ("S3://EU/a", 1, "aws:eu-west-1"), // the same dataset, in its normal form
        ("s3://nobody", 2, "aws:eu-west-1"),
        ("s3://eu/a", 1, "aws:eu-west-1"),
        ("s3://eu/a", 2, "aws:us-east-1"),
    ];
    let mut tally = IntentTally::default();
    for round in 0..2 {
        let batch = first.read().batch_decide(&request(&items), 10, NOW, None).unwrap();
        tally.add_batch("alice", &batch, 0..items.len(), NOW);
        // Another engine's node ids, a stale catalog's batch (no nodes) and a name counted
        // alone all land on the same aggregates.
        let other = second.read().batch_decide(&request(&items[..1]), 10, NOW, None).unwrap();
        tally.add_batch("alice", &other, 0..1, NOW);
        let stale = first.read().batch_decide(&request(&items[..1]), 10, NOW, Some("stale")).unwrap();
        tally.add_batch("alice", &stale, 0..1, NOW);
        tally.add("alice", "s3://eu/a", Operation::Store, "aws:eu-west-1", NOW, 2);
        // Only the range given counts.
        tally.add_batch("bob", &batch, 2..3, NOW);
        assert_eq!(tally.len(), 4, "round {round}");
        assert_eq!(
            rows(&mut tally),
            vec![
                row("alice", "s3://eu/a", Operation::Store, "aws:eu-west-1", 7),
                row("alice", "s3://eu/a", Operation::Process, "aws:us-east-1", 1),
                row("alice", "s3://nobody", Operation::Process, "aws:eu-west-1", 1),
                row("bob", "s3://nobody", Operation::Process, "aws:eu-west-1", 1),
            ]
        );
        assert!(tally.is_empty());
    }
}
