"""Replay and explanations of the past: a logged decision re-evaluated with the policy version
it names (from the policy history) and the catalog as it was at its catalog revision (as-of
reads; effective attributes rebuilt from the upstream lineage at that time, in an engine of
their own), at its decide time, so exemptions expire as they did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from domicile.catalog.dataset_ids import lookup_form
from domicile.catalog.model import Dataset, Direction, Edge, EdgeKey, TraversalLimits
from domicile.catalog.store import GraphStore
from domicile.errors import failed_precondition, not_found
from domicile.router.decision_log import LoggedDecision
from domicile.router.engine import CompiledPolicy, Engine, Explanation
from domicile.router.policy_admin import PolicyCompiler
from domicile.router.policy_history import PolicyHistory
from domicile.router.types import Decision
from domicile.router.violations import ResidencyStates, residency_of

# Replay rebuilds the upstream subgraph of one dataset; the in-memory index has no depth limit,
# so the replay must not have a practical one either.
_REPLAY_MAX_DEPTH = 100_000
_REPLAY_LIMITS = TraversalLimits(max_nodes=1_000_000, timeout_seconds=60.0)
# Residency states as of a past time are asked for by the console's lineage page, for every
# dataset of a graph: the upstream lineage rebuilt per request is bounded more tightly.
_STATES_AT_LIMITS = TraversalLimits(max_nodes=20_000, timeout_seconds=20.0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Context logged beside CheckJob output decisions: those are made on the attributes the
# output *would* inherit, which replay must rebuild from the job's inputs and transform.
CONTEXT_JOB_INPUTS = "check_job_inputs"
CONTEXT_JOB_TRANSFORM = "check_job_transform"
CONTEXT_JOB = "check_job_job"


@dataclass(frozen=True)
class ReplayResult:
    """`replayed` is the decision re-evaluated with the policy version and catalog state of the
    original's time; it keeps the original's id, version, revision and time."""

    original: Decision
    replayed: Decision
    matches: bool
    # How the original was verified in the decision log (`decision_log.Proof`; the SDK's
    # `DecisionProof` on a client).
    proof: Any = None


class Replayer:
    """Re-evaluates logged decisions and explains datasets as of past instants."""

    def __init__(self, store: GraphStore, history: PolicyHistory, compiler: PolicyCompiler) -> None:
        self._store = store
        self._history = history
        self._compile = compiler

    async def replay(self, entry: LoggedDecision) -> ReplayResult:
        """Re-evaluate a logged decision with the policy version it names (from the policy
        history) and the catalog as it was at its catalog revision (as-of reads, effective
        attributes rebuilt from the upstream lineage at that time), at its decide time (so
        exemptions expire as they did). `matches` compares outcome, allowed regions and each
        reason's code, rule and message; lineage paths are not compared because two shortest
        paths may tie. A STALE_CATALOG original never matches: it was a fail-closed answer,
        and the replay shows what the policy said of the catalog it could not confirm.

        FAILED_PRECONDITION when the policy version is missing from the history or the
        upstream lineage is too large to rebuild."""
        original = entry.decision
        text = await self._history.get(original.policy_version)
        if text is None:
            raise failed_precondition(
                f"policy version {original.policy_version!r} is not in the policy history", "POLICY_VERSION_UNKNOWN"
            )
        policy, errors = await self._compile(
            text, legacy=self._history.is_legacy(original.policy_version), recorded=True
        )
        if policy is None:
            raise failed_precondition(
                f"policy version {original.policy_version!r} no longer compiles: {errors[0].message}",
                "POLICY_VERSION_INVALID",
            )
        if not policy.region_known(original.region):
            raise failed_precondition(f"region {original.region!r} is unknown to policy {original.policy_version!r}")
        as_of = await self._revision_time(original.catalog_revision)
        context = entry.context or {}
        when = original.decide_time
        # Ids as the store holds them now: an id logged before ids were normalised has moved.
        dataset_id = lookup_form(original.dataset_id)
        if CONTEXT_JOB_INPUTS in context:
            inputs = [lookup_form(i) for i in context[CONTEXT_JOB_INPUTS].split("\n") if i]
            engine = await self._engine_at([*inputs, dataset_id], as_of, policy)
            # The output's decision comes last: what the check decided for it then.
            *_, (_, _, _, verdict) = engine.check_job(
                inputs,
                [dataset_id],
                original.region,
                original.region,
                context.get(CONTEXT_JOB_TRANSFORM, ""),
                context.get(CONTEXT_JOB, ""),
                when,
            )
        else:
            engine = await self._engine_at([dataset_id], as_of, policy)
            verdict = engine.decide(dataset_id, original.operation, original.region, when)
        replayed = original._replace(
            outcome=verdict.outcome,
            allowed_regions=verdict.allowed_regions,
            reasons=verdict.reasons,
            inherited_only=verdict.inherited_only,
        )
        return ReplayResult(original, replayed, _same_decision(original, replayed), entry.proof)

    async def _revision_time(self, revision: int) -> datetime:
        """The commit time of `revision` (as-of reads at it see exactly revisions <= it, unless a
        later revision shares its microsecond)."""
        if revision <= 0:
            return _EPOCH
        changes = await self._store.changes_since(revision - 1, limit=1)
        for change in changes:
            if change.revision == revision:
                return change.time
        raise failed_precondition(f"catalog revision {revision} is not in the change history")

    async def _engine_at(
        self,
        dataset_ids: Iterable[str],
        as_of: datetime,
        policy: CompiledPolicy,
        *,
        limits: TraversalLimits = _REPLAY_LIMITS,
    ) -> Engine:
        """An engine with `policy` over the upstream lineage of `dataset_ids` as it was at `as_of`.

        An id already reached upstream of another one needs no traversal of its own (its
        upstream is part of that one's), so ids listed downstream first cost the fewest
        traversals. FAILED_PRECONDITION when the lineage to rebuild exceeds `limits`."""
        datasets: dict[str, Dataset] = {}
        edges: dict[EdgeKey, Edge] = {}
        for dataset_id in dict.fromkeys(dataset_ids):
            if dataset_id in datasets:
                continue
            dataset = await self._store.get_dataset(dataset_id, as_of=as_of)
            if dataset is None:
                continue
            traversal = await self._store.traverse(
                dataset_id, Direction.UPSTREAM, max_depth=_REPLAY_MAX_DEPTH, as_of=as_of, limits=limits
            )
            if not traversal.complete or len(datasets) + len(traversal.nodes) > limits.max_nodes:
                raise failed_precondition(
                    f"upstream lineage of {dataset_id!r} is too large to rebuild "
                    f"({traversal.incomplete_reason or 'max_nodes'} limit)",
                    "REPLAY_LINEAGE_INCOMPLETE",
                )
            datasets[dataset_id] = dataset
            for node in traversal.nodes:
                if node.dataset_id not in datasets:
                    found = await self._store.get_dataset(node.dataset_id, as_of=as_of)
                    if found is not None:
                        datasets[node.dataset_id] = found
            for edge in traversal.edges:
                edges[edge.key] = replace(edge, end_time=None)
        engine = Engine(policy)
        engine.add(datasets.values(), edges.values())
        return engine

    async def _policy_at(self, as_of: datetime) -> CompiledPolicy:
        """The policy in force at `as_of`, compiled; FAILED_PRECONDITION when there was none
        or it no longer compiles."""
        activation = self._history.active_at(as_of)
        if activation is None:
            raise failed_precondition(f"no policy was in force at {as_of.isoformat()}", "NO_POLICY_THEN")
        policy, errors = await self._compile(
            activation.yaml, legacy=self._history.is_legacy(activation.version), recorded=True
        )
        if policy is None:
            raise failed_precondition(
                f"policy version {activation.version!r} no longer compiles: {errors[0].message}",
                "POLICY_VERSION_INVALID",
            )
        return policy

    async def explain_at(self, dataset_id: str, as_of: datetime) -> Explanation:
        """`explain` as of a past instant: the effective attributes in the catalog as it was
        then (rebuilt from the upstream lineage, as replay does) under the policy in force
        then. `catalog_revision` is 0. NOT_FOUND when the dataset did not exist then;
        FAILED_PRECONDITION when no policy was recorded as in force then."""
        if await self._store.get_dataset(dataset_id, as_of=as_of) is None:
            raise not_found(f"dataset {dataset_id!r} was not in the catalog at {as_of.isoformat()}")
        policy = await self._policy_at(as_of)
        engine = await self._engine_at([dataset_id], as_of, policy)
        explained = engine.explain(dataset_id, as_of)
        if explained is None:
            raise not_found(f"dataset {dataset_id!r} was not in the catalog at {as_of.isoformat()}")
        return engine.explanation(dataset_id, as_of, 0)

    async def residency_states_at(self, dataset_ids: Sequence[str], as_of: datetime) -> ResidencyStates:
        """Each dataset's residency state as of a past instant: the catalog and lineage as they
        were then (effective attributes rebuilt from the upstream lineage, as replay does) under
        the policy in force then, exemptions as they stood then; `catalog_revision` is 0.
        FAILED_PRECONDITION when no policy was in force then, or when the upstream lineage of
        the datasets is larger than the console may rebuild per request (`_STATES_AT_LIMITS`)."""
        policy = await self._policy_at(as_of)
        engine = await self._engine_at(dataset_ids, as_of, policy, limits=_STATES_AT_LIMITS)

        def violating(dataset_id: str) -> tuple[str, ...]:
            return tuple(region for _, region, _ in engine.violations_of([dataset_id], as_of))

        return ResidencyStates(residency_of(engine, dataset_ids, violating), policy.version, 0)


def _same_decision(a: Decision, b: Decision) -> bool:
    def reasons(d: Decision) -> list[tuple[str, str, str]]:
        return sorted((r.code.value, r.rule_id, r.message) for r in d.reasons)

    return (
        a.outcome is b.outcome
        and a.allowed_regions == b.allowed_regions
        and reasons(a) == reasons(b)
        and a.inherited_only == b.inherited_only
    )
