//! The decision log's entries (format 4, documented in router/decision_log/format.py): the JSON
//! of one request's decisions, with the allowed-region sets, the reason texts and the reason
//! sets each written once and the decision rows pointing into them.
//!
//! The one renderer of entries: the engine's own decisions (a BatchDecide's) and decisions the
//! router hands over (the binding reads them) are written here alike. Sets are numbered by
//! identity (decisions share their verdict's values: the engine memoises verdicts); region sets
//! also by content, so that equal lists share a number however they were made. Reason texts
//! are numbered by content: a reason names its dataset only in its lineage path, so a batch's
//! verdicts share a few dozen texts (about one per rule, operation and region).

use std::sync::Arc;

use hashbrown::HashMap;

use crate::policy::{Operation, Outcome, Reason};
use crate::reason_texts::{ReasonText, Reasons, TextNumbers};

/// What every decision of an entry shares.
#[derive(Clone, Copy, Debug)]
pub struct EntryHead<'a> {
    pub kind: &'a str,
    pub caller: &'a str,
    pub policy_version: &'a str,
    /// sha256 (hex) of the policy text.
    pub policy_hash: &'a str,
    pub catalog_revision: i64,
    /// Facts logged beside the decisions, in order (none: no `context` member).
    pub context: &'a [(String, String)],
}

/// One decision's row, its sets given by `EntryWriter::region_set` and `reason_set`.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    pub decision_id: &'a str,
    pub dataset_id: &'a str,
    pub operation: Operation,
    pub region: &'a str,
    pub outcome: Outcome,
    pub region_set: usize,
    pub reason_set: usize,
    /// Microseconds since the Unix epoch.
    pub decide_time: i64,
    pub inherited_only: bool,
}

/// Builds one entry.
#[derive(Default)]
pub struct EntryWriter {
    region_sets: Sets,
    reason_texts: Texts,
    reason_sets: Sets,
    rows: Vec<u8>,
    count: usize,
    /// The last decide time written, and where its text is in `rows` (decisions of a request
    /// share one).
    time: Option<(i64, std::ops::Range<usize>)>,
}

#[derive(Default)]
struct Sets {
    json: Vec<u8>,
    count: usize,
    by_identity: HashMap<usize, usize>,
    by_content: HashMap<Box<[u8]>, usize>,
    scratch: Vec<u8>,
}

impl Sets {
    /// The number of the set `identity` names, written by `write` when new. `by_content`: equal
    /// sets of other identities share a number too.
    fn number(&mut self, identity: usize, by_content: bool, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        if let Some(&number) = self.by_identity.get(&identity) {
            return number;
        }
        let number = if by_content {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            write(&mut scratch);
            let number = match self.by_content.get(scratch.as_slice()) {
                Some(&number) => number,
                None => {
                    let number = self.push(|json| json.extend_from_slice(&scratch));
                    self.by_content.insert(scratch.as_slice().into(), number);
                    number
                }
            };
            self.scratch = scratch;
            number
        } else {
            self.push(write)
        };
        self.by_identity.insert(identity, number);
        number
    }

    fn clear(&mut self) {
        self.json.clear();
        self.count = 0;
        self.by_identity.clear();
        self.by_content.clear();
    }

    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        if self.count > 0 {
            self.json.push(b',');
        }
        write(&mut self.json);
        self.count += 1;
        self.count - 1
    }
}

/// The reason texts of an entry, each written once.
#[derive(Default)]
struct Texts {
    json: Vec<u8>,
    numbers: TextNumbers,
}

impl Texts {
    fn clear(&mut self) {
        self.json.clear();
        self.numbers.clear();
    }

    /// The number of `text`, written when new.
    fn number(&mut self, text: &Arc<ReasonText>) -> usize {
        let json = &mut self.json;
        self.numbers.number(text, |text| {
            if !json.is_empty() {
                json.push(b',');
            }
            json.extend_from_slice(&text.json);
        })
    }
}

impl EntryWriter {
    /// A writer with room for `rows` bytes of decision rows and `sets` bytes of reason sets.
    pub fn with_room(rows: usize, sets: usize) -> EntryWriter {
        let mut writer = EntryWriter { rows: Vec::with_capacity(rows), ..EntryWriter::default() };
        writer.reason_sets.json.reserve(sets);
        writer
    }

    /// The number of an allowed-region set. `identity` tells sets apart cheaply: the same
    /// identity must mean the same set while the entry is built.
    pub fn region_set<'s>(&mut self, identity: usize, regions: impl IntoIterator<Item = &'s str>) -> usize {
        self.region_sets.number(identity, true, |out| json_strings(out, regions))
    }

    /// The number of a reason set (see `region_set` for `identity`) of `reasons`: each reason
    /// written as `[TEXT, [LINEAGE PATH...]]`, TEXT the number of its text in the entry's reason
    /// texts.
    pub fn reason_set(&mut self, identity: usize, reasons: &Reasons) -> usize {
        let texts = &mut self.reason_texts;
        self.reason_sets.number(identity, false, |out| {
            out.push(b'[');
            for (n, (text, path)) in reasons.json().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                push_number(out, texts.number(text) as i64);
                out.push(b',');
                out.extend_from_slice(path);
                out.push(b']');
            }
            out.push(b']');
        })
    }

    pub fn row(&mut self, row: &Row<'_>) {
        let out = &mut self.rows;
        if self.count > 0 {
            out.push(b',');
        }
        self.count += 1;
        out.push(b'[');
        json_string(out, row.decision_id);
        out.push(b',');
        json_string(out, row.dataset_id);
        out.push(b',');
        // (Words that need no escaping, written quoted as they are.)
        out.extend_from_slice(match row.operation {
            Operation::Store => &b"\"store\""[..],
            Operation::Process => &b"\"process\""[..],
        });
        out.push(b',');
        json_string(out, row.region);
        out.push(b',');
        out.extend_from_slice(match row.outcome {
            Outcome::Allow => &b"\"allow\""[..],
            Outcome::Deny => &b"\"deny\""[..],
        });
        out.push(b',');
        push_number(out, row.region_set as i64);
        out.push(b',');
        push_number(out, row.reason_set as i64);
        out.push(b',');
        match &self.time {
            Some((micros, text)) if *micros == row.decide_time => out.extend_from_within(text.clone()),
            _ => {
                let start = out.len();
                out.push(b'"');
                write_rfc3339(out, row.decide_time);
                out.push(b'"');
                self.time = Some((row.decide_time, start..out.len()));
            }
        }
        out.extend_from_slice(if row.inherited_only { b",true]" } else { b",false]" });
    }

    /// Decisions written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the writer for the next entry, keeping the room it has.
    pub fn clear(&mut self) {
        self.region_sets.clear();
        self.reason_texts.clear();
        self.reason_sets.clear();
        self.rows.clear();
        self.count = 0;
        self.time = None;
    }

    /// The entry's JSON written at the end of `out`; `head` as `head_json` renders it.
    pub fn write_to(&self, head: &[u8], out: &mut Vec<u8>) {
        for piece in self.pieces(head) {
            out.extend_from_slice(piece);
        }
    }

    /// The length of the entry's JSON after `head`.
    pub fn len_with(&self, head: &[u8]) -> usize {
        self.pieces(head).iter().map(|piece| piece.len()).sum()
    }

    /// The entry's JSON.
    pub fn finish(&self, head: &EntryHead<'_>) -> Vec<u8> {
        self.pieces(&head_json(head)).concat()
    }

    /// The entry's JSON in pieces, in order (`finish` joins them), for a caller that copies it
    /// once to where it is kept; `head` as `head_json` renders it.
    pub fn pieces<'a>(&'a self, head: &'a [u8]) -> [&'a [u8]; 10] {
        [
            head,
            b",\"region_sets\":[",
            &self.region_sets.json,
            b"],\"reason_texts\":[",
            &self.reason_texts.json,
            b"],\"reason_sets\":[",
            &self.reason_sets.json,
            b"],\"decisions\":[",
            &self.rows,
            b"]}",
        ]
    }
}

/// The start of an entry, up to its sets: what every decision of it shares.
pub fn head_json(head: &EntryHead<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"kind\":");
    json_string(&mut out, head.kind);
    out.extend_from_slice(b",\"caller\":");
    json_string(&mut out, head.caller);
    out.extend_from_slice(b",\"policy_version\":");
    json_string(&mut out, head.policy_version);
    out.extend_from_slice(b",\"policy_hash\":");
    json_string(&mut out, head.policy_hash);
    out.extend_from_slice(b",\"catalog_revision\":");
    push_number(&mut out, head.catalog_revision);
    if !head.context.is_empty() {
        out.extend_from_slice(b",\"context\":{");
        for (n, (key, value)) in head.context.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            json_string(&mut out, key);
            out.push(b':');
            json_string(&mut out, value);
        }
        out.push(b'}');
    }
    out
}

/// A reason's text as an entry's `reason_texts` lists it: `[CODE, MESSAGE, RULE_ID, CITATION]`.
pub fn reason_text(reason: &Reason) -> Vec<u8> {
    let mut out = Vec::new();
    json_strings(&mut out, [reason.code.as_str(), &reason.message, &reason.rule_id, &reason.citation]);
    out
}

/// A JSON array of strings.
pub fn json_strings<'s>(out: &mut Vec<u8>, values: impl IntoIterator<Item = &'s str>) {
    out.push(b'[');
    for (n, value) in values.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        json_string(out, value);
    }
    out.push(b']');
}

/// A JSON string: `"`, `\` and control characters escaped, everything else as it is (UTF-8).
pub fn json_string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = value.as_bytes();
    // Without an early exit the check runs over many bytes at a time: ids, regions and the
    // like are short and seldom need escaping.
    if !bytes.iter().fold(false, |escape, &b| escape | (b < 0x20) | (b == b'"') | (b == b'\\')) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn push_number(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// RFC 3339 in UTC (`Z`), with microseconds unless there are none: as the log always wrote
/// times.
pub fn rfc3339(micros: i64) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339(&mut out, micros);
    String::from_utf8(out).expect("ASCII")
}

/// `rfc3339` written at the end of `out` (a decision's row is written without allocating).
pub fn write_rfc3339(out: &mut Vec<u8>, micros: i64) {
    fn digits(out: &mut Vec<u8>, value: i64, width: u32) {
        for place in (0..width).rev() {
            out.push(b'0' + (value / 10_i64.pow(place) % 10) as u8);
        }
    }
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    digits(out, year, 4);
    out.push(b'-');
    digits(out, i64::from(month), 2);
    out.push(b'-');
    digits(out, i64::from(day), 2);
    out.push(b'T');
    digits(out, second_of_day / 3600, 2);
    out.push(b':');
    digits(out, second_of_day / 60 % 60, 2);
    out.push(b':');
    digits(out, second_of_day % 60, 2);
    if fraction != 0 {
        out.push(b'.');
        digits(out, fraction, 6);
    }
    out.push(b'Z');
}

/// (year, month, day) of a day number since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ReasonCode;
    use crate::reason_texts::ReasonTexts;

    fn reason(code: ReasonCode, message: &str, rule_id: &str, citation: &str, path: &[&str]) -> Reason {
        Reason {
            code,
            message: Arc::from(message),
            rule_id: Arc::from(rule_id),
            citation: Arc::from(citation),
            path: path.iter().map(|&step| Arc::from(step)).collect(),
        }
    }

    #[test]
    fn reason_texts_are_written_once_and_reasons_name_them() {
        let mut writer = EntryWriter::default();
        // (Texts interned apart are numbered by content too.)
        let (texts, others) = (ReasonTexts::default(), ReasonTexts::default());
        let first = Reasons::new(
            &[
                reason(ReasonCode::RuleDenied, "m \"1\"", "r", "c", &["s3://a", "s3://b"]),
                reason(ReasonCode::DefaultDenied, "m2", "", "", &[]),
            ],
            &texts,
        );
        let second = Reasons::new(&[reason(ReasonCode::RuleDenied, "m \"1\"", "r", "c", &["s3://c"])], &others);
        assert_eq!(writer.reason_set(1, &first), 0);
        assert_eq!(writer.reason_set(2, &second), 1);
        assert_eq!(writer.reason_set(1, &second), 0); // the identity names the set
        assert_eq!(writer.reason_set(3, &Reasons::default()), 2);
        let region_set = writer.region_set(9, ["aws:eu-west-1"]);
        writer.row(&Row {
            decision_id: "eu-1:a1",
            dataset_id: "s3://b",
            operation: Operation::Store,
            region: "aws:us-east-1",
            outcome: Outcome::Deny,
            region_set,
            reason_set: 0,
            decide_time: 1_796_083_200_000_001,
            inherited_only: false,
        });
        let head = EntryHead {
            kind: "decide",
            caller: "c",
            policy_version: "1",
            policy_hash: "ff",
            catalog_revision: 7,
            context: &[],
        };
        assert_eq!(
            String::from_utf8(writer.finish(&head)).unwrap(),
            concat!(
                r#"{"kind":"decide","caller":"c","policy_version":"1","policy_hash":"ff","catalog_revision":7,"#,
                r#""region_sets":[["aws:eu-west-1"]],"#,
                r#""reason_texts":[["RULE_DENIED","m \"1\"","r","c"],["DEFAULT_DENIED","m2","",""]],"#,
                r#""reason_sets":[[[0,["s3://a","s3://b"]],[1,[]]],[[0,["s3://c"]]],[]],"#,
                r#""decisions":[["eu-1:a1","s3://b","store","aws:us-east-1","deny",0,0,"2026-12-01T00:00:00.000001Z",false]]}"#,
            )
        );
    }

    #[test]
    fn a_cleared_writer_writes_the_next_entry_as_a_new_writer_would() {
        // Different sets, texts and times in each entry: nothing of the first may leak.
        fn fill(writer: &mut EntryWriter, seed: usize) {
            let texts = ReasonTexts::default();
            for n in 0..5 {
                let rule = format!("r{}", (seed + n) % 3);
                let reasons = Reasons::new(&[reason(ReasonCode::RuleDenied, "m", &rule, "c", &["s3://a"])], &texts);
                let region_set = writer.region_set(seed * 10 + n % 2, [if n % 2 == 0 { "aws:eu-west-1" } else { "x" }]);
                let reason_set = writer.reason_set(seed * 10 + n, &reasons);
                writer.row(&Row {
                    decision_id: "d",
                    dataset_id: "s3://a",
                    operation: if n % 2 == 0 { Operation::Store } else { Operation::Process },
                    region: "aws:us-east-1",
                    outcome: if n % 3 == 0 { Outcome::Allow } else { Outcome::Deny },
                    region_set,
                    reason_set,
                    decide_time: 1_796_083_200_000_000 + (seed * 7 + n / 2) as i64,
                    inherited_only: n == 4,
                });
            }
        }
        let context = [("k".to_owned(), "v\n".to_owned())];
        let head = head_json(&EntryHead {
            kind: "batch_decide",
            caller: "c",
            policy_version: "1",
            policy_hash: "ff",
            catalog_revision: 7,
            context: &context,
        });
        let mut fresh = EntryWriter::default();
        fill(&mut fresh, 2);
        let mut reused = EntryWriter::with_room(16, 16);
        fill(&mut reused, 1);
        reused.clear();
        assert!(reused.is_empty());
        fill(&mut reused, 2);
        let mut out = b"before".to_vec();
        reused.write_to(&head, &mut out);
        assert_eq!(&out[..6], b"before");
        assert_eq!(out[6..], fresh.pieces(&head).concat());
        assert_eq!(reused.len_with(&head), out.len() - 6);
        assert!(String::from_utf8(out).unwrap().contains(r#"["d","s3://a","process","aws:us-east-1","deny",1,1,"#));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for value in [0, 7, 10, 1_000_000_007, -3, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_number(&mut out, value);
            assert_eq!(out, value.to_string().into_bytes());
        }
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_200_000_001), "2026-12-01T00:00:00.000001Z");
        assert_eq!(rfc3339(951_782_400_500_000), "2000-02-29T00:00:00.500000Z");
        assert_eq!(rfc3339(-62_135_596_800_000_000), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799_999_999), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn strings_escape_what_json_requires() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"");
    }
}
