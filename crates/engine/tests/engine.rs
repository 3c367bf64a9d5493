//! Decisions of the engine on small catalogs, case by case.

mod common;

use domicile_engine::policy::{Operation, Outcome, ReasonCode};
use domicile_engine::{Change, Engine};

const NOW: i64 = 1_700_000_000_000_000;

fn dataset(id: &str, labels: &[&str], origins: &[&str], locations: &[&str]) -> Change {
    let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    Change::Described { id: id.into(), labels: owned(labels), origins: owned(origins), locations: owned(locations) }
}

fn edge(input: &str, output: &str, job: &str, transform: &str) -> Change {
    Change::EdgeAdded {
        input: input.into(),
        output: output.into(),
        job: job.into(),
        transform: transform.into(),
        recorded: None,
    }
}

fn placeholder(id: &str) -> Change {
    Change::Mentioned { id: id.into() }
}

fn engine(mode: &str, jobs: &str, changes: &[Change]) -> Engine {
    let engine = Engine::new(common::policy("1", mode, jobs));
    engine.apply(changes);
    engine
}

fn region(engine: &Engine, id: &str) -> u32 {
    engine.read().region("region", id).unwrap()
}

#[test]
fn constraints_follow_lineage_with_the_rule_and_path() {
    let engine = engine(
        "deny",
        "null",
        &[
            dataset("s3://eu/customers", &["PII.CONTACT"], &["DE"], &["aws:eu-central-1"]),
            edge("s3://eu/customers", "s3://lake/copy", "copy", ""),
            dataset("s3://lake/copy", &[], &[], &[]),
        ],
    );
    let us = region(&engine, "aws:us-east-1");
    let verdict = engine.read().decide("s3://lake/copy", Operation::Store, us, NOW);
    assert_eq!(verdict.outcome, Outcome::Deny);
    assert_eq!(verdict.reasons.len(), 1);
    let reason = &verdict.reasons[0];
    assert_eq!(reason.code, ReasonCode::RuleDenied);
    assert_eq!(&*reason.rule_id, "gdpr");
    assert_eq!(
        &*reason.message,
        "rule gdpr (GDPR Art. 44): store in aws:us-east-1 is outside the locations it allows; \
         matched classification PII.CONTACT and origin DE"
    );
    let path: Vec<&str> = reason.path.iter().map(|s| &**s).collect();
    assert_eq!(path, ["s3://eu/customers", "s3://lake/copy"]);
    let names: Vec<&str> = verdict.allowed.names.iter().map(|s| &**s).collect();
    assert_eq!(names, ["aws:eu-central-1", "aws:eu-west-1"]); // onprem:dc1 is sanctioned
}

#[test]
fn exemptions_open_regions_except_against_non_exemptible_rules() {
    let engine = engine("deny", "null", &[dataset("s3://eu/customers", &["PII"], &["DE"], &["onprem:dc1"])]);
    let state = engine.read();
    let us = state.region("r", "aws:us-east-1").unwrap();
    let verdict = state.decide("s3://eu/customers", Operation::Store, us, NOW);
    assert_eq!(verdict.outcome, Outcome::Allow);
    assert_eq!(verdict.reasons[0].code, ReasonCode::ExemptionApplied);
    assert_eq!(
        &*verdict.reasons[0].message,
        "exemption EX-1 (approved by dpo, expires 2027-01-15T08:00:00+00:00) allows store in aws:us-east-1; overrides gdpr"
    );
    let dc = state.region("r", "onprem:dc1").unwrap();
    let verdict = state.decide("s3://eu/customers", Operation::Store, dc, NOW);
    assert_eq!(verdict.outcome, Outcome::Deny);
    let messages: Vec<&str> = verdict.reasons.iter().map(|r| &*r.message).collect();
    assert_eq!(
        messages,
        ["rule sanctions: store in onprem:dc1 is denied; applies to every dataset; \
             not exemptible, so exemption EX-1 does not apply"]
    );
    // Expired: the exemption no longer applies.
    let verdict = state.decide("s3://eu/customers", Operation::Store, us, 1_800_000_000_000_000);
    assert_eq!(verdict.outcome, Outcome::Deny);
    // The violation scan sees the sanctioned location.
    let violations = state.scan_violations(NOW);
    assert_eq!(violations.len(), 1);
    assert_eq!(&*violations[0].region, "onprem:dc1");
}

#[test]
fn declassification_is_granted_per_job() {
    let changes = [
        dataset("s3://eu/customers", &["PII.CONTACT"], &["DE"], &[]),
        placeholder("s3://lake/by-etl"),
        placeholder("s3://lake/by-other"),
        placeholder("s3://lake/by-bare"),
        edge("s3://eu/customers", "s3://lake/by-etl", "etl/mask", "anonymize"),
        edge("s3://eu/customers", "s3://lake/by-other", "other/mask", "anonymize"),
        edge("s3://eu/customers", "s3://lake/by-bare", "mask", "anonymize"),
    ];
    let labels = |engine: &Engine, id: &str| -> Vec<String> {
        engine.read().explain(id, NOW).unwrap().classifications.iter().map(|(l, _)| l.to_string()).collect()
    };
    let granted = engine("inherit", r#"["etl/*", "default/mask"]"#, &changes);
    assert!(labels(&granted, "s3://lake/by-etl").is_empty());
    assert_eq!(labels(&granted, "s3://lake/by-other"), ["PII.CONTACT"]);
    assert!(labels(&granted, "s3://lake/by-bare").is_empty()); // a bare job is in `default`
                                                               // Approving a job later honours its past runs: the policy switch recomputes.
    granted.set_policy(common::policy("2", "inherit", r#"["*"]"#));
    assert!(labels(&granted, "s3://lake/by-other").is_empty());
    granted.set_policy(common::policy("3", "inherit", "[]"));
    assert_eq!(labels(&granted, "s3://lake/by-etl"), ["PII.CONTACT"]);
    // A policy written before grants (no `jobs`): any job.
    let legacy = engine("inherit", "null", &changes);
    assert!(labels(&legacy, "s3://lake/by-other").is_empty());
}

#[test]
fn placeholders_inherit_or_are_undescribed_as_the_policy_says() {
    let changes = [
        dataset("s3://eu/customers", &["PII"], &["DE"], &[]),
        placeholder("s3://lake/derived"),
        placeholder("s3://lake/mixed"),
        placeholder("s3://root/nobody"),
        edge("s3://eu/customers", "s3://lake/derived", "j", ""),
        edge("s3://root/nobody", "s3://lake/mixed", "j", ""),
        edge("s3://eu/customers", "s3://lake/mixed", "j", ""),
    ];
    let inherit = engine("inherit", "null", &changes);
    let eu = region(&inherit, "aws:eu-west-1");
    let state = inherit.read();
    let verdict = state.decide("s3://lake/derived", Operation::Store, eu, NOW);
    assert_eq!((verdict.outcome, verdict.inherited_only), (Outcome::Allow, true));
    let verdict = state.decide("s3://lake/mixed", Operation::Store, eu, NOW);
    assert_eq!(verdict.reasons[0].code, ReasonCode::UnknownDataset);
    assert_eq!(
        &*verdict.reasons[0].message,
        "'s3://lake/mixed' derives from 's3://root/nobody', which the catalog does not describe \
         (a lineage placeholder or a deleted dataset): register it to decide"
    );
    let verdict = state.decide("s3://root/nobody", Operation::Store, eu, NOW);
    assert_eq!(
        &*verdict.reasons[0].message,
        "dataset 's3://root/nobody' is known only from lineage and no described data flows into it \
         (a lineage root nobody described): register it to decide"
    );
    let verdict = state.decide("s3://never/mentioned", Operation::Store, eu, NOW);
    assert_eq!(&*verdict.reasons[0].message, "dataset 's3://never/mentioned' is not in the catalog");
    drop(state);
    let deny = engine("deny", "null", &changes);
    let verdict = deny.read().decide("s3://lake/derived", Operation::Store, eu, NOW);
    assert_eq!(
        &*verdict.reasons[0].message,
        "dataset 's3://lake/derived' is known only from lineage, and the policy judges such datasets \
         undescribed (defaults.undescribed_outputs: deny): register it to decide"
    );
    // Switching the policy's mode recomputes the placeholders.
    deny.set_policy(common::policy("2", "inherit", "null"));
    let verdict = deny.read().decide("s3://lake/derived", Operation::Store, eu, NOW);
    assert_eq!((verdict.outcome, verdict.inherited_only), (Outcome::Allow, true));
}

#[test]
fn deleting_a_source_never_declassifies_its_copies() {
    let engine = engine(
        "inherit",
        "null",
        &[
            dataset("s3://eu/a", &["PII"], &["DE"], &[]),
            placeholder("s3://lake/b"),
            edge("s3://eu/a", "s3://lake/b", "j", ""),
        ],
    );
    engine.apply(&[Change::Deleted { id: "s3://eu/a".into() }]);
    let eu = region(&engine, "aws:eu-west-1");
    let verdict = engine.read().decide("s3://lake/b", Operation::Store, eu, NOW);
    assert_eq!(verdict.reasons[0].code, ReasonCode::UnknownDataset);
    let path: Vec<&str> = verdict.reasons[0].path.iter().map(|s| &**s).collect();
    assert_eq!(path, ["s3://eu/a", "s3://lake/b"]);
    let verdict = engine.read().decide("s3://eu/a", Operation::Store, eu, NOW);
    assert_eq!(&*verdict.reasons[0].message, "dataset 's3://eu/a' is not in the catalog");
    // Described again, it is judged by its description.
    engine.apply(&[dataset("s3://eu/a", &[], &[], &[])]);
    let verdict = engine.read().decide("s3://lake/b", Operation::Store, eu, NOW);
    assert_eq!(verdict.outcome, Outcome::Allow);
}

#[test]
fn ending_an_edge_removes_only_the_indexed_version() {
    let engine = engine("inherit", "null", &[dataset("s3://a", &["PII"], &["DE"], &[]), placeholder("s3://b")]);
    let added = |transform: &str, recorded: i64| Change::EdgeAdded {
        input: "s3://a".into(),
        output: "s3://b".into(),
        job: "j".into(),
        transform: transform.into(),
        recorded: Some(recorded),
    };
    let ended = |transform: &str, recorded: i64| Change::EdgeEnded {
        input: "s3://a".into(),
        output: "s3://b".into(),
        job: "j".into(),
        transform: transform.into(),
        recorded: Some(recorded),
    };
    engine.apply(&[added("", 1), added("copy", 2), ended("", 1)]);
    assert!(engine.read().explain("s3://b", NOW).is_some());
    engine.apply(&[ended("copy", 2)]);
    assert!(engine.read().explain("s3://b", NOW).is_none()); // a root placeholder now
}

#[test]
fn route_picks_the_first_allowed_candidate() {
    let engine = engine("deny", "null", &[dataset("s3://in/pay", &["PAY"], &["IN"], &[])]);
    let state = engine.read();
    let candidates: Vec<u32> =
        ["aws:us-east-1", "aws:eu-west-1", "aws:ap-south-1"].iter().map(|r| state.region("c", r).unwrap()).collect();
    let routed = state.route("s3://in/pay", Operation::Store, &candidates, NOW);
    assert_eq!(routed.chosen, Some(2));
    assert_eq!(routed.verdict.outcome, Outcome::Allow);
    let routed = state.route("s3://in/pay", Operation::Store, &candidates[..2], NOW);
    assert_eq!((routed.chosen, routed.decided, routed.verdict.outcome), (None, 0, Outcome::Deny));
}

#[test]
fn check_job_honours_a_claimed_transform_only_for_an_approved_job() {
    let engine = engine("inherit", r#"["etl/*"]"#, &[dataset("s3://eu/a", &["PII"], &["DE"], &[])]);
    let state = engine.read();
    let eu = state.region("r", "aws:eu-west-1").unwrap();
    let us = state.region("r", "aws:us-east-1").unwrap();
    let check = |job: &str| {
        let decisions = state.check_job(&["s3://eu/a".into()], &["s3://new/out".into()], eu, us, "anonymize", job, NOW);
        assert_eq!(decisions.len(), 2);
        (decisions[1].verdict.outcome, decisions[1].verdict.inherited_only)
    };
    assert_eq!(check("etl/mask"), (Outcome::Allow, true));
    assert_eq!(check("other/mask"), (Outcome::Deny, true));
    assert_eq!(check(""), (Outcome::Deny, true));
}

#[test]
fn impact_shows_what_approving_a_job_changes() {
    let engine = engine(
        "inherit",
        "[]",
        &[
            dataset("s3://eu/a", &["PII"], &["DE"], &[]),
            edge("s3://eu/a", "s3://lake/anon", "team/anon", "anonymize"),
            dataset("s3://lake/anon", &[], &[], &["aws:us-east-1"]),
        ],
    );
    let changes = engine.impact(common::policy("2", "inherit", r#"["team/*"]"#), NOW);
    let anon: Vec<_> = changes.iter().filter(|c| &*c.dataset_id == "s3://lake/anon").collect();
    assert_eq!(anon.len(), 2);
    assert!(anon.iter().all(|c| c.added_regions.iter().any(|r| &**r == "aws:us-east-1")));
    assert!(anon.iter().all(|c| c.removed_regions.is_empty() && c.new_violations.is_empty()));
    // Nothing changed in the engine itself.
    let us = region(&engine, "aws:us-east-1");
    assert_eq!(engine.read().decide("s3://lake/anon", Operation::Store, us, NOW).outcome, Outcome::Deny);
}

#[test]
fn apply_returns_what_may_answer_differently() {
    let engine = engine(
        "inherit",
        "null",
        &[
            dataset("s3://eu/a", &["PII"], &["DE"], &["aws:eu-central-1"]),
            dataset("s3://eu/other", &[], &[], &[]),
            placeholder("s3://lake/b"),
            edge("s3://eu/a", "s3://lake/b", "j", ""),
            edge("s3://lake/b", "s3://lake/c", "j", ""),
        ],
    );
    let sorted = |mut ids: Vec<std::sync::Arc<str>>| {
        ids.sort();
        ids.iter().map(|id| id.to_string()).collect::<Vec<_>>()
    };
    // A change of labels: the dataset and its downstream closure.
    let touched = engine.apply(&[dataset("s3://eu/a", &["HEALTH"], &["DE"], &["aws:eu-central-1"])]);
    assert_eq!(sorted(touched), ["s3://eu/a", "s3://lake/b", "s3://lake/c"]);
    // Only locations: that dataset alone.
    let touched = engine.apply(&[dataset("s3://eu/other", &[], &[], &["aws:us-east-1"])]);
    assert_eq!(sorted(touched), ["s3://eu/other"]);
    // A first batch into an empty engine is a build: nothing to report.
    let fresh = Engine::new(common::policy("1", "inherit", "null"));
    assert!(fresh.apply(&[dataset("s3://x", &[], &[], &[])]).is_empty());
}

#[test]
fn violations_of_and_residency_answer_per_dataset() {
    let engine = engine(
        "inherit",
        "null",
        &[
            dataset("s3://x/a", &["PII"], &["DE"], &["aws:us-east-1", "aws:eu-central-1"]),
            dataset("s3://x/clean", &[], &[], &["aws:us-east-1"]),
            placeholder("s3://lake/b"),
            edge("s3://x/a", "s3://lake/b", "j", ""),
            edge("s3://nobody", "s3://lake/doubt", "j", ""),
        ],
    );
    let state = engine.read();
    let ids: Vec<String> = ["s3://x/clean", "s3://x/a", "s3://nope"].iter().map(|s| s.to_string()).collect();
    let found = state.violations_of(&ids, NOW);
    let pairs: Vec<(&str, &str)> = found.iter().map(|v| (&*v.dataset_id, &*v.region)).collect();
    assert_eq!(pairs, [("s3://x/a", "aws:us-east-1")]);
    assert_eq!(pairs, state.scan_violations(NOW).iter().map(|v| (&*v.dataset_id, &*v.region)).collect::<Vec<_>>());
    assert_eq!(state.stored_datasets().len(), 2);
    // (The policy's exemption covers `s3://eu/*` until 1_800_000_000_000_000.)
    assert_eq!(state.policy.next_expiry(NOW), Some(1_800_000_000_000_000));
    assert_eq!(state.policy.next_expiry(1_800_000_000_000_000), None);
    use domicile_engine::engine::Residency;
    assert_eq!(state.residency("s3://x/a").0, Residency::Described);
    assert_eq!(state.residency("s3://x/a").1.len(), 2);
    assert_eq!(state.residency("s3://lake/b"), (Residency::Derived, Vec::new()));
    assert_eq!(state.residency("s3://lake/doubt").0, Residency::Undescribed); // inherits only doubt
    assert_eq!(state.residency("s3://nobody").0, Residency::Undescribed);
    assert_eq!(state.residency("s3://nope").0, Residency::Unknown);
}

#[test]
fn a_placeholder_left_downstream_of_a_broken_cycle_is_entered() {
    // b and d form a cycle nothing enters (both undescribed); ending d -> b leaves b a root
    // and d derived from it, although no value upstream of d changed.
    let engine = engine("inherit", "null", &[placeholder("s3://b"), placeholder("s3://d")]);
    engine.apply(&[edge("s3://d", "s3://b", "j", ""), edge("s3://b", "s3://d", "j", "")]);
    assert!(engine.read().explain("s3://d", NOW).is_none());
    engine.apply(&[Change::EdgeEnded {
        input: "s3://d".into(),
        output: "s3://b".into(),
        job: "j".into(),
        transform: "".into(),
        recorded: None,
    }]);
    let state = engine.read();
    assert!(state.explain("s3://b", NOW).is_none());
    let explained = state.explain("s3://d", NOW).expect("derived from the root placeholder");
    let path: Vec<&str> = explained.origins[0].1.iter().map(|s| &**s).collect();
    assert_eq!(path, ["s3://b", "s3://d"]);
}

#[test]
fn a_dataset_asked_in_another_form_shares_its_verdicts_until_that_form_is_a_dataset() {
    let engine = engine("inherit", "null", &[dataset("s3://bank-eu/x", &["PII"], &["DE"], &[])]);
    let us = region(&engine, "aws:us-east-1");
    let decide = |id: &str| engine.read().decide(id, Operation::Store, us, NOW);
    let normal = decide("s3://bank-eu/x");
    assert_eq!(normal.outcome, Outcome::Deny);
    let other = decide("S3://Bank-EU/x");
    assert!(std::sync::Arc::ptr_eq(&normal, &other), "the dataset's memoised verdict");
    assert!(std::sync::Arc::ptr_eq(&other, &decide("S3://Bank-EU/x")));
    // A dataset stored under that form before the naming rules (a legacy id) is its own.
    engine.apply(&[dataset("S3://Bank-EU/x", &[], &[], &[])]);
    assert_eq!(decide("S3://Bank-EU/x").outcome, Outcome::Allow);
    assert!(std::sync::Arc::ptr_eq(&normal, &decide("s3://bank-eu/x")), "not changed by it");
}
