//! BatchDecide in the protobuf wire format: the request parsed with the types generated from
//! protos/domicile/v1/residency.proto (prost, at build time), every question checked as the
//! servicer checks a Decide, and decisions encoded with prost's encoding primitives.
//!
//! Most of a decision's bytes are its allowed regions, which are the same for every dataset of
//! a kind, and its policy version, revision and time, which are the same for a whole batch:
//! those are encoded once per batch as message fragments (by the generated code) and copied
//! into each decision. Protobuf parsers merge the fields of concatenated fragments, and the
//! fragments hold distinct fields, so the result parses as the message built field by field.

use std::collections::HashMap;

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use crate::dataset_ids::lookup_form;
use crate::policy::{CompiledPolicy, Operation, Outcome, Reason, Verdict};
use crate::text::{dataset_id_problems, py_repr};

/// The generated domicile.v1 types.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/domicile.v1.rs"));
}

/// One question of a BatchDecide, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub dataset_id: String,
    pub operation: Operation,
    /// The region's index in the policy's registry.
    pub region: u32,
}

/// A request field that is not acceptable, with the text the servicer reports for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Why a BatchDecide request is refused (INVALID_ARGUMENT either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Not a BatchDecideRequest in the wire format.
    Malformed(String),
    /// Well-formed, with these problems (every one of them, in request order).
    Invalid(Vec<FieldViolation>),
}

/// Parses and checks a serialized BatchDecideRequest of at most `max` questions against the
/// regions of `policy`.
pub fn parse_batch(request: &[u8], policy: &CompiledPolicy, max: usize) -> Result<Vec<Question>, BatchError> {
    let message = proto::BatchDecideRequest::decode(request)
        .map_err(|e| BatchError::Malformed(format!("not a valid BatchDecideRequest: {e}")))?;
    if message.requests.len() > max {
        return Err(BatchError::Invalid(vec![FieldViolation {
            field: "requests".to_owned(),
            description: format!("at most {max} requests per batch"),
        }]));
    }
    let mut problems = Vec::new();
    let mut questions = Vec::with_capacity(message.requests.len());
    for (i, item) in message.requests.into_iter().enumerate() {
        for description in dataset_id_problems(&item.dataset_id) {
            problems.push(FieldViolation { field: format!("requests[{i}].dataset_id"), description });
        }
        let operation = match proto::Operation::try_from(item.operation) {
            Ok(proto::Operation::Store) => Some(Operation::Store),
            Ok(proto::Operation::Process) => Some(Operation::Process),
            _ => {
                problems.push(FieldViolation {
                    field: format!("requests[{i}].operation"),
                    description: "must be OPERATION_STORE or OPERATION_PROCESS".to_owned(),
                });
                None
            }
        };
        let region = policy.region(&item.region);
        if region.is_none() {
            let description = if item.region.is_empty() {
                "must not be empty".to_owned()
            } else {
                format!("unknown region {} (see `domicile regions`)", py_repr(&item.region))
            };
            problems.push(FieldViolation { field: format!("requests[{i}].region"), description });
        }
        if !item.context.is_empty() {
            problems.push(FieldViolation {
                field: format!("requests[{i}].context"),
                description: "BatchDecide logs no context: ask with Decide to log one".to_owned(),
            });
        }
        if let (Some(operation), Some(region)) = (operation, region) {
            if problems.is_empty() {
                // Named as Decide names it: in normal form (as stored).
                let dataset_id = lookup_form(&item.dataset_id).into_owned();
                questions.push(Question { dataset_id, operation, region });
            }
        }
    }
    if !problems.is_empty() {
        return Err(BatchError::Invalid(problems));
    }
    Ok(questions)
}

/// What every decision of one answer shares.
#[derive(Clone, Copy, Debug)]
pub struct DecisionContext<'a> {
    pub policy_version: &'a str,
    pub catalog_revision: i64,
    /// Microseconds since the Unix epoch.
    pub decide_time: i64,
}

/// Encodes decisions that share a context, reusing fragments (see the module doc).
pub struct Encoder {
    context: Vec<u8>,
    verdicts: HashMap<(u32, Outcome), Vec<u8>>,
}

// Field numbers of domicile.v1.Decision and Reason written here.
const DECISION_ID: u32 = 1;
const DATASET_ID: u32 = 3;
const OPERATION: u32 = 4;
const REGION: u32 = 5;
const REASONS: u32 = 7;
const INHERITED_ONLY: u32 = 11;
const REASON_CODE: u32 = 1;
const REASON_RULE_ID: u32 = 2;
const REASON_MESSAGE: u32 = 3;
const REASON_LINEAGE_PATH: u32 = 4;
const REASON_CITATION: u32 = 5;

impl Encoder {
    pub fn new(context: DecisionContext<'_>) -> Encoder {
        let fragment = proto::Decision {
            policy_version: context.policy_version.to_owned(),
            catalog_revision: context.catalog_revision,
            decide_time: Some(timestamp(context.decide_time)),
            ..Default::default()
        };
        Encoder { context: fragment.encode_to_vec(), verdicts: HashMap::new() }
    }

    /// Appends one decision as field `field` of the enclosing message (1 for both
    /// BatchDecideResponse.decisions and DecideResponse.decision).
    #[allow(clippy::too_many_arguments)]
    pub fn decision(
        &mut self,
        out: &mut Vec<u8>,
        field: u32,
        decision_id: &str,
        dataset_id: &str,
        operation: Operation,
        region: &str,
        verdict: &Verdict,
    ) {
        let verdict_fragment = self.verdicts.entry((verdict.allowed.id, verdict.outcome)).or_insert_with(|| {
            proto::Decision {
                outcome: match verdict.outcome {
                    Outcome::Allow => proto::Outcome::Allow as i32,
                    Outcome::Deny => proto::Outcome::Deny as i32,
                },
                allowed_regions: verdict.allowed.names.iter().map(|name| name.to_string()).collect(),
                ..Default::default()
            }
            .encode_to_vec()
        });
        let operation_value = match operation {
            Operation::Store => proto::Operation::Store as u64,
            Operation::Process => proto::Operation::Process as u64,
        };
        let reasons_len: usize = verdict.reasons.iter().map(|r| nested_len(REASONS, reason_len(r))).sum();
        let body_len = string_len(DECISION_ID, decision_id)
            + string_len(DATASET_ID, dataset_id)
            + key_len(OPERATION)
            + encoded_len_varint(operation_value)
            + string_len(REGION, region)
            + verdict_fragment.len()
            + reasons_len
            + self.context.len()
            + if verdict.inherited_only { key_len(INHERITED_ONLY) + 1 } else { 0 };
        out.reserve(key_len(field) + encoded_len_varint(body_len as u64) + body_len);
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(body_len as u64, out);
        put_string(out, DECISION_ID, decision_id);
        put_string(out, DATASET_ID, dataset_id);
        encode_key(OPERATION, WireType::Varint, out);
        encode_varint(operation_value, out);
        put_string(out, REGION, region);
        out.extend_from_slice(verdict_fragment);
        for reason in &verdict.reasons {
            encode_key(REASONS, WireType::LengthDelimited, out);
            encode_varint(reason_len(reason) as u64, out);
            put_string(out, REASON_CODE, reason.code.as_str());
            put_string(out, REASON_RULE_ID, &reason.rule_id);
            put_string(out, REASON_MESSAGE, &reason.message);
            for step in &reason.path {
                put_repeated_string(out, REASON_LINEAGE_PATH, step);
            }
            put_string(out, REASON_CITATION, &reason.citation);
        }
        out.extend_from_slice(&self.context);
        if verdict.inherited_only {
            encode_key(INHERITED_ONLY, WireType::Varint, out);
            encode_varint(1, out);
        }
    }
}

fn reason_len(reason: &Reason) -> usize {
    string_len(REASON_CODE, reason.code.as_str())
        + string_len(REASON_RULE_ID, &reason.rule_id)
        + string_len(REASON_MESSAGE, &reason.message)
        + reason.path.iter().map(|step| repeated_string_len(REASON_LINEAGE_PATH, step)).sum::<usize>()
        + string_len(REASON_CITATION, &reason.citation)
}

fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A singular string field: proto3 leaves it out when empty.
fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        repeated_string_len(tag, value)
    }
}

fn put_string(out: &mut Vec<u8>, tag: u32, value: &str) {
    if !value.is_empty() {
        put_repeated_string(out, tag, value);
    }
}

/// An element of a repeated string field: written even when empty.
fn repeated_string_len(tag: u32, value: &str) -> usize {
    nested_len(tag, value.len())
}

fn put_repeated_string(out: &mut Vec<u8>, tag: u32, value: &str) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

/// A google.protobuf.Timestamp of microseconds since the Unix epoch.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}
