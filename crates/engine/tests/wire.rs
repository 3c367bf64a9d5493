//! BatchDecide in the wire format: what the parser accepts and refuses, and that an encoded
//! answer decodes (with the generated types) to the decisions the engine made.

mod common;

use common::request_shaped;
use domicile_engine::policy::Operation;
use domicile_engine::wire::{parse_batch, proto, AnswerShape, BatchError, FieldViolation};
use domicile_engine::{Change, Engine};
use prost::Message;

const NOW: i64 = 1_700_000_000_123_456;

fn request(items: &[(&str, i32, &str)]) -> Vec<u8> {
    request_shaped(items, AnswerShape::default())
}

#[test]
fn every_bad_field_is_named() {
    let policy = common::policy("1", "inherit", "null");
    let bytes = request(&[("s3://ok", 1, "aws:us-east-1"), ("", 0, "mars:base-1"), (" x\u{1}", 2, "")]);
    let violations = match parse_batch(&bytes, &policy, 100) {
        Err(BatchError::Invalid(violations)) => violations,
        other => panic!("{other:?}"),
    };
    let pairs: Vec<(String, String)> =
        violations.into_iter().map(|FieldViolation { field, description }| (field, description)).collect();
    let want = [
        ("requests[1].dataset_id", "must not be empty"),
        ("requests[1].operation", "must be OPERATION_STORE or OPERATION_PROCESS"),
        ("requests[1].region", "unknown region 'mars:base-1' (see `domicile regions`)"),
        ("requests[2].dataset_id", "must not start or end with whitespace"),
        ("requests[2].dataset_id", "must not contain control characters"),
        ("requests[2].region", "must not be empty"),
    ];
    assert_eq!(pairs, want.map(|(f, d)| (f.to_owned(), d.to_owned())));
}

/// A request read field by field into one reused DecideRequest is read as the generated
/// types read the whole message: fields of an item that come back emptied, unknown fields
/// skipped, a repeated singular field's last value taken, an item's fields in any order or
/// split in two occurrences merged.
#[test]
fn a_request_is_read_as_the_generated_types_read_it() {
    let policy = common::policy("1", "inherit", "null");
    let item = |dataset_id: &str, operation, region: &str| {
        proto::DecideRequest { dataset_id: dataset_id.into(), operation, region: region.into(), ..Default::default() }
            .encode_to_vec()
    };
    let field = |tag: u32, bytes: &[u8]| {
        let mut out = Vec::new();
        prost::encoding::bytes::encode(tag, &bytes.to_vec(), &mut out);
        out
    };
    let flag = |tag: u32, value: bool| {
        let mut out = Vec::new();
        prost::encoding::bool::encode(tag, &value, &mut out);
        out
    };
    // Item 0 sets every field; item 1 none of them (its fields must not be item 0's); item 2
    // writes its region before its id; an unknown field (tag 9) and the shape's flags set,
    // unset and set again lie between them.
    let full = item("s3://Bucket/a", 1, "aws:eu-west-1");
    let empty: Vec<u8> = Vec::new();
    let mut reversed = field(3, b"aws:us-east-1");
    reversed.extend(item("s3://b", 2, ""));
    let request = [
        field(1, &full),
        flag(2, true),
        field(9, b"unknown"),
        field(1, &empty),
        flag(3, true),
        flag(2, false),
        field(1, &reversed),
        flag(2, true),
    ]
    .concat();
    let decoded = proto::BatchDecideRequest::decode(&request[..]).unwrap();
    assert_eq!(decoded.requests.len(), 3);
    assert!(decoded.shared_region_sets && decoded.shared_reason_texts);
    let violations = match parse_batch(&request, &policy, 10) {
        Err(BatchError::Invalid(violations)) => violations,
        other => panic!("{other:?}"),
    };
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["requests[1].dataset_id", "requests[1].operation", "requests[1].region"]);
    // Without the empty item: the questions as decoded, named in normal form.
    let request = [field(1, &full), flag(2, true), field(9, b"unknown"), flag(3, true), field(1, &reversed)].concat();
    let decoded = proto::BatchDecideRequest::decode(&request[..]).unwrap();
    let (questions, shape) = parse_batch(&request, &policy, 10).unwrap();
    assert_eq!(shape, AnswerShape { shared_region_sets: true, shared_reason_texts: true });
    let asked: Vec<(String, Operation, u32)> =
        questions.iter().map(|q| (q.dataset_id.to_owned(), q.operation, q.region)).collect();
    let want: Vec<(String, Operation, u32)> = decoded
        .requests
        .iter()
        .map(|item| {
            let operation = if item.operation == 1 { Operation::Store } else { Operation::Process };
            (item.dataset_id.replace("Bucket", "bucket"), operation, policy.region(&item.region).unwrap())
        })
        .collect();
    assert_eq!(asked, want);
    // An item split in two occurrences of its fields is one item, merged.
    let mut split = item("s3://c", 1, "");
    split.extend(field(3, b"aws:eu-west-1"));
    let (questions, _) = parse_batch(&field(1, &split), &policy, 10).unwrap();
    assert_eq!(questions.len(), 1);
    // Past `max`, the rest is still read: malformed bytes there are refused as malformed.
    let mut over = request_shaped(&[("s3://a", 1, "aws:eu-west-1"); 3], AnswerShape::default());
    over.extend_from_slice(b"\x0a\x05\x0a");
    assert!(matches!(parse_batch(&over, &policy, 2), Err(BatchError::Malformed(_))));
}

#[test]
fn too_many_questions_and_malformed_bytes_are_refused() {
    let policy = common::policy("1", "inherit", "null");
    let bytes = request(&[("a", 1, "aws:us-east-1"); 3]);
    assert_eq!(
        parse_batch(&bytes, &policy, 2),
        Err(BatchError::Invalid(vec![FieldViolation {
            field: "requests".into(),
            description: "at most 2 requests per batch".into()
        }]))
    );
    for bad in [&b"\x0a\x05\x0a"[..], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0a\x02\x0a\x02"] {
        assert!(matches!(parse_batch(bad, &policy, 10), Err(BatchError::Malformed(_))), "{bad:?}");
    }
    // Invalid UTF-8 in a string field is malformed, as protobuf parsers have it.
    let mut bytes = request(&[("ab", 1, "aws:us-east-1")]);
    let at = bytes.windows(2).position(|w| w == b"ab").unwrap();
    bytes[at] = 0xff;
    assert!(matches!(parse_batch(&bytes, &policy, 10), Err(BatchError::Malformed(_))));
    let (questions, shape) = parse_batch(&request(&[("s3://a", 2, "aws:eu-west-1")]), &policy, 10).unwrap();
    assert_eq!((questions.get(0).unwrap().operation, shape), (Operation::Process, AnswerShape::default()));
    for shared_region_sets in [false, true] {
        for shared_reason_texts in [false, true] {
            let asked = AnswerShape { shared_region_sets, shared_reason_texts };
            let (_, shape) =
                parse_batch(&request_shaped(&[("s3://a", 2, "aws:eu-west-1")], asked), &policy, 10).unwrap();
            assert_eq!(shape, asked);
        }
    }
    // A batch logs no context: a request carrying one is refused, not answered without it.
    let with_context = proto::BatchDecideRequest {
        requests: vec![proto::DecideRequest {
            dataset_id: "s3://a".into(),
            operation: 1,
            region: "aws:eu-west-1".into(),
            context: [("k".to_owned(), "v".to_owned())].into(),
        }],
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(
        parse_batch(&with_context, &policy, 10),
        Err(BatchError::Invalid(vec![FieldViolation {
            field: "requests[0].context".into(),
            description: "BatchDecide logs no context: ask with Decide to log one".into()
        }]))
    );
}

#[test]
fn the_answer_decodes_to_the_engine_decisions() {
    let engine = Engine::new(common::policy("2026.1", "inherit", "null"));
    engine.apply(&[
        Change::Described {
            id: "s3://eu/a".into(),
            labels: vec!["PII".into()],
            origins: vec!["DE".into()],
            locations: vec![],
        },
        Change::Mentioned { id: "s3://lake/b".into() },
        Change::EdgeAdded {
            input: "s3://eu/a".into(),
            output: "s3://lake/b".into(),
            job: "j".into(),
            transform: "".into(),
            recorded: None,
        },
    ]);
    let state = engine.read();
    let items = [
        ("s3://lake/b", 1, "aws:us-east-1"),
        ("s3://lake/b", 2, "aws:eu-west-1"),
        ("s3://nobody", 1, "aws:eu-west-1"),
        ("s3://lake/b", 1, "aws:us-east-1"),
    ];
    let bytes = request(&items);
    let batch = state.batch_decide(&bytes, 10, NOW, None).unwrap();
    let (wire, encoded_counts) = state.encode_batch(&batch, 42, NOW, "abc", 255);
    let answer = proto::BatchDecideResponse::decode(&wire[..]).unwrap();
    assert_eq!(answer.decisions.len(), 4);
    assert!(answer.region_sets.is_empty());
    for (n, (decision, judgement)) in answer.decisions.iter().zip(&batch.judgements).enumerate() {
        let verdict = &judgement.verdict;
        let question = batch.questions.get(n).unwrap();
        let expected = proto::Decision {
            decision_id: format!("abc{:010x}", 255 + n),
            outcome: if verdict.outcome == domicile_engine::Outcome::Allow { 1 } else { 2 },
            dataset_id: question.dataset_id.to_owned(),
            operation: if question.operation == Operation::Store { 1 } else { 2 },
            region: state.policy.region_name(question.region).to_string(),
            allowed_regions: verdict.allowed.names.iter().map(|s| s.to_string()).collect(),
            reasons: verdict
                .reasons
                .iter()
                .map(|r| proto::Reason {
                    code: r.code.as_str().into(),
                    rule_id: r.rule_id.to_string(),
                    message: r.message.to_string(),
                    lineage_path: r.path.iter().map(|s| s.to_string()).collect(),
                    citation: r.citation.to_string(),
                    text: 0,
                })
                .collect(),
            policy_version: "2026.1".into(),
            catalog_revision: 42,
            decide_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_456_000 }),
            inherited_only: verdict.inherited_only,
            context: Default::default(),
            allowed_regions_set: 0,
        };
        assert_eq!(decision, &expected);
    }
    // Counted for the metrics: every decision once, every reason once per decision.
    let counts = batch.counts();
    assert_eq!(counts.by_outcome.iter().map(|(_, n)| n).sum::<usize>(), 4);
    let reasons: usize = batch.judgements.iter().map(|j| j.verdict.reasons.len()).sum();
    assert_eq!(counts.by_reason.iter().map(|(_, n)| n).sum::<usize>(), reasons);
    assert!(counts.by_reason.iter().any(|((code, _), n)| code.as_str() == "UNKNOWN_DATASET" && *n == 1));
    // The answer's encoding counts them alike.
    let sorted = |counts: &domicile_engine::engine::Counts| {
        let mut listed: Vec<String> = counts.by_outcome.iter().map(|count| format!("{count:?}")).collect();
        listed.extend(counts.by_reason.iter().map(|count| format!("{count:?}")));
        listed.sort();
        listed
    };
    assert_eq!(sorted(&encoded_counts), sorted(&counts));
    // A question asked again is answered with its memoised verdict, the same but for its id.
    assert!(std::sync::Arc::ptr_eq(&batch.judgements[0], &batch.judgements[3]));
    let mut again = answer.decisions[3].clone();
    again.decision_id = answer.decisions[0].decision_id.clone();
    assert_eq!(again, answer.decisions[0]);

    // The compact shape: the same decisions, each region list once in the answer.
    let sets_shape = AnswerShape { shared_region_sets: true, shared_reason_texts: false };
    let shared = state.batch_decide(&request_shaped(&items, sets_shape), 10, NOW, None).unwrap();
    let compact = proto::BatchDecideResponse::decode(&state.encode_batch(&shared, 42, NOW, "abc", 255).0[..]).unwrap();
    let lists: Vec<Vec<String>> = answer.decisions.iter().map(|d| d.allowed_regions.clone()).collect();
    let mut distinct = lists.clone();
    distinct.dedup();
    distinct.sort();
    distinct.dedup();
    assert_eq!(compact.region_sets.len(), distinct.len());
    for (full, lean) in answer.decisions.iter().zip(&compact.decisions) {
        let set = &compact.region_sets[lean.allowed_regions_set as usize];
        assert_eq!(set.regions, full.allowed_regions);
        let mut lean = lean.clone();
        (lean.allowed_regions, lean.allowed_regions_set) = (set.regions.clone(), 0);
        assert_eq!(&lean, full);
    }
    // Reason texts shared too: each distinct text once, reasons naming theirs with their path.
    let texts_shape = AnswerShape { shared_region_sets: true, shared_reason_texts: true };
    let shared = state.batch_decide(&request_shaped(&items, texts_shape), 10, NOW, None).unwrap();
    let (leanest, leanest_counts) = state.encode_batch(&shared, 42, NOW, "abc", 255);
    let leanest = proto::BatchDecideResponse::decode(&leanest[..]).unwrap();
    // Its reasons counted by the texts they name: counted alike.
    assert_eq!(sorted(&leanest_counts), sorted(&counts));
    assert_eq!(leanest.region_sets, compact.region_sets);
    let text = |r: &proto::Reason| (r.code.clone(), r.rule_id.clone(), r.message.clone(), r.citation.clone());
    let mut distinct: Vec<_> = answer.decisions.iter().flat_map(|d| d.reasons.iter().map(text)).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(leanest.reason_texts.len(), distinct.len());
    assert!(leanest.reason_texts.iter().all(|t| t.lineage_path.is_empty() && t.text == 0));
    for (full, lean) in compact.decisions.iter().zip(&leanest.decisions) {
        let mut lean = lean.clone();
        for reason in &mut lean.reasons {
            let shared = &leanest.reason_texts[reason.text as usize];
            assert_eq!(
                (&reason.code, &reason.rule_id, &reason.message, &reason.citation),
                (&"".into(), &"".into(), &"".into(), &"".into())
            );
            (reason.code, reason.rule_id, reason.message, reason.citation, reason.text) =
                (shared.code.clone(), shared.rule_id.clone(), shared.message.clone(), shared.citation.clone(), 0);
        }
        assert_eq!(&lean, full);
    }
    assert_eq!(answer.decisions[0].reasons[0].lineage_path, ["s3://eu/a", "s3://lake/b"]);
    assert_eq!((answer.decisions[1].outcome, answer.decisions[1].inherited_only), (1, true));
    assert_eq!(answer.decisions[2].reasons[0].code, "UNKNOWN_DATASET");
    // A stale view: every decision is the fail-closed DENY with the given message.
    let stale = state.batch_decide(&bytes, 10, NOW, Some("fail closed: stale")).unwrap();
    assert!(stale.judgements.iter().all(|j| {
        let verdict = &j.verdict;
        verdict.reasons[0].code.as_str() == "STALE_CATALOG" && verdict.allowed.names.is_empty()
    }));
    // Answered with shared texts: one text, named by every decision, each counted.
    let stale = state.batch_decide(&request_shaped(&items, texts_shape), 10, NOW, Some("fail closed: stale")).unwrap();
    let (wire, stale_counts) = state.encode_batch(&stale, 42, NOW, "abc", 255);
    assert_eq!(proto::BatchDecideResponse::decode(&wire[..]).unwrap().reason_texts.len(), 1);
    assert_eq!(sorted(&stale_counts), sorted(&stale.counts()));
    assert!(stale_counts.by_reason.iter().any(|((code, _), n)| code.as_str() == "STALE_CATALOG" && *n == 4));
}

#[test]
fn ids_are_decided_and_named_in_normal_form() {
    let engine = Engine::new(common::policy("1", "inherit", "null"));
    engine.apply(&[Change::Described {
        id: "s3://eu/customers".into(),
        labels: vec!["PII".into()],
        origins: vec!["DE".into()],
        locations: vec![],
    }]);
    let state = engine.read();
    let bytes = request(&[("S3://EU/customers", 1, "aws:us-east-1"), ("S3://Nowhere/X", 1, "aws:us-east-1")]);
    let batch = state.batch_decide(&bytes, 10, NOW, None).unwrap();
    let named: Vec<&str> = batch.questions.iter().map(|q| q.dataset_id).collect();
    assert_eq!(named, ["s3://eu/customers", "s3://nowhere/X"]);
    let us = state.region("region", "aws:us-east-1").unwrap();
    let messages = |verdict: &domicile_engine::Verdict| -> Vec<String> {
        verdict.reasons.iter().map(|r| format!("{}: {}", r.code.as_str(), r.message)).collect()
    };
    let direct = state.decide("s3://eu/customers", Operation::Store, us, NOW);
    assert_eq!(messages(&batch.judgements[0].verdict), messages(&direct));
    assert!(!messages(&direct)[0].starts_with("UNKNOWN_DATASET"));
    assert_eq!(
        messages(&batch.judgements[1].verdict),
        ["UNKNOWN_DATASET: dataset 's3://nowhere/X' is not in the catalog"]
    );
    // Every lookup finds a dataset under an equal form.
    assert_eq!(messages(&state.decide("S3://eu/customer%73", Operation::Store, us, NOW)), messages(&direct));
    assert_eq!(state.labels("S3://EU/customers"), ["PII".into()]);
}

#[test]
fn decision_ids_are_the_prefix_and_ten_hex_digits_or_more() {
    let id = |counter: u64| {
        let mut out = String::new();
        domicile_engine::engine::decision_id(&mut out, "p:", counter);
        out
    };
    assert_eq!(id(0), "p:0000000000");
    assert_eq!(id(0xab_cdef_0123), "p:abcdef0123");
    assert_eq!(id(0x100_0000_0000), "p:10000000000");
    assert_eq!(id(u64::MAX), "p:ffffffffffffffff");
}
