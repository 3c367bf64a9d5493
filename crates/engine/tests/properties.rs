//! The index kept incrementally equals the index built from scratch: for random lineage
//! (cycles, self-loops, parallel edges, declassifying transforms by various jobs), random
//! change sequences and policy switches, every dataset has the same status, the same effective
//! labels and origins at the same distances, and every path is a real lineage path of that
//! length carrying its value. (The Python tests hold both to a plain oracle as well.) `apply`
//! reports every dataset whose answers it changed, and a snapshot loaded is the same index as
//! the one its rows applied as changes build.

mod common;

use common::{loaded, paths, rebuilt, snapshot, GRANTS, JOBS, LABELS, MODES, NODES, ORIGINS, TRANSFORMS};
use domicile_engine::{Change, Engine};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Apply(Change),
    Policy(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let node = || prop::sample::select(&NODES[..]).prop_map(str::to_owned);
    let labels = prop::sample::subsequence(&LABELS[..], 0..=2).prop_map(|v| v.iter().map(|s| s.to_string()).collect());
    let origins =
        prop::sample::subsequence(&ORIGINS[..], 0..=2).prop_map(|v| v.iter().map(|s| s.to_string()).collect());
    let edge = (node(), node(), prop::sample::select(&JOBS[..]), prop::sample::select(&TRANSFORMS[..]), 0..3i64);
    prop_oneof![
        2 => (node(), labels, origins).prop_map(|(id, labels, origins)| Change::Described { id, labels, origins, locations: vec![] }),
        1 => node().prop_map(|id| Change::Deleted { id }),
        1 => node().prop_map(|id| Change::Mentioned { id }),
        4 => edge.clone().prop_map(|(input, output, job, transform, t)| Change::EdgeAdded {
            input, output, job: job.into(), transform: transform.into(), recorded: Some(t) }),
        2 => edge.prop_map(|(input, output, job, transform, t)| Change::EdgeEnded {
            input, output, job: job.into(), transform: transform.into(), recorded: (t > 0).then_some(t) }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        8 => change().prop_map(Step::Apply),
        1 => (0..GRANTS.len(), 0..MODES.len()).prop_map(|(g, m)| Step::Policy(g, m)),
    ];
    prop::collection::vec(step, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(script in steps()) {
        let (mut grants, mut mode) = (0, 0);
        let engine = Engine::new(common::policy("0", MODES[mode], GRANTS[grants]));
        let mut applied = Vec::new();
        for (n, step) in script.into_iter().enumerate() {
            match step {
                Step::Apply(change) => {
                    let before = paths(&engine);
                    let reported = engine.apply(std::slice::from_ref(&change));
                    // (The first batch into an empty index is a build: it reports nothing.)
                    let build = applied.is_empty();
                    applied.push(change);
                    for (node, after) in paths(&engine) {
                        prop_assert!(
                            build || before[&node] == after || reported.iter().any(|id| **id == *node),
                            "{} changed but apply did not report it", node
                        );
                    }
                }
                Step::Policy(g, m) => {
                    (grants, mode) = (g, m);
                    engine.set_policy(common::policy(&n.to_string(), MODES[mode], GRANTS[grants]));
                }
            }
            let from_scratch = rebuilt(&applied, grants, mode);
            prop_assert_eq!(snapshot(&engine), snapshot(&from_scratch));
            prop_assert_eq!(paths(&loaded(&applied, grants, mode)), paths(&from_scratch));
        }
    }
}
