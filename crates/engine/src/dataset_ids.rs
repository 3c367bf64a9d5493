//! Dataset ids: the OpenLineage dataset identity `namespace/name`, checked and normalised.
//!
//! The one implementation of the rules `catalog/dataset_ids.py` documents (the Python module
//! calls these functions through the binding): an id is `namespace/name` with a namespace
//! `scheme://authority` or `scheme[:opaque]`, or `scheme://authority` alone (the root of a data
//! source); at most 2048 bytes, no control characters, no whitespace, no `/` at the end, a `%`
//! only as the start of an escape `%XX`, an authority for the schemes whose sources the spec
//! names by host.
//!
//! Normal form (RFC 3986, 6.2.2): the scheme and the host lower-cased, escapes upper-cased,
//! escapes of unreserved characters decoded; names keep their case. An id that breaks the
//! rules is looked up as it is written (an id stored before the rules applied).
//!
//! Problems are worded as the Python services always reported them (`repr` quoting).

use std::borrow::Cow;

use crate::glob::is_glob;
use crate::text::{is_py_space, py_repr, MAX_ID_BYTES};

/// Examples of ids, for messages.
pub const EXAMPLE_IDS: &str = "s3://bucket/path or postgres://host:5432/db.schema.table";

/// The schemes of the OpenLineage naming spec whose namespace names a host, bucket, container
/// or account: one of them without an authority is a mistake. Other schemes (`file`, an
/// embedded database's `duckdb`) may leave it empty.
const NEEDS_AUTHORITY: &[&str] = &[
    "abfss",
    "awsathena",
    "azurecosmos",
    "azurekusto",
    "cassandra",
    "crate",
    "db2",
    "dbfs",
    "gs",
    "hdfs",
    "hive",
    "kafka",
    "mysql",
    "oceanbase",
    "oracle",
    "postgres",
    "redshift",
    "s3",
    "s3a",
    "s3n",
    "snowflake",
    "sqlserver",
    "teradata",
    "trino",
    "wasbs",
];

/// An id in normal form (`normal`), or, with `problems`, the id as written and the rules it
/// breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedId {
    pub normal: String,
    pub problems: Vec<String>,
}

/// Checks `value` against the rules; its normal form when it follows them.
pub fn parse_dataset_id(value: &str) -> ParsedId {
    parse(value, false)
}

/// `parse_dataset_id` of a Python string that held unpaired surrogates (which a Rust string
/// cannot): `lossy` is that string with each of them replaced by U+FFFD, which takes as many
/// bytes in UTF-8 as Python counts for a surrogate. Such an id always breaks the rules.
pub fn parse_dataset_id_with_surrogates(lossy: &str) -> ParsedId {
    parse(lossy, true)
}

/// The id to look `value` up under: its normal form, or `value` as written when it breaks the
/// rules.
pub fn lookup_form(value: &str) -> Cow<'_, str> {
    if is_plainly_normal(value) {
        return Cow::Borrowed(value);
    }
    let parsed = parse_dataset_id(value);
    if parsed.problems.is_empty() && parsed.normal != value {
        Cow::Owned(parsed.normal)
    } else {
        Cow::Borrowed(value)
    }
}

/// An exemption's dataset pattern (an exact id, or a glob: `*`, `?`, `[...]`) in the normal
/// form of the ids it is to match: the scheme and host lower-cased, escapes normalised (an
/// exact id that breaks the rules stays as written, as `lookup_form`).
pub fn normalize_pattern(pattern: &str) -> Cow<'_, str> {
    if !is_glob(pattern) {
        return lookup_form(pattern);
    }
    let Some((namespace, name)) = split(pattern) else {
        return Cow::Borrowed(pattern);
    };
    Cow::Owned(format!("{}/{}", normal_namespace(namespace), normal_escapes(name)))
}

/// Why an exemption's dataset pattern can match no valid id, if it cannot: an exact id must
/// follow the rules; a glob may hold no whitespace, control characters or bad escapes, and may
/// not end with `/`.
pub fn pattern_problems(pattern: &str) -> Vec<String> {
    pattern_problems_of(pattern, false)
}

/// `pattern_problems` of a Python string with unpaired surrogates (see
/// `parse_dataset_id_with_surrogates`).
pub fn pattern_problems_with_surrogates(lossy: &str) -> Vec<String> {
    pattern_problems_of(lossy, true)
}

fn pattern_problems_of(pattern: &str, surrogates: bool) -> Vec<String> {
    if !is_glob(pattern) {
        return parse(pattern, surrogates).problems;
    }
    let mut problems = general_problems(pattern, surrogates);
    if pattern.ends_with('/') {
        problems.push("must not end with '/' (no dataset id does)".to_owned());
    }
    problems
}

fn parse(value: &str, surrogates: bool) -> ParsedId {
    let refused = |problems: Vec<String>| ParsedId { normal: value.to_owned(), problems };
    let general = general_problems(value, surrogates);
    if !general.is_empty() {
        return refused(general);
    }
    let Some((namespace, name)) = split(value) else {
        if let Some((scheme, authority)) = value.split_once("://") {
            if !authority.is_empty() && !authority.contains('/') && is_scheme(scheme) {
                // The root of a data source.
                return ParsedId {
                    normal: format!("{}://{}", scheme.to_ascii_lowercase(), lower_host(authority)),
                    problems: Vec::new(),
                };
            }
        }
        return refused(vec![format!("is not an OpenLineage dataset id NAMESPACE/NAME such as {EXAMPLE_IDS}")]);
    };
    if value.ends_with('/') {
        return refused(vec![
            "must not end with '/' (a directory is named without it, e.g. s3://bucket/dir)".to_owned()
        ]);
    }
    if let Some((scheme, authority)) = namespace.split_once("://") {
        if authority.is_empty() && NEEDS_AUTHORITY.contains(&scheme.to_ascii_lowercase().as_str()) {
            return refused(vec![format!("the namespace {} needs a host after '://'", py_repr(namespace))]);
        }
    }
    ParsedId { normal: format!("{}/{}", normal_namespace(namespace), normal_escapes(name)), problems: Vec::new() }
}

/// The rules every id and every pattern follows, in the order they are reported.
fn general_problems(value: &str, surrogates: bool) -> Vec<String> {
    if value.is_empty() {
        return vec!["must not be empty".to_owned()];
    }
    let mut problems = Vec::new();
    if value.len() > MAX_ID_BYTES {
        problems.push(format!("must be at most {MAX_ID_BYTES} bytes"));
    }
    // Category Cc (`char::is_control`) and the surrogates (Cs) of a Python string.
    if surrogates || value.chars().any(char::is_control) {
        problems.push("must not contain control characters".to_owned());
    } else if value.chars().any(is_py_space) {
        problems.push("must not contain whitespace (write a space as %20)".to_owned());
    }
    if value.contains('%') && escapes(value).count() != value.matches('%').count() {
        problems.push("a '%' must start an escape of two hexadecimal digits (%25 for '%' itself)".to_owned());
    }
    problems
}

/// (namespace, name), or None when `value` has no namespace of the grammar.
fn split(value: &str) -> Option<(&str, &str)> {
    if let Some((head, _)) = value.split_once("://") {
        if is_scheme(head) {
            let authority_end = head.len() + 3 + value[head.len() + 3..].find('/')?;
            return Some((&value[..authority_end], &value[authority_end + 1..]));
        }
    }
    let (namespace, name) = value.split_once('/')?;
    let scheme = namespace.split_once(':').map_or(namespace, |(scheme, _)| scheme);
    (is_scheme(scheme) && !namespace.contains('%')).then_some((namespace, name))
}

/// RFC 3986's scheme: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A namespace with its scheme lower-cased, and its host when it has an authority (the whole
/// namespace is the scheme when it has neither `://` nor `:`).
fn normal_namespace(namespace: &str) -> String {
    match namespace.split_once("://") {
        Some((scheme, authority)) => format!("{}://{}", scheme.to_ascii_lowercase(), lower_host(authority)),
        None => match namespace.split_once(':') {
            Some((scheme, opaque)) => format!("{}:{opaque}", scheme.to_ascii_lowercase()),
            None => namespace.to_ascii_lowercase(),
        },
    }
}

/// The authority with its host lower-cased (user information and port as written).
fn lower_host(authority: &str) -> String {
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let mut out = userinfo.map_or_else(String::new, |userinfo| format!("{userinfo}@"));
    if hostport.starts_with('[') {
        // An IPv6 literal, then perhaps :port.
        match hostport.split_once(']') {
            Some((host, port)) => {
                out.push_str(&host.to_lowercase());
                out.push(']');
                out.push_str(port);
            }
            None => out.push_str(&hostport.to_lowercase()),
        }
        return out;
    }
    let (host, port) = match hostport.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    };
    out.push_str(&normal_escapes(host).to_lowercase());
    if let Some(port) = port {
        out.push(':');
        out.push_str(port);
    }
    out
}

/// The escapes `%XX` of `text`, left to right, as (byte offset, value).
fn escapes(text: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let bytes = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            let start = at;
            at += 1;
            if bytes[start] == b'%' && start + 2 < bytes.len() {
                if let (Some(high), Some(low)) = (hex(bytes[start + 1]), hex(bytes[start + 2])) {
                    at = start + 3;
                    return Some((start, high << 4 | low));
                }
            }
        }
        None
    })
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// Escapes upper-cased, escapes of unreserved characters decoded.
fn normal_escapes(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, byte) in escapes(text) {
        out.push_str(&text[copied..at]);
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push_str(&text[at + 1..at + 3].to_ascii_uppercase());
        }
        copied = at + 3;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// An id already in normal form, as nearly all are: a lower-case `scheme://host[:port]/name`
/// with an ASCII host and a name without escapes, whitespace or control characters that does
/// not start or end with `/`.
fn is_plainly_normal(value: &str) -> bool {
    // (A scheme holds no `:`: the first one starts the `://` of an id that can be normal.)
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return false;
    };
    let Some((hostport, name)) = rest.split_once('/') else {
        return false;
    };
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "0"));
    value.len() <= MAX_ID_BYTES
        && is_scheme(scheme)
        && !scheme.bytes().any(|b| b.is_ascii_uppercase())
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && is_plain_name(name)
}

/// No `%`, control character or whitespace in `name`: checked many bytes at a time when it is
/// printable ASCII (no space), as names mostly are.
fn is_plain_name(name: &str) -> bool {
    let printable = name.bytes().fold(true, |plain, b| plain & (b > b' ') & (b < 0x7f) & (b != b'%'));
    printable || !name.chars().any(|c| c == '%' || char::is_control(c) || is_py_space(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(value: &str) -> String {
        let parsed = parse_dataset_id(value);
        assert!(parsed.problems.is_empty(), "{value}: {:?}", parsed.problems);
        parsed.normal
    }

    fn problems(value: &str) -> Vec<String> {
        let parsed = parse_dataset_id(value);
        assert_eq!(parsed.normal, value, "an id that breaks the rules stays as written");
        assert_eq!(lookup_form(value), value);
        parsed.problems
    }

    #[test]
    fn scheme_and_host_lower_cased_names_kept() {
        assert_eq!(normal("S3://Bank-EU-Lake/customers"), "s3://bank-eu-lake/customers");
        assert_eq!(normal("postgres://DB.EU:5432/core.public.Accounts"), "postgres://db.eu:5432/core.public.Accounts");
        assert_eq!(
            normal("abfss://Container@Account.dfs.core.windows.net/p"),
            "abfss://Container@account.dfs.core.windows.net/p"
        );
        assert_eq!(normal("hdfs://[FE80::1]:8020/warehouse/t"), "hdfs://[fe80::1]:8020/warehouse/t");
        assert_eq!(normal("BigQuery/project.dataset.table"), "bigquery/project.dataset.table");
        assert_eq!(normal("arn:aws:glue:eu-west-1:1/table/db/t"), "arn:aws:glue:eu-west-1:1/table/db/t");
        assert_eq!(normal("DuckDB:///srv/bank.duckdb/main.t"), "duckdb:///srv/bank.duckdb/main.t");
        assert_eq!(normal("S3://Bank-EU"), "s3://bank-eu");
    }

    #[test]
    fn escapes_upper_cased_and_unreserved_decoded() {
        assert_eq!(normal("s3://b/a%2fb%7e%41"), "s3://b/a%2Fb~A");
        assert_eq!(normal("s3://B%41/%7a%7B"), "s3://ba/z%7B");
        assert_eq!(normal("s3://b%2f/x"), "s3://b%2f/x"); // the host is lower-cased after its escapes
    }

    #[test]
    fn rules_broken() {
        assert_eq!(problems(""), vec!["must not be empty"]);
        assert_eq!(problems("not a dataset"), vec!["must not contain whitespace (write a space as %20)"]);
        assert_eq!(problems("s3://b/x\u{7}"), vec!["must not contain control characters"]);
        assert_eq!(problems("s3://b/x\u{a0}y"), vec!["must not contain whitespace (write a space as %20)"]);
        assert!(problems("customers")[0].starts_with("is not an OpenLineage dataset id NAMESPACE/NAME"));
        assert!(problems("s3://b/x/")[0].starts_with("must not end with '/'"));
        assert_eq!(problems("s3:///x"), vec!["the namespace 's3://' needs a host after '://'"]);
        assert_eq!(problems("Postgres:///t"), vec!["the namespace 'Postgres://' needs a host after '://'"]);
        assert!(problems("s3://b/100%")[0].starts_with("a '%' must start an escape"));
        assert!(problems("s3://b/%%41")[0].starts_with("a '%' must start an escape"));
        assert_eq!(problems(&format!("s3://b/{}", "x".repeat(2048))), vec!["must be at most 2048 bytes"]);
        assert_eq!(
            parse_dataset_id_with_surrogates("s3://b/\u{fffd}").problems,
            vec!["must not contain control characters"]
        );
    }

    #[test]
    fn the_fast_path_agrees_with_the_rules() {
        for id in ["s3://bank-eu/customers", "postgres://db.eu:5432/core.public.accounts", "s3://b/x y", "s3://b/x%41"]
        {
            if is_plainly_normal(id) {
                assert_eq!(normal(id), id);
            }
        }
        assert!(is_plainly_normal("s3://bank-eu/customers"));
        assert!(!is_plainly_normal("s3://b/x%41"));
        assert!(!is_plainly_normal("S3://b/x"));
        // Names past printable ASCII take the slow check; a `:` before the `://` is no scheme.
        let plain = ["s3://b/na\u{ef}ve", "s3://b/x~y!z", "s3://b:9/x:y"];
        let not_plain = [
            "s3://b/x\u{a0}y",
            "s3://b/x\ty",
            "s3://b/x\u{7f}",
            "s3://b/x\u{85}",
            "a:b://c/d",
            "s3:/b/x",
            "s3://b/x y",
        ];
        for id in plain {
            assert!(is_plainly_normal(id), "{id:?}");
            assert_eq!(normal(id), id);
        }
        for id in not_plain {
            assert!(!is_plainly_normal(id), "{id:?}");
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(normalize_pattern("S3://Bank-EU/customers"), "s3://bank-eu/customers");
        assert_eq!(normalize_pattern("S3://Bank-EU/Customers-*"), "s3://bank-eu/Customers-*");
        assert_eq!(normalize_pattern("S3://Bank-*/x%7e*"), "s3://bank-*/x~*");
        assert_eq!(normalize_pattern("*"), "*");
        assert!(pattern_problems("s3://bank-eu/*").is_empty());
        assert!(!pattern_problems("s3://bank eu/*").is_empty());
        assert_eq!(pattern_problems("s3://b/c*/"), vec!["must not end with '/' (no dataset id does)"]);
        assert!(!pattern_problems("customers").is_empty());
    }
}
