//! Reason texts interned: a reason's text -- its code, rule id, message and citation, all of it
//! but its lineage path -- rendered once in the wire format and in the decision log's JSON and
//! shared by every verdict that gives it. A verdict's memoised reasons (`Reasons`) then hold
//! their lineage paths and pointers to their texts: a batch's verdicts share a few dozen texts
//! of ~250 bytes each, which they would otherwise each hold twice.
//!
//! Answers and log entries number the texts they list (`TextNumbers`) by content, exactly, from
//! the hash each text carries: equal texts are most often the same one (compared by address),
//! and are compared by their bytes when they are not -- texts interned apart, as when the
//! table has started again (it holds at most `LIMIT` texts: some messages name a dataset or an
//! exemption, so the texts of a policy are not bounded by it alone).

use std::hash::Hasher;
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::policy::{Reason, ReasonCode};
use crate::{log_entry, pieces, wire};

/// Texts held at most: past it the table starts again (texts already handed out stay valid,
/// and equal to their new copies).
const LIMIT: usize = 4096;

/// A reason's text, rendered.
pub struct ReasonText {
    /// Of `wire` (and so of the text's content), the same in every table.
    hash: u64,
    pub code: ReasonCode,
    pub rule_id: Arc<str>,
    /// Its fields of a Reason in the wire format (but lineage_path).
    pub wire: Box<[u8]>,
    /// `[CODE, MESSAGE, RULE_ID, CITATION]` in JSON, as log entries list it.
    pub json: Box<[u8]>,
}

impl ReasonText {
    fn same(&self, other: &ReasonText) -> bool {
        std::ptr::eq(self, other) || (self.hash == other.hash && self.wire == other.wire)
    }
}

/// The reason texts of one policy (`CompiledPolicy::reason_texts`), each held once.
#[derive(Default)]
pub struct ReasonTexts {
    table: Mutex<HashTable<Arc<ReasonText>>>,
}

impl ReasonTexts {
    /// The text of `reason`, interned.
    pub fn intern(&self, reason: &Reason) -> Arc<ReasonText> {
        let wire = wire::reason_text(reason);
        // (A hasher of fixed keys: texts of other tables hash alike.)
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&wire);
        let hash = hasher.finish();
        let mut table = self.table.lock();
        if let Some(text) = table.find(hash, |text| *text.wire == *wire) {
            return text.clone();
        }
        if table.len() >= LIMIT {
            table.clear();
        }
        let text = Arc::new(ReasonText {
            hash,
            code: reason.code,
            rule_id: reason.rule_id.clone(),
            wire: wire.into(),
            json: log_entry::reason_text(reason).into(),
        });
        table.insert_unique(hash, text.clone(), |text| text.hash);
        text
    }

    /// Texts held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().len()
    }
}

/// Reasons whose texts `Reasons` holds inline.
const INLINE: usize = 2;

/// A verdict's reasons as answers and log entries take them: per reason, its text and its
/// lineage path in both renderings.
#[derive(Default)]
pub struct Reasons {
    /// The texts of the first `INLINE` reasons (most verdicts have one or two), held where the
    /// judgement holds its reasons: read with it, not from an allocation of their own.
    first: [Option<Arc<ReasonText>>; INLINE],
    /// The texts of the others.
    more: Box<[Arc<ReasonText>]>,
    /// Per reason, its lineage_path fields in the wire format and its path as a JSON array, as
    /// a pair of `pieces`.
    paths: Box<[u8]>,
}

impl Reasons {
    /// `reasons`, their texts interned in `texts`.
    pub fn new(reasons: &[Reason], texts: &ReasonTexts) -> Reasons {
        let mut paths = Vec::new();
        for reason in reasons {
            pieces::push_pair(
                &mut paths,
                |out| wire::put_lineage_path(out, &reason.path),
                |out| log_entry::json_strings(out, reason.path.iter().map(|step| &**step)),
            );
        }
        let mut first: [Option<Arc<ReasonText>>; INLINE] = Default::default();
        for (slot, reason) in first.iter_mut().zip(reasons) {
            *slot = Some(texts.intern(reason));
        }
        let more = reasons.iter().skip(INLINE).map(|reason| texts.intern(reason)).collect();
        Reasons { first, more, paths: paths.into() }
    }

    pub fn is_empty(&self) -> bool {
        self.first[0].is_none()
    }

    fn texts(&self) -> impl Iterator<Item = &Arc<ReasonText>> {
        self.first.iter().map_while(Option::as_ref).chain(self.more.iter())
    }

    /// Per reason, its text and its lineage_path fields in the wire format.
    pub fn wire(&self) -> impl Iterator<Item = (&Arc<ReasonText>, &[u8])> {
        self.texts().zip(pieces::pairs(&self.paths).map(|(wire, _)| wire))
    }

    /// Per reason, its text and its lineage path as a JSON array.
    pub fn json(&self) -> impl Iterator<Item = (&Arc<ReasonText>, &[u8])> {
        self.texts().zip(pieces::pairs(&self.paths).map(|(_, json)| json))
    }
}

/// The texts one answer or log entry lists, numbered 0, 1, ... as first named, by content;
/// with how many reasons named each.
#[derive(Default)]
pub struct TextNumbers {
    by_content: HashTable<u32>,
    /// In number order.
    texts: Vec<(Arc<ReasonText>, u64)>,
}

impl TextNumbers {
    /// The number of `text`, counted once more; `new` is given the text when it is new.
    pub fn number(&mut self, text: &Arc<ReasonText>, new: impl FnOnce(&ReasonText)) -> usize {
        let TextNumbers { by_content, texts } = self;
        let entry = by_content.entry(
            text.hash,
            |&number| texts[number as usize].0.same(text),
            |&number| texts[number as usize].0.hash,
        );
        let number = match entry {
            hashbrown::hash_table::Entry::Occupied(entry) => *entry.get() as usize,
            hashbrown::hash_table::Entry::Vacant(entry) => {
                let number = texts.len();
                entry.insert(u32::try_from(number).expect("fewer than 2^32 texts in a message"));
                texts.push((text.clone(), 0));
                new(text);
                number
            }
        };
        texts[number].1 += 1;
        number
    }

    /// The texts in number order, each with how many reasons named it.
    pub fn named(&self) -> impl Iterator<Item = (&ReasonText, u64)> {
        self.texts.iter().map(|(text, count)| (&**text, *count))
    }

    pub fn clear(&mut self) {
        self.by_content.clear();
        self.texts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(message: &str, path: &[&str]) -> Reason {
        Reason {
            code: ReasonCode::RuleDenied,
            message: Arc::from(message),
            rule_id: Arc::from("gdpr"),
            citation: Arc::from("GDPR Art. 44"),
            path: path.iter().map(|&step| Arc::from(step)).collect(),
        }
    }

    #[test]
    fn equal_texts_are_one_and_paths_stay_the_reasons() {
        let texts = ReasonTexts::default();
        let reasons = Reasons::new(&[reason("m", &["s3://a", "s3://b"]), reason("m", &[])], &texts);
        let again = Reasons::new(&[reason("m", &["s3://c"]), reason("other", &[])], &texts);
        assert_eq!(texts.len(), 2);
        let read: Vec<_> = reasons.json().map(|(text, path)| (text.clone(), path.to_vec())).collect();
        assert!(Arc::ptr_eq(&read[0].0, &read[1].0));
        assert!(Arc::ptr_eq(&read[0].0, again.texts().next().unwrap()));
        assert_eq!(read[0].1, br#"["s3://a","s3://b"]"#);
        assert_eq!(read[1].1, b"[]");
        assert_eq!(&*read[0].0.json, br#"["RULE_DENIED","m","gdpr","GDPR Art. 44"]"#);
        let wire: Vec<_> = reasons.wire().map(|(_, path)| path.len()).collect();
        assert_eq!(wire, [2 * (2 + 6), 0]);
        assert!(Reasons::new(&[], &texts).is_empty());
        // Past the texts held inline, in order.
        let many: Vec<Reason> = (0..5).map(|n| reason(&format!("m{n}"), &[])).collect();
        let messages: Vec<_> = Reasons::new(&many, &texts).wire().map(|(text, _)| text.json.clone()).collect();
        let want: Vec<Box<[u8]>> =
            (0..5).map(|n| format!(r#"["RULE_DENIED","m{n}","gdpr","GDPR Art. 44"]"#).into_bytes().into()).collect();
        assert_eq!(messages, want);
    }

    #[test]
    fn the_table_is_bounded_and_numbers_are_by_content_across_restarts() {
        let texts = ReasonTexts::default();
        let first = texts.intern(&reason("m 0", &[]));
        for n in 0..2 * LIMIT + 7 {
            texts.intern(&reason(&format!("dataset 's3://d/{n}' is not in the catalog"), &[]));
            assert!(texts.len() <= LIMIT);
        }
        let again = texts.intern(&reason("m 0", &[]));
        assert!(!Arc::ptr_eq(&first, &again), "interned anew after a restart");
        let other = texts.intern(&reason("m 1", &[]));
        let mut numbers = TextNumbers::default();
        let mut listed = Vec::new();
        for text in [&first, &other, &again, &first] {
            numbers.number(text, |text| listed.push(text.json.clone()));
        }
        assert_eq!(listed.len(), 2, "equal texts listed once");
        let named: Vec<u64> = numbers.named().map(|(_, count)| count).collect();
        assert_eq!(named, [3, 1]);
        numbers.clear();
        assert_eq!(numbers.number(&other, |_| {}), 0);
    }
}
