//! The index under arbitrary change sequences and policy switches: never a panic, and the index
//! kept incrementally always equals the one built from scratch (tests/properties.rs, guided by
//! coverage instead of chance).

#![no_main]

#[path = "../../engine/tests/common/mod.rs"]
mod common;

use common::{rebuilt, snapshot, GRANTS, JOBS, LABELS, MODES, NODES, ORIGINS, TRANSFORMS};
use domicile_engine::{Change, Engine};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Step {
    Describe { node: u8, labels: u8, origins: u8 },
    Delete { node: u8 },
    Mention { node: u8 },
    Edge { input: u8, output: u8, job: u8, transform: u8, recorded: Option<u8> },
    End { input: u8, output: u8, job: u8, transform: u8, recorded: Option<u8> },
    Policy { grants: u8, mode: u8 },
}

fn pick<'a>(items: &[&'a str], index: u8) -> &'a str {
    items[usize::from(index) % items.len()]
}

fn subset(items: &[&str], mask: u8) -> Vec<String> {
    items.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, s)| s.to_string()).collect()
}

fn change(step: &Step) -> Option<Change> {
    let node = |n: u8| pick(&NODES, n).to_owned();
    let edge = |input: u8, output: u8, job: u8, transform: u8| {
        (node(input), node(output), pick(&JOBS, job).to_owned(), pick(&TRANSFORMS, transform).to_owned())
    };
    Some(match *step {
        Step::Describe { node: n, labels, origins } => Change::Described {
            id: node(n),
            labels: subset(&LABELS, labels),
            origins: subset(&ORIGINS, origins),
            locations: vec![],
        },
        Step::Delete { node: n } => Change::Deleted { id: node(n) },
        Step::Mention { node: n } => Change::Mentioned { id: node(n) },
        Step::Edge { input, output, job, transform, recorded } => {
            let (input, output, job, transform) = edge(input, output, job, transform);
            Change::EdgeAdded { input, output, job, transform, recorded: recorded.map(|t| i64::from(t % 3)) }
        }
        Step::End { input, output, job, transform, recorded } => {
            let (input, output, job, transform) = edge(input, output, job, transform);
            Change::EdgeEnded { input, output, job, transform, recorded: recorded.map(|t| i64::from(t % 3)) }
        }
        Step::Policy { .. } => return None,
    })
}

fuzz_target!(|steps: Vec<Step>| {
    let (mut grants, mut mode) = (0, 0);
    let engine = Engine::new(common::policy("0", MODES[mode], GRANTS[grants]));
    let mut applied = Vec::new();
    for (n, step) in steps.iter().take(64).enumerate() {
        match change(step) {
            Some(change) => {
                engine.apply(std::slice::from_ref(&change));
                applied.push(change);
            }
            None => {
                if let Step::Policy { grants: g, mode: m } = *step {
                    (grants, mode) = (usize::from(g) % GRANTS.len(), usize::from(m) % MODES.len());
                }
                engine.set_policy(common::policy(&n.to_string(), MODES[mode], GRANTS[grants]));
            }
        }
    }
    assert_eq!(snapshot(&engine), snapshot(&rebuilt(&applied, grants, mode)));
});
