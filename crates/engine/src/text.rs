//! Texts as the Python side writes them: `repr` quoting for messages, the dataset-id checks of
//! `catalog.validation.check_id`, and Python's idea of whitespace.
//!
//! Messages quote ids and regions with Python's `repr` because that is how they were always
//! written (and replay compares messages); tests/unit hold these functions equal to Python's.

use crate::printable::NON_PRINTABLE;

/// The largest dataset id, in UTF-8 bytes (`catalog.model.MAX_ID_BYTES`).
pub const MAX_ID_BYTES: usize = 2048;

/// `repr(value)` of a Python `str`.
pub fn py_repr(value: &str) -> String {
    let quote = if value.contains('\'') && !value.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(value.len() + 2);
    out.push(quote);
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => push_escape(&mut out, c as u32),
            c if c.is_ascii() || is_printable(c) => out.push(c),
            c => push_escape(&mut out, c as u32),
        }
    }
    out.push(quote);
    out
}

fn push_escape(out: &mut String, code: u32) {
    use std::fmt::Write;
    // (Writing to a String cannot fail.)
    let _ = if code <= 0xff {
        write!(out, "\\x{code:02x}")
    } else if code <= 0xffff {
        write!(out, "\\u{code:04x}")
    } else {
        write!(out, "\\U{code:08x}")
    };
}

/// Python's `str.isprintable` for one non-ASCII character.
fn is_printable(ch: char) -> bool {
    let code = ch as u32;
    NON_PRINTABLE
        .binary_search_by(|&(start, end)| {
            if end < code {
                std::cmp::Ordering::Less
            } else if start > code {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_err()
}

/// Python's `str.isspace` for one character: Unicode White_Space plus the four information
/// separators U+001C..U+001F, which Python counts as whitespace too.
pub fn is_py_space(ch: char) -> bool {
    ch.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&ch)
}

/// The problems `catalog.validation.check_id` reports for a dataset id, in its order.
pub fn dataset_id_problems(value: &str) -> Vec<String> {
    // The common id, checked many bytes at a time: printable ASCII (no control characters),
    // no space at either end (the only whitespace among those characters).
    let bytes = value.as_bytes();
    if bytes.len() <= MAX_ID_BYTES
        && bytes.first().is_some_and(|&b| b != b' ')
        && bytes.last().is_some_and(|&b| b != b' ')
        && bytes.iter().fold(true, |printable, &b| printable & (0x20..0x7f).contains(&b))
    {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if value.is_empty() {
        problems.push("must not be empty".to_owned());
        return problems;
    }
    if value.len() > MAX_ID_BYTES {
        problems.push(format!("must be at most {MAX_ID_BYTES} bytes"));
    }
    let first = value.chars().next().is_some_and(is_py_space);
    let last = value.chars().next_back().is_some_and(is_py_space);
    if first || last {
        problems.push("must not start or end with whitespace".to_owned());
    }
    // Category Cc (`char::is_control`); Rust strings cannot hold the surrogates (Cs) Python
    // also refuses.
    if value.chars().any(char::is_control) {
        problems.push("must not contain control characters".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(py_repr("s3://a/b"), "'s3://a/b'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("both ' and \""), "'both \\' and \"'");
        assert_eq!(py_repr("tab\there\\"), "'tab\\there\\\\'");
        assert_eq!(py_repr("\u{7f}\u{1}"), "'\\x7f\\x01'");
        assert_eq!(py_repr("caf\u{e9}"), "'caf\u{e9}'");
        assert_eq!(py_repr("nb\u{a0}sp"), "'nb\\xa0sp'");
        assert_eq!(py_repr("zw\u{200b}"), "'zw\\u200b'");
        assert_eq!(py_repr("\u{e0001}"), "'\\U000e0001'");
    }

    #[test]
    fn id_problems_in_python_order() {
        assert_eq!(dataset_id_problems(""), vec!["must not be empty"]);
        assert!(dataset_id_problems("s3://ok").is_empty());
        assert_eq!(
            dataset_id_problems(" x\u{1}"),
            vec!["must not start or end with whitespace", "must not contain control characters"]
        );
        assert_eq!(dataset_id_problems(&"a".repeat(2049)), vec!["must be at most 2048 bytes"]);
        assert_eq!(dataset_id_problems("x\u{1f}").len(), 2);
    }
}
