"""The decision engine, step by step against the policy semantics.

Each dataset is given by its effective attributes; `catalog_engine` builds a catalog in which it
has exactly those (a value whose path is the dataset alone is its own, any other path is lineage
from a described dataset holding the value) and the questions go to the residency engine."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import MappingProxyType

import pytest

from domicile.catalog.model import Dataset, Edge
from domicile.catalog.regions import Region, RegionRegistry
from domicile.errors import DomicileError, ErrorCode
from domicile.router.engine import CompiledPolicy, Engine, compile_policy
from domicile.router.policy import PolicyInvalid, load_policy
from domicile.router.types import EffectiveAttributes, Operation, Outcome, PolicyChange, Reason, ReasonCode, Verdict

STORE, PROCESS = Operation.STORE, Operation.PROCESS
NOW = datetime(2026, 12, 1, tzinfo=UTC)

# A small registry so allowed sets can be spelt out in full.
REGISTRY = RegionRegistry(
    [
        Region("aws:eu-central-1", "DE"),
        Region("aws:eu-west-1", "IE"),
        Region("gcp:europe-west6", "CH"),
        Region("aws:us-east-1", "US"),
        Region("aws:us-west-2", "US"),
        Region("aws:ap-south-1", "IN"),
        Region("aws:cn-north-1", "CN"),
    ]
)
ALL = (
    "aws:ap-south-1",
    "aws:cn-north-1",
    "aws:eu-central-1",
    "aws:eu-west-1",
    "aws:us-east-1",
    "aws:us-west-2",
    "gcp:europe-west6",
)
HEADER = 'apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: test, version: "7"}\n'


def compile_text(body: str, registry: RegionRegistry = REGISTRY) -> CompiledPolicy:
    return compile_policy(load_policy(HEADER + textwrap.dedent(body), registry))


def attrs(
    dataset_id: str = "ds",
    labels: dict[str, tuple[str, ...]] | list[str] = (),
    origins: dict[str, tuple[str, ...]] | list[str] = (),
    locations: tuple[str, ...] = (),
) -> EffectiveAttributes:
    """Effective attributes; labels/origins given as a list are the dataset's own."""

    def paths(values) -> MappingProxyType:
        if isinstance(values, dict):
            return MappingProxyType(values)
        return MappingProxyType(dict.fromkeys(values, (dataset_id,)))

    return EffectiveAttributes(dataset_id, paths(labels), paths(origins), locations)


def catalog_engine(policy: CompiledPolicy, *datasets: EffectiveAttributes) -> Engine:
    """An engine with `policy` over a catalog where each of `datasets` has those attributes."""
    owned: dict[str, tuple[list[str], list[str], tuple[str, ...]]] = {}
    edges: dict[tuple[str, str], Edge] = {}
    for dataset in datasets:
        own = owned.setdefault(dataset.dataset_id, ([], [], dataset.locations))
        for kind, values in enumerate((dataset.classifications, dataset.origins)):
            for value, path in values.items():
                if path == (dataset.dataset_id,):
                    own[kind].append(value)
                    continue
                owned.setdefault(path[0], ([], [], ()))[kind].append(value)
                for upstream, downstream in pairwise(path):
                    edges[upstream, downstream] = Edge(input=upstream, output=downstream, job="test/copy", run_id="r")
    described = [
        Dataset.create(i, classifications=c, origins=o, locations=list(loc)) for i, (c, o, loc) in owned.items()
    ]
    # The nodes only lineage names are placeholders, as recording lineage creates them.
    placeholders = [Dataset.create(i, placeholder=True) for i in {n for key in edges for n in key} - owned.keys()]
    engine = Engine(policy)
    engine.add([*described, *placeholders], edges.values())
    return engine


def decide(policy: CompiledPolicy, dataset: EffectiveAttributes, op: Operation, region: str, now: datetime) -> Verdict:
    return catalog_engine(policy, dataset).decide(dataset.dataset_id, op, region, now)


def allowed_regions(policy: CompiledPolicy, dataset: EffectiveAttributes, op: Operation, now: datetime) -> tuple:
    explained = catalog_engine(policy, dataset).explain(dataset.dataset_id, now)
    assert explained is not None
    return explained.store_regions if op is STORE else explained.process_regions


def violations(policy: CompiledPolicy, dataset: EffectiveAttributes, now: datetime) -> list[tuple[str, Verdict]]:
    return [(region, verdict) for _, region, verdict in catalog_engine(policy, dataset).scan_violations(now)]


def removes(policy: CompiledPolicy, transform: str, job: str, label: str) -> bool:
    """Whether an edge by `job` with `transform` removes `label` under `policy`."""
    engine = catalog_engine(policy)
    engine.add(
        [Dataset.create("in", classifications=[label]), Dataset.create("out", placeholder=True)],
        [Edge(input="in", output="out", job=job, transform=transform, run_id="r")],
    )
    return label not in engine.labels("out")


GDPR = """\
rules:
  - id: gdpr
    citation: "GDPR Art. 44-45"
    match: {classifications: [PII], origins: [EEA]}
    store: {allow: [EEA, EU_ADEQUACY]}
    process: {allow: [EEA, EU_ADEQUACY]}
"""

# Step 1 tests look at which rules apply, so labelled datasets no rule covers go anywhere.
OPEN = "defaults: {classified: allow, unclassified: allow}\n"


# -- step 1: applicable rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "applies"),
    [("PII", True), ("PII.CONTACT", True), ("PII.CONTACT.EMAIL", True), ("PIIX", False), ("FINANCIAL", False)],
)
def test_rule_on_a_label_matches_its_descendants(label: str, applies: bool) -> None:
    policy = compile_text(GDPR + OPEN)
    verdict = decide(policy, attrs(labels=[label], origins=["DE"]), STORE, "aws:us-east-1", now=NOW)
    assert (verdict.outcome is Outcome.DENY) is applies


def test_rule_on_a_child_label_does_not_match_the_parent() -> None:
    policy = compile_text(
        """\
        rules:
          - {id: r, match: {classifications: [PII.CONTACT]}, store: {allow: [DE]}}
        """
        + OPEN
    )
    assert allowed_regions(policy, attrs(labels=["PII"]), STORE, NOW) == ALL
    assert allowed_regions(policy, attrs(labels=["PII.CONTACT"]), STORE, NOW) == ("aws:eu-central-1",)


def test_match_keys_are_anded_and_values_any_of() -> None:
    policy = compile_text(
        """\
        rules:
          - {id: r, match: {classifications: [PII, HEALTH], origins: [DE, FR]}, store: {allow: [IE]}}
        """
        + OPEN
    )
    restricted = ("aws:eu-west-1",)
    assert allowed_regions(policy, attrs(labels=["PII"], origins=["FR"]), STORE, NOW) == restricted
    assert allowed_regions(policy, attrs(labels=["HEALTH.X"], origins=["DE", "US"]), STORE, NOW) == restricted
    assert allowed_regions(policy, attrs(labels=["PII"], origins=["US"]), STORE, NOW) == ALL
    assert allowed_regions(policy, attrs(labels=["OTHER"], origins=["DE"]), STORE, NOW) == ALL
    assert allowed_regions(policy, attrs(origins=["DE"]), STORE, NOW) == ALL


def test_empty_match_applies_to_every_dataset() -> None:
    policy = compile_text("rules:\n  - {id: r, match: {}, store: {deny: [US]}}\n" + OPEN)
    for dataset in (attrs(), attrs(labels=["PII"]), attrs(origins=["IN"])):
        assert decide(policy, dataset, STORE, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
        assert decide(policy, dataset, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW


def test_star_origin_means_any_origin() -> None:
    policy = compile_text("rules:\n  - {id: r, match: {origins: ['*']}, store: {deny: [US]}}\n")
    assert decide(policy, attrs(origins=["JP"]), STORE, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
    assert decide(policy, attrs(), STORE, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW


def test_origin_groups_match_their_countries() -> None:
    policy = compile_text(
        """\
        groups: {SOUTH_ASIA: [IN, LK, BD]}
        rules:
          - {id: r, match: {origins: [SOUTH_ASIA]}, store: {allow: [IN]}}
        """
    )
    assert allowed_regions(policy, attrs(origins=["BD"]), STORE, NOW) == ("aws:ap-south-1",)


# -- step 2: base set, defaults, denies ----------------------------------------------------------


def test_base_is_the_intersection_of_the_applicable_allows() -> None:
    policy = compile_text(
        """\
        rules:
          - {id: wide, match: {classifications: [A]}, store: {allow: [EEA, CH, US]}}
          - {id: narrow, match: {classifications: [B]}, store: {allow: [DE, US, IN]}}
        """
    )
    assert allowed_regions(policy, attrs(labels=["A"]), STORE, NOW) == (
        "aws:eu-central-1",
        "aws:eu-west-1",
        "aws:us-east-1",
        "aws:us-west-2",
        "gcp:europe-west6",
    )
    assert allowed_regions(policy, attrs(labels=["A", "B"]), STORE, NOW) == (
        "aws:eu-central-1",
        "aws:us-east-1",
        "aws:us-west-2",
    )


def test_disjoint_allows_leave_nothing() -> None:
    policy = compile_text(
        """\
        rules:
          - {id: eu, match: {classifications: [PII], origins: [DE]}, store: {allow: [EEA]}}
          - {id: in, match: {classifications: [PAY], origins: [IN]}, store: {allow: [IN]}, process: {allow: ['*']}}
        """
    )
    joined = attrs(labels=["PII", "PAY"], origins=["DE", "IN"])
    assert allowed_regions(policy, joined, STORE, NOW) == ()
    verdict = decide(policy, joined, STORE, "aws:ap-south-1", now=NOW)
    assert [r.rule_id for r in verdict.reasons] == ["eu"]
    verdict = decide(policy, joined, STORE, "aws:eu-central-1", now=NOW)
    assert [r.rule_id for r in verdict.reasons] == ["in"]
    verdict = decide(policy, joined, STORE, "aws:us-east-1", now=NOW)
    assert [r.rule_id for r in verdict.reasons] == ["eu", "in"]
    # Processing: `eu` has no process entry, `in` allows everywhere.
    assert allowed_regions(policy, joined, PROCESS, NOW) == ALL


@pytest.mark.parametrize(
    ("classified", "unclassified", "labels", "allowed"),
    [
        ("deny", "allow", ["X"], ()),
        ("deny", "allow", [], ALL),
        ("allow", "deny", ["X"], ALL),
        ("allow", "deny", [], ()),
    ],
)
def test_defaults_apply_when_no_applicable_rule_has_an_allow(classified, unclassified, labels, allowed) -> None:
    policy = compile_text(
        f"""\
        rules:
          - {{id: deny-only, match: {{}}, store: {{deny: [CN]}}}}
          - {{id: other-op, match: {{}}, process: {{allow: [DE]}}}}
        defaults: {{classified: {classified}, unclassified: {unclassified}}}
        """
    )
    expected = tuple(r for r in allowed if r != "aws:cn-north-1")
    assert allowed_regions(policy, attrs(labels=labels, origins=["US"]), STORE, NOW) == expected


def test_origins_alone_do_not_make_a_dataset_classified() -> None:
    policy = compile_text("defaults: {classified: deny, unclassified: allow}\n")
    assert allowed_regions(policy, attrs(origins=["DE"]), STORE, NOW) == ALL


def test_default_deny_is_a_reason() -> None:
    policy = compile_text("rules:\n  - {id: sanctions, match: {}, store: {deny: [CN]}}\n")
    verdict = decide(policy, attrs(labels=["INTERNAL"]), STORE, "aws:cn-north-1", now=NOW)
    assert verdict.outcome is Outcome.DENY
    assert [r.code for r in verdict.reasons] == [ReasonCode.RULE_DENIED, ReasonCode.DEFAULT_DENIED]
    assert "defaults.classified is deny" in verdict.reasons[1].message
    verdict = decide(policy, attrs(labels=["INTERNAL"]), STORE, "aws:us-east-1", now=NOW)
    assert [r.code for r in verdict.reasons] == [ReasonCode.DEFAULT_DENIED]


def test_denies_are_subtracted_from_any_base() -> None:
    policy = compile_text(
        """\
        rules:
          - {id: eu, match: {classifications: [PII]}, store: {allow: [EEA, CH]}}
          - {id: no-ireland, match: {origins: [GB]}, store: {deny: [IE]}}
          - {id: no-us, match: {}, store: {deny: [US]}}
        """
    )
    assert allowed_regions(policy, attrs(labels=["PII"], origins=["GB"]), STORE, NOW) == (
        "aws:eu-central-1",
        "gcp:europe-west6",
    )
    assert allowed_regions(policy, attrs(), STORE, NOW) == tuple(r for r in ALL if not r.startswith("aws:us"))
    verdict = decide(policy, attrs(labels=["PII"], origins=["GB"]), STORE, "aws:eu-west-1", now=NOW)
    assert [r.rule_id for r in verdict.reasons] == ["no-ireland"]
    assert "is denied" in verdict.reasons[0].message


def test_operations_are_independent() -> None:
    policy = compile_text(
        """\
        rules:
          - {id: rbi, match: {classifications: [PAY], origins: [IN]}, store: {allow: [IN]}, process: {allow: ['*']}}
        """
    )
    pay = attrs(labels=["PAY.UPI"], origins=["IN"])
    assert decide(policy, pay, STORE, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
    assert decide(policy, pay, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW


# -- step 4: explanations ------------------------------------------------------------------------


def test_deny_names_the_rule_its_citation_and_lineage_path() -> None:
    policy = compile_text(GDPR)
    dataset = attrs(
        "s3://out",
        labels={"PII.CONTACT": ("s3://crm", "s3://stage", "s3://out"), "PII.NAME": ("s3://hr", "s3://out")},
        origins={"DE": ("s3://crm", "s3://stage", "s3://out")},
    )
    verdict = decide(policy, dataset, STORE, "aws:us-east-1", now=NOW)
    assert verdict.outcome is Outcome.DENY
    (reason,) = verdict.reasons
    assert reason.code is ReasonCode.RULE_DENIED
    assert reason.rule_id == "gdpr"
    assert reason.citation == "GDPR Art. 44-45"
    # The shortest path among the labels that made the rule apply.
    assert reason.lineage_path == ("s3://hr", "s3://out")
    assert "PII.NAME" in reason.message and "origin DE" in reason.message
    assert "store in aws:us-east-1" in reason.message
    assert verdict.allowed_regions == ("aws:eu-central-1", "aws:eu-west-1", "gcp:europe-west6")


def test_cached_explanations_keep_each_datasets_own_paths_and_shortest_label() -> None:
    # Same labels and origins (one signature, one cached explanation), different paths: the
    # label named and the path reported follow each dataset's own shortest path.
    policy = compile_text(GDPR)
    near_contact = attrs(
        "s3://a",
        labels={"PII.CONTACT": ("s3://crm", "s3://a"), "PII.NAME": ("s3://hr", "s3://x", "s3://a")},
        origins={"DE": ("s3://a",)},
    )
    near_name = attrs(
        "s3://b",
        labels={"PII.CONTACT": ("s3://crm", "s3://x", "s3://b"), "PII.NAME": ("s3://hr", "s3://b")},
        origins={"DE": ("s3://b",)},
    )
    for _ in range(2):  # cold, then from the caches
        (first,) = decide(policy, near_contact, STORE, "aws:us-east-1", now=NOW).reasons
        (second,) = decide(policy, near_name, STORE, "aws:us-east-1", now=NOW).reasons
        assert first.lineage_path == ("s3://crm", "s3://a") and "classification PII.CONTACT" in first.message
        assert second.lineage_path == ("s3://hr", "s3://b") and "classification PII.NAME" in second.message
        assert first == Reason(
            ReasonCode.RULE_DENIED,
            "rule gdpr (GDPR Art. 44-45): store in aws:us-east-1 is outside the locations it allows; "
            "matched classification PII.CONTACT and origin DE",
            "gdpr",
            "GDPR Art. 44-45",
            ("s3://crm", "s3://a"),
        )
    verdict = decide(policy, near_contact, STORE, "aws:us-east-1", now=NOW)
    assert verdict == Verdict(
        Outcome.DENY, ("aws:eu-central-1", "aws:eu-west-1", "gcp:europe-west6"), (first,)
    ) and repr(verdict) == repr(Verdict(verdict.outcome, verdict.allowed_regions, verdict.reasons))
    # A new attributes object for the same dataset (the index replaced its view) is not
    # confused with the old one.
    moved = attrs("s3://a", labels={"PII.CONTACT": ("s3://a",)}, origins={"DE": ("s3://a",)})
    assert decide(policy, moved, STORE, "aws:us-east-1", now=NOW).reasons[0].lineage_path == ("s3://a",)


def test_origin_only_rule_reports_the_origin_path() -> None:
    policy = compile_text("rules:\n  - {id: cn, match: {origins: [CN]}, store: {allow: [CN]}}\n")
    dataset = attrs("s3://out", origins={"CN": ("s3://cn", "s3://out"), "US": ("s3://out",)})
    (reason,) = decide(policy, dataset, STORE, "aws:us-east-1", now=NOW).reasons
    assert reason.lineage_path == ("s3://cn", "s3://out")


def test_rule_for_every_dataset_reports_the_dataset_itself() -> None:
    policy = compile_text("rules:\n  - {id: sanctions, match: {}, store: {deny: [CN]}}\n")
    (reason,) = decide(policy, attrs("s3://x"), STORE, "aws:cn-north-1", now=NOW).reasons
    assert reason.lineage_path == ("s3://x",)
    assert reason.citation == ""


def test_allow_has_no_reasons_and_lists_allowed_regions_sorted() -> None:
    policy = compile_text(GDPR)
    verdict = decide(policy, attrs(labels=["PII"], origins=["DE"]), STORE, "aws:eu-west-1", now=NOW)
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.reasons == ()
    assert verdict.allowed_regions == ("aws:eu-central-1", "aws:eu-west-1", "gcp:europe-west6")


# -- step 3: exemptions --------------------------------------------------------------------------

EXEMPTIONS = (
    GDPR
    + """\
  - id: sanctions
    exemptible: false
    match: {}
    store: {deny: [CN]}
    process: {deny: [CN]}
  - id: hsm-only
    exemptible: false
    match: {classifications: [KEY]}
    store: {allow: [DE]}
exemptions:
  - id: EX-PROC
    dataset: "s3://eu/customers"
    operation: process
    regions: ["aws:us-east-1"]
    expires: "2027-01-31T00:00:00Z"
    approved_by: dpo@bank.example
  - id: EX-GLOB
    dataset: "s3://eu/fraud-*"
    operation: both
    regions: [US, CN]
    expires: "2027-01-31T00:00:00Z"
    approved_by: dpo@bank.example
  - id: EX-KEYS
    dataset: "s3://keys"
    operation: store
    regions: [IE]
    expires: "2027-01-31T00:00:00Z"
    approved_by: ciso@bank.example
"""
)
PII_DE = {"labels": ["PII"], "origins": ["DE"]}


def test_unexpired_exemption_allows_and_says_so() -> None:
    policy = compile_text(EXEMPTIONS)
    verdict = decide(policy, attrs("s3://eu/customers", **PII_DE), PROCESS, "aws:us-east-1", now=NOW)
    assert verdict.outcome is Outcome.ALLOW
    (reason,) = verdict.reasons
    assert reason.code is ReasonCode.EXEMPTION_APPLIED
    assert reason.rule_id == "EX-PROC"
    assert "dpo@bank.example" in reason.message and "overrides gdpr" in reason.message
    assert "aws:us-east-1" in verdict.allowed_regions
    assert "aws:us-west-2" not in verdict.allowed_regions


def test_exemption_expires_at_its_instant() -> None:
    policy = compile_text(EXEMPTIONS)
    dataset = attrs("s3://eu/customers", **PII_DE)
    expires = datetime(2027, 1, 31, tzinfo=UTC)
    before = decide(policy, dataset, PROCESS, "aws:us-east-1", now=expires - timedelta(microseconds=1))
    at = decide(policy, dataset, PROCESS, "aws:us-east-1", now=expires)
    assert before.outcome is Outcome.ALLOW
    assert at.outcome is Outcome.DENY
    assert [r.rule_id for r in at.reasons] == ["gdpr"]
    assert "aws:us-east-1" not in at.allowed_regions


def test_exemption_is_limited_to_its_operation_region_and_dataset() -> None:
    policy = compile_text(EXEMPTIONS)
    customers = attrs("s3://eu/customers", **PII_DE)
    assert decide(policy, customers, STORE, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
    assert decide(policy, customers, PROCESS, "aws:us-west-2", now=NOW).outcome is Outcome.DENY
    other = attrs("s3://eu/customers-v2", **PII_DE)
    assert decide(policy, other, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.DENY


def test_glob_exemption_for_both_operations() -> None:
    policy = compile_text(EXEMPTIONS)
    fraud = attrs("s3://eu/fraud-2026/features", **PII_DE)
    for op in Operation:
        for region in ("aws:us-east-1", "aws:us-west-2"):
            assert decide(policy, fraud, op, region, now=NOW).outcome is Outcome.ALLOW
    assert decide(policy, attrs("s3://eu/other", **PII_DE), STORE, "aws:us-west-2", now=NOW).outcome is Outcome.DENY


def test_exemption_never_overrides_a_non_exemptible_deny() -> None:
    policy = compile_text(EXEMPTIONS)
    fraud = attrs("s3://eu/fraud-x", **PII_DE)
    verdict = decide(policy, fraud, STORE, "aws:cn-north-1", now=NOW)
    assert verdict.outcome is Outcome.DENY
    assert [r.rule_id for r in verdict.reasons] == ["gdpr", "sanctions"]
    assert "not exemptible, so exemption EX-GLOB does not apply" in verdict.reasons[1].message
    assert "exemption" not in verdict.reasons[0].message
    assert "aws:cn-north-1" not in verdict.allowed_regions


def test_exemption_never_overrides_a_non_exemptible_allow_list() -> None:
    policy = compile_text(EXEMPTIONS)
    keys = attrs("s3://keys", labels=["KEY"])
    verdict = decide(policy, keys, STORE, "aws:eu-west-1", now=NOW)
    assert verdict.outcome is Outcome.DENY
    assert [r.rule_id for r in verdict.reasons] == ["hsm-only"]
    assert allowed_regions(policy, keys, STORE, NOW) == ("aws:eu-central-1",)


def test_exemption_overrides_a_default_deny() -> None:
    policy = compile_text(
        """\
        exemptions:
          - {id: EX, dataset: "s3://x", operation: store, regions: [US], expires: "2030-01-01T00:00:00Z",
             approved_by: me}
        """
    )
    verdict = decide(policy, attrs("s3://x", labels=["SECRET"]), STORE, "aws:us-west-2", now=NOW)
    assert verdict.outcome is Outcome.ALLOW
    assert "overrides defaults" in verdict.reasons[0].message
    assert verdict.allowed_regions == ("aws:us-east-1", "aws:us-west-2")


def test_signature_cache_does_not_leak_exemptions_between_datasets() -> None:
    policy = compile_text(EXEMPTIONS)
    exempted = attrs("s3://eu/customers", **PII_DE)
    same_labels = attrs("s3://eu/elsewhere", **PII_DE)
    assert decide(policy, exempted, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW
    assert decide(policy, same_labels, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
    assert decide(policy, exempted, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW
    # The other way round: a verdict remembered for the signature does not reach the exempted
    # dataset, before or after its exemption expires.
    policy = compile_text(EXEMPTIONS)
    exempted = attrs("s3://eu/customers", **PII_DE)
    for _ in range(2):
        assert decide(policy, same_labels, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
        assert decide(policy, exempted, PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW
    later = NOW + timedelta(days=3650)
    assert decide(policy, exempted, PROCESS, "aws:us-east-1", now=later).outcome is Outcome.DENY


def test_a_remembered_verdict_is_the_policys_own() -> None:
    first, second = compile_text(GDPR), compile_text(OPEN)
    dataset = attrs("s3://eu/customers", **PII_DE)
    for _ in range(2):  # each policy's answer, whichever decided on these attributes last
        assert decide(first, dataset, STORE, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
        assert decide(second, dataset, STORE, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW


# -- errors and arguments ------------------------------------------------------------------------


def test_unknown_region_is_invalid_argument() -> None:
    policy = compile_text(GDPR)
    with pytest.raises(DomicileError) as info:
        decide(policy, attrs(), STORE, "aws:mars-1", now=NOW)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.violations] == ["region"]


def test_naive_now_is_refused() -> None:
    policy = compile_text(GDPR)
    with pytest.raises(ValueError, match="naive"):
        decide(policy, attrs(), STORE, "aws:us-east-1", now=datetime(2026, 1, 1))


# -- policy-level facts --------------------------------------------------------------------------


def test_identity_of_a_compiled_policy() -> None:
    text = HEADER + GDPR
    policy = compile_policy(load_policy(text, REGISTRY))
    assert policy.version == "7"
    assert policy.source_yaml == text
    assert policy.content_hash == load_policy(text, REGISTRY).content_hash


def test_private_regions_are_known_and_decided() -> None:
    policy = compile_text(
        """\
        regions: [{id: "onprem:fra-dc1", country: DE}]
        rules:
          - {id: r, match: {classifications: [PII]}, store: {allow: [DE]}}
        """
    )
    assert policy.region_known("onprem:fra-dc1")
    assert not policy.region_known("onprem:nowhere")
    assert policy.registry.get("onprem:fra-dc1").private
    assert allowed_regions(policy, attrs(labels=["PII"]), STORE, NOW) == ("aws:eu-central-1", "onprem:fra-dc1")


def test_declassifiers_remove_hierarchically_for_the_jobs_they_grant() -> None:
    policy = compile_text(
        """\
        declassifiers:
          - {transform: anonymize, removes: [PII], jobs: ["airflow-eu/anonymize_*", "nightly"]}
          - {transform: aggregate, removes: [PII, FINANCIAL.PAYMENT], jobs: ["*"]}
          - {transform: tokenize, removes: [FINANCIAL.PAYMENT.CARD], jobs: []}
        """
    )
    assert dict(policy.declassifiers) == {
        "anonymize": ("PII",),
        "aggregate": ("PII", "FINANCIAL.PAYMENT"),
        "tokenize": ("FINANCIAL.PAYMENT.CARD",),
    }
    job = "airflow-eu/anonymize_customers"
    assert removes(policy, "anonymize", job, "PII")
    assert removes(policy, "anonymize", job, "PII.CONTACT.EMAIL")
    assert not removes(policy, "anonymize", job, "PIIX")
    assert not removes(policy, "anonymize", job, "FINANCIAL.PAYMENT")
    assert removes(policy, "aggregate", "anyone/at-all", "FINANCIAL.PAYMENT.CARD")
    assert removes(policy, "aggregate", "no-namespace", "PII")
    assert not removes(policy, "aggregate", job, "FINANCIAL")
    assert not removes(policy, "", job, "PII")
    assert not removes(policy, "copy", job, "PII")
    # Granted, not claimed: other jobs, no job at all, and a declassifier granted to none.
    assert not removes(policy, "anonymize", "airflow-us/anonymize_customers", "PII")
    assert not removes(policy, "anonymize", "", "PII")
    assert not removes(policy, "aggregate", "", "PII")
    assert not removes(policy, "tokenize", "airflow-in/tokenize", "FINANCIAL.PAYMENT.CARD")
    # A job without a namespace is default/<job>: the pattern "nightly" matches neither.
    assert not removes(policy, "anonymize", "nightly", "PII")
    assert policy.grants("anonymize", job) and not policy.grants("mask", job)


def test_a_policy_set_now_must_name_the_jobs_of_every_declassifier() -> None:
    text = HEADER + "declassifiers:\n  - {transform: anonymize, removes: [PII]}\n"
    with pytest.raises(PolicyInvalid) as info:
        load_policy(text, REGISTRY)
    (error,) = info.value.errors
    assert (error.line, error.path) == (5, "declassifiers[0]") and "needs 'jobs'" in error.message
    # A text the policy history recorded before keeps its meaning: any job (even none).
    legacy = compile_policy(load_policy(text, REGISTRY, legacy=True))
    assert removes(legacy, "anonymize", "whoever/whatever", "PII") and removes(legacy, "anonymize", "", "PII")


def test_undescribed_outputs_default_to_inherit_except_in_a_legacy_policy() -> None:
    assert compile_text("").inherits_undescribed_outputs
    assert not compile_text("defaults: {undescribed_outputs: deny}\n").inherits_undescribed_outputs
    assert not compile_policy(load_policy(HEADER, REGISTRY, legacy=True)).inherits_undescribed_outputs
    strict = HEADER + "defaults: {undescribed_outputs: inherit}\n"
    assert compile_policy(load_policy(strict, REGISTRY, legacy=True)).inherits_undescribed_outputs


def test_compiling_against_another_registry() -> None:
    loaded = load_policy(HEADER + 'rules:\n  - {id: r, match: {}, store: {allow: ["aws:us-east-1"]}}\n', REGISTRY)
    smaller = RegionRegistry([Region("aws:eu-central-1", "DE")])
    with pytest.raises(PolicyInvalid) as info:
        compile_policy(loaded, smaller)
    assert info.value.errors[0].path == "rules[0].store.allow[0]"
    assert info.value.errors[0].line == 5

    private = load_policy(HEADER + 'regions: [{id: "onprem:dc1", country: DE}]\n', REGISTRY)
    clashing = RegionRegistry([Region("onprem:dc1", "FR")])
    with pytest.raises(PolicyInvalid, match="builtin region"):
        compile_policy(private, clashing)
    assert compile_policy(private, smaller).region_known("onprem:dc1")


# -- violations and impact -----------------------------------------------------------------------


def test_violations_are_locations_where_storing_is_denied() -> None:
    policy = compile_text(GDPR)
    dataset = attrs(**PII_DE, locations=("aws:eu-central-1", "aws:us-east-1", "onprem:gone"))
    found = violations(policy, dataset, NOW)
    assert [region for region, _ in found] == ["aws:us-east-1", "onprem:gone"]
    assert found[0][1].outcome is Outcome.DENY
    assert found[0][1].reasons[0].rule_id == "gdpr"
    assert "not a region of this policy" in found[1][1].reasons[0].message
    assert violations(policy, attrs(locations=("aws:us-east-1",)), NOW) == []


def test_impact_of_a_stricter_policy() -> None:
    current = compile_text(GDPR)
    candidate = compile_text(GDPR.replace("[EEA, EU_ADEQUACY]", "[EEA]"))
    customers = attrs("s3://customers", **PII_DE, locations=("gcp:europe-west6", "aws:eu-west-1"))
    public = attrs("s3://public", locations=("aws:us-east-1",))
    changes = catalog_engine(current, customers, public).impact(candidate, NOW)
    assert changes == [  # by dataset and operation
        PolicyChange("s3://customers", PROCESS, (), ("gcp:europe-west6",), ()),
        PolicyChange("s3://customers", STORE, (), ("gcp:europe-west6",), ("gcp:europe-west6",)),
    ]
    # The other way round, regions are added and nothing becomes a violation.
    assert catalog_engine(candidate, customers).impact(current, NOW)[1] == PolicyChange(
        "s3://customers", STORE, ("gcp:europe-west6",), (), ()
    )
    assert catalog_engine(current, customers, public).impact(current, NOW) == []


def test_impact_with_attributes_that_change_under_the_candidate() -> None:
    current = compile_text(GDPR)
    candidate = compile_text(GDPR + 'declassifiers:\n  - {transform: mask, removes: [PII], jobs: ["*"]}\n')
    engine = Engine(current)
    engine.add(
        [
            Dataset.create("s3://crm", classifications=["PII"], origins=["DE"]),
            Dataset.create("s3://masked", origins=["DE"], locations=["aws:us-east-1"]),
        ],
        [Edge(input="s3://crm", output="s3://masked", job="etl/mask", transform="mask", run_id="r")],
    )
    (process, store) = engine.impact(candidate, NOW)
    assert store.dataset_id == "s3://masked"
    assert store.added_regions == ("aws:ap-south-1", "aws:cn-north-1", "aws:us-east-1", "aws:us-west-2")
    assert store.new_violations == ()
    assert process.operation is PROCESS
    # A dataset the candidate no longer decides (a placeholder it judges undescribed) is
    # allowed nowhere, and one only the candidate decides is allowed where it says.
    inheriting, undescribing = compile_text(GDPR), compile_text(GDPR + "defaults: {undescribed_outputs: deny}\n")
    for before, after in ((inheriting, undescribing), (undescribing, inheriting)):
        engine = Engine(before)
        engine.add(
            [Dataset.create("s3://crm", origins=["DE"]), Dataset.create("s3://copy", placeholder=True)],
            [Edge(input="s3://crm", output="s3://copy", job="etl/copy", run_id="r")],
        )
        (_, store) = [c for c in engine.impact(after, NOW) if c.dataset_id == "s3://copy"]
        if after is undescribing:
            assert store.added_regions == () and store.removed_regions == ALL and store.new_violations == ()
        else:
            assert store.added_regions == ALL and store.removed_regions == ()


def test_exemption_patterns_match_ids_in_normal_form() -> None:
    """Patterns follow the rules of dataset ids: forms the rules call equal are equal."""
    policy = compile_text(
        EXEMPTIONS.replace('dataset: "s3://eu/customers"', 'dataset: "S3://EU/customers"').replace(
            'dataset: "s3://eu/fraud-*"', 'dataset: "S3://Eu/fraud-%2A*"'
        )
    )
    assert (
        decide(policy, attrs("s3://eu/customers", **PII_DE), PROCESS, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW
    )
    assert (
        decide(policy, attrs("s3://eu/fraud-%2A1", **PII_DE), STORE, "aws:us-east-1", now=NOW).outcome is Outcome.ALLOW
    )
    assert decide(policy, attrs("s3://eu/fraud-1", **PII_DE), STORE, "aws:us-east-1", now=NOW).outcome is Outcome.DENY
