"""Dataset ids: the OpenLineage naming rules, the normal form, and planning the renames that
bring a store written by an earlier release into normal form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domicile.catalog.dataset_ids import (
    check_dataset_id,
    lookup_form,
    normalize_pattern,
    parse_dataset_id,
    pattern_problems,
    plan_record_renames,
    plan_renames,
)
from domicile.errors import FieldErrors


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("s3://bank-eu-lake/customers", "s3://bank-eu-lake/customers"),
        ("S3://Bank-EU-Lake/customers", "s3://bank-eu-lake/customers"),  # scheme and host
        ("postgres://DB.EU:5432/core.public.Accounts", "postgres://db.eu:5432/core.public.Accounts"),  # not the name
        ("abfss://Container@Account.dfs.core.windows.net/p", "abfss://Container@account.dfs.core.windows.net/p"),
        ("hdfs://[FE80::1]:8020/warehouse/t", "hdfs://[fe80::1]:8020/warehouse/t"),
        ("s3://b/a%2fb%7e%41", "s3://b/a%2Fb~A"),  # escapes upper-cased, unreserved decoded
        ("BigQuery/project.dataset.table", "bigquery/project.dataset.table"),  # a bare namespace is a scheme
        ("file:///data/x.csv", "file:///data/x.csv"),
        # An embedded database's namespace names a file, not a host (openlineage-dbt's DuckDB).
        ("DuckDB:///srv/bank.duckdb/main.customers", "duckdb:///srv/bank.duckdb/main.customers"),
        ("file/data/x.csv", "file/data/x.csv"),
        ("arn:aws:glue:eu-west-1:123456789012/table/db/t", "arn:aws:glue:eu-west-1:123456789012/table/db/t"),
        ("kafka://Broker:9092/payments.v1", "kafka://broker:9092/payments.v1"),
        ("S3://Bank-EU", "s3://bank-eu"),  # the root of a data source
    ],
)
def test_valid_ids_and_their_normal_form(written, normal):
    assert parse_dataset_id(written).problems == ()
    assert parse_dataset_id(written).normal == normal == lookup_form(written)


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("", "must not be empty"),
        ("not a dataset", "must not contain whitespace (write a space as %20)"),
        ("s3://bank eu/x", "must not contain whitespace"),
        ("s3://b/x\u00a0y", "must not contain whitespace"),
        ("s3://b/x\x07", "must not contain control characters"),
        ("s3://b/x\ud800", "must not contain control characters"),  # a lone surrogate (Python only)
        ("customers", "is not an OpenLineage dataset id NAMESPACE/NAME"),
        ("s3://bucket/", "must not end with '/'"),
        ("bigquery/", "must not end with '/'"),
        ("s3://b/x/", "must not end with '/'"),
        ("s3:///x", "the namespace 's3://' needs a host after '://'"),
        ("Postgres:///core.public.t", "the namespace 'Postgres://' needs a host after '://'"),
        ("s3://b/100%", "a '%' must start an escape of two hexadecimal digits"),
        ("s3://b/" + "x" * 2048, "must be at most 2048 bytes"),
    ],
)
def test_ids_that_break_the_rules(written, problem):
    parsed = parse_dataset_id(written)
    assert any(p.startswith(problem) for p in parsed.problems), parsed.problems
    assert parsed.normal == written == lookup_form(written)  # looked up as written (a legacy id)
    errors = FieldErrors()
    assert check_dataset_id(errors, "dataset.id", written) == written
    assert [v.field for v in errors.violations] == ["dataset.id"] * len(parsed.problems)


SEGMENT = st.text(alphabet="abcDEF019-._~%2fAZ", min_size=1, max_size=12)


@given(scheme=st.sampled_from(["s3", "S3", "gs", "postgres", "HDFS"]), host=SEGMENT, name=st.lists(SEGMENT, min_size=1))
def test_the_normal_form_is_a_fixed_point(scheme, host, name):
    parsed = parse_dataset_id(f"{scheme}://{host}/{'/'.join(name)}")
    if not parsed.problems:
        assert parse_dataset_id(parsed.normal) == parsed.__class__(parsed.normal)


def test_patterns_are_normalised_and_checked_by_the_same_rules():
    assert normalize_pattern("S3://Bank-EU/customers") == "s3://bank-eu/customers"
    assert normalize_pattern("S3://Bank-EU/Customers-*") == "s3://bank-eu/Customers-*"
    assert normalize_pattern("S3://Bank-*/x%7e*") == "s3://bank-*/x~*"
    assert normalize_pattern("*") == "*"
    assert pattern_problems("s3://bank-eu/*") == ()
    assert pattern_problems("s3://bank eu/*") != ()
    assert pattern_problems("s3://bank-eu/customers/") != ()
    assert pattern_problems("customers") != ()  # an exact id without a namespace matches nothing


def test_renames_leave_ids_that_break_the_rules_and_colliding_ids_alone():
    plan = plan_renames(["S3://B/x", "s3://b/x", "S3://B/y", "s3://B/z", "S3://b/z", "not a dataset", "s3://c/d"])
    assert plan.renames == {"S3://B/y": "s3://b/y"}
    assert sorted(plan.collisions) == [("S3://B/x", "s3://b/x"), ("S3://b/z", "s3://b/z"), ("s3://B/z", "s3://b/z")]


def test_records_follow_their_dataset_and_merge_unless_their_form_is_a_dataset_of_its_own():
    catalog = ["s3://b/y", "S3://B/x", "s3://b/x"]  # after plan_renames: "S3://B/x" collided
    recorded = ["S3://B/y", "s3://B/y", "s3://b/y", "S3://B/x", "S3://C/w", "not a dataset"]
    assert plan_record_renames(recorded, catalog) == {
        "S3://B/y": "s3://b/y",  # its dataset moved there
        "s3://B/y": "s3://b/y",  # another form of the same: merged
        "S3://C/w": "s3://c/w",  # no catalog entry: the rules alone decide
    }


# Properties of the rules as catalog/dataset_ids.py documents them, over ids built from parts
# (the rules are implemented once, in the engine: crates/engine/src/dataset_ids.rs).
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
HOSTS = st.text(alphabet="abcXYZ019-.", min_size=1, max_size=10)
NAME_CHARS = st.text(alphabet=UNRESERVED + "!$&'()*+,;=:@/é", min_size=1, max_size=16).filter(
    lambda name: not name.startswith("/") and not name.endswith("/")
)
SCHEMES = st.sampled_from(["s3", "gs", "postgres", "kafka", "hdfs", "abfss", "file+x"])


def escaped(text: str, which: list[bool], upper: bool) -> str:
    """`text` with the chosen ASCII characters written as escapes."""
    out = []
    for char, escape in zip(text, which + [False] * len(text), strict=False):
        code = f"%{ord(char):02X}" if upper else f"%{ord(char):02x}"
        out.append(code if escape and char.isascii() else char)
    return "".join(out)


@given(SCHEMES, HOSTS, st.sampled_from(["", ":5432"]), NAME_CHARS, st.lists(st.booleans()), st.booleans())
def test_equal_forms_have_one_normal_form(scheme, host, port, name, escape, upper):
    normal = parse_dataset_id(f"{scheme}://{host.lower()}{port}/{name}")
    assert normal.problems == ()
    assert parse_dataset_id(normal.normal) == normal  # a fixed point
    # The scheme and host in any case, unreserved characters written as escapes: the same id.
    same = f"{scheme.upper()}://{host.upper()}{port}/{escaped(name, escape, upper)}"
    if all(c in UNRESERVED for c, e in zip(name, escape, strict=False) if e):
        assert lookup_form(same) == normal.normal
    # Names keep their case; reserved characters stay escaped, as %XX in upper case.
    if name.lower() != name.upper():
        assert lookup_form(f"{scheme}://{host}{port}/{name.swapcase()}") != normal.normal
    reserved = lookup_form(f"{scheme}://{host}{port}/{name}%2f%3A")
    assert reserved == normal.normal + "%2F%3A"


@given(
    SCHEMES,
    HOSTS,
    NAME_CHARS,
    st.sampled_from([" ", "\t", "\u00a0", "\u2003", "\x00", "\x07", "\x85", "%zz", "%4g"]),
    st.integers(min_value=0),
)
def test_ids_with_whitespace_control_characters_or_stray_percents_break_the_rules(scheme, host, name, inserted, where):
    written = f"{scheme}://{host}/{name}"
    at = len(scheme) + 3 + where % (len(written) - len(scheme) - 2)
    broken = written[:at] + inserted + written[at:]
    parsed = parse_dataset_id(broken)
    assert parsed.problems and parsed.normal == broken == lookup_form(broken)


@given(SCHEMES, HOSTS, NAME_CHARS)
def test_a_trailing_slash_or_a_missing_host_breaks_the_rules(scheme, host, name):
    assert parse_dataset_id(f"{scheme}://{host}/{name}/").problems
    if scheme in ("s3", "gs", "postgres", "kafka", "hdfs", "abfss"):
        assert parse_dataset_id(f"{scheme}:///{name}").problems
    else:  # a scheme whose sources are not named by host (file, an embedded database)
        assert not parse_dataset_id(f"{scheme}:///{name}").problems
