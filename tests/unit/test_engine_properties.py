"""The compiled engine agrees with a direct, set-based reading of the policy semantics, for
random policies and datasets over the builtin registry (more regions than a machine word, so
the bitsets are exercised beyond 64 bits)."""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domicile.catalog.model import label_matches
from domicile.catalog.regions import RegionRegistry
from domicile.router.engine import CompiledPolicy, compile_policy
from domicile.router.locations import LocationResolver
from domicile.router.policy import PolicyDocument, load_policy
from domicile.router.types import EffectiveAttributes, Operation, Outcome, ReasonCode

LABELS = ["PII", "PII.CONTACT", "PII.SPECIAL.HEALTH", "PAY", "PAY.CARD", "KEY", "OTHER"]
ORIGINS = ["DE", "FR", "NO", "IN", "CN", "US", "CH"]
LOCATION_TOKENS = [
    "*",
    "EEA",
    "EU",
    "EU_ADEQUACY",
    "DE",
    "IN",
    "CN",
    "US",
    "RU",
    "aws:us-east-1",
    "gcp:europe-west6",
    "onprem:dc1",
    "MINE",
]
ORIGIN_TOKENS = ["*", "EEA", "EU_ADEQUACY", "DE", "IN", "CN", "US"]
DATASETS = ["s3://eu/customers", "s3://eu/fraud-1", "s3://in/payments"]
VERBS = ["allow", "deny"]
EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)
REGIONS = [*sorted(r.id for r in RegionRegistry.builtin()), "onprem:dc1"]


def subsets(values: list[str], max_size: int = 3, min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=min_size, max_size=max_size, unique=True)


permission = st.one_of(
    st.none(),
    st.fixed_dictionaries({"allow": subsets(LOCATION_TOKENS), "deny": subsets(LOCATION_TOKENS)}),
    st.fixed_dictionaries({"deny": subsets(LOCATION_TOKENS, min_size=1)}),
)


@st.composite
def rules(draw: st.DrawFn) -> list[dict]:
    result = []
    for i in range(draw(st.integers(0, 5))):
        rule: dict = {
            "id": f"r{i}",
            "match": {"classifications": draw(subsets(LABELS, 2)), "origins": draw(subsets(ORIGIN_TOKENS, 2))},
            "exemptible": draw(st.booleans()),
        }
        for op in ("store", "process"):
            value = draw(permission)
            if value is not None:
                rule[op] = value
        if "store" not in rule and "process" not in rule:
            rule["store"] = {"deny": ["RU"]}
        result.append(rule)
    return result


exemption = st.fixed_dictionaries(
    {
        "dataset": st.sampled_from(["s3://eu/customers", "s3://eu/*", "s3://*/fraud-?", "s3://none"]),
        "operation": st.sampled_from(["store", "process", "both"]),
        "regions": subsets(LOCATION_TOKENS[1:], 2, min_size=1),
        "expires": st.just("2027-01-01T00:00:00Z"),
        "approved_by": st.just("dpo@bank.example"),
    }
)


@st.composite
def policies(draw: st.DrawFn) -> CompiledPolicy:
    document = {
        "apiVersion": "domicile/v1",
        "kind": "ResidencyPolicy",
        "metadata": {"name": "random", "version": "1"},
        "regions": [{"id": "onprem:dc1", "country": "DE"}],
        "groups": {"MINE": draw(subsets(LOCATION_TOKENS[:-1], min_size=1))},
        "rules": draw(rules()),
        "exemptions": [{"id": f"EX{i}", **e} for i, e in enumerate(draw(st.lists(exemption, max_size=3)))],
        "defaults": {"classified": draw(st.sampled_from(VERBS)), "unclassified": draw(st.sampled_from(VERBS))},
    }
    return compile_policy(load_policy(yaml.safe_dump(document)))


@st.composite
def datasets(draw: st.DrawFn) -> EffectiveAttributes:
    dataset_id = draw(st.sampled_from(DATASETS))
    # Rich datasets make more rules apply, and interactions between rules are the point.
    labels = draw(subsets(LABELS, 5))
    origins = draw(subsets(ORIGINS, 4))
    return EffectiveAttributes(
        dataset_id,
        MappingProxyType(dict.fromkeys(labels, ("upstream", dataset_id))),
        MappingProxyType(dict.fromkeys(origins, (dataset_id,))),
    )


times = st.sampled_from(
    [EXPIRY - timedelta(days=30), EXPIRY - timedelta(microseconds=1), EXPIRY, EXPIRY + timedelta(days=1)]
)


def reference(
    document: PolicyDocument,
    resolver: LocationResolver,
    attrs: EffectiveAttributes,
    op: Operation,
    region: str,
    now: datetime,
) -> tuple[set[str], list[str], bool]:
    """(allowed regions, ids of the rules excluding `region`, whether the base came from a deny
    default), straight from the policy semantics, steps 1-3 with plain sets."""
    everywhere = set(REGIONS)
    labels, origins = set(attrs.classifications), set(attrs.origins)

    def applies(rule) -> bool:
        if rule.match.classifications and not any(
            label_matches(r, label) for r in rule.match.classifications for label in labels
        ):
            return False
        if rule.match.origins:
            location = resolver.origin_countries(rule.match.origins)
            if not origins or not (location.everywhere or origins & location.countries):
                return False
        return True

    applicable = [rule for rule in document.rules if applies(rule)]
    permissions = [(rule, getattr(rule, op.value)) for rule in applicable if getattr(rule, op.value) is not None]
    allows = [set(resolver.regions(p.allow)) for _, p in permissions if p.allow is not None]
    default_denies = False
    if allows:
        base = set.intersection(*allows)
    else:
        verb = document.defaults.classified if labels else document.defaults.unclassified
        base = set(everywhere) if verb == "allow" else set()
        default_denies = verb == "deny"
    denied: set[str] = set()
    hard: set[str] = set()
    excluding: list[str] = []
    for rule, p in permissions:
        excluded = set(resolver.regions(p.deny))
        if p.allow is not None:
            excluded |= everywhere - resolver.regions(p.allow)
        denied |= set(resolver.regions(p.deny))
        if not rule.exemptible:
            hard |= excluded
        if region in excluded:
            excluding.append(rule.id)
    exempted: set[str] = set()
    for e in document.exemptions:
        if fnmatch.fnmatchcase(attrs.dataset_id, e.dataset) and e.operation in (op.value, "both") and now < e.expires:
            exempted |= resolver.regions(e.regions)
    return (base - denied) | (exempted - hard), excluding, default_denies


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), data=st.data())
def test_engine_agrees_with_the_reference(policy: CompiledPolicy, data: st.DataObject) -> None:
    document = policy.loaded.document
    resolver = LocationResolver(policy.registry, document.groups)
    for _ in range(5):
        attrs = data.draw(datasets())
        op = data.draw(st.sampled_from(list(Operation)))
        now = data.draw(times)
        region = data.draw(
            st.sampled_from(
                [
                    "aws:us-east-1",
                    "aws:eu-central-1",
                    "gcp:europe-west6",
                    "aws:ap-south-1",
                    "aws:cn-north-1",
                    "onprem:dc1",
                    data.draw(st.sampled_from(REGIONS)),
                ]
            )
        )
        allowed, excluding, default_denies = reference(document, resolver, attrs, op, region, now)
        assert set(policy.allowed_regions(attrs, op, now)) == allowed
        verdict = policy.decide(attrs, op, region, now=now)
        # Asked again (now possibly from the signature's verdict table), and for an equal
        # dataset's new attributes object: the same verdict.
        assert policy.decide(attrs, op, region, now=now) == verdict
        assert policy.decide(replace(attrs), op, region, now=now) == verdict
        assert verdict.allowed_regions == tuple(sorted(allowed))
        assert (verdict.outcome is Outcome.ALLOW) == (region in allowed)
        if verdict.outcome is Outcome.DENY:
            # Every rule that excluded the region is named, in policy order, and the default.
            assert [r.rule_id for r in verdict.reasons if r.code is ReasonCode.RULE_DENIED] == excluding
            assert (ReasonCode.DEFAULT_DENIED in {r.code for r in verdict.reasons}) == default_denies
            assert {r.code for r in verdict.reasons} <= {ReasonCode.RULE_DENIED, ReasonCode.DEFAULT_DENIED}
        else:
            exempted = bool(excluding) or default_denies
            assert [r.code for r in verdict.reasons] == ([ReasonCode.EXEMPTION_APPLIED] if exempted else [])
