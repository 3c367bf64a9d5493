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

The rules are implemented once, in the residency engine (crates/engine/src/dataset_ids.rs),
which looks ids up by them too: this module is their Python face.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from domicile.errors import FieldErrors
from domicile.router import _engine


@dataclass(frozen=True)
class ParsedId:
    """An id in normal form (`normal`), or the problems that keep it from being one."""

    normal: str
    problems: tuple[str, ...] = ()


def parse_dataset_id(value: str) -> ParsedId:
    """Check `value` against the rules above; its normal form when it follows them."""
    normal, problems = _engine.parse_dataset_id(value)
    return ParsedId(normal, tuple(problems))


def normalize_pattern(pattern: str) -> str:
    """An exemption's dataset pattern (an exact id, or a glob: `*`, `?`, `[...]`) in the
    normal form of the ids it is to match: the scheme and host lower-cased, escapes
    normalised (an exact id that breaks the rules stays as written, as `lookup_form`)."""
    return _engine.normalize_pattern(pattern)


def pattern_problems(pattern: str) -> tuple[str, ...]:
    """Why an exemption's dataset pattern can match no valid id, if it cannot: an exact id
    must follow the rules; a glob may hold no whitespace, control characters or bad escapes,
    and may not end with `/`."""
    return tuple(_engine.pattern_problems(pattern))


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
    return _engine.parse_dataset_id(value)[0]


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


def plan_record_renames(recorded: Iterable[str], datasets: Iterable[str]) -> dict[str, str]:
    """The renames that move the dataset ids in records kept beside the catalog (access
    records) to where `plan_renames` moved their datasets: every recorded id that follows the
    rules to its normal form, except an id still naming a catalog dataset of its own (one
    side of a collision, which `plan_renames` left alone). Several recorded forms of one
    normal id all go to it: the rules make them one dataset."""
    catalog = set(datasets)
    renames: dict[str, str] = {}
    for dataset_id in sorted(set(recorded) - catalog):
        parsed = parse_dataset_id(dataset_id)
        if not parsed.problems and parsed.normal != dataset_id:
            renames[dataset_id] = parsed.normal
    return renames
