"""Loading and validating policy documents: every error carries the offending line."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from domicile.catalog.regions import RegionRegistry
from domicile.router import policy as policy_module
from domicile.router.policy import (
    MAX_CHARACTERS,
    MAX_ERRORS,
    MAX_MESSAGE,
    MAX_POLICY_BYTES,
    LoadedPolicy,
    PolicyError,
    PolicyInvalid,
    format_path,
    load_policy,
    policy_warnings,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

HEADER = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata: {name: test, version: "1"}
"""


def policy_text(body: str) -> str:
    """HEADER (lines 1-3) followed by `body`, which therefore starts on line 4."""
    return HEADER + textwrap.dedent(body)


def errors_of(text: str) -> list[PolicyError]:
    with pytest.raises(PolicyInvalid) as info:
        load_policy(text)
    return info.value.errors


def only_error(text: str) -> PolicyError:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


# -- valid documents -----------------------------------------------------------------------------


def test_example_policy_loads() -> None:
    text = (EXAMPLES / "policy.yaml").read_text()
    loaded = load_policy(text)
    assert isinstance(loaded, LoadedPolicy)
    assert loaded.version == "2026.12.1"
    assert loaded.name == "bank-residency"
    assert loaded.content_hash == hashlib.sha256(text.encode()).hexdigest()
    assert loaded.source_yaml == text
    assert "onprem:fra-dc1" in loaded.registry
    assert loaded.registry.get("onprem:fra-dc1").private
    assert "onprem:fra-dc1" not in RegionRegistry.builtin()


def test_design_example_loads() -> None:
    loaded = load_policy(
        policy_text(
            """\
            regions:
              - {id: "onprem:fra-dc1", country: DE}
            groups:
              EU_PLUS_ADEQUATE: [EEA, EU_ADEQUACY]
            rules:
              - id: gdpr-personal-data
                citation: "GDPR Art. 44-45"
                match: {classifications: [PII], origins: [EEA]}
                store:   {allow: [EU_PLUS_ADEQUATE]}
                process: {allow: [EU_PLUS_ADEQUATE]}
              - id: sanctioned-locations
                exemptible: false
                match: {}
                store:   {deny: [RU, BY, KP, IR, SY, CU]}
                process: {deny: [RU, BY, KP, IR, SY, CU]}
            declassifiers:
              - {transform: anonymize, removes: [PII], jobs: ["airflow-eu/anonymize_*"]}
            exemptions:
              - id: EX-2026-041
                dataset: "s3://bank-eu/customers"
                operation: process
                regions: ["aws:us-east-1"]
                expires: 2027-01-31T00:00:00Z
                approved_by: "dpo@bank.example"
            defaults: {classified: deny, unclassified: allow}
            tests:
              - {name: eu pii stays, dataset: {classifications: [PII.CONTACT], origins: [DE]},
                 operation: store, region: "aws:us-east-1", want: deny}
            """
        )
    )
    document = loaded.document
    assert document.declassifiers[0].jobs == ("airflow-eu/anonymize_*",)
    assert [r.id for r in document.rules] == ["gdpr-personal-data", "sanctioned-locations"]
    assert document.rules[1].exemptible is False
    assert document.rules[0].exemptible is True
    assert document.exemptions[0].expires.isoformat() == "2027-01-31T00:00:00+00:00"
    assert document.tests[0].want == "deny"


def test_version_is_kept_exactly_as_written() -> None:
    # Unquoted, YAML 1.1 would read 2026.10 as the float 2026.1.
    text = "apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: t, version: 2026.10}\n"
    assert load_policy(text).version == "2026.10"


def test_norway_is_a_country_not_false() -> None:
    loaded = load_policy(
        policy_text(
            """\
            rules:
              - id: r
                match: {origins: [NO]}
                store: {deny: [NO]}
            """
        )
    )
    rule = loaded.document.rules[0]
    assert rule.match.origins == ("NO",)
    assert rule.store.deny == ("NO",)


def test_defaults_when_sections_are_absent() -> None:
    loaded = load_policy(HEADER)
    assert loaded.document.defaults.classified == "deny"
    assert loaded.document.defaults.unclassified == "allow"
    assert loaded.document.rules == ()


def test_positions_of_a_valid_document() -> None:
    loaded = load_policy(policy_text("rules:\n  - id: r\n    match: {}\n    store: {deny: [RU]}\n"))
    assert loaded.position(("rules", 0)) == (5, 5)
    assert loaded.position(("rules", 0, "store", "deny", 0)) == (7, 20)
    # A path below a leaf falls back to the nearest enclosing node.
    assert loaded.position(("rules", 0, "store", "allow")) == (7, 5)


def test_format_path() -> None:
    assert format_path(("rules", 2, "match", "origins", 0)) == "rules[2].match.origins[0]"
    assert format_path(()) == ""


def test_error_format_is_compiler_style() -> None:
    assert PolicyError(3, 7, "rules[0].id", "bad").format("p.yaml") == "p.yaml:3:7: rules[0].id: bad"
    assert PolicyError(1, 1, "", "empty document").format("p.yaml") == "p.yaml:1:1: empty document"


# -- YAML and schema errors ----------------------------------------------------------------------


def test_yaml_syntax_error_has_its_line() -> None:
    error = only_error(policy_text("rules:\n  - id: [unclosed\n"))
    assert error.line >= 5
    assert error.message.startswith("YAML:")


def test_empty_document() -> None:
    assert only_error("").message == "empty document"


def test_several_documents_are_refused() -> None:
    error = only_error(HEADER + "---\n" + HEADER)
    assert "single document" in error.message
    assert error.line == 4


def test_duplicate_keys_are_errors() -> None:
    error = only_error(policy_text("rules: []\nrules: []\n"))
    assert (error.line, error.path) == (5, "rules")
    assert "duplicate key" in error.message


def test_unknown_key_anywhere_is_an_error_at_its_line() -> None:
    error = only_error(
        policy_text(
            """\
            rules:
              - id: r
                match: {classification: [PII]}
                store: {deny: [RU]}
            """
        )
    )
    assert error.line == 6
    assert error.path == "rules[0].match.classification"
    assert error.message == "unknown key 'classification'"


def test_missing_required_key_points_at_its_parent() -> None:
    error = only_error(
        policy_text(
            """\
            exemptions:
              - id: EX-1
                dataset: "s3://a/b"
                operation: store
                regions: [DE]
                expires: "2027-01-01T00:00:00Z"
            """
        )
    )
    assert (error.line, error.path) == (5, "exemptions[0].approved_by")
    assert error.message == "missing required key 'approved_by'"


def test_wrong_api_version_and_kind() -> None:
    errors = errors_of("apiVersion: domicile/v2\nkind: Policy\nmetadata: {name: t, version: '1'}\n")
    assert [(e.line, e.path) for e in errors] == [(1, "apiVersion"), (2, "kind")]


def test_naive_expiry_is_refused() -> None:
    error = only_error(
        policy_text(
            """\
            exemptions:
              - {id: EX-1, dataset: "s3://a/b", operation: both, regions: [DE],
                 expires: "2027-01-01T00:00:00", approved_by: me}
            """
        )
    )
    assert error.path == "exemptions[0].expires"
    assert "timezone" in error.message


def test_bad_enum_values() -> None:
    errors = errors_of(
        policy_text(
            """\
            exemptions:
              - {id: EX-1, dataset: "s3://a/b", operation: read, regions: [DE],
                 expires: "2027-01-01T00:00:00Z", approved_by: me}
            defaults: {classified: maybe}
            tests:
              - {name: t, dataset: {}, operation: write, region: "aws:us-east-1", want: allow}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [
        (5, "exemptions[0].operation"),
        (7, "defaults.classified"),
        (9, "tests[0].operation"),
    ]


def test_top_level_must_be_a_mapping() -> None:
    error = only_error("- just a list\n")
    assert error.line == 1


def test_alias_bombs_are_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    error = only_error("\n".join(lines) + "\n")
    assert "too large" in error.message


# The finding: 375 bytes whose mapping key is an alias bomb (9**8 leaves) held the event loop
# for 14 s and grew the server by a gigabyte, and the error quoted the exploded key.
KEY_BOMB = (
    "? [&a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol],"
    + ",".join(f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8))
    + "]\n: x\n"
)


def test_a_key_that_is_an_alias_bomb_is_refused_before_it_is_built() -> None:
    assert len(KEY_BOMB) < 400  # the size of the one found
    error = only_error(KEY_BOMB)
    assert (error.line, error.column) == (1, 3)
    assert error.message == "a key must be a string, not a list"


def test_mapping_keys_count_against_the_node_budget() -> None:
    # An aliased mapping of 1,000 keys, used 200 times: 200,000 keys, every value an alias.
    keys = "\n".join(f"  k{i}: *v" for i in range(1000))
    text = f"v: &v x\nm: &m\n{keys}\nall: [" + ", ".join(["*m"] * 200) + "]\n"
    assert "too large" in only_error(text).message


def test_aliased_long_values_count_against_the_character_budget() -> None:
    long = "x" * 50_000
    text = f"a: &a {long}\nb: [" + ", ".join(["*a"] * (MAX_CHARACTERS // len(long) + 1)) + "]\n"
    error = only_error(text)
    assert error.message == f"document too large: more than {MAX_CHARACTERS} characters once aliases are expanded"


def test_every_message_and_path_is_bounded() -> None:
    key = "k" * 100_000
    errors = errors_of(policy_text(f"{key}: 1\nrules:\n  - {{id: r, match: {{}}, {key}: x}}\n"))
    assert errors
    for error in errors:
        assert len(error.message) <= MAX_MESSAGE and len(error.path) <= MAX_MESSAGE
        assert len(error.format("policy.yaml")) < 2 * MAX_MESSAGE + 100


def test_the_error_report_is_bounded() -> None:
    unknown = "".join(f"u{i}: x\n" for i in range(5 * MAX_ERRORS))
    errors = errors_of(policy_text(unknown))
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1].message == f"and {5 * MAX_ERRORS - MAX_ERRORS} more errors"
    assert [e.line for e in errors] == sorted(e.line for e in errors)


def test_a_text_over_the_size_limit_is_refused_unparsed() -> None:
    error = only_error(policy_text("#" + "x" * MAX_POLICY_BYTES + "\n"))
    assert error.message == f"the policy is larger than {MAX_POLICY_BYTES} bytes"
    # Bytes, not characters: 2-byte characters reach the limit with half as many.
    assert "larger than" in only_error(policy_text("# " + "é" * (MAX_POLICY_BYTES // 2) + "\n")).message


def test_a_document_over_the_time_budget_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(policy_module, "MAX_SECONDS", 0.0)
    error = only_error(Path("examples/policy.yaml").read_text())
    assert error.message == "the policy took longer than 0s to check"


# -- semantic errors -----------------------------------------------------------------------------


def test_unknown_location_token() -> None:
    error = only_error(
        policy_text(
            """\
            rules:
              - id: r
                match: {}
                store: {allow: [DE, EUROPE]}
            """
        )
    )
    assert (error.line, error.column) == (7, 25)
    assert error.path == "rules[0].store.allow[1]"
    assert "unknown location 'EUROPE'" in error.message


def test_unknown_region_in_exemption() -> None:
    error = only_error(
        policy_text(
            """\
            exemptions:
              - id: EX-1
                dataset: "s3://a/b"
                operation: store
                regions: ["aws:us-middle-1"]
                expires: "2027-01-01T00:00:00Z"
                approved_by: me
            """
        )
    )
    assert (error.line, error.path) == (8, "exemptions[0].regions[0]")


def test_region_ids_countries_groups_and_star_are_tokens() -> None:
    load_policy(
        policy_text(
            """\
            groups:
              MINE: ["aws:us-east-1", JP, EU, "*"]
            rules:
              - id: r
                match: {}
                store: {allow: ["*", EEA, EU_ADEQUACY, US, "gcp:europe-west6", MINE]}
            """
        )
    )


def test_origins_must_be_countries() -> None:
    errors = errors_of(
        policy_text(
            """\
            groups:
              DCS: ["aws:ap-south-1"]
            rules:
              - id: r
                match: {origins: [IN, "aws:ap-south-1", DCS]}
                store: {deny: [RU]}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [(8, "rules[0].match.origins[1]"), (8, "rules[0].match.origins[2]")]
    assert all("origins are countries" in e.message for e in errors)


def test_malformed_labels_cannot_match() -> None:
    errors = errors_of(
        policy_text(
            """\
            rules:
              - id: r
                match: {classifications: [PII, pii, PII., "PII..X", "*"]}
                store: {deny: [RU]}
            declassifiers:
              - {transform: t, removes: [Pii.Contact], jobs: ["*"]}
            tests:
              - {name: t, dataset: {classifications: [pii]}, operation: store, region: "aws:us-east-1", want: deny}
            """
        )
    )
    assert [e.path for e in errors] == [
        "rules[0].match.classifications[1]",
        "rules[0].match.classifications[2]",
        "rules[0].match.classifications[3]",
        "rules[0].match.classifications[4]",
        "declassifiers[0].removes[0]",
        "tests[0].dataset.classifications[0]",
    ]
    assert all("cannot match" in e.message for e in errors)


def test_duplicate_ids() -> None:
    errors = errors_of(
        policy_text(
            """\
            rules:
              - {id: r, match: {}, store: {deny: [RU]}}
              - {id: r, match: {}, store: {deny: [BY]}}
            declassifiers:
              - {transform: anonymize, removes: [PII], jobs: []}
              - {transform: anonymize, removes: [PII.CONTACT], jobs: []}
            exemptions:
              - {id: EX, dataset: "s3://b/a", operation: store, regions: [DE], expires: "2030-01-01T00:00:00Z", approved_by: me}
              - {id: EX, dataset: "s3://b/b", operation: store, regions: [DE], expires: "2030-01-01T00:00:00Z", approved_by: me}
              - {id: r, dataset: "s3://b/c", operation: store, regions: [DE], expires: "2030-01-01T00:00:00Z", approved_by: me}
            tests:
              - {name: t, dataset: {}, operation: store, region: "aws:us-east-1", want: allow}
              - {name: t, dataset: {}, operation: store, region: "aws:us-east-1", want: allow}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [
        (6, "rules[1].id"),
        (9, "declassifiers[1].transform"),
        (12, "exemptions[1].id"),
        (13, "exemptions[2].id"),
        (16, "tests[1].name"),
    ]
    assert "also a rule id" in errors[3].message


def test_group_cycles_are_reported_once_at_the_group() -> None:
    errors = errors_of(
        policy_text(
            """\
            groups:
              A: [B, DE]
              B: [C]
              C: [A]
              SELF: [SELF]
              FINE: [A, FR]
            rules:
              - {id: r, match: {}, store: {allow: [FINE]}}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [(5, "groups.A"), (8, "groups.SELF")]
    assert errors[0].message == "group cycle among A, B, C"


def test_nested_groups_resolve() -> None:
    loaded = load_policy(
        policy_text(
            """\
            groups:
              OUTER: [INNER, JP]
              INNER: [EEA]
            rules:
              - {id: r, match: {origins: [OUTER]}, store: {allow: [OUTER]}}
            """
        )
    )
    assert loaded.document.groups["OUTER"] == ("INNER", "JP")


def test_group_names_may_not_shadow() -> None:
    errors = errors_of(
        policy_text(
            """\
            groups:
              EU: [DE]
              DE: [FR]
              "a:b": [FR]
              EMPTY: []
            """
        )
    )
    assert [e.path for e in errors] == ["groups.EU", "groups.DE", "groups.a:b", "groups.EMPTY"]


def test_unknown_member_is_reported_in_the_group_not_at_each_use() -> None:
    errors = errors_of(
        policy_text(
            """\
            groups:
              G: [DE, NARNIA]
              H: [G]
            rules:
              - {id: r, match: {}, store: {allow: [H]}}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [(5, "groups.G[1]")]


def test_private_regions() -> None:
    errors = errors_of(
        policy_text(
            """\
            regions:
              - {id: "aws:eu-central-1", country: DE}
              - {id: "onprem:dc1", country: XX}
              - {id: "Bad Id", country: DE}
              - {id: "onprem:dc2", country: DE}
              - {id: "onprem:dc2", country: FR}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [
        (5, "regions[0].id"),
        (6, "regions[1].country"),
        (7, "regions[2].id"),
        (9, "regions[4].id"),
    ]
    assert "builtin region" in errors[0].message


def test_private_regions_are_usable_tokens() -> None:
    loaded = load_policy(
        policy_text(
            """\
            regions:
              - {id: "onprem:fra-dc1", country: DE}
            rules:
              - {id: r, match: {}, store: {allow: ["onprem:fra-dc1"]}}
            tests:
              - {name: t, dataset: {}, operation: store, region: "onprem:fra-dc1", want: allow}
            """
        )
    )
    assert loaded.registry.country_of("onprem:fra-dc1") == "DE"


def test_rules_need_an_effect() -> None:
    errors = errors_of(
        policy_text(
            """\
            rules:
              - {id: r1, match: {}}
              - {id: r2, match: {}, store: {}}
            """
        )
    )
    assert [(e.line, e.path) for e in errors] == [(5, "rules[0]"), (6, "rules[1].store")]


def test_match_is_required() -> None:
    error = only_error(policy_text("rules:\n  - {id: r, store: {deny: [RU]}}\n"))
    assert (error.line, error.path) == (5, "rules[0].match")


def test_test_regions_and_origins_must_be_real() -> None:
    errors = errors_of(
        policy_text(
            """\
            tests:
              - {name: t1, dataset: {origins: [EEA]}, operation: store, region: DE, want: allow}
            """
        )
    )
    assert [e.path for e in errors] == ["tests[0].dataset.origins[0]", "tests[0].region"]


def test_all_problems_are_reported_together_in_document_order() -> None:
    errors = errors_of((EXAMPLES / "broken-policy.yaml").read_text())
    assert errors == sorted(errors, key=lambda e: (e.line, e.column))
    paths = [e.path for e in errors]
    # A schema error in one part does not hide semantic errors in others, nor in the same
    # rule once its unknown key is set aside.
    assert "rules[0].proces" in paths
    assert "rules[0].match.classifications[0]" in paths
    assert "rules[1].id" in paths
    assert "exemptions[0].approved_by" in paths
    assert "exemptions[1].regions[0]" in paths
    assert "defaults.classified" in paths
    assert len(errors) >= 10
    assert all(e.line > 0 for e in errors)


def test_policy_invalid_message_summarises() -> None:
    with pytest.raises(PolicyInvalid, match=r"invalid policy: 7:25: rules\[0\]\.store\.allow\[1\]"):
        load_policy(policy_text("rules:\n  - id: r\n    match: {}\n    store: {allow: [DE, EUROPE]}\n"))


def test_validation_uses_the_given_registry() -> None:
    text = policy_text('rules:\n  - {id: r, match: {}, store: {allow: ["aws:eu-central-1"]}}\n')
    load_policy(text, RegionRegistry.builtin())
    with pytest.raises(PolicyInvalid):
        load_policy(text, RegionRegistry([]))


def test_a_declassifier_granted_to_every_job_is_a_warning() -> None:
    loaded = load_policy(
        policy_text(
            """\
            declassifiers:
              - {transform: anonymize, removes: [PII], jobs: ["airflow-eu/anonymize_*"]}
              - {transform: aggregate, removes: [PII], jobs: ["airflow-eu/rollup", "*"]}
              - {transform: tokenize, removes: [FINANCIAL.PAYMENT.CARD], jobs: ["*/*"]}
            """
        )
    )
    warnings = policy_warnings(loaded)
    assert [(w.line, w.path) for w in warnings] == [(6, "declassifiers[1].jobs[1]"), (7, "declassifiers[2].jobs[0]")]
    assert "grants transform 'aggregate' to every job" in warnings[0].message
    assert policy_warnings(load_policy((EXAMPLES / "policy.yaml").read_text())) == []


def test_exemption_datasets_follow_the_rules_of_dataset_ids() -> None:
    exemption = """\
exemptions:
  - {id: EX, dataset: DATASET, operation: store, regions: [DE], expires: "2030-01-01T00:00:00Z", approved_by: me}
"""
    for good in ('"S3://Bank-EU/customers"', '"s3://bank-eu/customers-*"', '"*"'):
        load_policy(policy_text(exemption.replace("DATASET", good)))
    for bad, problem in (
        ('"s3://bank eu/customers"', "must not contain whitespace"),
        ('"customers"', "is not an OpenLineage dataset id NAMESPACE/NAME"),
        ('"s3://bank-eu/customers-*/"', "must not end with '/'"),
    ):
        error = only_error(policy_text(exemption.replace("DATASET", bad)))
        assert error.path == "exemptions[0].dataset" and "can match no dataset id" in error.message
        assert problem in error.message, error.message
    # A policy the previous release recorded keeps loading (its pattern matches nothing valid).
    load_policy(policy_text(exemption.replace("DATASET", '"customers"')), legacy=True)
