"""The residency engine: the Rust core (crates/engine, the module `domicile.router._engine`)
with the router's domain values at its edges.

`compile_policy` turns a loaded policy into a `CompiledPolicy`: the document normalised for the
engine (`router.policy_document`) and the facts the rest of the router reads of a policy (its
version, registry, declassifiers and whom they are granted to). An `Engine` holds one compiled
policy and the effective attributes of every dataset of a catalog, and decides; it is fed the
catalog's start-up snapshot (`load`) and then its change feed (`apply`). Everything the
decisions need is in the engine: the semantics are documented in docs/router.md and held to a
plain oracle by tests/unit/test_residency_engine_oracle.py.

Engine calls that can be long (`load`, `apply`, `set_policy`, `impact`, `batch_decide_wire`)
let go of the interpreter lock; the engine stays consistent for concurrent callers (decisions
see one policy and the values computed under it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, overload

from domicile.catalog.model import Change, ChangeKind, Dataset, Edge, ResidencySnapshot, from_micros, to_micros
from domicile.catalog.regions import RegionRegistry
from domicile.errors import DomicileError, ErrorCode, FieldErrors, invalid_field, not_found
from domicile.router import _engine
from domicile.router.policy import LoadedPolicy
from domicile.router.policy_document import NormalisedPolicy, normalise, undescribed_outputs
from domicile.router.types import (
    Decision,
    EffectiveAttributes,
    Operation,
    Outcome,
    PolicyChange,
    Reason,
    ReasonCode,
    Verdict,
)

# The binding's queue of unary decisions for the decision log, and its refusals (see
# `Engine.unary_decider`).
LogLane = _engine.LogLane
LogRefused = _engine.LogRefused
UnknownRegion = _engine.UnknownRegion

# Decisions by (operation, outcome), and their reasons by (code, rule id).
DecisionCounts = tuple[dict[tuple[Operation, Outcome], int], dict[tuple[str, str], int]]

_OPERATIONS = {Operation.STORE: 0, Operation.PROCESS: 1}
_OPERATION_OF = (Operation.STORE, Operation.PROCESS)
_OUTCOMES = (Outcome.ALLOW, Outcome.DENY)
_REASON_CODES = (
    ReasonCode.RULE_DENIED,
    ReasonCode.DEFAULT_DENIED,
    ReasonCode.UNKNOWN_DATASET,
    ReasonCode.EXEMPTION_APPLIED,
    ReasonCode.STALE_CATALOG,
)


class CompiledPolicy:
    """A policy ready for the engine. Immutable."""

    def __init__(self, normalised: NormalisedPolicy) -> None:
        self.normalised = normalised
        self._core = _engine.Policy(normalised.document)

    @property
    def loaded(self) -> LoadedPolicy:
        return self.normalised.loaded

    @property
    def registry(self) -> RegionRegistry:
        """Builtin regions plus the policy's private ones."""
        return self.normalised.registry

    @property
    def document(self) -> str:
        """The engine's document (see `router.policy_document`)."""
        return self.normalised.document

    @cached_property
    def version(self) -> str:
        """`metadata.version` exactly as written."""
        return self.normalised.version

    @cached_property
    def content_hash(self) -> str:
        """sha256 (hex) of `source_yaml`."""
        return self.normalised.content_hash

    @property
    def source_yaml(self) -> str:
        return self.normalised.source_yaml

    def region_known(self, region: str) -> bool:
        """True for a builtin region or one of the policy's private regions."""
        return self.normalised.region_known(region)

    @cached_property
    def declassifiers(self) -> Mapping[str, tuple[str, ...]]:
        """By transform, the labels its declassifier removes (with their descendants)."""
        return MappingProxyType({d.transform: tuple(d.removes) for d in self.loaded.document.declassifiers})

    @cached_property
    def inherits_undescribed_outputs(self) -> bool:
        """`defaults.undescribed_outputs` is `inherit` (as written, or by default)."""
        return undescribed_outputs(self.loaded) == "inherit"

    def grants(self, transform: str, job: str) -> bool:
        """True when `job` may apply `transform`: the transform is a declassifier whose `jobs`
        patterns match the job (`namespace/name`; a job without `/` is in `default`). No job
        is granted nothing -- except by a legacy declassifier without `jobs`, which grants every
        claim as it did when it was recorded. False for a transform that is no declassifier."""
        return self._core.grants(transform, job)

    def next_expiry(self, now: datetime) -> datetime | None:
        """The first instant after `now` at which an exemption expires (so verdicts made at
        `now` may change then); None when none is left to expire."""
        expiry = self._core.next_expiry(to_micros(now))
        return None if expiry is None else from_micros(expiry)

    def unapproved_claim(self, transform: str, job: str) -> bool:
        """True when `transform` is a declassifier this policy does not grant `job`: a lineage
        edge claiming it is recorded, but counts as a plain copy."""
        return transform in self.declassifiers and not self.grants(transform, job)

    def decide_carried(
        self,
        dataset_id: str,
        classifications: Iterable[str],
        origins: Iterable[str],
        op: Operation,
        region: str,
        now: datetime,
    ) -> Verdict:
        """The verdict on a dataset that carries these labels and origins itself (a policy's
        inline tests). INVALID_ARGUMENT (field `region`) for a region the policy does not know."""
        try:
            raw = self._core.decide(
                dataset_id, list(classifications), list(origins), _OPERATIONS[op], region, to_micros(now)
            )
        except _engine.UnknownRegion as exc:
            raise invalid_field(exc.args[0], exc.args[1]) from None
        return _verdict(raw)


def compile_policy(loaded: LoadedPolicy, registry: RegionRegistry | None = None) -> CompiledPolicy:
    """Compiles a loaded policy for the engine.

    `registry` is the base registry (default: the one the policy was validated against); the
    policy's private regions are added to it. Raises `PolicyInvalid` when a token no longer
    resolves against that registry, or a private region clashes with one of its regions.
    """
    return CompiledPolicy(normalise(loaded, registry))


@dataclass(frozen=True)
class Explained:
    """A dataset's effective attributes and where the policy lets it be stored and processed."""

    attributes: EffectiveAttributes
    store_regions: tuple[str, ...]
    process_regions: tuple[str, ...]


@dataclass(frozen=True)
class Explanation:
    """`explain`'s answer in full: `attributes.inherited_only` says the dataset is a derived
    placeholder, judged by what it inherits (its paths say from where). `unapproved` are the
    edges on its labels' paths that claimed to remove them without the policy granting their
    job the transform."""

    attributes: EffectiveAttributes
    store_regions: tuple[str, ...]
    process_regions: tuple[str, ...]
    policy_version: str
    catalog_revision: int
    unapproved: tuple[UnapprovedDeclassification, ...] = ()


@dataclass(frozen=True)
class UnapprovedDeclassification:
    """An edge `output DERIVED_FROM input` by `job` claiming `transform`, which would remove
    `classifications` from the dataset's paths through it, but which the policy does not grant
    the job: a plain copy."""

    input: str
    output: str
    job: str
    transform: str
    classifications: tuple[str, ...]


class Standing(enum.Enum):
    """What the engine knows of a dataset."""

    DESCRIBED = "described"
    DERIVED = "derived"  # known only as the output of described lineage: judged by what it inherits
    # Nothing is known of its content: a lineage root nobody described, a deleted dataset, a
    # placeholder derived from such data.
    UNDESCRIBED = "undescribed"
    UNKNOWN = "unknown"  # not in the catalog


_STANDINGS = (Standing.DESCRIBED, Standing.DERIVED, Standing.UNDESCRIBED, Standing.UNKNOWN)


@dataclass(frozen=True)
class Summary:
    """The datasets decisions judge, counted by effective label, origin and location: `regions`
    maps a region to (datasets stored there, those of them with an effective classification)."""

    datasets: int
    classifications: dict[str, int]
    origins: dict[str, int]
    regions: dict[str, tuple[int, int]]


class Engine:
    """A compiled policy and the effective attributes of every dataset of a catalog."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self._policy = policy
        # Verdicts come back as `Verdict`s, each made once per verdict the engine memoised.
        self._core: _engine.Engine[Verdict] = _engine.Engine(
            policy.document, _verdict, (Operation.STORE, Operation.PROCESS)
        )

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    def set_policy(self, policy: CompiledPolicy) -> None:
        """Makes `policy` active; only what its lineage rules (declassifiers with their jobs,
        `undescribed_outputs`) change is recomputed, and decisions see the new policy with the
        values computed under it."""
        self._core.set_policy(policy.document)
        self._policy = policy

    # ---- the catalog ------------------------------------------------------------------------

    def load(self, snapshot: ResidencySnapshot) -> None:
        """Loads a store's residency snapshot into an engine that holds nothing yet."""
        self._core.load(snapshot.datasets, snapshot.placeholders, snapshot.edges)

    def apply(self, changes: Iterable[Change]) -> list[str]:
        """Applies change-feed entries in order, then recomputes once for all of them; returns
        the ids whose answers may differ now (whose status, effective attributes, lineage paths
        or locations changed). EDGE_ENDED removes the edge only when the indexed edge
        under that key is the version that ended (same transform and record time)."""
        return self._core.apply([_change(change) for change in changes])

    def add(self, datasets: Iterable[Dataset], edges: Iterable[Edge]) -> None:
        """Adds datasets (placeholders among them known as such) and current edges: an engine
        over a catalog as read (replay, explanations as of a past instant)."""
        changes = [_dataset(dataset) for dataset in datasets]
        changes += [("edge", e.input, e.output, e.job, e.transform, None) for e in edges]
        self._core.apply(changes)

    # ---- decisions --------------------------------------------------------------------------

    def decide(
        self, dataset_id: str, op: Operation, region: str, now: datetime, stale_message: str | None = None
    ) -> Verdict:
        """The verdict for `op` on the dataset in `region` at `now` (see docs/router.md): an
        unknown dataset is DENY / UNKNOWN_DATASET; with `stale_message` (the view cannot be
        trusted) DENY / STALE_CATALOG with that message. INVALID_ARGUMENT (field `region`) for
        a region the policy does not know."""
        try:
            return self._core.decide(dataset_id, _OPERATIONS[op], region, to_micros(now), stale_message)
        except _engine.UnknownRegion as exc:
            raise invalid_field(exc.args[0], exc.args[1]) from None

    def unary_decider(
        self, lane: LogLane, undecided: Callable[..., Any], clock: Callable[[], int] | None
    ) -> _engine.UnaryDecider:
        """The binding's `UnaryDecider` over this engine (router/_engine.pyi, crates/engine-py): a
        question asked alone decided and its decision queued on `lane` for the decision log, in
        one call from Python -- the router's Decide path, where a Python layer would cost as
        much as the decision. It takes an `Operation`, reads the decide time from `clock`
        (microseconds; None: the system clock), hands what its `decide` cannot decide alone to
        `undecided` and raises the binding's UnknownRegion and LogRefused."""
        return _engine.UnaryDecider(self._core, lane, undecided, clock)

    def check_job(
        self,
        inputs: Sequence[str],
        outputs: Sequence[str],
        run_region: str,
        output_region: str,
        transform: str,
        job: str,
        now: datetime,
    ) -> list[tuple[str, Operation, str, Verdict]]:
        """A job's pre-flight check: (dataset, operation, region, verdict) for each input
        (process in `run_region`), then for each output (store in `output_region`) on the
        attributes it would have after the job -- its current ones plus every input's, minus
        what `transform` removes when the policy grants it to `job`."""
        try:
            found = self._core.check_job(
                list(inputs), list(outputs), run_region, output_region, transform, job, to_micros(now)
            )
        except _engine.UnknownRegion as exc:
            raise invalid_field(exc.args[0], exc.args[1]) from None
        return [(dataset, _OPERATION_OF[op], region, verdict) for dataset, op, region, verdict in found]

    def explain(self, dataset_id: str, now: datetime) -> Explained | None:
        """The dataset's effective labels and origins, each with a shortest lineage path, and its
        allowed regions at `now`; None when decisions cannot judge it (see `decide`)."""
        found = self._core.explain(dataset_id, to_micros(now))
        if found is None:
            return None
        classifications, origins, store, process, inherited_only = found
        attributes = EffectiveAttributes(
            dataset_id=dataset_id,
            classifications=MappingProxyType(dict(classifications)),
            origins=MappingProxyType(dict(origins)),
            locations=self.locations(dataset_id),
            inherited_only=inherited_only,
        )
        return Explained(attributes, store, process)

    def explanation(self, dataset_id: str, now: datetime, catalog_revision: int) -> Explanation:
        """`explain` with the policy version, `catalog_revision` (the view's, as the caller
        knows it) and the unapproved declassifications; NOT_FOUND when decisions cannot judge
        the dataset."""
        explained = self.explain(dataset_id, now)
        if explained is None:
            raise not_found(self.unknown_message(dataset_id))
        return Explanation(
            explained.attributes,
            explained.store_regions,
            explained.process_regions,
            self._policy.version,
            catalog_revision,
            self.unapproved(dataset_id),
        )

    def unknown_message(self, dataset_id: str) -> str:
        """Why decisions cannot judge the dataset (the message of its DENY / UNKNOWN_DATASET)."""
        return self._core.unknown_message(dataset_id)

    def unapproved(self, dataset_id: str) -> tuple[UnapprovedDeclassification, ...]:
        """The edges on the dataset's label paths whose claimed transform would have removed the
        label had the policy granted it to their job."""
        found = self._core.unapproved(dataset_id) or ()
        return tuple(UnapprovedDeclassification(*edge) for edge in found)

    def scan_violations(self, now: datetime) -> list[tuple[str, str, Verdict]]:
        """(dataset, location, DENY verdict) for every described dataset stored where the policy
        does not allow storing it, by dataset id then location."""
        return self._core.scan_violations(to_micros(now))

    def violations_of(self, dataset_ids: Iterable[str], now: datetime) -> list[tuple[str, str, Verdict]]:
        """`scan_violations` for `dataset_ids` only, in the order given."""
        return self._core.violations_of(list(dataset_ids), to_micros(now))

    def stored_datasets(self) -> list[str]:
        """The described datasets stored somewhere: those that can violate the policy."""
        return self._core.stored_datasets()

    def standings(self, dataset_ids: Sequence[str]) -> list[tuple[Standing, tuple[str, ...]]]:
        """(where each dataset stands, where it is stored -- for a described one), in order."""
        return [(_STANDINGS[code], locations) for code, locations in self._core.residency(list(dataset_ids))]

    def impact(self, candidate: CompiledPolicy, now: datetime) -> list[PolicyChange]:
        """What making `candidate` active would change, per dataset and operation with a change,
        sorted by dataset id and operation. Changes nothing."""
        return [
            PolicyChange(dataset, _OPERATION_OF[op], added, removed, violations)
            for dataset, op, added, removed, violations in self._core.impact(candidate.document, to_micros(now))
        ]

    def batch_decide_wire(
        self,
        request: bytes,
        now: datetime,
        stale_message: str | None,
        catalog_revision: int,
        ids: LogLane,
        max_batch: int,
        caller: str,
    ) -> tuple[bytes, DecisionBatch]:
        """Decides a serialized BatchDecideRequest of at most `max_batch` questions: (the
        serialized BatchDecideResponse, its decisions). With `stale_message` every decision is
        the fail-closed DENY / STALE_CATALOG with that message. Decision ids are the lane's
        (`ids`): its prefix and consecutive counters it hands out, so that calls on several
        threads never share one. INVALID_ARGUMENT for bytes that are no BatchDecideRequest
        (MALFORMED_REQUEST) or for bad fields (each named)."""
        try:
            answer, raw = self._core.batch_decide_wire(
                request, to_micros(now), stale_message, catalog_revision, ids, max_batch
            )
        except _engine.MalformedRequest as exc:
            raise DomicileError(exc.args[0], ErrorCode.INVALID_ARGUMENT, "MALFORMED_REQUEST") from None
        except _engine.InvalidRequest as exc:
            errors = FieldErrors()
            for field, description in exc.args[0]:
                errors.add(field, description)
            errors.raise_if_any()
            raise
        return answer, DecisionBatch(raw, (raw.policy_version, catalog_revision, now, caller))

    def batch_decide(
        self,
        questions: Sequence[tuple[str, Operation, str]],
        now: datetime,
        stale_message: str | None,
        catalog_revision: int,
        ids: LogLane,
        caller: str,
    ) -> DecisionBatch:
        """`batch_decide_wire` for (dataset_id, op, region) questions: their decisions, each
        naming its dataset as asked. INVALID_ARGUMENT (field `requests[i].region`) for a
        region the policy does not know, before anything is decided."""
        try:
            raw = self._core.batch_decide(
                [(dataset_id, _OPERATIONS[op], region) for dataset_id, op, region in questions],
                to_micros(now),
                stale_message,
                catalog_revision,
                ids,
            )
        except _engine.UnknownRegion as exc:
            raise invalid_field(exc.args[0], exc.args[1]) from None
        return DecisionBatch(raw, (raw.policy_version, catalog_revision, now, caller))

    # ---- what other parts read --------------------------------------------------------------

    def locations(self, dataset_id: str) -> tuple[str, ...]:
        """Where the catalog says a dataset decisions judge is stored (empty for any other)."""
        return self._core.locations(dataset_id)

    def labels(self, dataset_id: str) -> tuple[str, ...]:
        """The effective classification labels of a dataset decisions judge (empty for any other)."""
        return self._core.labels(dataset_id)

    def summary(self) -> Summary:
        return Summary(*self._core.summary())

    def edge_transform(self, input: str, output: str, job: str) -> str | None:
        """The transform of the current edge `output DERIVED_FROM input` by `job`; None if none."""
        return self._core.edge_transform(input, output, job)

    def constraints(self, dataset_ids: Iterable[str], *, downstream: bool = True) -> dict[str, frozenset[str]]:
        """The effective labels and origins (`UNDESCRIBED` included) of `dataset_ids` -- and of
        everything lineage leads to from them unless `downstream` is False."""
        return self._core.constraints(list(dataset_ids), downstream)


class DecisionBatch(Sequence[Decision]):
    """The decisions of one BatchDecide, kept by the engine: the decision log's entries
    (`log_entries`), the metrics' counts (`counts`) and the access records' intents (`count_intents`)
    come from the engine without a Python object per decision; a `Decision` is built only when
    one is read (tracing, tests). Slices are views."""

    __slots__ = ("_raw", "_shared", "_start", "_stop")

    def __init__(
        self, raw: _engine.DecidedBatch, shared: tuple[str, int, datetime, str], start: int = 0, stop: int | None = None
    ) -> None:
        self._raw = raw
        self._shared = shared  # (policy version, catalog revision, decide time, caller)
        self._start = start
        self._stop = len(raw) if stop is None else stop

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> Decision: ...

    @overload
    def __getitem__(self, index: slice) -> DecisionBatch: ...

    def __getitem__(self, index: int | slice) -> Decision | DecisionBatch:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a DecisionBatch slices without a step")
            return DecisionBatch(self._raw, self._shared, self._start + start, self._start + max(start, stop))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        decision_id, dataset_id, op, region, raw = self._raw.get(self._start + index)
        outcome, allowed_regions, reasons, inherited_only = _verdict(raw)
        version, revision, now, caller = self._shared
        return Decision(
            decision_id,
            outcome,
            dataset_id,
            _OPERATION_OF[op],
            region,
            allowed_regions,
            reasons,
            version,
            revision,
            now,
            caller,
            inherited_only,
        )

    @property
    def catalog_revision(self) -> int:
        return self._shared[1]

    @property
    def policy_hash(self) -> str:
        """The content hash of the policy that made these decisions (the log's entries name it)."""
        return self._raw.policy_hash

    def log_entries(
        self, context: Mapping[str, str] | None, kind: str, policy_hash: str, per_entry: int
    ) -> list[tuple[memoryview, Collection[str]]]:
        """The decision log's entries (format 4) of these decisions, at most `per_entry` decisions
        each: (the entry's JSON, its decision ids). The entries lie in one buffer the engine
        rendered them into (`_engine.LogBuffer`), each a view of its part."""
        _, _, _, caller = self._shared
        facts = list(context.items()) if context else []
        buffer, ends = self._raw.log_entries(self._start, self._stop, kind, caller, policy_hash, facts, per_entry)
        view = memoryview(buffer)
        entries: list[tuple[memoryview, Collection[str]]] = []
        start = 0
        for end, ids in ends:
            entries.append((view[start:end], ids))
            start = end
        return entries

    def count_intents(self, tally: _engine.IntentTally, at_us: int) -> None:
        """Add these decisions to `tally` as their caller's intents, logged at `at_us`."""
        tally.add_decided(self._raw, self._start, self._stop, self._shared[3], at_us)

    def counts(self) -> DecisionCounts:
        """Of the whole batch: decisions by (operation, outcome), reasons by (code, rule id)."""
        return _counts(*self._raw.counts())


def lane_counts(lane: LogLane) -> DecisionCounts:
    """The decisions queued on `lane` since the last call, counted as `DecisionBatch.counts`."""
    return _counts(*lane.take_counts())


def _counts(
    by_outcome: Iterable[tuple[tuple[int, int], int]], by_reason: Iterable[tuple[tuple[int, str], int]]
) -> DecisionCounts:
    return (
        {(_OPERATION_OF[op], _OUTCOMES[outcome]): n for (op, outcome), n in by_outcome},
        {(_REASON_CODES[code].value, rule_id): n for (code, rule_id), n in by_reason},
    )


def _verdict(raw: tuple) -> Verdict:
    outcome, allowed, reasons, inherited_only = raw
    return Verdict(
        _OUTCOMES[outcome],
        allowed,
        tuple(
            Reason(_REASON_CODES[code], message, rule_id, citation, path)
            for code, message, rule_id, citation, path in reasons
        ),
        inherited_only,
    )


def _dataset(dataset: Dataset) -> tuple:
    if dataset.placeholder:
        return ("placeholder", dataset.id)
    row = dataset.residency_row()
    return ("dataset", row.id, row.classifications, row.origins, row.locations)


def _change(change: Change) -> tuple:
    kind = change.kind
    if kind is ChangeKind.DATASET_UPSERTED:
        if change.dataset is None:
            raise ValueError(f"revision {change.revision}: DATASET_UPSERTED without a dataset")
        return _dataset(change.dataset)
    if kind is ChangeKind.DATASET_DELETED:
        return ("deleted", change.dataset_id)
    edge = change.edge
    if edge is None:
        raise ValueError(f"revision {change.revision}: {kind.name} without an edge")
    recorded = to_micros(edge.record_time) if edge.record_time is not None else None
    return (
        "edge" if kind is ChangeKind.EDGE_ADDED else "edge_ended",
        edge.input,
        edge.output,
        edge.job,
        edge.transform,
        recorded,
    )
