"""The residency router at run time: one compiled policy, one in-memory effective-attribute
index that follows the catalog's change feed, and logged decisions.

Start-up (`Router.start`):

1. The policy: `settings.policy.file` when set; else the latest policy in the policy history under
   `data_dir` (the one a previous `SetPolicy` left active); else `DEFAULT_POLICY_YAML`, a
   policy with no rules whose defaults deny every classified dataset everywhere and allow
   unclassified ones everywhere. That default fails closed for exactly the data a residency
   policy exists for, while a catalog that has not labelled anything yet keeps working.
   Whatever policy starts is recorded in the history, so its decisions can be replayed.
2. The index: the store's revision `r0` is read first, then every dataset (placeholders
   included) and every current edge, page by page. Those pages are not one snapshot: writes
   may land while they are read. Replaying the change feed from `r0` repairs that, because
   every change is idempotent on the index (an upsert sets, a delete forgets, an edge is
   keyed, an ended edge is removed only if it is the indexed version), so after the replay
   each dataset and edge holds the value of its last change, or the value read if it had
   none after `r0` -- which is the value at the head.
3. A background task then polls `changes_since` every `poll_interval_seconds`; a write made
   through this process calls `note_local_write(revision)`, which catches up immediately.
   A large batch of changes (one big lineage event) is folded into a copy of the index on
   another thread while decisions keep being answered from the current one, which is then
   replaced in one step: decisions see the catalog before the batch or after it, never a
   part of it.

Freshness: the router remembers when its view was last confirmed -- the moment the last
successful poll that reached the head of the feed was *sent* (a conservative bound). A
decision made when that is older than `staleness_bound_seconds`, or while a local write
acknowledged by this process is not yet applied, is DENY with reason STALE_CATALOG: the
router fails closed rather than answer from a view it cannot vouch for. While a large
batch is folded aside, the view before it counts as confirmed when the batch was read. A
write made here is acknowledged only once the index has applied it (read-your-writes), so
only a write whose application failed makes decisions fail closed; while it is being
applied, the others are answered from the view before it, which is what the catalog was
until that write is acknowledged.

Every decision (Decide, BatchDecide, Route, CheckJob, ScanViolations) gets a decision id
(`<replica id>:<random prefix><counter>`), the policy version, the catalog revision of the view,
the decide time and the caller, and is appended to the decision log (`router.decision_log`).
With `durable_decision_log` (the default) the answer waits until its log line is on disk; an
answer that could not be sent (too large) is refused before anything is logged.

Catalog rollback: the decision log remembers the highest catalog revision it recorded. A store
found below it at start lost acknowledged writes (restored alone from an older backup, a
damaged write-ahead log): the router refuses to start, unless `allow_catalog_rollback` is set,
which is recorded in the log (and the security event log) and starts anew from the store's
revision.

Concurrency: everything runs on one event loop. The index and the policy are only replaced or
mutated in code sections without an `await`, so a decision never sees a half-applied change;
the index is mutated (or copied to fold a batch aside) only under `_catch_up_lock`, so a
policy switch cannot be lost in a fold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from domicile.callslots import slots_given_back
from domicile.catalog.model import Change, Dataset, Direction, TraversalLimits, label_matches
from domicile.catalog.regions import RegionRegistry
from domicile.catalog.store import GraphStore
from domicile.errors import DomicileError, ErrorCode, failed_precondition, invalid_field, not_found
from domicile.router import decision_search
from domicile.router.decision_log import DecisionLog, IntentSink, LoggedDecision
from domicile.router.decision_log.assembly import open_configured_log
from domicile.router.decision_log.format import CATALOG_ROLLBACK_NOTE
from domicile.router.decision_search import DecisionBucket, DecisionQuery, SearchPage
from domicile.router.effective import EffectiveIndex, NodeKind
from domicile.router.engine import CompiledPolicy, compile_policy
from domicile.router.policy import PolicyError, PolicyInvalid, content_hash, load_policy
from domicile.router.policy_history import PolicyHistory, PolicyVersion
from domicile.router.types import (
    UNDESCRIBED,
    Decision,
    EffectiveAttributes,
    Operation,
    Outcome,
    PolicyChange,
    Reason,
    ReasonCode,
    Verdict,
)
from domicile.router.violations import (
    ResidencyStates,
    StoredViolations,
    ViolationPage,
    residency_of,
    violation_page,
)
from domicile.security.context import current_principal
from domicile.security.events import CATALOG_ROLLBACK_ACCEPTED
from domicile.telemetry.tracing import span

if TYPE_CHECKING:
    from domicile.app import App

log = logging.getLogger(__name__)

DEFAULT_POLICY_YAML = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata:
  name: domicile-builtin-default
  version: "builtin-default-1"
  description: >-
    Active when no policy was configured or ever set. No rules: classified datasets may be
    stored and processed nowhere, unclassified ones anywhere.
defaults:
  classified: deny
  unclassified: allow
"""

_FEED_BATCH = 10_000
# A batch of changes at least this large is folded into a copy of the index on another thread
# (copying costs about as much as applying a few hundred changes).
_FOLD_ASIDE = 2_000
# Replay rebuilds the upstream subgraph of one dataset; the in-memory index has no depth limit,
# so the replay must not have a practical one either.
_REPLAY_MAX_DEPTH = 100_000
_REPLAY_LIMITS = TraversalLimits(max_nodes=1_000_000, timeout_seconds=60.0)
# Residency states as of a past time are asked for by the console's lineage page, for every
# dataset of a graph: the upstream lineage rebuilt per request is bounded more tightly.
_STATES_AT_LIMITS = TraversalLimits(max_nodes=20_000, timeout_seconds=20.0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How long a ListViolations may judge before it answers (with what is judged so far): the
# first read after a start would otherwise wait seconds at 100,000 datasets.
_LIST_JUDGING_BUDGET = 0.2
# See `Router._freeze_new_views`.
_REFREEZE_MIN_VIEWS = 5_000

Clock = Callable[[], datetime]
utc_clock: Clock = functools.partial(datetime.now, UTC)


# ---- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyUpdate:
    """Outcome of `set_policy`: `errors` empty means the document is valid; `applied` means it
    is now the active policy (never for a dry run)."""

    version: str
    errors: tuple[PolicyError, ...] = ()
    applied: bool = False


@dataclass(frozen=True)
class PolicyImpact:
    """Outcome of `policy_impact`: `changes` is empty when `errors` is not."""

    version: str
    changes: tuple[PolicyChange, ...] = ()
    errors: tuple[PolicyError, ...] = ()


@dataclass(frozen=True)
class ActivePolicy:
    yaml: str
    version: str
    content_hash: str


@dataclass(frozen=True)
class UnapprovedDeclassification:
    """An edge `output DERIVED_FROM input` by `job` claiming `transform`, which would remove
    `classifications`, but which the policy does not grant the job: a plain copy."""

    input: str
    output: str
    job: str
    transform: str
    classifications: tuple[str, ...]


@dataclass(frozen=True)
class Explanation:
    """`attributes.inherited_only`: the dataset is a derived placeholder, judged by what it
    inherits (its paths say from where). `unapproved` are the edges on its labels' paths that
    claimed to remove them without the policy granting their job the transform."""

    attributes: EffectiveAttributes
    store_regions: tuple[str, ...]
    process_regions: tuple[str, ...]
    policy_version: str
    catalog_revision: int
    unapproved: tuple[UnapprovedDeclassification, ...] = ()


@dataclass(frozen=True)
class RouterStatus:
    """`view_age_seconds` is infinite before the view was first confirmed; `stale_reason` is
    empty while decisions are made from a fresh view."""

    revision: int
    view_age_seconds: float
    stale_reason: str
    policy_version: str
    decision_log_queued: int
    # Why decisions cannot be logged (and so are not answered) now; empty while they can.
    decision_log_failure: str


@dataclass(frozen=True)
class RouteResult:
    """`region` is the first allowed candidate ('' when none); `decision` is for that region,
    or for the first candidate when none is allowed."""

    region: str
    decision: Decision


@dataclass(frozen=True)
class JobCheck:
    allowed: bool
    decisions: tuple[Decision, ...]


@dataclass(frozen=True)
class Violation:
    dataset_id: str
    region: str
    decision: Decision


@dataclass(frozen=True)
class ReplayResult:
    """`replayed` is the decision re-evaluated with the policy version and catalog state of the
    original's time; it keeps the original's id, version, revision and time."""

    original: Decision
    replayed: Decision
    matches: bool
    # How the original was verified in the decision log (`decision_log.Proof`).
    proof: Any = None


@dataclass(frozen=True)
class DatasetSummary:
    """Described datasets counted by effective label, origin and location: `regions` maps a
    region to (datasets stored there, those of them with any effective classification)."""

    datasets: int
    classifications: dict[str, int]
    origins: dict[str, int]
    regions: dict[str, tuple[int, int]]
    catalog_revision: int


# Context logged beside CheckJob output decisions: those are made on the attributes the
# output *would* inherit, which replay must rebuild from the job's inputs and transform.
CONTEXT_JOB_INPUTS = "check_job_inputs"
CONTEXT_JOB_TRANSFORM = "check_job_transform"
CONTEXT_JOB = "check_job_job"
# A request's `context` (the caller's facts, e.g. an Airflow DAG, task and run) is logged beside
# the router's own facts with this prefix on each key, so that no caller key can pass for one.
CALLER_CONTEXT_PREFIX = "caller."


def logged_caller_context(context: Mapping[str, str] | None) -> dict[str, str]:
    """A request's context as the decision log keeps it."""
    return {CALLER_CONTEXT_PREFIX + key: value for key, value in (context or {}).items()}


def caller_context(logged: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's context of a logged decision (see `logged_caller_context`)."""
    prefix = CALLER_CONTEXT_PREFIX
    return {key[len(prefix) :]: value for key, value in (logged or {}).items() if key.startswith(prefix)}


def _unchanged(value: Any) -> Any:
    """The default `answer` of the methods that take one: what was decided, as it is."""
    return value


class Router:
    """Answers residency questions from memory; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        store: GraphStore,
        policy: CompiledPolicy,
        index: EffectiveIndex,
        revision: int,
        decision_log: DecisionLog,
        history: PolicyHistory,
        staleness_bound: float,
        poll_interval: float,
        durable_log: bool,
        clock: Clock = utc_clock,
    ) -> None:
        # Use `start`; the constructor only wires already-built parts together.
        self._store = store
        self._policy = policy
        self._index = index
        self._revision = revision
        self._log = decision_log
        self._history = history
        self._staleness_bound = staleness_bound
        self._poll_interval = poll_interval
        self._durable_log = durable_log
        self._clock = clock
        self._confirmed_at = float("-inf")
        self._folding_since = float("-inf")  # when the batch being folded aside was read
        # The highest revision this process acknowledged to a writer although the index could
        # not apply it; decisions fail closed until it has (read-your-writes).
        self._required_revision = 0
        self._catch_up_lock = asyncio.Lock()
        self._policy_lock = asyncio.Lock()
        self._compile_lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self._poll_failures = 0
        # Decision ids: the replica id, then a random per-process prefix and a counter -- unique
        # across restarts without the cost of a uuid per decision, and saying whose log has them.
        self._ids = map(f"{decision_log.replica}:{os.urandom(6).hex()}%010x".__mod__, itertools.count(1))
        self._log_append = decision_log.append
        self._closed = False
        self._views_frozen = 0  # index views built when the collector last froze the heap
        self._summary: tuple[tuple[int, int], DatasetSummary] | None = None
        self._violations = StoredViolations(lambda: self._index, lambda: self._policy, clock)

    # ---- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def start(cls, app: App, *, clock: Clock = utc_clock) -> Router:
        """Load the policy, build the index at the store's head and start following the feed.

        `clock` gives decide times (and so which exemptions are unexpired); tests replace it.
        Raises DomicileError (FAILED_PRECONDITION) when the configured policy file is invalid
        or reuses a recorded version with another text, when the decision log does not verify
        (DECISION_LOG_CORRUPT, see `DecisionLog.open`) or the store is behind it
        (CATALOG_ROLLED_BACK); store errors propagate.
        """
        settings = app.settings
        history = await PolicyHistory.open(settings.data_dir)
        decision_log = None
        try:
            policy = await _initial_policy(settings.policy.file, history)
            started = time.perf_counter()
            # Reading the catalog and building the index allocate millions of objects that all
            # stay alive; the cyclic collector, triggered by those allocations, would traverse the
            # growing heap again and again (a quarter of the start-up time at 100k datasets) to
            # find nothing. It is paused meanwhile and the heap collected once below.
            collecting = gc.isenabled()
            gc.disable()
            try:
                snapshot = await app.store.residency_snapshot()
                revision = snapshot.revision
                index = EffectiveIndex.from_snapshot(
                    snapshot.datasets,
                    snapshot.edges,
                    policy.removes,
                    placeholders=snapshot.placeholders,
                    inherit=policy.inherits_undescribed_outputs,
                )
                del snapshot
            finally:
                if collecting:
                    gc.enable()
            decision_log = await open_configured_log(app)
            router = cls(
                store=app.store,
                policy=policy,
                index=index,
                revision=revision,
                decision_log=decision_log,
                history=history,
                staleness_bound=settings.router.staleness_bound_seconds,
                poll_interval=settings.router.poll_interval_seconds,
                durable_log=settings.router.durable_decision_log,
                clock=clock,
            )
            await router._catch_up()
            await router._check_catalog_revision(settings.allow_catalog_rollback, app)
        except BaseException:
            # Release the files for the next attempt.
            if decision_log is not None:
                await decision_log.close()
            history.close()
            raise
        # The index is a few hundred thousand long-lived objects per 100k datasets; a full
        # garbage collection walking them takes 100-200 ms, a pause every request in flight
        # would wait for. Freezing moves what exists now out of the collector's sight (memory
        # is still freed by reference counting; only cycles among frozen objects would leak,
        # and the index holds none).
        gc.collect()
        gc.freeze()
        router._views_frozen = index.views_built()
        log.info(
            "router ready: policy %s, %d datasets at catalog revision %d (%.2fs)",
            policy.version,
            len(index),
            router._revision,
            time.perf_counter() - started,
        )
        router._poll_task = asyncio.create_task(router._follow(), name="router-follow-catalog")
        return router

    async def flush_decision_log(self) -> None:
        """Return once every decision made so far is written and fsynced to the decision log."""
        await self._log.flush()

    async def close(self) -> None:
        """Stop following the catalog, flush the decision log, release the log and the policy
        history. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        await self._log.close()
        self._history.close()

    async def _check_catalog_revision(self, allow_rollback: bool, app: App) -> None:
        """Refuse a store whose revision is below the highest the decision log recorded (see the
        module docstring), unless `allow_rollback`."""
        logged, current = self._log.max_catalog_revision, self._revision
        if current >= logged:
            return
        where = f"the catalog store is at revision {current}, but the decision log {self._log.path} recorded decisions at catalog revision {logged}"
        if not allow_rollback:
            raise failed_precondition(
                f"{where}: the store lost acknowledged writes (restored alone from an older backup, or a damaged "
                "write-ahead log). Restore the store together with its decision log and policy history "
                "(docs/audit.md, Backup and restore), or start once with --allow-catalog-rollback to accept the loss",
                "CATALOG_ROLLED_BACK",
            )
        log.warning("%s; starting anyway (--allow-catalog-rollback), recorded in the decision log", where)
        await self._log.note(CATALOG_ROLLBACK_NOTE, store_revision=current, log_revision=logged)
        if app.security_events is not None:
            app.security_events.record(
                CATALOG_ROLLBACK_ACCEPTED,
                outcome="accepted",
                reason="CATALOG_ROLLED_BACK",
                store_revision=current,
                log_revision=logged,
            )
            app.security_events.sync()

    # ---- following the catalog ----------------------------------------------------------

    @property
    def catalog_revision(self) -> int:
        """The catalog revision the index reflects."""
        return self._revision

    async def note_local_write(self, revision: int) -> None:
        """A write at `revision` made by this process is about to be acknowledged: bring the
        index to at least `revision` before returning (the writer's answer waits for it). If
        the store cannot be read now, this returns anyway (the write itself succeeded) and
        decisions fail closed with STALE_CATALOG until the background poll catches up."""
        if revision <= self._revision:
            return
        try:
            await self._catch_up(min_revision=revision)
        except Exception as exc:  # the poll loop retries; decisions fail closed meanwhile
            self._required_revision = max(self._required_revision, revision)
            log.warning("router could not apply local write at revision %d: %s", revision, exc)

    async def _catch_up(self, min_revision: int = 0) -> None:
        """Apply the change feed up to its head. One caller at a time; a caller that waited for
        another one's catch-up skips its own when that already covers `min_revision`."""
        async with self._catch_up_lock:
            if min_revision and self._revision >= min_revision:
                return
            while True:
                asked_at = time.monotonic()
                changes = await self._store.changes_since(self._revision, limit=_FEED_BATCH)
                if len(changes) >= _FOLD_ASIDE:
                    # The view before the batch is as fresh as this read while the batch is
                    # folded: the router is keeping up, just not done.
                    self._folding_since = asked_at
                    try:
                        self._index, touched = await asyncio.to_thread(_folded, self._index, changes)
                    finally:
                        self._folding_since = float("-inf")
                    self._violations.invalidate(touched)
                    self._revision = changes[-1].revision
                elif changes:
                    self._violations.invalidate(self._index.apply(changes))
                    self._revision = changes[-1].revision
                if len(changes) < _FEED_BATCH:
                    self._confirmed_at = asked_at
                    return

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep polling: the store may come back
                self._poll_failures += 1
                # One line when it starts failing, then one a minute or so.
                if self._poll_failures == 1 or self._poll_failures % max(1, int(60 / self._poll_interval)) == 0:
                    log.warning("router cannot follow the catalog (%d failed polls): %s", self._poll_failures, exc)
            else:
                self._freeze_new_views()
                if self._poll_failures:
                    log.info("router follows the catalog again after %d failed polls", self._poll_failures)
                self._poll_failures = 0

    def _freeze_new_views(self) -> None:
        """Freeze the heap again once the index has built many views since the last freeze.

        Views are built on a dataset's first decision, after the freeze at start, so they
        accumulate in the collector's oldest generation; and since frozen objects do not count
        as long-lived, full collections then run often, each walking every view (0.2-0.5 s for
        100k datasets, measured in bench/router_bench.py): a pause that every request in flight
        waits for. Re-freezing after a growth of 1/8 (at least 5,000 views) bounds that to a few
        dozen freezes over the life of the process. Only the young generations are collected first
        (milliseconds); cyclic garbage already in the oldest generation then stays frozen --
        a small, bounded leak (at most one per freeze), accepted against the pauses.
        """
        built = self._index.views_built()
        if built - self._views_frozen < max(_REFREEZE_MIN_VIEWS, self._views_frozen // 8):
            return
        gc.collect(1)
        gc.freeze()
        self._views_frozen = built

    def _stale_reason(self) -> str:
        """Why the view cannot be trusted now, or '' when it is fresh."""
        if self._revision < self._required_revision:
            return f"catalog revision {self._required_revision} was written here but is not applied yet (at {self._revision})"
        age = time.monotonic() - max(self._confirmed_at, self._folding_since)
        if age > self._staleness_bound:
            if age == float("inf"):
                return "the view of the catalog was never confirmed"
            return f"the view of the catalog was last confirmed {age:.1f}s ago (bound {self._staleness_bound:g}s)"
        return ""

    def status(self) -> RouterStatus:
        """How fresh the router's view is and how far behind its decision log is, now (for
        metrics and health)."""
        return RouterStatus(
            revision=self._revision,
            view_age_seconds=time.monotonic() - max(self._confirmed_at, self._folding_since),
            stale_reason=self._stale_reason(),
            policy_version=self._policy.version,
            decision_log_queued=self._log.queued(),
            decision_log_failure=self._log.failure(),
        )

    def _require_fresh(self) -> None:
        """For answers that are not decisions (Explain, ScanViolations): UNAVAILABLE when stale."""
        stale = self._stale_reason()
        if stale:
            raise DomicileError(
                f"router view is stale: {stale}", ErrorCode.UNAVAILABLE, "STALE_CATALOG", retry_after=1.0
            )

    # ---- policy ------------------------------------------------------------------------

    @property
    def policy(self) -> CompiledPolicy:
        """The active compiled policy."""
        return self._policy

    def regions(self) -> RegionRegistry:
        """Builtin regions plus the active policy's private regions."""
        return self._policy.registry

    def get_policy(self) -> ActivePolicy:
        policy = self._policy
        return ActivePolicy(policy.source_yaml, policy.version, policy.content_hash)

    async def get_policy_version(self, version: str) -> ActivePolicy:
        """A policy from the history by its version; NOT_FOUND when never recorded."""
        text = await self._history.get(version)
        if text is None:
            raise not_found(f"policy version {version!r} is not in the policy history")
        return ActivePolicy(text, version, content_hash(text))

    def policy_activations(self) -> tuple[PolicyVersion, ...]:
        """Every activation in the policy history, newest first."""
        return tuple(reversed(self._history.versions()))

    async def set_policy(
        self, policy_yaml: str, *, dry_run: bool = False, activation: Mapping[str, str] | None = None
    ) -> PolicyUpdate:
        """Validate and compile `policy_yaml`; unless `dry_run` or invalid, record it in the
        policy history (with `activation`: who activated it, and how) and make it active. An
        invalid policy (including a version already recorded with another text) leaves the
        active policy as it was and returns the errors. Setting the active policy again is a
        no-op reported as applied. Whether a change needs approval is decided before, by
        `router.policy_changes`."""
        async with self._policy_lock:
            candidate, errors = await self._compile(policy_yaml)
            if candidate is None:
                return PolicyUpdate("", errors)
            conflict = await self._version_conflict(candidate)
            if conflict is not None:
                return PolicyUpdate(candidate.version, (conflict,))
            if dry_run:
                return PolicyUpdate(candidate.version)
            if candidate.content_hash == self._policy.content_hash:
                return PolicyUpdate(candidate.version, applied=True)
            await self._history.record(candidate.version, candidate.source_yaml, activation=activation)
            async with self._catch_up_lock:  # not while a batch is folded into a copy of the index
                # No await from here on: decisions see either the old pair or the new one.
                _follow_lineage_rules(self._index, self._policy, candidate)
                self._policy = candidate
                self._violations.invalidate_all()
            log.info("policy %s (sha256 %s) is active", candidate.version, candidate.content_hash[:12])
            return PolicyUpdate(candidate.version, applied=True)

    async def _compile(
        self, text: str, *, legacy: bool = False
    ) -> tuple[CompiledPolicy | None, tuple[PolicyError, ...]]:
        """`_compile` off the event loop, one document at a time: a costly document (up to the
        policy loader's budget) delays other policy calls, not the decisions."""
        async with self._compile_lock:
            return await asyncio.to_thread(_compile, text, legacy=legacy)

    async def _version_conflict(self, candidate: CompiledPolicy) -> PolicyError | None:
        recorded = await self._history.get(candidate.version)
        if recorded is None or recorded == candidate.source_yaml:
            return None
        line, column = candidate.loaded.position(("metadata", "version"))
        return PolicyError(
            line,
            column,
            "metadata.version",
            f"version {candidate.version!r} is already recorded with a different text; give the changed policy a new version",
        )

    async def policy_impact(self, policy_yaml: str) -> PolicyImpact:
        """What making `policy_yaml` active would change for every dataset (see
        `CompiledPolicy.impact`), computed against the current index. Changes nothing."""
        candidate, errors = await self._compile(policy_yaml)
        if candidate is None:
            return PolicyImpact("", errors=errors)
        self._require_fresh()
        async with self._catch_up_lock:  # the index is borrowed below: not while it is being copied
            return self._impact(candidate)

    def _impact(self, candidate: CompiledPolicy) -> PolicyImpact:
        current = self._policy
        index = self._index
        datasets = [attrs for attrs in map(index.get, index.datasets()) if attrs is not None]
        candidate_attributes: dict[str, EffectiveAttributes | None] = {}
        candidate_only: list[EffectiveAttributes] = []
        if candidate.lineage_rules != current.lineage_rules:
            # Borrow the live index: switch its lineage rules, read, switch back -- without an
            # await in between, so no decision observes the candidate's attributes.
            _follow_lineage_rules(index, current, candidate)
            try:
                for attrs in datasets:
                    changed = index.get(attrs.dataset_id)
                    if changed is not attrs:
                        candidate_attributes[attrs.dataset_id] = changed
                # Datasets only the candidate decides (placeholders it judges by inheritance).
                known = {attrs.dataset_id for attrs in datasets}
                candidate_only = [
                    a for a in map(index.get, index.datasets()) if a is not None and a.dataset_id not in known
                ]
            finally:
                _follow_lineage_rules(index, candidate, current)
        now = self._clock()
        changes = current.impact(
            candidate, datasets, now, candidate_attributes=candidate_attributes, candidate_only=candidate_only
        )
        changes.sort(key=lambda c: (c.dataset_id, c.operation.value))
        return PolicyImpact(candidate.version, tuple(changes))

    # ---- decisions ---------------------------------------------------------------------

    def _new_id(self) -> str:
        return next(self._ids)

    def _decision(
        self,
        dataset_id: str,
        op: Operation,
        region: str,
        verdict: Verdict,
        now: datetime,
        caller: str,
        inherited_only: bool = False,
    ) -> Decision:
        outcome, allowed_regions, reasons = verdict
        return _new_tuple(
            Decision,
            (
                self._new_id(),
                outcome,
                dataset_id,
                op,
                region,
                allowed_regions,
                reasons,
                self._policy.version,
                self._revision,
                now,
                caller,
                inherited_only,
            ),
        )

    def _answer(self, dataset_id: str, op: Operation, region: str, now: datetime, stale: str, caller: str) -> Decision:
        """The decision for one question (not logged); the region must already be known."""
        attrs = None if stale else self._index.get(dataset_id)
        if attrs is None:
            verdict = self._verdict(dataset_id, op, region, now, stale)
            return self._decision(dataset_id, op, region, verdict, now, caller)
        verdict = self._policy.decide(attrs, op, region, now=now)
        return self._decision(dataset_id, op, region, verdict, now, caller, attrs.inherited_only)

    def _verdict(self, dataset_id: str, op: Operation, region: str, now: datetime, stale: str) -> Verdict:
        """The verdict for one question; the region must already be known to the policy."""
        if stale:
            return Verdict(Outcome.DENY, (), (Reason(ReasonCode.STALE_CATALOG, f"fail closed: {stale}"),))
        attrs = self._index.get(dataset_id)
        if attrs is None:
            return unknown_dataset_verdict(self._index, dataset_id, self._policy)
        return self._policy.decide(attrs, op, region, now=now)

    def _check_region(self, region: str, field: str = "region") -> None:
        if not self._policy.region_known(region):
            raise invalid_field(field, f"unknown region {region!r} (see `domicile regions`)")

    def _log_decisions(
        self, decisions: Sequence[Decision], kind: str, policy_hash: str, context: Mapping[str, str] | None = None
    ) -> None:
        """Queue decisions for the log (no I/O here). `policy_hash` must be the content hash of
        the policy that made them. Raises UNAVAILABLE when the log has failed: a decision that
        cannot be logged is not answered."""
        self._log.append_many(decisions, context, kind=kind, policy_hash=policy_hash)

    async def _durable(self) -> None:
        """With `durable_decision_log`, wait until every decision queued so far is on disk
        (a wait the load shedder's concurrency limits do not count: the log bounds its queue)."""
        if self._durable_log:
            with slots_given_back():
                await self._log.flush()

    async def decide(
        self, dataset_id: str, op: Operation, region: str, context: Mapping[str, str] | None = None
    ) -> Decision:
        """May `op` happen on `dataset_id` in `region`? Always a logged Decision (with the
        caller's `context`, see `caller_context`): an unknown dataset is DENY /
        UNKNOWN_DATASET, a stale view DENY / STALE_CATALOG. An unknown region raises
        INVALID_ARGUMENT (field `region`)."""
        # The hot path: helpers (`_stale_reason`, `_verdict`, `_decision`) are inlined where a
        # call layer would cost as much as the work; the slow cases go through them.
        policy = self._policy
        now = self._clock()
        attrs = None
        if self._revision >= self._required_revision and time.monotonic() - self._confirmed_at <= self._staleness_bound:
            attrs = self._index.get(dataset_id)
        if attrs is not None:
            # The engine rejects an unknown region itself (INVALID_ARGUMENT, field `region`),
            # before deciding anything: no second lookup of the region here.
            outcome, allowed_regions, reasons = policy.decide(attrs, op, region, now)
            inherited_only = attrs.inherited_only
        else:  # stale, or an unknown dataset: the region must still be valid
            self._check_region(region)
            outcome, allowed_regions, reasons = self._verdict(dataset_id, op, region, now, self._stale_reason())
            inherited_only = False
        decision = _new_tuple(
            Decision,
            (
                next(self._ids),
                outcome,
                dataset_id,
                op,
                region,
                allowed_regions,
                reasons,
                policy.version,
                self._revision,
                now,
                current_principal(),
                inherited_only,
            ),
        )
        self._log_append(decision, logged_caller_context(context) if context else None, "decide", policy.content_hash)
        if self._durable_log:
            with slots_given_back():
                await self._log.flush()
        return decision

    async def batch_decide(
        self, requests: Sequence[tuple[str, Operation, str]], answer: Callable[[list[Decision]], Any] = list
    ) -> Any:
        """`decide` for each (dataset_id, op, region), in order, with one decide time and one
        freshness check for the whole batch; returns `answer(decisions)` (the decisions by
        default). Every region is checked before anything is decided: an unknown one raises
        INVALID_ARGUMENT on `requests[i].region`.

        `answer` runs before anything is logged: it makes what the caller will send (the
        servicer: the encoded response) and may refuse it (an answer too large to send) by
        raising, and then no decision of the batch is logged."""
        known = self._policy.region_known
        for i, (_, _, region) in enumerate(requests):
            if not known(region):
                raise invalid_field(f"requests[{i}].region", f"unknown region {region!r}")
        policy = self._policy
        now = self._clock()
        stale = self._stale_reason()
        caller = current_principal()
        # `decide`'s inlined path, with everything shared by the batch looked up once.
        decide, get, verdict_of = policy.decide, self._index.get, self._verdict
        version, revision, ids = policy.version, self._revision, self._ids
        # A batch allocates a few objects per decision that all stay alive until written to
        # the log, and no reference cycles: collections triggered meanwhile would only walk
        # them again and again (a third of BatchDecide's time at 10,000 per call). The
        # collector is paused for the loop, which runs without an await.
        collecting = gc.isenabled()
        gc.disable()
        try:
            decisions = []
            for dataset_id, op, region in requests:
                attrs = None if stale else get(dataset_id)
                if attrs is not None:
                    outcome, allowed_regions, reasons = decide(attrs, op, region, now)
                    inherited_only = attrs.inherited_only
                else:
                    outcome, allowed_regions, reasons = verdict_of(dataset_id, op, region, now, stale)
                    inherited_only = False
                decisions.append(
                    _new_tuple(
                        Decision,
                        (
                            next(ids),
                            outcome,
                            dataset_id,
                            op,
                            region,
                            allowed_regions,
                            reasons,
                            version,
                            revision,
                            now,
                            caller,
                            inherited_only,
                        ),
                    )
                )
        finally:
            if collecting:
                gc.enable()
        answered = answer(decisions)
        # (Queued with the collector on: a full queue may block here for up to the log's
        # `append_timeout`.)
        self._log_decisions(decisions, "batch_decide", policy.content_hash)
        await self._durable()
        return answered

    async def route(self, dataset_id: str, op: Operation, candidates: Sequence[str]) -> RouteResult:
        """The first candidate where `op` is allowed, with its (logged) decision; when none is,
        region '' and the decision for the first candidate. Only the returned decision is
        logged. Every candidate must be a known region (`candidates[i]`)."""
        if not candidates:
            raise invalid_field("candidates", "must not be empty")
        for i, region in enumerate(candidates):
            self._check_region(region, f"candidates[{i}]")
        now = self._clock()
        stale = self._stale_reason()
        chosen = ""
        verdict = self._verdict(dataset_id, op, candidates[0], now, stale)
        region = candidates[0]
        if verdict.outcome is Outcome.ALLOW:
            chosen = region
        else:
            for candidate in candidates[1:]:
                if candidate in verdict.allowed_regions:
                    chosen = region = candidate
                    verdict = self._verdict(dataset_id, op, candidate, now, stale)
                    break
        attrs = None if stale else self._index.get(dataset_id)
        inherited_only = attrs is not None and attrs.inherited_only
        decision = self._decision(dataset_id, op, region, verdict, now, current_principal(), inherited_only)
        self._log_decisions((decision,), "route", self._policy.content_hash)
        await self._durable()
        return RouteResult(chosen, decision)

    async def check_job(
        self,
        inputs: Sequence[str],
        outputs: Sequence[str],
        run_region: str,
        output_region: str,
        transform: str = "",
        job: str = "",
        context: Mapping[str, str] | None = None,
        answer: Callable[[JobCheck], Any] = _unchanged,
    ) -> Any:
        """Pre-flight check of a pipeline job: a PROCESS decision for each input in
        `run_region`, then a STORE decision for each output in `output_region` on the
        attributes it would have after the job -- the union of the inputs' effective
        attributes minus what `transform` removes when the policy grants it to `job` (never
        without a `job`), plus the output's current effective attributes when it already
        exists. `allowed` is True when every decision is ALLOW. An unknown input is DENY /
        UNKNOWN_DATASET. Every decision is logged with the caller's `context`. Returns
        `answer(the JobCheck)`, made before anything is logged (see `batch_decide`)."""
        if inputs:
            self._check_region(run_region, "run_region")
        if outputs:
            self._check_region(output_region, "output_region")
        now = self._clock()
        stale = self._stale_reason()
        caller = current_principal()
        process = [self._answer(d, Operation.PROCESS, run_region, now, stale, caller) for d in inputs]
        store = []
        for output in outputs:
            if stale:
                verdict = self._verdict(output, Operation.STORE, output_region, now, stale)
                inherited_only = False
            else:
                attrs = inherited_attributes(self._index, self._policy, inputs, output, transform, job)
                verdict = self._policy.decide(attrs, Operation.STORE, output_region, now=now)
                inherited_only = attrs.inherited_only
            store.append(self._decision(output, Operation.STORE, output_region, verdict, now, caller, inherited_only))
        policy_hash = self._policy.content_hash
        decisions = (*process, *store)
        answered = answer(JobCheck(all(d.outcome is Outcome.ALLOW for d in decisions), decisions))
        caller_facts = logged_caller_context(context)
        self._log_decisions(process, "check_job", policy_hash, caller_facts or None)
        job_facts = {CONTEXT_JOB_INPUTS: "\n".join(inputs), CONTEXT_JOB_TRANSFORM: transform, **caller_facts}
        if job:
            job_facts[CONTEXT_JOB] = job
        self._log_decisions(store, "check_job", policy_hash, job_facts)
        await self._durable()
        return answered

    async def judge_observed(
        self, questions: Sequence[tuple[str, Operation, str]], context: Mapping[str, str]
    ) -> list[Decision]:
        """Decisions on flows that already happened (observed-flow drift, `access.drift`): one
        per (dataset_id, op, region), made and logged (kind `observed_flow`, with `context`)
        as `decide` would. Every region must be known to the policy."""
        now = self._clock()
        stale = self._stale_reason()
        caller = current_principal()
        decisions = [self._answer(d, op, region, now, stale, caller) for d, op, region in questions]
        if decisions:
            self._log_decisions(decisions, "observed_flow", self._policy.content_hash, context)
            await self._durable()
        return decisions

    def set_intent_sink(self, sink: IntentSink | None) -> None:
        """Hand the intent counts of logged decisions to `sink` (see `DecisionLog.set_intent_sink`)."""
        self._log.set_intent_sink(sink)

    def locations_of(self, dataset_id: str) -> tuple[str, ...]:
        """Where the catalog says the dataset is stored, as the router sees it (empty when unknown)."""
        attrs = self._index.get(dataset_id)
        return attrs.locations if attrs is not None else ()

    def effective_labels(self, dataset_id: str) -> tuple[str, ...]:
        """The dataset's effective classification labels as the router sees them (empty when unknown)."""
        attrs = self._index.get(dataset_id)
        return tuple(attrs.classifications) if attrs is not None else ()

    def explain(self, dataset_id: str) -> Explanation:
        """The dataset's effective labels and origins (each with its lineage path) and where the
        active policy lets it be stored and processed now. NOT_FOUND for an unknown dataset,
        UNAVAILABLE (STALE_CATALOG) when the view is stale."""
        self._require_fresh()
        attrs = self._index.get(dataset_id)
        if attrs is None:
            raise not_found(unknown_dataset_verdict(self._index, dataset_id, self._policy).reasons[0].message)
        now = self._clock()
        policy = self._policy
        return Explanation(
            attrs,
            policy.allowed_regions(attrs, Operation.STORE, now),
            policy.allowed_regions(attrs, Operation.PROCESS, now),
            policy.version,
            self._revision,
            self._unapproved_on_paths(attrs),
        )

    def _unapproved_on_paths(
        self, attrs: EffectiveAttributes, policy: CompiledPolicy | None = None, index: EffectiveIndex | None = None
    ) -> tuple[UnapprovedDeclassification, ...]:
        """The edges on `attrs`' label paths whose claimed transform would have removed the label
        had the policy granted it to their job (the active policy and index unless given)."""
        policy = policy or self._policy
        index = index or self._index
        found: dict[tuple[str, str, str, str], list[str]] = {}
        for label, path in attrs.classifications.items():
            for upstream, downstream in itertools.pairwise(path):
                for source, job, transform in index.edges_into(downstream):
                    if (
                        source == upstream
                        and not policy.grants(transform, job)
                        and any(label_matches(removed, label) for removed in policy.declassifiers.get(transform, ()))
                    ):
                        found.setdefault((upstream, downstream, job, transform), []).append(label)
        return tuple(UnapprovedDeclassification(*key, tuple(labels)) for key, labels in sorted(found.items()))

    # ---- lineage writes (lineage/trust.py) ----------------------------------------------

    def current_transform(self, input: str, output: str, job: str) -> str | None:
        """The transform of the current edge `output DERIVED_FROM input` by `job` in this
        router's view; None when there is none."""
        return self._index.edge_transform(input, output, job)

    def lineage_constraints(self, dataset_ids: Iterable[str], *, downstream: bool = True) -> dict[str, frozenset[str]]:
        """The effective labels and origins (`UNDESCRIBED` included) of `dataset_ids` -- and of
        everything downstream of them unless `downstream` is False -- in this router's view."""
        index = self._index
        nodes = index.downstream(dataset_ids) if downstream else set(dataset_ids)
        return {node: index.constraints(node) for node in nodes}

    async def explain_at(self, dataset_id: str, as_of: datetime) -> Explanation:
        """`explain` as of a past instant: the effective attributes in the catalog as it was
        then (rebuilt from the upstream lineage, as replay does) under the policy in force
        then. `catalog_revision` is 0. NOT_FOUND when the dataset did not exist then;
        FAILED_PRECONDITION when no policy was recorded as in force then."""
        if await self._store.get_dataset(dataset_id, as_of=as_of) is None:
            raise not_found(f"dataset {dataset_id!r} was not in the catalog at {as_of.isoformat()}")
        policy = await self._policy_at(as_of)
        index = await self._index_at([dataset_id], as_of, policy)
        attrs = index.get(dataset_id)
        if attrs is None:
            raise not_found(f"dataset {dataset_id!r} was not in the catalog at {as_of.isoformat()}")
        return Explanation(
            attrs,
            policy.allowed_regions(attrs, Operation.STORE, as_of),
            policy.allowed_regions(attrs, Operation.PROCESS, as_of),
            policy.version,
            0,
            self._unapproved_on_paths(attrs, policy, index),
        )

    def summarize_datasets(self) -> DatasetSummary:
        """Counts of the datasets the index answers for (described ones and derived
        placeholders) by effective classification, origin and location (see `DatasetSummary`);
        remembered until the catalog or the policy changes."""
        self._require_fresh()
        key = (self._revision, id(self._policy))
        if self._summary is None or self._summary[0] != key:
            self._summary = (key, _summarize(self._index, self._revision))
        return self._summary[1]

    async def scan_violations(self, answer: Callable[[list[Violation]], Any] = _unchanged) -> Any:
        """Every (dataset, location) where the dataset is stored but the policy does not allow
        storing it, ordered by dataset id then region, each with a logged DENY decision; returns
        `answer(the violations)`, made before anything is logged (see `batch_decide`).
        UNAVAILABLE (STALE_CATALOG) when the view is stale: a stale scan proves nothing."""
        violations = await self._current_violations()
        now = self._clock()
        caller = current_principal()
        found = [
            Violation(
                v.dataset_id,
                v.region,
                self._decision(v.dataset_id, Operation.STORE, v.region, v.verdict, now, caller, v.inherited_only),
            )
            for v in violations.page(None, len(violations))
        ]
        answered = answer(found)
        self._log_decisions([v.decision for v in found], "scan_violations", self._policy.content_hash)
        await self._durable()
        return answered

    async def _current_violations(self) -> StoredViolations:
        """The stored violations, up to date with the view (UNAVAILABLE when it is stale)."""
        self._require_fresh()
        await self._violations.refresh()
        return self._violations

    async def list_violations(self, region: str, size: int, token: str) -> ViolationPage:
        """A page of what `scan_violations` finds, without deciding or logging anything: the
        violations are kept up to date as the catalog changes (`router.violations`). After a
        start or another policy a read judges for `_LIST_JUDGING_BUDGET` at most and answers
        with the verdicts made so far (`datasets_to_judge` > 0 until all are made).
        UNAVAILABLE (STALE_CATALOG) when the view is stale; INVALID_ARGUMENT for a bad token."""
        self._require_fresh()
        await self._violations.refresh(budget=_LIST_JUDGING_BUDGET)
        return violation_page(self._violations, region, size, token, self._policy.version, self._revision)

    async def residency_states(self, dataset_ids: Sequence[str]) -> ResidencyStates:
        """Each dataset's residency state in the router's view now (see `DatasetResidency`),
        in the order asked. UNAVAILABLE (STALE_CATALOG) when the view is stale."""
        self._require_fresh()
        violations = self._violations
        await violations.refresh_of(dataset_ids)
        return ResidencyStates(
            tuple(
                residency_of(self._index, d, lambda d: tuple(v.region for v in violations.of(d))) for d in dataset_ids
            ),
            self._policy.version,
            self._revision,
        )

    async def residency_states_at(self, dataset_ids: Sequence[str], as_of: datetime) -> ResidencyStates:
        """`residency_states` as of a past instant: the catalog and lineage as they were then
        (effective attributes rebuilt from the upstream lineage, as replay does) under the
        policy in force then, exemptions as they stood then; `catalog_revision` is 0.
        FAILED_PRECONDITION when no policy was in force then, or when the upstream lineage of
        the datasets is larger than the console may rebuild per request (`_STATES_AT_LIMITS`)."""
        policy = await self._policy_at(as_of)
        index = await self._index_at(dataset_ids, as_of, policy, limits=_STATES_AT_LIMITS)

        def violating(dataset_id: str) -> tuple[str, ...]:
            attrs = index.get(dataset_id)
            return () if attrs is None else tuple(region for region, _ in policy.violations(attrs, as_of))

        return ResidencyStates(tuple(residency_of(index, d, violating) for d in dataset_ids), policy.version, 0)

    async def _policy_at(self, as_of: datetime) -> CompiledPolicy:
        """The policy in force at `as_of`, compiled; FAILED_PRECONDITION when there was none
        or it no longer compiles."""
        activation = self._history.active_at(as_of)
        if activation is None:
            raise failed_precondition(f"no policy was in force at {as_of.isoformat()}", "NO_POLICY_THEN")
        policy, errors = await self._compile(activation.yaml, legacy=self._history.is_legacy(activation.version))
        if policy is None:
            raise failed_precondition(
                f"policy version {activation.version!r} no longer compiles: {errors[0].message}",
                "POLICY_VERSION_INVALID",
            )
        return policy

    # ---- audit -------------------------------------------------------------------------

    async def get_decision(self, decision_id: str) -> LoggedDecision:
        """A logged decision with the proof of the line that holds it (`LoggedDecision.proof`).

        NOT_FOUND when the log has no decision with that id, or when the id is another
        replica's (the error names it: each replica keeps its own log); FAILED_PRECONDITION
        (DECISION_LOG_CORRUPT) when the line holding it does not verify."""
        replica, separator, _ = decision_id.partition(":")
        if separator and replica != self._log.replica:
            raise DomicileError(
                f"decision {decision_id!r} was made by replica {replica!r}, and this is replica "
                f"{self._log.replica!r}: ask {replica!r} (each replica keeps its own decision log)",
                ErrorCode.NOT_FOUND,
                "DECISION_OF_ANOTHER_REPLICA",
                metadata={"replica": replica},
            )
        entry = await self._log.get(decision_id)
        if entry is None:
            raise not_found(f"decision {decision_id!r} not found in the decision log")
        return entry

    async def search_decisions(self, query: DecisionQuery, size: int, token: str = "") -> SearchPage:
        """Logged decisions matching `query`, newest first (see `router.decision_search`);
        decisions made so far are flushed to the log first, so they can be found."""
        await self._log.flush()
        return await asyncio.to_thread(decision_search.search, self._log.path, query, size, token)

    async def summarize_decisions(
        self, start: datetime, end: datetime, bucket: timedelta
    ) -> tuple[list[DecisionBucket], bool]:
        """ALLOW/DENY counts per `bucket` over [start, end) and whether they are complete."""
        await self._log.flush()
        return await asyncio.to_thread(decision_search.summarize, self._log.path, start, end, bucket)

    def decision_log_head(self) -> tuple[int, str, bool]:
        """(line count, hash of the last line, whether the writer is healthy) of the decision log."""
        seq, head = self._log.head()
        return seq, head, self._log.healthy

    async def replay(self, decision_id: str) -> ReplayResult:
        """Re-evaluate a logged decision with the policy version it names (from the policy
        history) and the catalog as it was at its catalog revision (as-of reads, effective
        attributes rebuilt from the upstream lineage at that time), at its decide time (so
        exemptions expire as they did). `matches` compares outcome, allowed regions and each
        reason's code, rule and message; lineage paths are not compared because two shortest
        paths may tie. A STALE_CATALOG original never matches: it was a fail-closed answer,
        and the replay shows what the policy said of the catalog it could not confirm.

        NOT_FOUND for an unknown id (or another replica's, as `get_decision`); FAILED_PRECONDITION
        when the policy version is missing from the history or the upstream lineage is too large
        to rebuild."""
        entry = await self.get_decision(decision_id)
        original = entry.decision
        text = await self._history.get(original.policy_version)
        if text is None:
            raise failed_precondition(
                f"policy version {original.policy_version!r} is not in the policy history", "POLICY_VERSION_UNKNOWN"
            )
        policy, errors = await self._compile(text, legacy=self._history.is_legacy(original.policy_version))
        if policy is None:
            raise failed_precondition(
                f"policy version {original.policy_version!r} no longer compiles: {errors[0].message}",
                "POLICY_VERSION_INVALID",
            )
        if not policy.region_known(original.region):
            raise failed_precondition(f"region {original.region!r} is unknown to policy {original.policy_version!r}")
        as_of = await self._revision_time(original.catalog_revision)
        context = entry.context or {}
        attrs: EffectiveAttributes | None
        if CONTEXT_JOB_INPUTS in context:
            inputs = [i for i in context[CONTEXT_JOB_INPUTS].split("\n") if i]
            index = await self._index_at([*inputs, original.dataset_id], as_of, policy)
            attrs = inherited_attributes(
                index,
                policy,
                inputs,
                original.dataset_id,
                context.get(CONTEXT_JOB_TRANSFORM, ""),
                context.get(CONTEXT_JOB, ""),
            )
        else:
            index = await self._index_at([original.dataset_id], as_of, policy)
            attrs = index.get(original.dataset_id)
        if attrs is None:
            verdict = unknown_dataset_verdict(index, original.dataset_id, policy)
        else:
            verdict = policy.decide(attrs, original.operation, original.region, now=original.decide_time)
        replayed = original._replace(
            outcome=verdict.outcome,
            allowed_regions=verdict.allowed_regions,
            reasons=verdict.reasons,
            inherited_only=attrs is not None and attrs.inherited_only,
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

    async def _index_at(
        self,
        dataset_ids: Iterable[str],
        as_of: datetime,
        policy: CompiledPolicy,
        *,
        limits: TraversalLimits = _REPLAY_LIMITS,
    ) -> EffectiveIndex:
        """An index over the upstream lineage of `dataset_ids` as it was at `as_of`.

        An id already reached upstream of another one needs no traversal of its own (its
        upstream is part of that one's), so ids listed downstream first cost the fewest
        traversals. FAILED_PRECONDITION when the lineage to rebuild exceeds `limits`."""
        datasets: dict[str, Dataset] = {}
        edges = {}
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
        return EffectiveIndex.build(
            datasets.values(), edges.values(), policy.removes, inherit=policy.inherits_undescribed_outputs
        )


# ---- helpers -------------------------------------------------------------------------------


# Decisions are built on every request: `tuple.__new__(Decision, (fields...))` (all eleven
# fields, in order) makes the named tuple in one C call, without running the generated Python
# `__new__` that binds keyword arguments and defaults first.
_new_tuple = tuple.__new__


def inherited_attributes(
    index: EffectiveIndex, policy: CompiledPolicy, inputs: Sequence[str], output: str, transform: str, job: str = ""
) -> EffectiveAttributes:
    """The attributes `output` would have after `job` reads `inputs` with `transform`: its
    current effective attributes (if it has any) plus every input's, minus the labels the
    transform removes when the policy grants it to `job` (`CompiledPolicy.removes`: never to
    no job). Paths from an input get `output` appended; the shortest path wins. The result is
    `inherited_only` when `output` would be a derived placeholder: not a described dataset,
    and the policy judges such outputs by inheritance (`index.inherit`)."""
    current = index.get(output)
    labels: dict[str, tuple[str, ...]] = dict(current.classifications) if current else {}
    origins: dict[str, tuple[str, ...]] = dict(current.origins) if current else {}
    for input_id in inputs:
        attrs = index.get(input_id)
        if attrs is None:
            # An input the catalog does not describe: the output would carry that doubt.
            _keep_shortest(origins, UNDESCRIBED, (input_id, output))
            continue
        for label, path in attrs.classifications.items():
            if policy.removes(transform, job, label):
                continue
            _keep_shortest(labels, label, (*path, output))
        for origin, path in attrs.origins.items():
            _keep_shortest(origins, origin, (*path, output))
    return EffectiveAttributes(
        dataset_id=output,
        classifications=MappingProxyType(dict(sorted(labels.items()))),
        origins=MappingProxyType(dict(sorted(origins.items()))),
        locations=current.locations if current else (),
        inherited_only=(current is None or current.inherited_only) and index.inherit,
    )


def unknown_dataset_verdict(index: EffectiveIndex, dataset_id: str, policy: CompiledPolicy) -> Verdict:
    """DENY / UNKNOWN_DATASET for a dataset `index.get` does not answer: unknown, deleted, or a
    placeholder judged undescribed (fail closed). A legacy policy's decisions keep the message
    they had, so they replay unchanged."""
    kind = index.kind(dataset_id)
    if kind is NodeKind.UNDESCRIBED_PLACEHOLDER and index.inherit:
        message = (
            f"dataset {dataset_id!r} is known only from lineage and no described data flows into it "
            "(a lineage root nobody described): register it to decide"
        )
    elif kind is NodeKind.UNDESCRIBED_PLACEHOLDER and not policy.loaded.legacy:
        message = (
            f"dataset {dataset_id!r} is known only from lineage, and the policy judges such datasets "
            "undescribed (defaults.undescribed_outputs: deny): register it to decide"
        )
    else:
        message = f"dataset {dataset_id!r} is not in the catalog"
    return Verdict(Outcome.DENY, (), (Reason(ReasonCode.UNKNOWN_DATASET, message),))


def _follow_lineage_rules(index: EffectiveIndex, current: CompiledPolicy, candidate: CompiledPolicy) -> None:
    """Switch `index` from `current`'s lineage rules (declassifiers with their jobs, the
    `undescribed_outputs` switch) to `candidate`'s; recomputes only what they change."""
    if candidate.lineage_rules == current.lineage_rules:
        return
    index.set_inheritance(candidate.inherits_undescribed_outputs)
    index.set_declassifier(candidate.removes)


def _summarize(index: EffectiveIndex, revision: int) -> DatasetSummary:
    labels: dict[str, int] = {}
    origins: dict[str, int] = {}
    regions: dict[str, list[int]] = {}
    count = 0
    for dataset_id in index.datasets():
        values = index.values(dataset_id)
        if values is None:
            continue
        count += 1
        own_labels, own_origins, locations = values
        classified = False
        for label in own_labels:
            labels[label] = labels.get(label, 0) + 1
            classified = True
        for origin in own_origins:
            if origin != UNDESCRIBED:
                origins[origin] = origins.get(origin, 0) + 1
        for region in locations:
            counts = regions.setdefault(region, [0, 0])
            counts[0] += 1
            counts[1] += classified
    return DatasetSummary(count, labels, origins, {r: (a, b) for r, (a, b) in regions.items()}, revision)


def _folded(index: EffectiveIndex, changes: Sequence[Change]) -> tuple[EffectiveIndex, set[str]]:
    """A copy of `index` with `changes` applied (run on another thread: see `_catch_up`), and
    the ids whose attributes may have changed (`EffectiveIndex.apply`)."""
    folded = index.copy()
    return folded, folded.apply(changes)


def _keep_shortest(values: dict[str, tuple[str, ...]], value: str, path: tuple[str, ...]) -> None:
    existing = values.get(value)
    if existing is None or len(path) < len(existing):
        values[value] = path


def _compile(text: str, *, legacy: bool = False) -> tuple[CompiledPolicy | None, tuple[PolicyError, ...]]:
    """`text` compiled, or its errors; `legacy` for a version the policy history recorded
    before declassifiers named their jobs (see `router.policy.load_policy`)."""
    with span("policy.compile", {"domicile.policy.bytes": len(text)}) as current:
        try:
            policy = compile_policy(load_policy(text, legacy=legacy))
        except PolicyInvalid as exc:
            current.set_attribute("domicile.policy.errors", len(exc.errors))
            return None, tuple(exc.errors)
        current.set_attribute("domicile.policy.version", policy.version)
        return policy, ()


def _same_decision(a: Decision, b: Decision) -> bool:
    def reasons(d: Decision) -> list[tuple[str, str, str]]:
        return sorted((r.code.value, r.rule_id, r.message) for r in d.reasons)

    return (
        a.outcome is b.outcome
        and a.allowed_regions == b.allowed_regions
        and reasons(a) == reasons(b)
        and a.inherited_only == b.inherited_only
    )


async def _initial_policy(policy_file: Path | None, history: PolicyHistory) -> CompiledPolicy:
    """The policy to start with (see the module docstring), recorded in the history."""
    if policy_file is not None:
        source = str(policy_file)
        try:
            text = await asyncio.to_thread(policy_file.read_text, "utf-8")
        except OSError as exc:
            raise failed_precondition(f"policy file {source}: {exc.strerror}", "POLICY_INVALID") from None
    else:
        latest = await history.latest()
        source, text = (
            ("the policy history", latest.yaml) if latest is not None else ("the builtin default", DEFAULT_POLICY_YAML)
        )
    # A text the history recorded before declassifiers named their jobs keeps that meaning
    # (a restart after an upgrade); any other text is a policy set now.
    policy, errors = _compile(text, legacy=history.records_legacy_text(text))
    if policy is None:
        details = "; ".join(e.format(source) for e in errors[:5])
        raise failed_precondition(f"invalid policy in {source}: {details}", "POLICY_INVALID")
    recorded = await history.get(policy.version)
    if recorded is not None and recorded != text:
        raise failed_precondition(
            f"{source}: policy version {policy.version!r} is already recorded with a different text; "
            "give the changed policy a new metadata.version",
            "POLICY_VERSION_CONFLICT",
        )
    if policy_file is not None:
        latest = await history.latest()
        if latest is not None and latest.version != policy.version:
            # Typically a policy set through SetPolicy that the configured file now replaces.
            log.warning(
                "policy file %s (version %s) replaces the last active policy %s (from the policy history); "
                "start without --policy to keep the history's policy",
                source,
                policy.version,
                latest.version,
            )
    # Appends an activation unless this version is already the latest one, so the history
    # also says which policy was in force when (a file may bring back an older version).
    await history.record(policy.version, text)
    return policy
