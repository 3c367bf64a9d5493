"""Dataset ids: the OpenLineage dataset identity `namespace/name`, checked and normalised.

The OpenLineage naming spec makes a dataset's namespace the URI of its data source and its
name the path within it (`s3://bank-eu` + `customers`, `postgres://db.eu:5432` +
`core.public.accounts`); Domicile's id joins them with `/`. An id is:

    namespace "/" name
    namespace = scheme "://" authority      s3://bank-eu, postgres://db.eu:5432, file://
              | scheme [":" opaque]         bigquery, file, arn:aws:glue:eu-west-1:123456789012
    scheme    = a letter, then letters, digits, "+", "-", "."          (RFC 3986)
    name      = the rest, not empty

or `scheme://authority` alone: the root of a data source (`s3://bank-eu`), which is what an
OpenLineage dataset with an empty name in such a namespace denotes.

and, further: at most 2048 bytes of UTF-8, no control characters, no whitespace (a space is
written %20), no `/` at the end (a directory is named without it), a `%` only as the start of
an escape `%XX`, and an authority after `://` for the schemes whose sources the spec names by
host, bucket or account (`s3:///x` is a typo; `file:///data/x.csv` and an embedded database's
`duckdb:///srv/bank.duckdb/main.t` are not).

Normal form. The spec's ids are URIs, and RFC 3986 (6.2.2) makes these forms equal, so an id
is stored and compared in this one: the scheme (the whole namespace when it has neither
`://` nor `:`) and the host lower-cased (`S3://Bank-EU/x` is `s3://bank-eu/x`; user
information and port kept as written), escapes upper-cased (`%2f` is `%2F`), and escapes of
unreserved characters decoded (`%7E` is `~`). Names are case-sensitive, as paths and
database identifiers are.

Ids stored before these rules may break them. Reads look such an id up as it is written
(`lookup_form`); writes need an id that follows them (`check_dataset_id`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from domicile.catalog.model import MAX_ID_BYTES
from domicile.errors import FieldErrors

EXAMPLE_IDS = "s3://bucket/path or postgres://host:5432/db.schema.table"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# The schemes of the OpenLineage naming spec whose namespace names a host, bucket, container or
# account: one of them without an authority is a mistake. Other schemes may leave it empty.
_NEEDS_AUTHORITY = frozenset(
    {
        "abfss", "awsathena", "azurecosmos", "azurekusto", "cassandra", "crate", "db2", "dbfs", "gs",
        "hdfs", "hive", "kafka", "mysql", "oceanbase", "oracle", "postgres", "redshift", "s3", "s3a",
        "s3n", "snowflake", "sqlserver", "teradata", "trino", "wasbs",
    }
)  # fmt: skip
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# An id already in normal form, as nearly all are: lower-case scheme://host[:port], a name
# without escapes, whitespace or ASCII control characters, not ending in "/".
_PLAINLY_NORMAL = re.compile(
    r"[a-z][a-z0-9+.-]*://[a-z0-9._~-]+(?::[0-9]+)?/"
    r"[^\s%/\x00-\x1f\x7f-\x9f\ud800-\udfff][^\s%\x00-\x1f\x7f-\x9f\ud800-\udfff]*(?<!/)"
)


@dataclass(frozen=True)
class ParsedId:
    """An id in normal form (`normal`), or the problems that keep it from being one."""

    normal: str
    problems: tuple[str, ...] = ()


def parse_dataset_id(value: str) -> ParsedId:
    """Check `value` against the rules above; its normal form when it follows them."""
    if len(value) <= MAX_ID_BYTES // 4 and _PLAINLY_NORMAL.fullmatch(value):
        return ParsedId(value)
    general = _general_problems(value)
    if general:
        return ParsedId(value, general)
    namespace, name = _split(value)
    scheme, sep, authority = value.partition("://")
    if namespace is None and sep and authority and "/" not in authority and _SCHEME.fullmatch(scheme):
        return ParsedId(f"{scheme.lower()}://{_lower_host(authority)}")  # the root of a data source
    if namespace is None:
        return ParsedId(value, (f"is not an OpenLineage dataset id NAMESPACE/NAME such as {EXAMPLE_IDS}",))
    if value.endswith("/"):
        return ParsedId(value, ("must not end with '/' (a directory is named without it, e.g. s3://bucket/dir)",))
    problems: list[str] = []
    if "://" in namespace:
        scheme, _, authority = namespace.partition("://")
        if not authority and scheme.lower() in _NEEDS_AUTHORITY:
            problems.append(f"the namespace {namespace!r} needs a host after '://'")
        namespace = f"{scheme.lower()}://{_lower_host(authority)}"
    else:
        scheme, colon, opaque = namespace.partition(":")
        namespace = f"{scheme.lower()}{colon}{opaque}"
    if problems:
        return ParsedId(value, tuple(problems))
    return ParsedId(f"{namespace}/{_normal_escapes(name)}")


def _general_problems(value: str) -> tuple[str, ...]:
    if not value:
        return ("must not be empty",)
    problems = []
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        problems.append(f"must be at most {MAX_ID_BYTES} bytes")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        problems.append("must not contain control characters")
    elif any(ch.isspace() for ch in value):
        problems.append("must not contain whitespace (write a space as %20)")
    if "%" in value and len(_ESCAPE.findall(value)) != value.count("%"):
        problems.append("a '%' must start an escape of two hexadecimal digits (%25 for '%' itself)")
    return tuple(problems)


def _split(value: str) -> tuple[str | None, str]:
    """(namespace, name), or (None, "") when `value` has no namespace of the grammar."""
    head, sep, _ = value.partition("://")
    if sep and _SCHEME.fullmatch(head):
        authority_end = value.find("/", len(head) + 3)
        if authority_end < 0:
            return None, ""
        return value[:authority_end], value[authority_end + 1 :]
    namespace, sep, name = value.partition("/")
    scheme = namespace.partition(":")[0]
    if not sep or not _SCHEME.fullmatch(scheme) or "%" in namespace:
        return None, ""
    return namespace, name


def _lower_host(authority: str) -> str:
    """The authority with its host lower-cased (user information and port as written)."""
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):  # an IPv6 literal, then perhaps :port
        host, bracket, port = hostport.partition("]")
        return f"{userinfo}{at}{host.lower()}{bracket}{port}"
    host, colon, port = hostport.partition(":")
    return f"{userinfo}{at}{_normal_escapes(host).lower()}{colon}{port}"


def _normal_escapes(text: str) -> str:
    if "%" not in text:
        return text

    def normal(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _ESCAPE.sub(normal, text)


_GLOB = re.compile(r"[*?\[]")


def normalize_pattern(pattern: str) -> str:
    """An exemption's dataset pattern (an exact id, or a glob: `*`, `?`, `[...]`) in the
    normal form of the ids it is to match: the scheme and host lower-cased, escapes
    normalised (an exact id that breaks the rules stays as written, as `lookup_form`)."""
    if not _GLOB.search(pattern):
        return lookup_form(pattern)
    namespace, name = _split(pattern)
    if namespace is None:
        return pattern
    scheme, sep, rest = namespace.partition("://")
    if sep:
        namespace = f"{scheme.lower()}://{_lower_host(rest)}"
    else:
        scheme, colon, opaque = namespace.partition(":")
        namespace = f"{scheme.lower()}{colon}{opaque}"
    return f"{namespace}/{_normal_escapes(name)}"


def pattern_problems(pattern: str) -> tuple[str, ...]:
    """Why an exemption's dataset pattern can match no valid id, if it cannot: an exact id
    must follow the rules; a glob may hold no whitespace, control characters or bad escapes,
    and may not end with `/`."""
    if not _GLOB.search(pattern):
        return parse_dataset_id(pattern).problems
    problems = list(_general_problems(pattern))
    if pattern.endswith("/"):
        problems.append("must not end with '/' (no dataset id does)")
    return tuple(problems)


def check_dataset_id(errors: FieldErrors, path: str, value: str) -> str:
    """An id to write: records every rule it breaks as a violation of `path`; returns its
    normal form (or `value` as given when it breaks a rule)."""
    parsed = parse_dataset_id(value)
    for problem in parsed.problems:
        errors.add(path, problem)
    return parsed.normal


def lookup_form(value: str) -> str:
    """The id to look `value` up under: its normal form, or `value` as written when it breaks
    the rules (an id stored before they applied)."""
    return parse_dataset_id(value).normal


@dataclass(frozen=True)
class Renames:
    """What normalising a store's ids does: `renames` (stored id → its normal form), and the
    `collisions` (stored id, its normal form) it leaves alone because another stored dataset
    has, or would get, that normal form too: they are two datasets to the store."""

    renames: dict[str, str]
    collisions: list[tuple[str, str]]


def plan_renames(stored: Iterable[str]) -> Renames:
    """The renames that put the stored ids that follow the rules into normal form. Ids that
    break the rules stay as they are, and so do colliding ones (see `Renames`)."""
    stored = list(stored)
    present = set(stored)
    by_normal: dict[str, list[str]] = {}
    for dataset_id in stored:
        parsed = parse_dataset_id(dataset_id)
        if not parsed.problems and parsed.normal != dataset_id:
            by_normal.setdefault(parsed.normal, []).append(dataset_id)
    renames: dict[str, str] = {}
    collisions: list[tuple[str, str]] = []
    for normal, olds in sorted(by_normal.items()):
        if normal in present or len(olds) > 1:
            collisions.extend((old, normal) for old in sorted(olds))
        else:
            renames[olds[0]] = normal
    return Renames(renames, collisions)
