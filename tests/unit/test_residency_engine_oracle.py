"""The residency engine (crates/engine) is held to the plain oracle (tests/oracle.py).

Random catalogs (described, deleted and placeholder datasets; lineage with cycles, self-loops,
parallel edges and declassifying transforms recorded by various jobs), random policies
(rules, groups, exemptions with globs, declassifiers granted to job patterns, both ways of
judging placeholders) and random change sequences, policy switches included. After every step
the engine that followed the changes and an engine built from scratch from the resulting
catalog must both answer every question as the oracle does: decisions with their reasons and
messages, explanations, job checks, violations and a candidate policy's impact. Lineage paths
may differ where two shortest paths tie: each must be a real lineage path of the shortest
length that carries its value.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domicile.catalog.model import to_micros
from domicile.catalog.regions import RegionRegistry
from domicile.router._engine import Engine
from domicile.router.policy import LoadedPolicy, load_policy
from domicile.router.types import Operation, ReasonCode, Verdict
from tests import engine_harness as harness
from tests.oracle import UNDESCRIBED, Catalog, Described, Oracle, Policy

NODES = ("s3://eu/a", "s3://eu/b", "s3://in/c", "s3://in/d", "gs://x/e", "gs://x/f")
LABELS = ("PII", "PII.CONTACT", "PII.SPECIAL.HEALTH", "PAY", "PAY.CARD", "HEALTH")
ORIGINS = ("DE", "FR", "NO", "IN", "CN", "US")
LOCATIONS = ("aws:eu-central-1", "aws:us-east-1", "aws:ap-south-1", "onprem:dc1", "mars:base-1")
JOBS = ("etl", "team/etl", "airflow-eu/anonymize_daily", "airflow-eu/rollup", "default/etl")
TRANSFORMS = ("", "anonymize", "aggregate")
JOB_GRANTS = (None, [], ["*"], ["airflow-eu/*"], ["default/etl"], ["team/*", "airflow-eu/rollup"])
LOCATION_TOKENS = ("*", "EEA", "EU", "EU_ADEQUACY", "DE", "IN", "CN", "US", "RU", "aws:us-east-1", "onprem:dc1", "MINE")
ORIGIN_TOKENS = ("*", "EEA", "EU_ADEQUACY", "DE", "IN", "CN", "US")
EXEMPTED = ("s3://eu/a", "S3://EU/a", "s3://eu/*", "s3://*/?", "[gs]*", "s3://in/[!c]", "s3://none")
QUESTION_REGIONS = ("aws:us-east-1", "aws:eu-central-1", "aws:ap-south-1", "onprem:dc1", "gcp:europe-west6")
EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)
TIMES = (EXPIRY - timedelta(days=30), EXPIRY - timedelta(microseconds=1), EXPIRY)


def subsets(values, max_size: int = 3, min_size: int = 0) -> st.SearchStrategy[list]:
    return st.lists(st.sampled_from(values), min_size=min_size, max_size=max_size, unique=True)


permissions = st.one_of(
    st.none(),
    st.fixed_dictionaries({"allow": subsets(LOCATION_TOKENS), "deny": subsets(LOCATION_TOKENS)}),
    st.fixed_dictionaries({"deny": subsets(LOCATION_TOKENS, min_size=1)}),
)


@st.composite
def policies(draw: st.DrawFn, version: str = "1") -> tuple[LoadedPolicy, Policy, str]:
    """(loaded policy, its oracle reading, the engine's document). Some are legacy policies
    (recorded before declassifiers named their jobs: no `jobs`, any job)."""
    legacy = draw(st.booleans())
    rules = []
    for i in range(draw(st.integers(0, 4))):
        rule: dict = {
            "id": f"r{i}",
            "match": {"classifications": draw(subsets(LABELS, 2)), "origins": draw(subsets(ORIGIN_TOKENS, 2))},
            "exemptible": draw(st.booleans()),
        }
        if draw(st.booleans()):
            rule["citation"] = f"Art. {i}"
        for op in ("store", "process"):
            value = draw(permissions)
            if value is not None:
                rule[op] = value
        if "store" not in rule and "process" not in rule:
            rule["store"] = {"deny": ["RU"]}
        rules.append(rule)
    declassifiers = []
    for transform in draw(subsets(("anonymize", "aggregate"), 2)):
        declassifier = {"transform": transform, "removes": draw(subsets(LABELS, 2, min_size=1))}
        jobs = draw(st.sampled_from(JOB_GRANTS[1:] if not legacy else JOB_GRANTS))
        if jobs is not None:
            declassifier["jobs"] = jobs
        declassifiers.append(declassifier)
    defaults = {
        "classified": draw(st.sampled_from(["allow", "deny"])),
        "unclassified": draw(st.sampled_from(["allow", "deny"])),
    }
    mode = draw(st.sampled_from([None, "inherit", "deny"]))
    if mode is not None:
        defaults["undescribed_outputs"] = mode
    exemptions = [
        {
            "id": f"EX{i}",
            "dataset": draw(st.sampled_from(EXEMPTED)),
            "operation": draw(st.sampled_from(["store", "process", "both"])),
            "regions": draw(subsets(LOCATION_TOKENS[1:], 2, min_size=1)),
            "expires": "2027-01-01T00:00:00Z",
            "approved_by": "dpo@bank.example",
        }
        for i in range(draw(st.integers(0, 2)))
    ]
    text = yaml.safe_dump(
        {
            "apiVersion": "domicile/v1",
            "kind": "ResidencyPolicy",
            "metadata": {"name": "random", "version": version},
            "regions": [{"id": "onprem:dc1", "country": "DE"}],
            "groups": {"MINE": draw(subsets(LOCATION_TOKENS[:-1], min_size=1))},
            "rules": rules,
            "declassifiers": declassifiers,
            "exemptions": exemptions,
            "defaults": defaults,
        }
    )
    loaded = load_policy(text, legacy=legacy)
    return loaded, Policy.of(loaded), harness.document(loaded)


nodes = st.sampled_from(NODES)
described = st.builds(
    Described,
    st.frozensets(st.sampled_from(LABELS), max_size=2),
    st.frozensets(st.sampled_from(ORIGINS), max_size=2),
    st.lists(st.sampled_from(LOCATIONS), max_size=2, unique=True).map(tuple),
)
edges = st.tuples(nodes, nodes, st.sampled_from(JOBS), st.sampled_from(TRANSFORMS), st.sampled_from([None, 1, 2]))


@st.composite
def steps(draw: st.DrawFn) -> list[tuple]:
    kinds = st.sampled_from(
        ["describe", "describe", "delete", "mention", "mention", "edge", "edge", "edge", "cycle", "end", "policy"]
    )
    result = []
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(kinds)
        if kind == "describe":
            result.append(("describe", draw(nodes), draw(described)))
        elif kind in ("delete", "mention"):
            result.append((kind, draw(nodes)))
        elif kind in ("edge", "end"):
            result.append((kind, *draw(edges)))
        elif kind == "cycle":  # lineage both ways between two datasets (a job reading its output)
            input, output, job, transform, recorded = draw(edges)
            result.append(("edge", input, output, job, transform, recorded))
            result.append(("edge", output, input, job, "", recorded))
        else:
            result.append(("policy",))
    return result


def apply_step(step: tuple, catalog: Catalog) -> tuple | None:
    """Applies a step to the oracle's catalog; returns the engine change (None: a policy switch)."""
    kind = step[0]
    if kind == "describe":
        _, node, d = step
        catalog.describe(node, d)
        return harness.described(node, sorted(d.labels), sorted(d.origins), d.locations)
    if kind == "delete":
        catalog.delete(step[1])
        return ("deleted", step[1])
    if kind == "mention":
        catalog.mention(step[1])
        return ("placeholder", step[1])
    if kind == "edge":
        catalog.add_edge(*step[1:])
        return harness.edge(*step[1:])
    if kind == "end":
        _, input, output, job, transform, recorded = step
        current = catalog.edges.get((input, output, job))
        if current is not None and recorded == 2:
            transform, recorded = current  # end the indexed version (the common case)
        catalog.end_edge(input, output, job, transform, recorded)
        return harness.edge_ended(input, output, job, transform, recorded)
    return None


def from_scratch(catalog: Catalog, document: str) -> Engine:
    engine = Engine(document)
    changes: list[tuple] = [
        harness.described(n, sorted(d.labels), sorted(d.origins), d.locations) for n, d in catalog.described.items()
    ]
    changes += [("placeholder", n) for n in catalog.placeholders]
    changes += [harness.edge(i, o, job, t, r) for (i, o, job), (t, r) in catalog.edges.items()]
    engine.apply(changes)
    return engine


_MATCHED = re.compile(r"; matched (?:classification (\S+?))?(?: and )?(?:origin (\S+?))?(?:;|$)")


def check_path(oracle: Oracle, path: tuple[str, ...], dataset: str, value: str, is_label: bool, distance: int) -> None:
    assert path[-1] == dataset, path
    assert len(path) == distance + 1, (path, distance)
    assert oracle.owns(path[0], value, is_label=is_label), (path, value)
    for upstream, downstream in itertools.pairwise(path):
        assert oracle.carries(upstream, downstream, value, is_label=is_label), (path, value)


def check_verdict(
    got: Verdict, want: Verdict, oracle: Oracle, dataset: str, *, paths_end_at_edges: bool = True
) -> None:
    assert got.outcome is want.outcome, (got, want)
    assert got.allowed_regions == want.allowed_regions
    assert len(got.reasons) == len(want.reasons), (got.reasons, want.reasons)
    for g, w in zip(got.reasons, want.reasons, strict=True):
        assert (g.code, g.rule_id, g.citation) == (w.code, w.rule_id, w.citation)
        assert len(g.lineage_path) == len(w.lineage_path), (g, w)
        if g.code is ReasonCode.UNKNOWN_DATASET and g.lineage_path:
            # Which undescribed source is named depends on the path, and shortest paths may tie
            # (the source may be the dataset itself, reached round a cycle: name the source only).
            source, named = f"derives from {w.lineage_path[0]!r}", f"derives from {g.lineage_path[0]!r}"
            assert g.message == w.message.replace(source, named, 1)
            if paths_end_at_edges:
                check_path(oracle, g.lineage_path, dataset, UNDESCRIBED, False, len(w.lineage_path) - 1)
            continue
        assert g.message == w.message
        if g.code is ReasonCode.RULE_DENIED and g.lineage_path != (dataset,) and paths_end_at_edges:
            label, origin = _MATCHED.search(g.message).groups()
            value, is_label = (label, True) if label else (origin, False)
            check_path(oracle, g.lineage_path, dataset, value, is_label, len(w.lineage_path) - 1)


def check_engine(engine: Engine, oracle: Oracle, now: datetime, candidate: tuple[str, Policy]) -> None:
    micros = to_micros(now)
    for dataset in (*NODES, "s3://never/mentioned"):
        for op in Operation:
            for region in QUESTION_REGIONS:
                got, got_inherited = harness.decide(engine, dataset, op, region, now)
                want, want_inherited = oracle.decide(dataset, op, region, now)
                check_verdict(got, want, oracle, dataset)
                assert got_inherited == want_inherited
        explained = engine.explain(dataset, micros)
        attrs = oracle.attributes(dataset)
        assert (explained is None) == (attrs is None)
        if attrs is not None:
            classifications, origins, store, process, inherited_only = explained
            assert {v: len(p) - 1 for v, p in classifications} == attrs.labels
            assert {v: len(p) - 1 for v, p in origins} == attrs.origins
            assert [v for v, _ in classifications] == sorted(attrs.labels)
            for value, path in classifications:
                check_path(oracle, path, dataset, value, True, attrs.labels[value])
            for value, path in origins:
                check_path(oracle, path, dataset, value, False, attrs.origins[value])
            assert store == oracle.allowed_regions(attrs, Operation.STORE, now)
            assert process == oracle.allowed_regions(attrs, Operation.PROCESS, now)
            assert inherited_only == attrs.inherited_only
    # A job reading two datasets and writing a third, with every transform and a few jobs.
    for transform, job in itertools.product(TRANSFORMS, ("", "airflow-eu/rollup", "etl")):
        inputs, outputs = list(NODES[:2]), [NODES[4], "s3://new/output"]
        got = engine.check_job(inputs, outputs, "aws:eu-central-1", "aws:us-east-1", transform, job, micros)
        want = [("process", i, oracle.decide(i, Operation.PROCESS, "aws:eu-central-1", now)) for i in inputs]
        for output in outputs:
            attrs = oracle.inherited(inputs, output, transform, job)
            want.append(
                ("store", output, (oracle.judge(attrs, Operation.STORE, "aws:us-east-1", now), attrs.inherited_only))
            )
        assert [(d, op) for d, op, _, _ in got] == [(d, 0 if op == "store" else 1) for op, d, _ in want]
        for (dataset, _, _, raw), (_, _, (want_verdict, want_inherited)) in zip(got, want, strict=True):
            got_verdict, got_inherited = harness.verdict(raw)
            check_verdict(got_verdict, want_verdict, oracle, dataset, paths_end_at_edges=False)
            assert got_inherited == want_inherited
    violations = engine.scan_violations(micros)
    want_violations = oracle.violations(now)
    assert [(d, r) for d, r, _ in violations] == [(d, r) for d, r, _ in want_violations]
    for (dataset, _, raw), (_, _, want) in zip(violations, want_violations, strict=True):
        check_verdict(harness.verdict(raw)[0], want, oracle, dataset)
    # Per dataset: the same violations, and where each dataset stands.
    assert engine.violations_of(sorted(NODES, reverse=True), micros) == sorted(
        violations, key=lambda v: v[0], reverse=True
    )
    assert sorted(engine.stored_datasets()) == sorted(
        d for d in oracle.nodes if oracle.status[d] == "described" and oracle.catalog.described[d].locations
    )
    asked = [*NODES, "s3://never/mentioned"]
    for dataset, (standing, locations) in zip(asked, engine.residency(asked), strict=True):
        want = oracle_standing(oracle, dataset)
        # An id lineage once named and the catalog no longer does may still count as undescribed
        # (decisions on it fail closed alike).
        if oracle.status.get(dataset) in (None, "deleted"):
            # Neither described nor in lineage now: undescribed to an engine that saw it deleted
            # (or named by lineage since forgotten), unknown to one built from a snapshot
            # without it; decisions on it fail closed alike.
            assert standing in (2, 3), dataset
        else:
            assert standing == want, dataset
        assert locations == (oracle.catalog.described[dataset].locations if standing == 0 else ())
    # What switching to the candidate policy would change.
    candidate_document, candidate_policy = candidate
    other = Oracle(oracle.catalog, candidate_policy)
    want_impact = []
    for dataset in sorted(oracle.nodes):
        before_attrs, after_attrs = oracle.attributes(dataset), other.attributes(dataset)
        if before_attrs is None and after_attrs is None:
            continue
        for op in (Operation.PROCESS, Operation.STORE):
            before = set(oracle.allowed_regions(before_attrs, op, now)) if before_attrs else set()
            after = set(other.allowed_regions(after_attrs, op, now)) if after_attrs else set()
            locations = before_attrs.locations if before_attrs else ()
            new_violations = (
                [loc for loc in locations if loc in before and loc not in after] if op is Operation.STORE else []
            )
            if before != after or new_violations:
                want_impact.append(
                    (
                        dataset,
                        harness.OPERATIONS[op],
                        tuple(sorted(after - before)),
                        tuple(sorted(before - after)),
                        tuple(new_violations),
                    )
                )
    assert engine.impact(candidate_document, micros) == want_impact


def oracle_standing(oracle: Oracle, dataset: str) -> int:
    """The engine's `residency` code of a dataset: 0 described, 1 derived, 2 undescribed, 3 unknown."""
    status = oracle.status.get(dataset)
    if status is None:
        return 3
    if status == "described":
        return 0
    attrs = oracle.attributes(dataset)
    if status == "derived" and attrs is not None and UNDESCRIBED not in attrs.origins:
        return 1
    return 2


def answers(engine: Engine, now: int) -> dict[str, object]:
    """Everything the engine answers of each dataset, to compare before and after a change."""
    return {
        dataset: (engine.explain(dataset, now), engine.violations_of([dataset], now), engine.residency([dataset]))
        for dataset in NODES
    }


def walk(first, second, script, apply_change: Callable[[Engine, tuple], object] = lambda e, c: e.apply([c])):
    """Runs `script` on one engine and the oracle's catalog, each policy step switching between
    the two policies; after each step yields (engine, catalog, oracle, the policy document in
    force, the other policy as (document, Policy)). `apply_change(engine, change)` applies a
    catalog change to the engine."""
    policies_by_turn = [first, second]
    turn = 0
    _, oracle_policy, document = first
    engine = Engine(document)
    catalog = Catalog()
    for step in script:
        change = apply_step(step, catalog)
        if change is None:
            turn = 1 - turn
            _, oracle_policy, document = policies_by_turn[turn]
            engine.set_policy(document)
        else:
            apply_change(engine, change)
        _, other_policy, other_document = policies_by_turn[1 - turn]
        yield engine, catalog, Oracle(catalog, oracle_policy), document, (other_document, other_policy)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=policies("1"), second=policies("2"), script=steps(), when=st.sampled_from(TIMES))
def test_engine_agrees_with_the_oracle(first, second, script, when) -> None:
    built = False

    def apply_reporting_what_changed(engine: Engine, change: tuple) -> None:
        nonlocal built
        before = answers(engine, to_micros(when))
        touched = set(engine.apply([change]))
        after = answers(engine, to_micros(when))
        # What a change may alter, `apply` reports (the violations kept by the router rely on
        # it); the first change into the empty engine is a build, which reports nothing.
        if built:
            assert {d for d in NODES if before[d] != after[d]} <= touched
        built = True

    for engine, catalog, oracle, document, candidate in walk(first, second, script, apply_reporting_what_changed):
        check_engine(engine, oracle, when, candidate)
        check_engine(from_scratch(catalog, document), oracle, when, candidate)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=policies("1"), second=policies("2"), script=steps(), times=st.permutations(TIMES))
def test_memoised_verdicts_follow_changes_and_time(first, second, script, times) -> None:
    """The engine memoises verdicts: decisions asked between changes, policy switches and at
    instants on both sides of an exemption's expiry (time going back too) must each be the
    oracle's -- a verdict kept past what changed it fails here."""
    for engine, _, oracle, _, _ in walk(first, second, script):
        for now in times:
            for dataset in NODES:
                for op in Operation:
                    for region in QUESTION_REGIONS:
                        got, got_inherited = harness.decide(engine, dataset, op, region, now)
                        want, want_inherited = oracle.decide(dataset, op, region, now)
                        check_verdict(got, want, oracle, dataset)
                        assert got_inherited == want_inherited


def test_verdicts_are_memoised_until_a_change_reaches_them() -> None:
    """Asked again, a dataset's verdict is the very value handed out before; a change upstream
    (here one that only moves a lineage path) gives it a new one."""
    loaded = load_policy(
        "apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: p, version: '1'}\n"
        "rules:\n  - {id: r, match: {classifications: [PII]}, store: {deny: [US]}}\n"
    )
    engine = Engine(harness.document(loaded))
    engine.apply(
        [
            harness.described("s3://a", ["PII"], []),
            harness.described("s3://b", [], []),
            harness.described("s3://c", [], []),
            harness.edge("s3://a", "s3://b", "j"),
            harness.edge("s3://b", "s3://c", "j"),
        ]
    )
    micros = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
    first = engine.decide("s3://c", 0, "aws:us-east-1", micros)
    assert engine.decide("s3://c", 0, "aws:us-east-1", micros) is first
    assert first[2][0][4] == ("s3://a", "s3://b", "s3://c")
    # s3://b gets PII itself: s3://c keeps the label at a shorter distance, by another path.
    engine.apply([harness.described("s3://b", ["PII"], [])])
    again = engine.decide("s3://c", 0, "aws:us-east-1", micros)
    assert again is not first
    assert again[2][0][4] == ("s3://b", "s3://c")


def test_a_cycle_of_placeholders_nothing_enters_is_undescribed() -> None:
    """A placeholder is derived when lineage enters its strongly connected component; a cycle of
    placeholders nothing enters from outside (or a placeholder fed only by itself) is a lineage
    root nobody described. What it feeds is derived, and inherits that doubt."""
    loaded = load_policy(
        "apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: p, version: '1'}\n"
        "defaults: {classified: deny, unclassified: allow, undescribed_outputs: inherit}\n"
    )
    engine = Engine(harness.document(loaded))
    placeholders = ["p://a", "p://b", "p://c", "p://self", "p://e"]
    engine.apply(
        [
            *(("placeholder", p) for p in placeholders),
            harness.edge("p://a", "p://b", "j"),
            harness.edge("p://b", "p://a", "j"),
            harness.edge("p://b", "p://c", "j"),
            harness.edge("p://self", "p://self", "j"),
            harness.described("s3://d", [], ["DE"]),
            harness.edge("s3://d", "p://e", "j"),
        ]
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def decide(node: str) -> tuple[Verdict, bool]:
        return harness.decide(engine, node, Operation.STORE, "aws:us-east-1", now)

    for node in ("p://a", "p://b", "p://self"):
        verdict, _ = decide(node)
        root = (
            f"dataset {node!r} is known only from lineage and no described data flows into it "
            "(a lineage root nobody described): register it to decide"
        )
        assert [r.message for r in verdict.reasons] == [root]
    verdict, inherited = decide("p://c")
    assert [r.code for r in verdict.reasons] == [ReasonCode.UNKNOWN_DATASET]
    assert verdict.reasons[0].lineage_path == ("p://b", "p://c")
    assert inherited
    assert (decide("p://e")[0].outcome.value, decide("p://e")[1]) == ("allow", True)
    # Once something enters the cycle, its members are derived.
    engine.apply([harness.edge("s3://d", "p://a", "j")])
    verdict, inherited = decide("p://b")
    assert (verdict.outcome.value, inherited) == ("allow", True)
    assert engine.explain("p://b", to_micros(now))[1] == (("DE", ("s3://d", "p://a", "p://b")),)


def test_a_cycle_through_a_described_or_deleted_dataset_is_entered() -> None:
    loaded = load_policy(
        "apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: p, version: '1'}\n"
        "defaults: {classified: deny, unclassified: allow}\n"
    )
    engine = Engine(harness.document(loaded))
    engine.apply(
        [
            harness.described("s3://d", ["PII"], ["DE"]),
            ("placeholder", "p://a"),
            harness.edge("s3://d", "p://a", "j"),
            harness.edge("p://a", "s3://d", "j"),
            ("placeholder", "p://b"),
            harness.edge("s3://gone", "p://b", "j"),
            harness.edge("p://b", "s3://gone", "j"),
        ]
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    verdict, inherited = harness.decide(engine, "p://a", Operation.STORE, "aws:us-east-1", now)
    assert (verdict.outcome.value, inherited) == ("deny", True)
    assert (
        verdict.reasons[0].message == "no applicable rule has an allow list for store and defaults.classified is deny"
    )
    verdict, inherited = harness.decide(engine, "p://b", Operation.STORE, "aws:us-east-1", now)
    assert inherited
    assert verdict.reasons[0].lineage_path == ("s3://gone", "p://b")


def test_normalised_documents_resolve_against_the_registry_used() -> None:
    registry = RegionRegistry.builtin()
    loaded = load_policy(
        "apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: p, version: '1'}\n"
        "rules:\n  - {id: r, match: {origins: [EEA]}, store: {allow: [DE]}}\n",
        registry,
    )
    engine = Engine(harness.document(loaded))
    engine.apply([harness.described("s3://x", [], ["FR"])])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    verdict, _ = harness.decide(engine, "s3://x", Operation.STORE, "aws:eu-central-1", now)
    assert verdict.outcome.value == "allow"
    assert set(verdict.allowed_regions) == {r.id for r in registry if r.country == "DE"}


def test_exemption_patterns_reach_the_engine_in_normal_form() -> None:
    """An exemption matches the ids the naming rules call equal to its pattern."""
    loaded = load_policy(
        "apiVersion: domicile/v1\nkind: ResidencyPolicy\nmetadata: {name: p, version: '1'}\n"
        "rules:\n  - {id: r, match: {origins: [DE]}, store: {allow: [DE]}}\n"
        "exemptions:\n"
        "  - {id: x, dataset: 'S3://EU/a', operation: store, regions: [US], expires: '2030-01-01T00:00:00Z',"
        " approved_by: me}\n"
        "  - {id: y, dataset: 'S3://In/%7e*', operation: store, regions: [US], expires: '2030-01-01T00:00:00Z',"
        " approved_by: me}\n"
    )
    engine = Engine(harness.document(loaded))
    engine.apply([harness.described(node, [], ["DE"]) for node in ("s3://eu/a", "s3://in/~b", "s3://eu/b")])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = {
        node: harness.decide(engine, node, Operation.STORE, "aws:us-east-1", now)[0].outcome.value
        for node in ("s3://eu/a", "s3://in/~b", "s3://eu/b")
    }
    assert outcomes == {"s3://eu/a": "allow", "s3://in/~b": "allow", "s3://eu/b": "deny"}
