//! BatchDecide in the protobuf wire format: the request parsed with the types generated from
//! protos/domicile/v1/residency.proto (prost, at build time) and prost's decoding primitives
//! (one question at a time, see `parse_batch`), every question checked as the
//! servicer checks a Decide, and decisions encoded with prost's encoding primitives.
//!
//! A decision's bytes are copied from fragments made once: its verdict's fields (outcome,
//! reasons, inherited_only; memoised with the verdict, see `Judgement`), its allowed regions
//! (the same for every dataset of a kind: once per list and answer), and its policy version,
//! revision and time (once per answer). Protobuf parsers merge the fields of concatenated
//! fragments, and the fragments hold distinct fields, so the result parses as the message built
//! field by field.
//!
//! Asked for (`shared_region_sets`), the answer lists each allowed-region list once
//! (`region_sets`) and decisions name theirs by index: most of a decision's bytes otherwise.
//! Asked for (`shared_reason_texts`), it lists each reason's text (code, rule id, message,
//! citation) once (`reason_texts`) and reasons name theirs by index, keeping only their lineage
//! path: a batch's decisions share a few dozen texts, most of a compact answer's bytes otherwise.

use std::sync::Arc;

use hashbrown::HashMap;

use prost::bytes::Buf;
use prost::encoding::{
    bool, decode_key, encode_key, encode_varint, encoded_len_varint, key_len, message, skip_field, DecodeContext,
    WireType,
};
use prost::{DecodeError, Message};

use crate::dataset_ids::lookup_form;
use crate::memo::Judgement;
use crate::policy::{CompiledPolicy, Operation, Outcome, Reason, RegionList, Verdict};
use crate::reason_texts::{ReasonText, ReasonTexts, Reasons, TextNumbers};
use crate::text::{dataset_id_problems, py_repr};

/// The generated domicile.v1 types.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/domicile.v1.rs"));
}

/// One question of a BatchDecide, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question<'a> {
    pub dataset_id: &'a str,
    pub operation: Operation,
    /// The region's index in the policy's registry.
    pub region: u32,
}

/// The checked questions of one BatchDecide, in request order: their dataset ids kept in one
/// buffer (a batch holds thousands; one allocation, not one per id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Questions {
    ids: String,
    /// Per question: where its id ends in `ids` (it starts where the previous one ends).
    asked: Vec<(u32, Operation, u32)>,
}

impl Questions {
    pub fn with_capacity(questions: usize, id_bytes: usize) -> Questions {
        Questions { ids: String::with_capacity(id_bytes), asked: Vec::with_capacity(questions) }
    }

    pub fn push(&mut self, dataset_id: &str, operation: Operation, region: u32) {
        self.ids.push_str(dataset_id);
        let end = u32::try_from(self.ids.len()).expect("a batch's ids fit a message (< 4 GiB)");
        self.asked.push((end, operation, region));
    }

    pub fn len(&self) -> usize {
        self.asked.len()
    }

    /// The bytes of the dataset ids of questions `range`.
    pub fn id_bytes(&self, range: std::ops::Range<usize>) -> usize {
        let end = |index: usize| if index == 0 { 0 } else { self.asked[index - 1].0 as usize };
        end(range.end) - end(range.start)
    }

    pub fn is_empty(&self) -> bool {
        self.asked.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<Question<'_>> {
        let &(end, operation, region) = self.asked.get(index)?;
        let start = if index == 0 { 0 } else { self.asked[index - 1].0 };
        Some(Question { dataset_id: &self.ids[start as usize..end as usize], operation, region })
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Question<'_>> + '_ {
        let mut start = 0;
        self.asked.iter().map(move |&(end, operation, region)| {
            let dataset_id = &self.ids[start as usize..end as usize];
            start = end;
            Question { dataset_id, operation, region }
        })
    }
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

/// How the decisions of an answer carry their allowed regions and their reasons' texts: by
/// default each decision carries its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerShape {
    /// Each distinct allowed-region list once per answer (`region_sets`), decisions naming
    /// theirs by index (`allowed_regions_set`) instead of listing it (`allowed_regions`).
    pub shared_region_sets: bool,
    /// Each distinct reason text once per answer (`reason_texts`), reasons naming theirs by
    /// index (`Reason.text`) and carrying only their lineage path.
    pub shared_reason_texts: bool,
}

/// Parses and checks a serialized BatchDecideRequest of at most `max` questions against the
/// regions of `policy`: its questions and the answer's shape it asks for.
///
/// The request's fields are read one at a time (as the generated `merge` reads them), each
/// DecideRequest into the same message, emptied in between: its strings keep their room, so a
/// batch of thousands of questions is parsed without allocating per question.
pub fn parse_batch(
    request: &[u8],
    policy: &CompiledPolicy,
    max: usize,
) -> Result<(Questions, AnswerShape), BatchError> {
    let malformed = |e: DecodeError| BatchError::Malformed(format!("not a valid BatchDecideRequest: {e}"));
    let mut buf = request;
    let mut shape = AnswerShape::default();
    let mut item = proto::DecideRequest::default();
    let mut items = 0;
    let mut problems = Vec::new();
    let mut questions = Questions::with_capacity(request.len() / 32, request.len());
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(malformed)?;
        let ctx = DecodeContext::default();
        match tag {
            REQUEST_REQUESTS => {
                item.clear();
                message::merge(wire_type, &mut item, &mut buf, ctx).map_err(malformed)?;
                // Past `max` the rest is only read through: a malformed request is refused as such.
                if items < max {
                    check_question(items, &item, policy, &mut problems, &mut questions);
                }
                items += 1;
            }
            REQUEST_SHARED_REGION_SETS => {
                bool::merge(wire_type, &mut shape.shared_region_sets, &mut buf, ctx).map_err(malformed)?
            }
            REQUEST_SHARED_REASON_TEXTS => {
                bool::merge(wire_type, &mut shape.shared_reason_texts, &mut buf, ctx).map_err(malformed)?
            }
            _ => skip_field(wire_type, tag, &mut buf, ctx).map_err(malformed)?,
        }
    }
    if items > max {
        return Err(BatchError::Invalid(vec![FieldViolation {
            field: "requests".to_owned(),
            description: format!("at most {max} requests per batch"),
        }]));
    }
    if !problems.is_empty() {
        return Err(BatchError::Invalid(problems));
    }
    Ok((questions, shape))
}

/// Checks question `i` of a batch: its problems added to `problems`, else (while there are
/// none) the question added to `questions`.
fn check_question(
    i: usize,
    item: &proto::DecideRequest,
    policy: &CompiledPolicy,
    problems: &mut Vec<FieldViolation>,
    questions: &mut Questions,
) {
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
            questions.push(&lookup_form(&item.dataset_id), operation, region);
        }
    }
}

/// What every decision of one answer shares.
#[derive(Clone, Copy, Debug)]
pub struct DecisionContext<'a> {
    pub policy_version: &'a str,
    pub catalog_revision: i64,
    /// Microseconds since the Unix epoch.
    pub decide_time: i64,
}

/// Encodes the decisions of one answer, which share a context (see the module doc), from
/// judgements that outlive it (`'a`).
pub struct Encoder<'a> {
    shape: AnswerShape,
    context: Vec<u8>,
    /// By region list: its `allowed_regions` fields, or the `allowed_regions_set` field naming
    /// it (`shared_region_sets`).
    lists: HashMap<u32, Vec<u8>>,
    /// The answer's `region_sets` fields so far, and how many (`shared_region_sets`).
    sets: Vec<u8>,
    set_count: u64,
    /// Where a judgement's reasons intern their texts.
    interned: &'a ReasonTexts,
    /// The reason texts named so far and the answer's `reason_texts` fields
    /// (`shared_reason_texts`).
    texts: TextNumbers,
    text_fields: Vec<u8>,
    /// The text indices of the reasons of the decision being encoded.
    indices: Vec<u64>,
}

// Field numbers of domicile.v1 messages read and written here.
const REQUEST_REQUESTS: u32 = 1;
const REQUEST_SHARED_REGION_SETS: u32 = 2;
const REQUEST_SHARED_REASON_TEXTS: u32 = 3;
const DECISION_ID: u32 = 1;
const OUTCOME: u32 = 2;
const DATASET_ID: u32 = 3;
const OPERATION: u32 = 4;
const REGION: u32 = 5;
const ALLOWED_REGIONS: u32 = 6;
const REASONS: u32 = 7;
const INHERITED_ONLY: u32 = 11;
const ALLOWED_REGIONS_SET: u32 = 13;
const REASON_TEXT: u32 = 6;
const REASON_CODE: u32 = 1;
const REASON_RULE_ID: u32 = 2;
const REASON_MESSAGE: u32 = 3;
const REASON_LINEAGE_PATH: u32 = 4;
const REASON_CITATION: u32 = 5;
const RESPONSE_REGION_SETS: u32 = 2;
const RESPONSE_REASON_TEXTS: u32 = 3;
const REGION_SET_REGIONS: u32 = 1;

impl<'a> Encoder<'a> {
    /// An encoder of decisions whose reasons intern their texts in `interned` (their
    /// policy's).
    pub fn new(context: DecisionContext<'_>, shape: AnswerShape, interned: &'a ReasonTexts) -> Encoder<'a> {
        let fragment = proto::Decision {
            policy_version: context.policy_version.to_owned(),
            catalog_revision: context.catalog_revision,
            decide_time: Some(timestamp(context.decide_time)),
            ..Default::default()
        };
        Encoder {
            shape,
            context: fragment.encode_to_vec(),
            lists: HashMap::new(),
            sets: Vec::new(),
            set_count: 0,
            interned,
            texts: TextNumbers::default(),
            text_fields: Vec::new(),
            indices: Vec::new(),
        }
    }

    /// Appends one decision as field `field` of the enclosing message (1 for
    /// BatchDecideResponse.decisions).
    #[allow(clippy::too_many_arguments)]
    pub fn decision(
        &mut self,
        out: &mut Vec<u8>,
        field: u32,
        decision_id: &str,
        dataset_id: &str,
        operation: Operation,
        region: &str,
        judgement: &'a Judgement,
    ) {
        // (With shared texts a verdict's fields are written from its judgement: an ALLOW's
        // are its outcome and flag, without reading its memoised fields.)
        let reasons = self.shape.shared_reason_texts.then(|| judgement.reasons(self.interned));
        let verdict_len = match reasons {
            None => judgement.answer_fields().len(),
            Some(reasons) => self.name_texts(judgement, reasons),
        };
        let allowed = judgement.allowed();
        let regions = match self.lists.get(&allowed.id) {
            Some(fragment) => fragment,
            None => {
                let fragment = self.list_fragment(allowed);
                self.lists.entry(allowed.id).or_insert(fragment)
            }
        };
        let operation_value = match operation {
            Operation::Store => proto::Operation::Store as u64,
            Operation::Process => proto::Operation::Process as u64,
        };
        let body_len = string_len(DECISION_ID, decision_id)
            + string_len(DATASET_ID, dataset_id)
            + key_len(OPERATION)
            + encoded_len_varint(operation_value)
            + string_len(REGION, region)
            + regions.len()
            + verdict_len
            + self.context.len();
        out.reserve(key_len(field) + encoded_len_varint(body_len as u64) + body_len);
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(body_len as u64, out);
        put_string(out, DECISION_ID, decision_id);
        put_string(out, DATASET_ID, dataset_id);
        encode_key(OPERATION, WireType::Varint, out);
        encode_varint(operation_value, out);
        put_string(out, REGION, region);
        out.extend_from_slice(regions);
        match reasons {
            None => out.extend_from_slice(judgement.answer_fields()),
            Some(reasons) => self.put_verdict_fields(out, judgement, reasons),
        }
        out.extend_from_slice(&self.context);
    }

    /// Per reason text in the answer (`reason_texts`, in order), the text and how many of the
    /// decisions' reasons name it (with shared reason texts; none otherwise).
    pub fn texts_named(&self) -> impl Iterator<Item = (&ReasonText, u64)> {
        self.texts.named()
    }

    /// Appends what the answer holds besides its decisions (the region sets and reason texts
    /// they name).
    pub fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sets);
        out.extend_from_slice(&self.text_fields);
    }

    /// Names the texts of a judgement's `reasons` in the answer's `reason_texts` (`indices`,
    /// in order): the length of its verdict fields as this answer carries them.
    fn name_texts(&mut self, judgement: &Judgement, reasons: &Reasons) -> usize {
        self.indices.clear();
        let mut len = outcome_len(judgement.outcome()) + inherited_only_len(judgement.inherited_only());
        let fields = &mut self.text_fields;
        for (text, path) in reasons.wire() {
            let index = self.texts.number(text, |text| {
                encode_key(RESPONSE_REASON_TEXTS, WireType::LengthDelimited, fields);
                encode_varint(text.wire.len() as u64, fields);
                fields.extend_from_slice(&text.wire);
            }) as u64;
            self.indices.push(index);
            len += nested_len(REASONS, reason_ref_len(index) + path.len());
        }
        len
    }

    /// A judgement's verdict fields with its reasons naming their texts (`name_texts` just
    /// named them).
    fn put_verdict_fields(&self, out: &mut Vec<u8>, judgement: &Judgement, reasons: &Reasons) {
        put_outcome(out, judgement.outcome());
        for ((_, path), &index) in reasons.wire().zip(&self.indices) {
            encode_key(REASONS, WireType::LengthDelimited, out);
            encode_varint((reason_ref_len(index) + path.len()) as u64, out);
            // proto3 leaves a zero out: the first text is named by the field's absence.
            if index > 0 {
                encode_key(REASON_TEXT, WireType::Varint, out);
                encode_varint(index, out);
            }
            out.extend_from_slice(path);
        }
        put_inherited_only(out, judgement.inherited_only());
    }

    /// How a decision with the allowed regions `list` carries them.
    fn list_fragment(&mut self, list: &RegionList) -> Vec<u8> {
        let mut fragment = Vec::new();
        if self.shape.shared_region_sets {
            let index = self.set_count;
            self.set_count += 1;
            let set_len: usize = list.names.iter().map(|name| repeated_string_len(REGION_SET_REGIONS, name)).sum();
            encode_key(RESPONSE_REGION_SETS, WireType::LengthDelimited, &mut self.sets);
            encode_varint(set_len as u64, &mut self.sets);
            for name in list.names.iter() {
                put_repeated_string(&mut self.sets, REGION_SET_REGIONS, name);
            }
            // proto3 leaves a zero out: the first set is named by the field's absence.
            if index > 0 {
                encode_key(ALLOWED_REGIONS_SET, WireType::Varint, &mut fragment);
                encode_varint(index, &mut fragment);
            }
        } else {
            for name in list.names.iter() {
                put_repeated_string(&mut fragment, ALLOWED_REGIONS, name);
            }
        }
        fragment
    }
}

/// A verdict's fields of a Decision: outcome, reasons, inherited_only.
pub fn verdict_fields(verdict: &Verdict) -> Vec<u8> {
    let mut out = Vec::new();
    put_outcome(&mut out, verdict.outcome);
    for reason in &verdict.reasons {
        encode_key(REASONS, WireType::LengthDelimited, &mut out);
        encode_varint(reason_len(reason) as u64, &mut out);
        put_string(&mut out, REASON_CODE, reason.code.as_str());
        put_string(&mut out, REASON_RULE_ID, &reason.rule_id);
        put_string(&mut out, REASON_MESSAGE, &reason.message);
        put_lineage_path(&mut out, &reason.path);
        put_string(&mut out, REASON_CITATION, &reason.citation);
    }
    put_inherited_only(&mut out, verdict.inherited_only);
    out
}

fn outcome_value(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Allow => proto::Outcome::Allow as u64,
        Outcome::Deny => proto::Outcome::Deny as u64,
    }
}

fn outcome_len(outcome: Outcome) -> usize {
    key_len(OUTCOME) + encoded_len_varint(outcome_value(outcome))
}

fn put_outcome(out: &mut Vec<u8>, outcome: Outcome) {
    encode_key(OUTCOME, WireType::Varint, out);
    encode_varint(outcome_value(outcome), out);
}

fn inherited_only_len(inherited_only: bool) -> usize {
    if inherited_only {
        key_len(INHERITED_ONLY) + encoded_len_varint(1)
    } else {
        0
    }
}

fn put_inherited_only(out: &mut Vec<u8>, inherited_only: bool) {
    if inherited_only {
        encode_key(INHERITED_ONLY, WireType::Varint, out);
        encode_varint(1, out);
    }
}

fn reason_len(reason: &Reason) -> usize {
    text_len(reason) + path_len(reason)
}

/// The bytes of a reason's fields but its lineage path.
fn text_len(reason: &Reason) -> usize {
    string_len(REASON_CODE, reason.code.as_str())
        + string_len(REASON_RULE_ID, &reason.rule_id)
        + string_len(REASON_MESSAGE, &reason.message)
        + string_len(REASON_CITATION, &reason.citation)
}

fn path_len(reason: &Reason) -> usize {
    reason.path.iter().map(|step| repeated_string_len(REASON_LINEAGE_PATH, step)).sum()
}

/// A reason's fields but its lineage path (its text, as an answer's `reason_texts` lists it).
pub fn reason_text(reason: &Reason) -> Vec<u8> {
    let mut out = Vec::with_capacity(text_len(reason));
    put_string(&mut out, REASON_CODE, reason.code.as_str());
    put_string(&mut out, REASON_RULE_ID, &reason.rule_id);
    put_string(&mut out, REASON_MESSAGE, &reason.message);
    put_string(&mut out, REASON_CITATION, &reason.citation);
    out
}

/// A reason's lineage_path fields.
pub fn put_lineage_path(out: &mut Vec<u8>, path: &[Arc<str>]) {
    for step in path {
        put_repeated_string(out, REASON_LINEAGE_PATH, step);
    }
}

/// The bytes of a shared-text reason's `text` field naming text `index` (none for the first).
fn reason_ref_len(index: u64) -> usize {
    if index > 0 {
        key_len(REASON_TEXT) + encoded_len_varint(index)
    } else {
        0
    }
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
