//! Times Cedar's authorizer on residency questions: `cedar-bench INPUT.json` prints JSON figures.
//!
//! INPUT holds the policy in Cedar (bench/router_bench.py translates the example residency
//! policy), the entities (regions and the groups of regions the rules allow or deny) and the
//! questions, each with the dataset's effective labels (with their ancestors) and origins as the
//! request's context -- Cedar holds no lineage, like OPA. Each question's evaluation is timed
//! alone, over `rounds` passes; the first `report` outcomes are printed for the agreement check.

use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    policy: String,
    entities: serde_json::Value,
    questions: Vec<Question>,
    rounds: usize,
    report: usize,
}

#[derive(Deserialize)]
struct Question {
    operation: String,
    region: String,
    labels: Vec<String>,
    origins: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: cedar-bench INPUT.json")?;
    let input: Input = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let policies = PolicySet::from_str(&input.policy)?;
    let entities = Entities::from_json_value(input.entities, None)?;
    let principal = EntityUid::from_str(r#"Service::"bench""#)?;
    let requests = input
        .questions
        .iter()
        .map(|q| {
            let action = EntityUid::from_str(&format!(r#"Action::"{}""#, q.operation))?;
            let resource = EntityUid::from_str(&format!("Region::{:?}", q.region))?;
            let context = Context::from_json_value(
                serde_json::json!({"labels": q.labels, "origins": q.origins}),
                None,
            )?;
            Ok(Request::new(principal.clone(), action, resource, context, None)?)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let authorizer = Authorizer::new();
    let mut times = Vec::with_capacity(requests.len() * input.rounds);
    let mut outcomes = Vec::with_capacity(input.report);
    let started = Instant::now();
    for round in 0..input.rounds {
        for (n, request) in requests.iter().enumerate() {
            let began = Instant::now();
            let response = authorizer.is_authorized(request, &policies, &entities);
            times.push(began.elapsed().as_nanos() as u64);
            if round == 0 && n < input.report {
                outcomes.push(response.decision() == Decision::Allow);
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let figures = serde_json::json!({
        "cedar_version": cedar_policy::get_sdk_version().to_string(),
        "evaluations": times.len(),
        "p50_us": at(0.5),
        "p99_us": at(0.99),
        "per_second_single_thread": times.len() as f64 / total,
        "outcomes": outcomes,
    });
    println!("{figures}");
    Ok(())
}
