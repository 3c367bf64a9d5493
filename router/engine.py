"""The decision engine: a validated policy compiled into bitset operations.

`compile_policy` runs once per policy version. Every location token is resolved to a set of
region ids, held as a Python int with one bit per region of the registry (in the registry's
id order), so the policy semantics (docs/router.md) become a handful of `&`, `|` and `~`:

1. applicable rules -- found through indexes by label (and each ancestor label, since a rule
   on `PII` applies to `PII.CONTACT`) and by origin country, themselves bitmasks over rules;
2. base = AND of the applicable rules' `allow` sets for the operation, or the defaults;
   allowed = base AND NOT (OR of their `deny` sets);
3. unexpired exemptions for the dataset add their regions, except those excluded by a rule
   with `exemptible: false`;
4. ALLOW iff the region's bit is set; a DENY names every rule (or default) that excluded it.

Steps 1-2 depend only on the set of effective labels and origins, so their result is cached
per distinct (labels, origins) signature, and the signature of an attributes object is cached
per object (the index hands out one immutable view per dataset until it changes). The ALLOW
verdict without exemptions is a value of the signature; a DENY explanation's rules, matched
labels/origins and messages depend only on (signature, operation, region) and are cached there
too (with the whole DENY verdict when only the default excludes the region), so a decision is a
few dict lookups and integer operations plus, for DENY, looking up the dataset's lineage path of
each matched label or origin.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from domicile.catalog.model import label_matches, qualified_job
from domicile.catalog.regions import Region, RegionRegistry
from domicile.errors import invalid_field
from domicile.router.locations import Location, LocationError, LocationResolver
from domicile.router.policy import LoadedPolicy, Path, PolicyError, PolicyInvalid, format_path
from domicile.router.types import (
    UNDESCRIBED,
    EffectiveAttributes,
    Operation,
    Outcome,
    PolicyChange,
    Reason,
    ReasonCode,
    Verdict,
)

# Per-operation values are kept in pairs indexed by `_slot(op)`: hashing an Enum member runs
# Python code and decisions are the hot path.
_OPS = (Operation.STORE, Operation.PROCESS)
# Enum members as module globals for the hot path: `Operation.STORE` is a class attribute
# lookup through the Enum metaclass (~65 ns in Python 3.11), a global ~5 ns.
_STORE = Operation.STORE
_DENY = Outcome.DENY
_RULE_DENIED = ReasonCode.RULE_DENIED


def _slot(op: Operation) -> int:
    return 0 if op is _STORE else 1


# Distinct signatures / dataset ids are few in practice; the bound only stops a hostile or
# degenerate catalog from growing the caches without limit (they are rebuilt on demand).
_CACHE_LIMIT = 65_536


@dataclass(frozen=True)
class _Rule:
    index: int
    id: str
    citation: str
    labels: tuple[str, ...]
    origins: Location | None  # None: the rule does not look at origins
    allow: tuple[int | None, int | None]  # by _slot(op); None: no allow list for that op
    deny: tuple[int, int]
    exemptible: bool


@dataclass(frozen=True)
class _Exemption:
    id: str
    dataset: str
    pattern: re.Pattern[str] | None  # None: `dataset` is an exact id
    operations: frozenset[Operation]
    regions: int
    expires: datetime
    approved_by: str

    def covers_dataset(self, dataset_id: str) -> bool:
        if self.pattern is None:
            return dataset_id == self.dataset
        return self.pattern.match(dataset_id) is not None


@dataclass(frozen=True)
class _OpResult:
    allowed: int  # base minus denies, before exemptions
    hard_block: int  # excluded by non-exemptible rules: no exemption reaches these
    default_denies: bool  # the base came from a `deny` default
    allow_verdict: Verdict  # the ALLOW verdict when no exemption applies (shared: immutable)
    allowed_ids: tuple[str, ...]  # `allow_verdict.allowed_regions`, one attribute away
    # region bit -> its DENY explanation, filled on demand (see `_Explanation`)
    explanations: dict[int, _Explanation]


@dataclass(frozen=True)
class _RuleReason:
    """One excluding rule's RULE_DENIED reason for a (signature, operation, region), minus the
    per-dataset lineage path. `labels`/`origins` are the dataset's effective values that made
    the rule apply (empty when the rule does not look at them); `message` is final when at most
    one of each is a candidate, else None (the shortest path decides which one is named).
    With a final message, `path_label` (else `path_origin`) is the value whose lineage path the
    reason carries; neither means the rule applies to every dataset (the path is the dataset).
    Otherwise `messages` caches the message by the (label, origin) a dataset's paths select.
    `position` is the rule's place in its signature's `rules` (and `evidence`)."""

    rule: _Rule
    position: int
    labels: tuple[str, ...]
    origins: tuple[str, ...]
    prefix: str  # "rule <id> (<citation>): <op> in <region> <how>"
    message: str | None
    path_label: str | None
    path_origin: str | None
    messages: dict[tuple[str | None, str | None], str]


@dataclass(frozen=True)
class _Explanation:
    """Why a region is excluded for a (signature, operation): the excluding rules in policy
    order and, when the base came from a `deny` default, the shared DEFAULT_DENIED reason.
    `deny_verdict` is the whole DENY verdict, shared, when no exemption applies and no reason
    depends on the dataset (no excluding rule, so only DEFAULT_DENIED); else None."""

    rules: tuple[_RuleReason, ...]
    default: Reason | None
    deny_verdict: Verdict | None
    allowed_ids: tuple[str, ...]  # the allowed regions of the (signature, operation)


@dataclass(frozen=True)
class _Signature:
    rules: tuple[_Rule, ...]  # applicable rules, in policy order
    classified: bool
    ops: tuple[_OpResult, _OpResult]  # by _slot(op)
    labels: frozenset[str]  # the effective labels and origins this signature is for
    origins: frozenset[str]
    undescribed: bool  # UNDESCRIBED is among the origins: every decision is DENY (fail closed)
    # By rule (as `rules`): the effective labels and origins that made it apply (sorted; empty
    # when the rule does not look at them).
    evidence: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    # By _slot(op): region id -> the verdict when it does not depend on the dataset (ALLOW, or
    # a DENY whose explanation carries a shared `deny_verdict`) and no exemption covers it;
    # `denials`: region id -> the explanation of a DENY whose reasons carry the dataset's
    # lineage paths. Filled by `_decide` as regions are asked for; read by `decide` first.
    verdicts: tuple[dict[str, Verdict], dict[str, Verdict]]
    denials: tuple[dict[str, _Explanation], dict[str, _Explanation]]


# `EffectiveAttributes.engine_cache` as `CompiledPolicy._remember` sets it: (the policy's cache
# token, the signature's `verdicts` and `denials` tables by slot -- (None, None) each when
# exemptions cover the dataset or its provenance is undescribed --, the signature, the exemptions
# covering the dataset, its `_rule_paths` once a DENY needed them (else ())).
_Cached = tuple[object, tuple, tuple, _Signature, tuple[_Exemption, ...], "_RulePaths"]


class CompiledPolicy:
    """A policy ready to decide. Immutable apart from its internal caches; safe to share
    between threads (cache races only recompute equal values)."""

    def __init__(self, loaded: LoadedPolicy, registry: RegionRegistry) -> None:
        self.loaded = loaded
        self.registry = registry
        self._regions: tuple[Region, ...] = tuple(registry)
        self._bit_of: dict[str, int] = {r.id: 1 << i for i, r in enumerate(self._regions)}
        self._everywhere = (1 << len(self._regions)) - 1
        document = loaded.document
        self._defaults = document.defaults
        resolver = LocationResolver(registry, document.groups)
        errors: list[PolicyError] = []
        self._rules = tuple(self._compile_rule(i, resolver, errors) for i in range(len(document.rules)))
        self._exemptions = tuple(self._compile_exemption(i, resolver, errors) for i in range(len(document.exemptions)))
        if errors:
            raise PolicyInvalid(errors)
        self.declassifiers: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {d.transform: tuple(d.removes) for d in document.declassifiers}
        )
        # By transform, the patterns of the jobs granted it (None: any job, a legacy policy).
        self.declassifier_jobs: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
            {d.transform: d.jobs for d in document.declassifiers}
        )
        self._granted: dict[str, re.Pattern[str] | None] = {
            transform: _job_matcher(jobs) for transform, jobs in self.declassifier_jobs.items()
        }
        undescribed = document.defaults.undescribed_outputs
        self.inherits_undescribed_outputs: bool = (
            undescribed == "inherit" if undescribed is not None else not loaded.legacy
        )
        self._index_rules()
        self._signatures: dict[tuple[frozenset[str], frozenset[str]], _Signature] = {}
        # Marks this policy's entries in `EffectiveAttributes.engine_cache` (see `_remember`); not
        # the policy itself, which an attributes object would then keep alive.
        self._cache_token = object()
        self._ids_of: dict[int, tuple[str, ...]] = {}

    # -- compilation ---------------------------------------------------------------------------

    def _bits(self, region_ids: Iterable[str]) -> int:
        bits = 0
        for region_id in region_ids:
            bits |= self._bit_of[region_id]
        return bits

    def _tokens(
        self, resolver: LocationResolver, tokens: tuple[str, ...], path: Path, errors: list[PolicyError]
    ) -> int:
        bits = 0
        for i, token in enumerate(tokens):
            try:
                bits |= self._bits(resolver.regions([token]))
            except LocationError as exc:
                errors.append(self._error((*path, i), str(exc)))
        return bits

    def _error(self, path: Path, message: str) -> PolicyError:
        line, column = self.loaded.position(path)
        return PolicyError(line, column, format_path(path), message)

    def _compile_rule(self, index: int, resolver: LocationResolver, errors: list[PolicyError]) -> _Rule:
        rule = self.loaded.document.rules[index]
        path: Path = ("rules", index)
        origins: Location | None = None
        if rule.match.origins:
            try:
                origins = resolver.origin_countries(rule.match.origins)
            except LocationError as exc:
                errors.append(self._error((*path, "match", "origins"), str(exc)))
        allow: list[int | None] = [None, None]
        deny = [0, 0]
        for slot, op in enumerate(_OPS):
            permission = getattr(rule, op.value)
            if permission is None:
                continue
            if permission.allow is not None:
                allow[slot] = self._tokens(resolver, permission.allow, (*path, op.value, "allow"), errors)
            deny[slot] = self._tokens(resolver, permission.deny, (*path, op.value, "deny"), errors)
        return _Rule(
            index=index,
            id=rule.id,
            citation=rule.citation,
            labels=tuple(rule.match.classifications),
            origins=origins,
            allow=(allow[0], allow[1]),
            deny=(deny[0], deny[1]),
            exemptible=rule.exemptible,
        )

    def _compile_exemption(self, index: int, resolver: LocationResolver, errors: list[PolicyError]) -> _Exemption:
        exemption = self.loaded.document.exemptions[index]
        is_glob = any(c in exemption.dataset for c in "*?[")
        operations = (
            frozenset(Operation) if exemption.operation == "both" else frozenset({Operation(exemption.operation)})
        )
        return _Exemption(
            id=exemption.id,
            dataset=exemption.dataset,
            pattern=re.compile(fnmatch.translate(exemption.dataset)) if is_glob else None,
            operations=operations,
            regions=self._tokens(resolver, exemption.regions, ("exemptions", index, "regions"), errors),
            expires=exemption.expires,
            approved_by=exemption.approved_by,
        )

    def _index_rules(self) -> None:
        """Rule masks by label, by origin country, and for the rules that ignore either."""
        self._by_label: dict[str, int] = {}
        self._by_origin: dict[str, int] = {}
        self._ignores_labels = 0
        self._ignores_origins = 0
        self._any_origin = 0  # rules whose origins include `*`: any dataset with an origin
        for rule in self._rules:
            bit = 1 << rule.index
            if rule.labels:
                for label in rule.labels:
                    self._by_label[label] = self._by_label.get(label, 0) | bit
            else:
                self._ignores_labels |= bit
            if rule.origins is None:
                self._ignores_origins |= bit
            elif rule.origins.everywhere:
                self._any_origin |= bit
            else:
                for country in rule.origins.countries:
                    self._by_origin[country] = self._by_origin.get(country, 0) | bit

    # -- public attributes ---------------------------------------------------------------------

    # Cached: the router reads both for every decision, and a property call costs more than
    # the instance attribute a cached_property leaves behind.
    @functools.cached_property
    def version(self) -> str:
        """`metadata.version` exactly as written."""
        return self.loaded.version

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 (hex) of `source_yaml`."""
        return self.loaded.content_hash

    @property
    def source_yaml(self) -> str:
        return self.loaded.source_yaml

    def region_known(self, region: str) -> bool:
        """True for a builtin region or one of the policy's private regions."""
        return region in self._bit_of

    def removes(self, transform: str, job: str, label: str) -> bool:
        """True when lineage through `transform` recorded by `job` drops `label`: the transform is
        a declassifier removing `label` or one of its ancestors (removing `PII` removes
        `PII.CONTACT`) and `job` is granted it (its `jobs` patterns match `qualified_job(job)`).
        No job (`""`, a CheckJob without one) is granted nothing -- except by a legacy
        declassifier without `jobs`, which grants every claim as it did when it was recorded."""
        removed = self.declassifiers.get(transform)
        if removed is None or not any(label_matches(r, label) for r in removed):
            return False
        return self.grants(transform, job)

    def grants(self, transform: str, job: str) -> bool:
        """True when `job` may apply `transform` (see `removes`); False for a transform that is
        no declassifier."""
        if transform not in self._granted:
            return False
        matcher = self._granted[transform]
        if matcher is None:
            return True
        return bool(job) and matcher.match(qualified_job(job)) is not None

    def next_expiry(self, now: datetime) -> datetime | None:
        """The first instant after `now` at which an exemption expires (so verdicts made at
        `now` may change then); None when none is left to expire."""
        return min((e.expires for e in self._exemptions if e.expires > now), default=None)

    def unapproved_claim(self, transform: str, job: str) -> bool:
        """True when `transform` is a declassifier this policy does not grant `job`: a lineage
        edge claiming it is recorded, but counts as a plain copy."""
        return transform in self._granted and not self.grants(transform, job)

    @functools.cached_property
    def lineage_rules(self) -> tuple:
        """What the effective-attribute index depends on (declassifiers with their jobs and the
        `undescribed_outputs` switch), comparable between policies: equal values need no
        recomputation."""
        return (
            tuple(sorted((t, self.declassifiers[t], self.declassifier_jobs[t]) for t in self.declassifiers)),
            self.inherits_undescribed_outputs,
        )

    # -- decisions -----------------------------------------------------------------------------

    def decide(self, attrs: EffectiveAttributes, op: Operation, region: str, now: datetime) -> Verdict:
        """The policy's verdict for `op` on a dataset with these effective attributes in
        `region`, at time `now` (timezone-aware; decides which exemptions are unexpired).

        ALLOW carries no reasons, or one EXEMPTION_APPLIED when only an exemption allows the
        region. DENY carries one RULE_DENIED per applicable rule that excluded the region
        (with the rule's citation and the lineage path of the label/origin that made it
        apply) and DEFAULT_DENIED when the base came from a `deny` default.
        `allowed_regions` is every region allowed for this dataset and operation, exemptions
        included, sorted. An unknown region raises INVALID_ARGUMENT (field `region`).
        """
        # The hot path: a verdict that depends on neither the dataset nor the time, looked up,
        # or a DENY whose explanation only lacks the dataset's lineage paths; the rest in `_decide`.
        cached = attrs.engine_cache
        if cached is None or cached[0] is not self._cache_token:
            cached = self._remember(attrs)
        slot = 0 if op is _STORE else 1
        verdicts = cached[1][slot]
        if verdicts is not None:
            verdict = verdicts.get(region)
            if verdict is not None:
                if now.tzinfo is None:
                    _require_aware(now)
                return verdict
            explanation = cached[2][slot].get(region)
            if explanation is not None:
                if now.tzinfo is None:
                    _require_aware(now)
                paths = cached[5] or self._remember_paths(attrs, cached)
                return _new_tuple(Verdict, (_DENY, explanation.allowed_ids, _deny_reasons(explanation, paths, None)))
        return self._decide(attrs, cached, op, region, now)

    def deny_with_paths(self, attrs: EffectiveAttributes, cached: _Cached, explanation: _Explanation) -> Verdict:
        """`decide`'s second lookup settled: the DENY of `explanation` (remembered for the
        region) for the dataset of `attrs`, whose cache entry is `cached`, with its lineage
        paths. For `_decide`; `decide` inlines it."""
        paths = cached[5] or self._remember_paths(attrs, cached)
        return _new_tuple(Verdict, (_DENY, explanation.allowed_ids, _deny_reasons(explanation, paths, None)))

    def _decide(
        self, attrs: EffectiveAttributes, cached: _Cached, op: Operation, region: str, now: datetime
    ) -> Verdict:
        """`decide` past its lookup, remembering the verdicts that `decide` may look up."""
        bit = self._bit_of.get(region)
        if bit is None:
            raise invalid_field("region", f"unknown region {region!r} (see `domicile regions`)")
        signature, matching = cached[3], cached[4]
        if signature.undescribed:
            return _undescribed_verdict(attrs)
        if now.tzinfo is None:
            _require_aware(now)
        slot = 0 if op is _STORE else 1
        result = signature.ops[slot]
        if matching:
            exemptions = [e for e in matching if op in e.operations and now < e.expires]
            if exemptions:
                return self._decide_exempted(attrs, cached, op, region, bit, slot, exemptions)
        if result.allowed & bit:
            verdict = result.allow_verdict
        else:
            explanation = result.explanations.get(bit) or self._explain(signature, slot, bit)
            if explanation.deny_verdict is None:
                if not matching:
                    signature.denials[slot][region] = explanation
                return self.deny_with_paths(attrs, cached, explanation)  # (explanation.allowed_ids is result's)
            verdict = explanation.deny_verdict
        if not matching:  # (with exemptions that might apply later, the verdict depends on time)
            signature.verdicts[slot][region] = verdict
        return verdict

    def _decide_exempted(
        self,
        attrs: EffectiveAttributes,
        cached: _Cached,
        op: Operation,
        region: str,
        bit: int,
        slot: int,
        exemptions: list[_Exemption],
    ) -> Verdict:
        """`decide` when unexpired exemptions for `op` cover the dataset."""
        signature = cached[3]
        result = signature.ops[slot]
        exempted = 0
        for exemption in exemptions:
            exempted |= exemption.regions
        exempted &= ~result.hard_block
        allowed_regions = self._ids(result.allowed | exempted)
        if result.allowed & bit:
            return Verdict(Outcome.ALLOW, allowed_regions)
        explanation = result.explanations.get(bit) or self._explain(signature, slot, bit)
        if exempted & bit:
            exemption = next(e for e in exemptions if e.regions & bit)
            overridden = [item.rule.id for item in explanation.rules]
            if result.default_denies:
                overridden.append("defaults")
            message = (
                f"exemption {exemption.id} (approved by {exemption.approved_by}, expires "
                f"{exemption.expires.isoformat()}) allows {op.value} in {region}; overrides {', '.join(overridden)}"
            )
            return Verdict(
                Outcome.ALLOW, allowed_regions, (Reason(ReasonCode.EXEMPTION_APPLIED, message, rule_id=exemption.id),)
            )
        blocked_exemption = next((e for e in exemptions if e.regions & bit), None)
        paths = cached[5] or self._remember_paths(attrs, cached)
        return Verdict(Outcome.DENY, allowed_regions, _deny_reasons(explanation, paths, blocked_exemption))

    def allowed_regions(self, attrs: EffectiveAttributes, op: Operation, now: datetime) -> tuple[str, ...]:
        """Sorted ids of every region where `op` is allowed for the dataset, exemptions included."""
        _require_aware(now)
        if UNDESCRIBED in attrs.origins:
            return ()
        cached = attrs.engine_cache
        if cached is None or cached[0] is not self._cache_token:
            cached = self._remember(attrs)
        signature, matching = cached[3], cached[4]
        result = signature.ops[_slot(op)]
        opened = 0
        for exemption in matching:
            if op in exemption.operations and now < exemption.expires:
                opened |= exemption.regions
        return self._ids(result.allowed | (opened & ~result.hard_block))

    def violations(self, attrs: EffectiveAttributes, now: datetime) -> list[tuple[str, Verdict]]:
        """The dataset's locations where storing it is not allowed, each with the DENY verdict
        explaining why, in location order. A location the registry does not know (a private
        region the policy no longer declares) is a violation too."""
        found: list[tuple[str, Verdict]] = []
        for location in attrs.locations:
            if not self.region_known(location):
                reason = Reason(
                    ReasonCode.DEFAULT_DENIED,
                    f"{location!r} is not a region of this policy's registry, so no rule can allow it",
                )
                allowed = self.allowed_regions(attrs, Operation.STORE, now)
                found.append((location, Verdict(Outcome.DENY, allowed, (reason,))))
                continue
            verdict = self.decide(attrs, Operation.STORE, location, now=now)
            if verdict.outcome is Outcome.DENY:
                found.append((location, verdict))
        return found

    def impact(
        self,
        other: CompiledPolicy,
        datasets: Iterable[EffectiveAttributes],
        now: datetime,
        *,
        candidate_attributes: Mapping[str, EffectiveAttributes | None] | None = None,
        candidate_only: Iterable[EffectiveAttributes] = (),
    ) -> list[PolicyChange]:
        """What replacing this policy by `other` changes, per dataset and operation (only
        entries with a change): regions added and removed, and for store the dataset's current
        locations that this policy allows and `other` would not.

        `datasets` are effective attributes under this policy. When `other` has different
        lineage rules (declassifiers, their jobs, `undescribed_outputs`), a dataset's
        attributes under it may differ: pass those in `candidate_attributes` (by dataset id;
        None for a dataset `other` would not decide, i.e. allowed nowhere); datasets absent
        from it are taken as equal. `candidate_only` are the attributes of datasets only
        `other` decides (allowed nowhere now).
        """
        candidate_attributes = candidate_attributes or {}
        pairs: list[tuple[EffectiveAttributes | None, EffectiveAttributes | None]] = [
            (attrs, candidate_attributes.get(attrs.dataset_id, attrs)) for attrs in datasets
        ]
        pairs.extend((None, attrs) for attrs in candidate_only)
        changes: list[PolicyChange] = []
        for attrs, candidate in pairs:
            known = attrs if attrs is not None else candidate
            assert known is not None
            for op in Operation:
                before = set(self.allowed_regions(attrs, op, now)) if attrs is not None else set()
                after = set(other.allowed_regions(candidate, op, now)) if candidate is not None else set()
                new_violations: tuple[str, ...] = ()
                if op is Operation.STORE:
                    new_violations = tuple(loc for loc in known.locations if loc in before and loc not in after)
                added, removed = tuple(sorted(after - before)), tuple(sorted(before - after))
                if added or removed or new_violations:
                    changes.append(PolicyChange(known.dataset_id, op, added, removed, new_violations))
        return changes

    # -- internals -----------------------------------------------------------------------------

    def _remember(self, attrs: EffectiveAttributes) -> _Cached:
        """Cache in `attrs` what a decision needs from it beyond op/region/time: its signature,
        the exemptions covering its dataset (expiry and operation are checked per decision)
        and, when those are none and its provenance is described, its signature's verdict
        tables for `decide` to look up."""
        key = (frozenset(attrs.classifications), frozenset(attrs.origins))
        signature = self._signatures.get(key)
        if signature is None:
            signature = self._compute_signature(*key)
            if len(self._signatures) >= _CACHE_LIMIT:
                self._signatures.clear()
            self._signatures[key] = signature
        matching = tuple(e for e in self._exemptions if e.covers_dataset(attrs.dataset_id))
        tables = (
            ((None, None), (None, None))
            if matching or signature.undescribed
            else (signature.verdicts, signature.denials)
        )
        cached = (self._cache_token, tables[0], tables[1], signature, matching, ())
        object.__setattr__(attrs, "engine_cache", cached)  # (frozen: the cache is not a value)
        return cached

    @staticmethod
    def _remember_paths(attrs: EffectiveAttributes, cached: _Cached) -> _RulePaths:
        """`_rule_paths` of `attrs`, computed on its first DENY with rule reasons and kept in
        its cache entry."""
        paths = _rule_paths(cached[3], attrs)
        object.__setattr__(attrs, "engine_cache", (*cached[:5], paths))
        return paths

    def _compute_signature(self, labels: frozenset[str], origins: frozenset[str]) -> _Signature:
        by_label = self._ignores_labels
        for label in labels:
            prefix = ""
            for segment in label.split("."):
                prefix = f"{prefix}.{segment}" if prefix else segment
                by_label |= self._by_label.get(prefix, 0)
        by_origin = self._ignores_origins | (self._any_origin if origins else 0)
        for origin in origins:
            by_origin |= self._by_origin.get(origin, 0)
        mask = by_label & by_origin
        rules = tuple(rule for rule in self._rules if mask >> rule.index & 1)
        classified = bool(labels)
        ops: list[_OpResult] = []
        for slot in range(len(_OPS)):
            base: int | None = None
            deny = 0
            hard_block = 0
            for rule in rules:
                allow = rule.allow[slot]
                if allow is not None:
                    base = allow if base is None else base & allow
                deny |= rule.deny[slot]
                if not rule.exemptible:
                    hard_block |= rule.deny[slot] | (self._everywhere & ~allow if allow is not None else 0)
            default_denies = False
            if base is None:
                verb = self._defaults.classified if classified else self._defaults.unclassified
                base = self._everywhere if verb == "allow" else 0
                default_denies = verb == "deny"
            allowed = base & ~deny
            allowed_ids = self._ids(allowed)
            ops.append(
                _OpResult(allowed, hard_block, default_denies, Verdict(Outcome.ALLOW, allowed_ids), allowed_ids, {})
            )
        evidence = tuple(
            (
                tuple(sorted(label for label in labels if any(label_matches(r, label) for r in rule.labels)))
                if rule.labels
                else (),
                tuple(sorted(o for o in origins if rule.origins.everywhere or o in rule.origins.countries))
                if rule.origins is not None
                else (),
            )
            for rule in rules
        )
        return _Signature(
            rules, classified, (ops[0], ops[1]), labels, origins, UNDESCRIBED in origins, evidence, ({}, {}), ({}, {})
        )

    def _ids(self, bits: int) -> tuple[str, ...]:
        ids = self._ids_of.get(bits)
        if ids is None:
            # The registry iterates in id order, so walking bits upwards yields sorted ids.
            found = []
            remaining = bits
            while remaining:
                low = remaining & -remaining
                found.append(self._regions[low.bit_length() - 1].id)
                remaining ^= low
            ids = tuple(found)
            if len(self._ids_of) >= _CACHE_LIMIT:
                self._ids_of.clear()
            self._ids_of[bits] = ids
        return ids

    @staticmethod
    def _excluding(signature: _Signature, slot: int, bit: int) -> list[int]:
        """Positions (in `signature.rules`) of the applicable rules that exclude the region:
        outside their allow set, or denying it."""
        excluding = []
        for position, rule in enumerate(signature.rules):
            allow = rule.allow[slot]
            if (allow is not None and not allow & bit) or rule.deny[slot] & bit:
                excluding.append(position)
        return excluding

    def _explain(self, signature: _Signature, slot: int, bit: int) -> _Explanation:
        """Build and cache the DENY explanation of region `bit` for (signature, operation):
        everything in the reasons except each dataset's lineage paths."""
        op = _OPS[slot]
        region = self._regions[bit.bit_length() - 1].id
        items = []
        for position in self._excluding(signature, slot, bit):
            rule = signature.rules[position]
            # The dataset's values that made the rule apply; an applicable rule that looks at
            # labels (origins) always has at least one (that is how it was found applicable).
            labels, origins = signature.evidence[position]
            how = "is denied" if rule.deny[slot] & bit else "is outside the locations it allows"
            citation = f" ({rule.citation})" if rule.citation else ""
            prefix = f"rule {rule.id}{citation}: {op.value} in {region} {how}"
            message = path_label = path_origin = None
            if len(labels) == (1 if rule.labels else 0) and len(origins) == (1 if rule.origins is not None else 0):
                path_label = labels[0] if labels else None
                path_origin = origins[0] if origins else None
                message = prefix + _matched(path_label, path_origin)
            items.append(_RuleReason(rule, position, labels, origins, prefix, message, path_label, path_origin, {}))
        default = None
        if signature.ops[slot].default_denies:
            kind = "classified" if signature.classified else "unclassified"
            default = Reason(
                ReasonCode.DEFAULT_DENIED,
                f"no applicable rule has an allow list for {op.value} and defaults.{kind} is deny",
            )
        deny_verdict = None
        if not items and default is not None:
            deny_verdict = Verdict(Outcome.DENY, signature.ops[slot].allowed_ids, (default,))
        allowed_ids = signature.ops[slot].allowed_ids
        explanation = _Explanation(tuple(items), default, deny_verdict, allowed_ids)
        signature.ops[slot].explanations[bit] = explanation
        return explanation


def _job_matcher(patterns: tuple[str, ...] | None) -> re.Pattern[str] | None:
    """One regular expression for a declassifier's job patterns (None stays None: any job);
    it matches nothing when there are none."""
    if patterns is None:
        return None
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _matched(label: str | None, origin: str | None) -> str:
    """The evidence part of a RULE_DENIED message."""
    evidence = []
    if label is not None:
        evidence.append(f"classification {label}")
    if origin is not None:
        evidence.append(f"origin {origin}")
    return f"; matched {' and '.join(evidence)}" if evidence else "; applies to every dataset"


# Verdicts and reasons are built on every decision: `tuple.__new__(Cls, (fields...))` (all
# fields, in order) makes the named tuple in one C call, without running the generated Python
# `__new__` that binds arguments and defaults first (~120 ns instead of ~210 ns).
_new_tuple = tuple.__new__


def _deny_reasons(
    explanation: _Explanation, paths: _RulePaths, blocked_exemption: _Exemption | None
) -> tuple[Reason, ...]:
    """The DENY reasons of `explanation` for a dataset whose `_rule_paths` are `paths`: each
    rule's reason names the matched label (else origin) with the shortest lineage path, and
    that path (the dataset itself for a rule that applies to every dataset)."""
    reasons = []
    for item in explanation.rules:
        key, path = paths[item.position]
        message = item.message
        if message is None:  # several candidate labels or origins: the dataset's paths chose
            message = item.messages.get(key)
            if message is None:
                message = item.messages[key] = item.prefix + _matched(*key)
        rule = item.rule
        if blocked_exemption is not None and not rule.exemptible:
            message += f"; not exemptible, so exemption {blocked_exemption.id} does not apply"
        reasons.append(_new_tuple(Reason, (_RULE_DENIED, message, rule.id, rule.citation, path)))
    if explanation.default is not None:
        reasons.append(explanation.default)
    return tuple(reasons)


# By rule of a signature: the (label, origin) a DENY reason names for one dataset, and the
# lineage path it carries.
_RulePaths = tuple[tuple[tuple["str | None", "str | None"], tuple[str, ...]], ...]


def _rule_paths(signature: _Signature, attrs: EffectiveAttributes) -> _RulePaths:
    """For each rule of `signature`, what a DENY reason of the dataset of `attrs` names: the
    matched label with the shortest lineage path (ties: the smallest) and/or the origin
    likewise, and the label's path (else the origin's; else the dataset itself). The same for
    every operation and region, so computed once per dataset and policy."""
    found = []
    for labels, origins in signature.evidence:
        label = origin = None
        path: tuple[str, ...] = ()
        if labels:
            label, path = _shortest(labels, attrs.classifications)
        if origins:
            origin, origin_path = _shortest(origins, attrs.origins)
            path = path or origin_path
        found.append(((label, origin), path or (attrs.dataset_id,)))
    return tuple(found)


def _shortest(values: tuple[str, ...], paths: Mapping[str, tuple[str, ...]]) -> tuple[str, tuple[str, ...]]:
    """The value of `values` (sorted, not empty) with the shortest lineage path in `paths`, and
    that path; ties go to the smallest value, for stable output."""
    best = values[0]
    best_path = paths[best]
    for value in values:
        path = paths[value]
        if len(path) < len(best_path):
            best, best_path = value, path
    return best, best_path


def _undescribed_verdict(attrs: EffectiveAttributes) -> Verdict:
    """DENY everywhere: the dataset derives from data the catalog does not describe, so no
    rule can be known not to apply (fail closed; see `router.types.UNDESCRIBED`)."""
    path = attrs.origins[UNDESCRIBED]
    return Verdict(
        Outcome.DENY,
        (),
        (
            Reason(
                ReasonCode.UNKNOWN_DATASET,
                f"{attrs.dataset_id!r} derives from {path[0]!r}, which the catalog does not describe "
                "(a lineage placeholder or a deleted dataset): register it to decide",
                lineage_path=path,
            ),
        ),
    )


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("naive datetime: decisions need a timezone-aware `now`")


def compile_policy(loaded: LoadedPolicy, registry: RegionRegistry | None = None) -> CompiledPolicy:
    """Compiles a loaded policy for deciding.

    `registry` is the base registry (default: the one the policy was validated against); the
    policy's private regions are added to it. Raises `PolicyInvalid` when a token no longer
    resolves against that registry, or a private region clashes with one of its regions.
    """
    if registry is None:
        return CompiledPolicy(loaded, loaded.registry)
    private = [Region(r.id, r.country, r.display_name, True) for r in loaded.document.regions]
    try:
        extended = registry.with_private(private)
    except ValueError as exc:
        line, column = loaded.position(("regions",))
        raise PolicyInvalid([PolicyError(line, column, "regions", str(exc))]) from None
    return CompiledPolicy(loaded, extended)
