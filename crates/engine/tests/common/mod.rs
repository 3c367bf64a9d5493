//! Policy documents for the engine's tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use domicile_engine::wire::{proto, AnswerShape};
use domicile_engine::{Change, CompiledPolicy, Engine};
use prost::Message;

/// Dataset ids of the generated catalogs.
pub const NODES: [&str; 10] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"];
pub const LABELS: [&str; 4] = ["PII", "PII.CONTACT", "PAY", "HEALTH"];
pub const ORIGINS: [&str; 3] = ["DE", "IN", "US"];
pub const JOBS: [&str; 3] = ["etl/a", "other/b", "c"];
pub const TRANSFORMS: [&str; 2] = ["", "anonymize"];
/// `anonymize`'s grants in the generated policies.
pub const GRANTS: [&str; 4] = ["null", "[]", r#"["etl/*"]"#, r#"["*"]"#];
pub const MODES: [&str; 2] = ["inherit", "deny"];
pub const NOW: i64 = 1_700_000_000_000_000;

pub const REGIONS: [&str; 5] = ["aws:ap-south-1", "aws:eu-central-1", "aws:eu-west-1", "aws:us-east-1", "onprem:dc1"];
pub const EU: [&str; 3] = ["aws:eu-central-1", "aws:eu-west-1", "onprem:dc1"];

/// A JSON list of plain strings (their Debug form is valid JSON).
fn json_list(items: &[&str]) -> String {
    format!("{items:?}")
}

/// A small bank policy: EU personal data stays in the EU, Indian payments in India, nothing in
/// `aws:us-east-1` for sanctioned... (a non-exemptible deny of one region), `anonymize` removes
/// PII when run by an `etl/` job, and placeholders judged as `undescribed_outputs` says.
pub fn policy(version: &str, undescribed_outputs: &str, anonymize_jobs: &str) -> CompiledPolicy {
    let json = format!(
        r#"{{
        "version": "{version}", "content_hash": "h{version}",
        "regions": {regions},
        "rules": [
            {{"id": "gdpr", "citation": "GDPR Art. 44", "classifications": ["PII"],
              "origins": {{"everywhere": false, "countries": ["DE", "FR"]}},
              "store": {{"allow": {eu}, "deny": []}}, "process": {{"allow": {eu}, "deny": []}},
              "exemptible": true}},
            {{"id": "rbi", "citation": "", "classifications": ["PAY"],
              "origins": {{"everywhere": false, "countries": ["IN"]}},
              "store": {{"allow": ["aws:ap-south-1"], "deny": []}}, "exemptible": true}},
            {{"id": "sanctions", "classifications": [], "origins": null,
              "store": {{"deny": ["onprem:dc1"]}}, "exemptible": false}}
        ],
        "declassifiers": [{{"transform": "anonymize", "removes": ["PII"], "jobs": {anonymize_jobs}}}],
        "exemptions": [{{"id": "EX-1", "dataset": "s3://eu/*", "operations": ["store"],
                         "regions": ["aws:us-east-1", "onprem:dc1"], "expires_micros": 1800000000000000,
                         "expires": "2027-01-15T08:00:00+00:00", "approved_by": "dpo"}}],
        "defaults": {{"classified": "deny", "unclassified": "allow", "undescribed_outputs": "{undescribed_outputs}"}}
    }}"#,
        regions = json_list(&REGIONS),
        eu = json_list(&EU),
    );
    CompiledPolicy::from_json(&json).expect("a valid document")
}

/// Per dataset: (known, labels and origins with distances).
pub type Snapshot = BTreeMap<String, Option<BTreeMap<String, usize>>>;

/// Per dataset, when decisions judge it: its labels and origins, each with its lineage path.
/// (Between equally short paths the earlier edge wins, so two engines given the same edges in
/// another order may choose other paths of the same length.)
pub type Paths = BTreeMap<String, Option<BTreeMap<String, Vec<String>>>>;

pub fn paths(engine: &Engine) -> Paths {
    let state = engine.read();
    let texts = |p: &Vec<std::sync::Arc<str>>| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    NODES
        .iter()
        .map(|&node| {
            let explained = state.explain(node, NOW).map(|e| {
                e.classifications
                    .iter()
                    .map(|(v, p)| (format!("label {v}"), texts(p)))
                    .chain(e.origins.iter().map(|(v, p)| (format!("origin {v}"), texts(p))))
                    .collect()
            });
            (node.to_owned(), explained)
        })
        .collect()
}

pub fn snapshot(engine: &Engine) -> Snapshot {
    paths(engine)
        .into_iter()
        .map(|(node, found)| (node, found.map(|f| f.into_iter().map(|(key, path)| (key, path.len() - 1)).collect())))
        .collect()
}

/// The catalog the changes leave, replayed as one batch into a fresh engine.
pub fn rebuilt(changes: &[Change], grants: usize, mode: usize) -> Engine {
    let engine = Engine::new(policy("r", MODES[mode], GRANTS[grants]));
    engine.apply(&catalog(changes));
    engine
}

/// The catalog the changes leave, loaded as a snapshot into a fresh engine (a deleted dataset
/// is in no snapshot: the same as an id nothing describes).
pub fn loaded(changes: &[Change], grants: usize, mode: usize) -> Engine {
    let engine = Engine::new(policy("l", MODES[mode], GRANTS[grants]));
    engine
        .load(|loader| {
            for change in catalog(changes) {
                match &change {
                    Change::Described { id, labels, origins, locations } => {
                        loader.described(id, strs(labels), strs(origins), strs(locations))
                    }
                    Change::Mentioned { id } => loader.placeholder(id),
                    Change::EdgeAdded { input, output, job, transform, .. } => {
                        loader.edge(input, output, job, transform)
                    }
                    Change::Deleted { .. } | Change::EdgeEnded { .. } => {}
                }
            }
            Ok::<(), ()>(())
        })
        .expect("nothing fails");
    engine
}

fn strs(items: &[String]) -> impl Iterator<Item = &str> {
    items.iter().map(String::as_str)
}

/// What the changes leave: each id as last described, then the current edges.
fn catalog(changes: &[Change]) -> Vec<Change> {
    // What each id was last said to be (an id never said to be anything is deleted).
    let mut kinds: HashMap<String, Change> = HashMap::new();
    let mut edges: BTreeMap<(String, String, String), (String, Option<i64>)> = BTreeMap::new();
    for change in changes {
        match change {
            Change::Described { id, .. } | Change::Deleted { id } | Change::Mentioned { id } => {
                kinds.insert(id.clone(), change.clone());
            }
            Change::EdgeAdded { input, output, job, transform, recorded } => {
                edges.insert((input.clone(), output.clone(), job.clone()), (transform.clone(), *recorded));
            }
            Change::EdgeEnded { input, output, job, transform, recorded } => {
                let key = (input.clone(), output.clone(), job.clone());
                if let Some((t, r)) = edges.get(&key) {
                    if t == transform && (r.is_none() || recorded.is_none() || r == recorded) {
                        edges.remove(&key);
                    }
                }
            }
        }
    }
    let mut batch: Vec<Change> = kinds.into_values().collect();
    batch.sort_by_key(|change| format!("{change:?}"));
    batch.extend(edges.into_iter().map(|((input, output, job), (transform, recorded))| Change::EdgeAdded {
        input,
        output,
        job,
        transform,
        recorded,
    }));
    batch
}

/// A BatchDecide request of (dataset id, operation, region) questions, in the wire format.
pub fn request_shaped(items: &[(&str, i32, &str)], shape: AnswerShape) -> Vec<u8> {
    proto::BatchDecideRequest {
        shared_region_sets: shape.shared_region_sets,
        shared_reason_texts: shape.shared_reason_texts,
        requests: items
            .iter()
            .map(|&(dataset_id, operation, region)| proto::DecideRequest {
                dataset_id: dataset_id.into(),
                operation,
                region: region.into(),
                context: Default::default(),
            })
            .collect(),
    }
    .encode_to_vec()
}
