"""A plain reading of the residency semantics, against which the engine (crates/engine) is held.

Everything is computed from scratch from a catalog and a policy, with sets, dicts and
breadth-first searches: no caches, no incremental work, no bit sets, nothing shared with the
engine but the policy language's location resolver. It is slow on purpose and written to be
checked by reading, against docs/router.md:

- a node is *described* (registered, not deleted), a *placeholder* (known only by name), or
  *deleted* (deleted, or an edge endpoint nothing was said about);
- a placeholder is *derived* (judged by what it inherits) when the policy judges placeholders by
  inheritance and lineage *enters* it: its strongly connected component (the nodes it reaches
  that reach it) holds a node that is not a placeholder, or an edge from outside the component
  ends in it;
- described datasets own their labels and origins; deleted nodes and placeholders that are not
  derived own the pseudo-origin UNDESCRIBED; derived placeholders own nothing;
- a node has label or origin `v` at distance `d` when the shortest lineage path from a node
  owning `v` to it, over edges that carry `v`, has `d` edges; an edge carries every origin, and
  every label except those its transform's declassifier removes when the policy grants that
  declassifier to the edge's job;
- decisions follow the four steps of the policy language (applicable rules, base and denies,
  exemptions, ALLOW iff allowed), with the reasons and messages docs/router.md shows.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from domicile.catalog.dataset_ids import normalize_pattern
from domicile.catalog.model import label_matches
from domicile.catalog.regions import RegionRegistry
from domicile.router.locations import LocationResolver
from domicile.router.policy import LoadedPolicy, PolicyDocument
from domicile.router.types import Operation, Outcome, Reason, ReasonCode, Verdict

UNDESCRIBED = "UNDESCRIBED"


@dataclass(frozen=True)
class Described:
    labels: frozenset[str]
    origins: frozenset[str]
    locations: tuple[str, ...] = ()


@dataclass
class Catalog:
    """The catalog as the index reads it, changed the way the index is."""

    described: dict[str, Described] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    placeholders: set[str] = field(default_factory=set)
    # (input, output, job) -> (transform, record time or None)
    edges: dict[tuple[str, str, str], tuple[str, int | None]] = field(default_factory=dict)

    def describe(self, dataset_id: str, described: Described) -> None:
        self.described[dataset_id] = described
        self.deleted.discard(dataset_id)
        self.placeholders.discard(dataset_id)

    def delete(self, dataset_id: str) -> None:
        self.described.pop(dataset_id, None)
        self.placeholders.discard(dataset_id)
        self.deleted.add(dataset_id)

    def mention(self, dataset_id: str) -> None:
        """Known by name only (forgets a description)."""
        self.described.pop(dataset_id, None)
        self.deleted.discard(dataset_id)
        self.placeholders.add(dataset_id)

    def add_edge(self, input: str, output: str, job: str, transform: str, recorded: int | None) -> None:
        self.edges[(input, output, job)] = (transform, recorded)

    def end_edge(self, input: str, output: str, job: str, transform: str, recorded: int | None) -> None:
        current = self.edges.get((input, output, job))
        if current is None or current[0] != transform:
            return
        if current[1] is None or recorded is None or current[1] == recorded:
            del self.edges[(input, output, job)]

    def nodes(self) -> set[str]:
        ends = {i for i, _, _ in self.edges} | {o for _, o, _ in self.edges}
        return set(self.described) | self.deleted | self.placeholders | ends


@dataclass(frozen=True)
class Grant:
    """A declassifier: the labels `transform` removes, and the job patterns allowed to apply it
    (None: any job, as policies written before grants existed)."""

    removes: tuple[str, ...]
    jobs: tuple[str, ...] | None


@dataclass(frozen=True)
class Policy:
    """A policy document with the registry it is used with and how it reads lineage."""

    document: PolicyDocument
    registry: RegionRegistry
    grants: dict[str, Grant]
    inherit: bool  # `undescribed_outputs: inherit`
    legacy: bool  # recorded before declassifiers named their jobs

    @staticmethod
    def of(loaded: LoadedPolicy) -> Policy:
        document = loaded.document
        written = document.defaults.undescribed_outputs
        inherit = written == "inherit" if written is not None else not loaded.legacy
        grants = {d.transform: Grant(tuple(d.removes), d.jobs) for d in document.declassifiers}
        return Policy(document, loaded.registry, grants, inherit, loaded.legacy)

    @property
    def resolver(self) -> LocationResolver:
        return LocationResolver(self.registry, self.document.groups)

    def removes(self, transform: str, job: str, label: str) -> bool:
        grant = self.grants.get(transform)
        if grant is None:
            return False
        if grant.jobs is not None:
            if not job:
                return False
            qualified = job if "/" in job else f"default/{job}"
            if not any(fnmatch.fnmatchcase(qualified, pattern) for pattern in grant.jobs):
                return False
        return any(label_matches(removed, label) for removed in grant.removes)


@dataclass(frozen=True)
class Attributes:
    """A node's effective labels and origins: value -> distance, and one shortest path each."""

    dataset_id: str
    labels: dict[str, int]
    origins: dict[str, int]
    paths: dict[tuple[bool, str], tuple[str, ...]]
    locations: tuple[str, ...]
    inherited_only: bool

    def path(self, value: str, *, is_label: bool) -> tuple[str, ...]:
        return self.paths[(is_label, value)]


class Oracle:
    """Effective attributes and decisions for one catalog under one policy."""

    def __init__(self, catalog: Catalog, policy: Policy) -> None:
        self.catalog = catalog
        self.policy = policy
        self.nodes = catalog.nodes()
        self.status = self._statuses()
        self._attributes = self._effective()

    # ---- effective attributes --------------------------------------------------------------

    def _reaches(self, start: str) -> set[str]:
        """`start` and every node lineage leads to from it."""
        seen = {start}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for i, o, _ in self.catalog.edges:
                if i == node and o not in seen:
                    seen.add(o)
                    queue.append(o)
        return seen

    def _statuses(self) -> dict[str, str]:
        reaches = {n: self._reaches(n) for n in self.nodes}

        def entered(node: str) -> bool:
            """Whether lineage enters the strongly connected component of `node`."""
            component = {m for m in reaches[node] if node in reaches[m]}
            if any(m not in self.catalog.placeholders for m in component):
                return True
            return any(o in component and i not in component for i, o, _ in self.catalog.edges)

        status = {}
        for n in self.nodes:
            if n in self.catalog.described:
                status[n] = "described"
            elif n not in self.catalog.placeholders:
                status[n] = "deleted"
            elif self.policy.inherit and entered(n):
                status[n] = "derived"
            else:
                status[n] = "undescribed placeholder"
        return status

    def _owners(self) -> dict[tuple[bool, str], set[str]]:
        owners: dict[tuple[bool, str], set[str]] = {}
        for n in self.nodes:
            if self.status[n] == "described":
                described = self.catalog.described[n]
                for label in described.labels:
                    owners.setdefault((True, label), set()).add(n)
                for origin in described.origins:
                    owners.setdefault((False, origin), set()).add(n)
            elif self.status[n] != "derived":
                owners.setdefault((False, UNDESCRIBED), set()).add(n)
        return owners

    def _effective(self) -> dict[str, Attributes]:
        outgoing: dict[str, list[tuple[str, str, str]]] = {n: [] for n in self.nodes}
        for (i, o, job), (transform, _) in self.catalog.edges.items():
            outgoing[i].append((o, job, transform))
        found: dict[str, dict[tuple[bool, str], tuple[int, tuple[str, ...]]]] = {n: {} for n in self.nodes}
        for (is_label, value), sources in self._owners().items():
            # Breadth-first from every owner at once: the first visit is at the shortest distance.
            paths = {n: (n,) for n in sources}
            queue = deque(sources)
            while queue:
                node = queue.popleft()
                for output, job, transform in outgoing[node]:
                    if output in paths:
                        continue
                    if is_label and self.policy.removes(transform, job, value):
                        continue
                    paths[output] = (*paths[node], output)
                    queue.append(output)
            for node, path in paths.items():
                found[node][(is_label, value)] = (len(path) - 1, path)
        attributes = {}
        for n in self.nodes:
            values = found[n]
            locations = self.catalog.described[n].locations if n in self.catalog.described else ()
            attributes[n] = Attributes(
                dataset_id=n,
                labels={v: d for (is_label, v), (d, _) in values.items() if is_label},
                origins={v: d for (is_label, v), (d, _) in values.items() if not is_label},
                paths={key: path for key, (_, path) in values.items()},
                locations=locations,
                inherited_only=self.status[n] == "derived",
            )
        return attributes

    def attributes(self, dataset_id: str) -> Attributes | None:
        """The attributes decisions judge a known dataset by; None when it is unknown."""
        if self.status.get(dataset_id) not in ("described", "derived"):
            return None
        return self._attributes[dataset_id]

    def carries(self, input: str, output: str, value: str, *, is_label: bool) -> bool:
        """Whether some current edge input -> output carries the value."""
        return any(
            i == input and o == output and not (is_label and self.policy.removes(transform, job, value))
            for (i, o, job), (transform, _) in self.catalog.edges.items()
        )

    def owns(self, node: str, value: str, *, is_label: bool) -> bool:
        if self.status.get(node) == "described":
            described = self.catalog.described[node]
            return value in (described.labels if is_label else described.origins)
        return not is_label and value == UNDESCRIBED and self.status.get(node) in ("deleted", "undescribed placeholder")

    # ---- decisions ---------------------------------------------------------------------------

    def decide(self, dataset_id: str, op: Operation, region: str, now: datetime) -> tuple[Verdict, bool]:
        """(verdict, inherited_only); reasons' lineage paths are one shortest path each (the
        engine may name another of the same length)."""
        attrs = self.attributes(dataset_id)
        if attrs is None:
            if self.status.get(dataset_id) == "undescribed placeholder" and self.policy.inherit:
                message = (
                    f"dataset {dataset_id!r} is known only from lineage and no described data flows into it "
                    "(a lineage root nobody described): register it to decide"
                )
            elif self.status.get(dataset_id) == "undescribed placeholder" and not self.policy.legacy:
                message = (
                    f"dataset {dataset_id!r} is known only from lineage, and the policy judges such datasets "
                    "undescribed (defaults.undescribed_outputs: deny): register it to decide"
                )
            else:
                message = f"dataset {dataset_id!r} is not in the catalog"
            return Verdict(Outcome.DENY, (), (Reason(ReasonCode.UNKNOWN_DATASET, message),)), False
        return self.judge(attrs, op, region, now), attrs.inherited_only

    def judge(self, attrs: Attributes, op: Operation, region: str, now: datetime) -> Verdict:
        """The policy's verdict on these attributes."""
        if UNDESCRIBED in attrs.origins:
            path = attrs.path(UNDESCRIBED, is_label=False)
            message = (
                f"{attrs.dataset_id!r} derives from {path[0]!r}, which the catalog does not describe "
                "(a lineage placeholder or a deleted dataset): register it to decide"
            )
            return Verdict(Outcome.DENY, (), (Reason(ReasonCode.UNKNOWN_DATASET, message, lineage_path=path),))
        step = self._steps(attrs, op, now)
        if region in step.allowed:
            return Verdict(Outcome.ALLOW, step.final)
        excluding = [rule for rule in step.permitted if region in step.excluded[rule.id]]
        covering = next((e for e in step.active if region in self.policy.resolver.regions(e.regions)), None)
        if region in step.final:
            overridden = [rule.id for rule in excluding] + (["defaults"] if step.default_denies else [])
            message = (
                f"exemption {covering.id} (approved by {covering.approved_by}, expires "
                f"{covering.expires.isoformat()}) allows {op.value} in {region}; overrides {', '.join(overridden)}"
            )
            return Verdict(Outcome.ALLOW, step.final, (Reason(ReasonCode.EXEMPTION_APPLIED, message, covering.id),))
        reasons = []
        for rule in excluding:
            reasons.append(self._rule_reason(attrs, rule, op, region, covering))
        if step.default_denies:
            kind = "classified" if attrs.labels else "unclassified"
            message = f"no applicable rule has an allow list for {op.value} and defaults.{kind} is deny"
            reasons.append(Reason(ReasonCode.DEFAULT_DENIED, message))
        return Verdict(Outcome.DENY, step.final, tuple(reasons))

    def allowed_regions(self, attrs: Attributes, op: Operation, now: datetime) -> tuple[str, ...]:
        if UNDESCRIBED in attrs.origins:
            return ()
        return self._steps(attrs, op, now).final

    @dataclass
    class _Steps:
        permitted: list  # applicable rules with a permission for the operation, policy order
        excluded: dict[str, set[str]]  # by rule id: the regions it excludes
        allowed: set[str]  # base minus denies
        default_denies: bool
        active: list  # unexpired exemptions covering the dataset and operation, policy order
        final: tuple[str, ...]  # allowed plus what exemptions open, sorted

    def _steps(self, attrs: Attributes, op: Operation, now: datetime) -> _Steps:
        document, resolver = self.policy.document, self.policy.resolver
        everywhere = {region.id for region in self.policy.registry}
        labels, origins = set(attrs.labels), set(attrs.origins)

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

        permitted = [r for r in document.rules if applies(r) and getattr(r, op.value) is not None]
        allows = [
            set(resolver.regions(getattr(r, op.value).allow))
            for r in permitted
            if getattr(r, op.value).allow is not None
        ]
        default_denies = False
        if allows:
            base = set.intersection(*allows)
        else:
            verb = document.defaults.classified if labels else document.defaults.unclassified
            base = set(everywhere) if verb == "allow" else set()
            default_denies = verb == "deny"
        excluded: dict[str, set[str]] = {}
        denied: set[str] = set()
        hard: set[str] = set()
        for rule in permitted:
            permission = getattr(rule, op.value)
            rule_denies = set(resolver.regions(permission.deny))
            outside = everywhere - set(resolver.regions(permission.allow)) if permission.allow is not None else set()
            excluded[rule.id] = rule_denies | outside
            denied |= rule_denies
            if not rule.exemptible:
                hard |= rule_denies | outside
        allowed = base - denied
        active = [
            e
            for e in document.exemptions
            if fnmatch.fnmatchcase(attrs.dataset_id, normalize_pattern(e.dataset))
            and e.operation in (op.value, "both")
            and now < e.expires
        ]
        opened: set[str] = set()
        for e in active:
            opened |= set(resolver.regions(e.regions))
        final = tuple(sorted(allowed | (opened - hard)))
        return Oracle._Steps(permitted, excluded, allowed, default_denies, active, final)

    def _rule_reason(self, attrs: Attributes, rule, op: Operation, region: str, covering) -> Reason:
        resolver = self.policy.resolver
        permission = getattr(rule, op.value)
        how = "is denied" if region in resolver.regions(permission.deny) else "is outside the locations it allows"
        citation = f" ({rule.citation})" if rule.citation else ""
        label = origin = None
        if rule.match.classifications:
            candidates = [v for v in attrs.labels if any(label_matches(r, v) for r in rule.match.classifications)]
            label = min(candidates, key=lambda v: (attrs.labels[v], v))
        if rule.match.origins:
            location = resolver.origin_countries(rule.match.origins)
            candidates = [o for o in attrs.origins if location.everywhere or o in location.countries]
            origin = min(candidates, key=lambda o: (attrs.origins[o], o))
        evidence = []
        if label is not None:
            evidence.append(f"classification {label}")
        if origin is not None:
            evidence.append(f"origin {origin}")
        matched = f"; matched {' and '.join(evidence)}" if evidence else "; applies to every dataset"
        message = f"rule {rule.id}{citation}: {op.value} in {region} {how}{matched}"
        if covering is not None and not rule.exemptible:
            message += f"; not exemptible, so exemption {covering.id} does not apply"
        if label is not None:
            path = attrs.path(label, is_label=True)
        elif origin is not None:
            path = attrs.path(origin, is_label=False)
        else:
            path = (attrs.dataset_id,)
        return Reason(ReasonCode.RULE_DENIED, message, rule.id, rule.citation, path)

    # ---- the other questions ---------------------------------------------------------------

    def inherited(self, inputs: Iterable[str], output: str, transform: str, job: str) -> Attributes:
        """The attributes a job's output would have (CheckJob)."""
        current = self.attributes(output)
        values: dict[tuple[bool, str], tuple[str, ...]] = dict(current.paths) if current else {}

        def keep(key: tuple[bool, str], path: tuple[str, ...]) -> None:
            if key not in values or len(path) < len(values[key]):
                values[key] = path

        for input in inputs:
            attrs = self.attributes(input)
            if attrs is None:
                keep((False, UNDESCRIBED), (input, output))
                continue
            for (is_label, value), path in attrs.paths.items():
                if is_label and self.policy.removes(transform, job, value):
                    continue
                keep((is_label, value), (*path, output))
        return Attributes(
            dataset_id=output,
            labels={v: len(p) - 1 for (is_label, v), p in values.items() if is_label},
            origins={v: len(p) - 1 for (is_label, v), p in values.items() if not is_label},
            paths=values,
            locations=current.locations if current else (),
            inherited_only=(current is None or current.inherited_only) and self.policy.inherit,
        )

    def violations(self, now: datetime) -> list[tuple[str, str, Verdict]]:
        """(dataset, location, DENY verdict) for every described dataset stored where it may not be."""
        found = []
        for dataset_id in sorted(n for n in self.nodes if self.status[n] == "described"):
            attrs = self._attributes[dataset_id]
            for location in attrs.locations:
                if location not in {r.id for r in self.policy.registry}:
                    message = f"{location!r} is not a region of this policy's registry, so no rule can allow it"
                    verdict = Verdict(
                        Outcome.DENY,
                        self.allowed_regions(attrs, Operation.STORE, now),
                        (Reason(ReasonCode.DEFAULT_DENIED, message),),
                    )
                else:
                    verdict = self.judge(attrs, Operation.STORE, location, now)
                if verdict.outcome is Outcome.DENY:
                    found.append((dataset_id, location, verdict))
        return found
