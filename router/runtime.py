"""The residency router at run time: decisions from the residency engine, each logged.

The router's jobs, each in its own module: following the catalog's change feed
(`router.catalog_follower`), policy administration (`router.policy_admin`), decisions (here)
and replay (`router.replay`). `Router.start` puts them together:

1. The policy (`policy_admin.initial_policy`): the configured file, else the policy history's
   latest, else a builtin default; recorded in the history.
2. The engine's index from the store's residency snapshot at revision `r0`, then the change
   feed replayed from `r0` (see `router.catalog_follower`), which then keeps polling it.

Freshness: a decision made while the view is stale (see `router.catalog_follower`) is DENY
with reason STALE_CATALOG: the router fails closed rather than answer from a view it cannot
vouch for.

Every decision (Decide, BatchDecide, Route, CheckJob, ScanViolations, observed flows) gets a
decision id (`<replica id>:<random prefix><counter>`), the policy version, the catalog revision
of the view, the decide time and the caller (passed in by the service that asks), and is
appended to the decision log (`router.decision_log`). With `durable_decision_log` (the default)
the answer waits until its log line is on disk; an answer that could not be sent (too large)
is refused before anything is logged.

Catalog rollback: the decision log remembers the highest catalog revision it recorded. A store
found below it at start lost acknowledged writes (restored alone from an older backup, a
damaged write-ahead log): the router refuses to start, unless `allow_catalog_rollback` is set,
which is recorded in the log (and the security event log) and starts anew from the store's
revision.

Concurrency: requests are answered on one event loop; the engine keeps the policy and the
index, and a decision always sees one policy with the values computed under it. Large batches
of catalog changes are applied by the engine on another thread while decisions go on (see
`router.catalog_follower`), and large BatchDecide requests are decided on a small pool of
threads (the engine lets go of the interpreter lock), so that batches in flight together use
every core; decision ids come from the engine's lane, which hands each call its own range, and
a batch's log entries name the policy that decided it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from domicile.callslots import slots_given_back
from domicile.catalog.model import to_micros
from domicile.catalog.regions import RegionRegistry
from domicile.catalog.store import GraphStore
from domicile.errors import DomicileError, ErrorCode, failed_precondition, invalid_field, not_found
from domicile.router import decision_search
from domicile.router.catalog_follower import CatalogFollower
from domicile.router.decision_log import DecisionLog, IntentSink, LoggedDecision
from domicile.router.decision_log.assembly import open_configured_log
from domicile.router.decision_log.format import CATALOG_ROLLBACK_NOTE
from domicile.router.decision_search import DecisionBucket, DecisionQuery, SearchPage
from domicile.router.engine import (
    CompiledPolicy,
    DecisionBatch,
    Engine,
    Explanation,
    LogLane,
    LogRefused,
    UnapprovedDeclassification,
    UnknownRegion,
    lane_counts,
)
from domicile.router.policy_admin import (
    DEFAULT_POLICY_YAML,
    ActivePolicy,
    PolicyAdministration,
    PolicyCompiler,
    PolicyImpact,
    PolicyUpdate,
    initial_policy,
)
from domicile.router.policy_history import PolicyHistory, PolicyVersion
from domicile.router.replay import CONTEXT_JOB, CONTEXT_JOB_INPUTS, CONTEXT_JOB_TRANSFORM, Replayer, ReplayResult
from domicile.router.types import (
    Decision,
    DecisionFields,
    Operation,
    Outcome,
    UnaryDecisionFields,
    Verdict,
)
from domicile.router.violations import ResidencyStates, StoredViolations, ViolationPage, residency_of, violation_page
from domicile.security.events import CATALOG_ROLLBACK_ACCEPTED
from domicile.telemetry.decisions import count_decisions

if TYPE_CHECKING:
    from domicile.app import App

__all__ = [
    "DEFAULT_POLICY_YAML",
    "ActivePolicy",
    "Clock",
    "Explanation",
    "JobCheck",
    "PolicyImpact",
    "PolicyUpdate",
    "ReplayResult",
    "RouteResult",
    "Router",
    "RouterStatus",
    "UnapprovedDeclassification",
    "Violation",
    "caller_context",
    "logged_caller_context",
    "utc_clock",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
utc_clock: Clock = functools.partial(datetime.now, UTC)

# A value a helper hands back as it got it (`Router._made`, `Router._until_queued`).
_T = TypeVar("_T")


class Decide(Protocol):
    """`Router.decide`: may `op` happen on `dataset_id` in `region`, asked by `caller`? Always a
    logged decision (with the caller's `context`, see `caller_context`): an unknown dataset is
    DENY / UNKNOWN_DATASET, a stale view DENY / STALE_CATALOG. An unknown region raises
    INVALID_ARGUMENT (field `region`).

    The decision is queued for the log, not yet on disk: an answer made of it waits for
    `Router.logged()` (with the durable log, until the decision is written and fsynced). It is
    counted in the metrics (`domicile.telemetry.decisions`) when the log takes it.

    It is the engine's unary decider's call (`UnaryDecider.decide`, crates/engine-py): one call
    decides and queues the decision on the engine's lane, which the log writer drains
    (rendering the entries then, off the caller's thread), and answers with the engine's
    `UnaryDecision`, whose fields are read when asked. What it cannot decide alone it hands to
    the router (`Router._undecided`)."""

    def __call__(
        self,
        dataset_id: str,
        op: Operation,
        region: str,
        context: Mapping[str, str] | None = None,
        *,
        caller: str = "",
    ) -> UnaryDecisionFields: ...


# How long a ListViolations may judge before it answers (with what is judged so far): the
# first read after a start would otherwise wait for the whole catalog.
_LIST_JUDGING_BUDGET = 0.2
# A serialized BatchDecideRequest at least this large (some 1,000 questions) is decided on one
# of the router's batch threads: below it, the hand-over would cost more than the loop saves.
_OFF_LOOP_REQUEST_BYTES = 32 * 1024


# ---- results -----------------------------------------------------------------------------


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
    decision: DecisionFields


@dataclass(frozen=True)
class JobCheck:
    allowed: bool
    decisions: tuple[DecisionFields, ...]


@dataclass(frozen=True)
class Violation:
    dataset_id: str
    region: str
    decision: Decision


@dataclass(frozen=True)
class DatasetSummary:
    """Described datasets counted by effective label, origin and location: `regions` maps a
    region to (datasets stored there, those of them with any effective classification)."""

    datasets: int
    classifications: dict[str, int]
    origins: dict[str, int]
    regions: dict[str, tuple[int, int]]
    catalog_revision: int


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
        engine: Engine,
        follower: CatalogFollower,
        violations: StoredViolations,
        decision_log: DecisionLog,
        history: PolicyHistory,
        durable_log: bool,
        clock: Clock = utc_clock,
    ) -> None:
        # Use `start`; the constructor only wires already-built parts together.
        self._engine = engine
        self._follower = follower
        self._log = decision_log
        self._history = history
        self._violations = violations
        compiler = PolicyCompiler()
        self._policies = PolicyAdministration(
            engine,
            history,
            compiler,
            index_lock=follower.lock,
            require_fresh=self._require_fresh,
            clock=clock,
            activated=self._violations.invalidate_all,
        )
        self._replayer = Replayer(store, history, compiler)
        self._durable_log = durable_log
        self._clock = clock
        # Decision ids: the replica id, then a random per-process prefix and a counter (ten hex
        # digits) -- unique across restarts without the cost of a uuid per decision, and saying
        # whose log has them. The counter is the lane's (`LogLane.take_ids`).
        self._id_prefix = f"{decision_log.replica}:{os.urandom(6).hex()}"
        # Decide's decisions go to the log through the engine's lane (see `decide`), made by the
        # engine's unary decider, which the follower keeps told of the view.
        options = decision_log.options
        self._lane = lane = LogLane(self._id_prefix, options.line_decisions, options.max_queue, decision_log.wake)
        decision_log.attach_lane(lane, lambda: count_decisions(lane_counts(lane)))
        self._decider = engine.unary_decider(self._lane, self._undecided, _micros_clock(clock))
        follower.publish_view(self._decider.set_view)
        self.decide: Decide = self._decider.decide
        # Large batches are decided here, off the event loop: the engine lets go of the
        # interpreter lock, so batches in flight together use every core while the loop serves.
        self._batch_threads = concurrent.futures.ThreadPoolExecutor(
            min(4, os.cpu_count() or 1), thread_name_prefix="batch-decide"
        )
        self._closed = False
        self._summary: tuple[tuple[int, int], DatasetSummary] | None = None

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
            policy = await initial_policy(settings.policy.file, history)
            started = time.perf_counter()
            snapshot = await app.store.residency_snapshot()
            engine = Engine(policy)
            engine.load(snapshot)
            # Judged on the first read after the start (`StoredViolations.refresh`).
            violations = StoredViolations(engine, clock)
            follower = CatalogFollower(
                app.store,
                engine,
                snapshot.revision,
                staleness_bound=settings.router.staleness_bound_seconds,
                poll_interval=settings.router.poll_interval_seconds,
                changed=violations.invalidate,
            )
            del snapshot
            decision_log = await open_configured_log(app)
            router = cls(
                store=app.store,
                engine=engine,
                follower=follower,
                violations=violations,
                decision_log=decision_log,
                history=history,
                durable_log=settings.router.durable_decision_log,
                clock=clock,
            )
            await follower.catch_up()
            await router._check_catalog_revision(settings.allow_catalog_rollback, app)
        except BaseException:
            # Release the files for the next attempt.
            if decision_log is not None:
                await decision_log.close()
            history.close()
            raise
        log.info(
            "router ready: policy %s, %d datasets at catalog revision %d (%.2fs)",
            policy.version,
            engine.summary().datasets,
            follower.revision,
            time.perf_counter() - started,
        )
        follower.start()
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
        await self._follower.close()
        await self._log.close()
        self._history.close()
        self._batch_threads.shutdown(wait=False)

    async def _check_catalog_revision(self, allow_rollback: bool, app: App) -> None:
        """Refuse a store whose revision is below the highest the decision log recorded (see the
        module docstring), unless `allow_rollback`."""
        logged, current = self._log.max_catalog_revision, self._follower.revision
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

    # ---- the catalog view --------------------------------------------------------------

    @property
    def catalog_revision(self) -> int:
        """The catalog revision the index reflects."""
        return self._follower.revision

    async def note_local_write(self, revision: int) -> None:
        """See `CatalogFollower.note_local_write`."""
        await self._follower.note_local_write(revision)

    def status(self) -> RouterStatus:
        """How fresh the router's view is and how far behind its decision log is, now (for
        metrics and health)."""
        return RouterStatus(
            revision=self._follower.revision,
            view_age_seconds=self._follower.view_age(),
            stale_reason=self._follower.stale_reason(),
            policy_version=self._engine.policy.version,
            decision_log_queued=self._log.queued(),
            decision_log_failure=self._log.failure(),
        )

    def _require_fresh(self) -> None:
        """For answers that are not decisions (Explain, ScanViolations): UNAVAILABLE when stale."""
        stale = self._follower.stale_reason()
        if stale:
            raise DomicileError(
                f"router view is stale: {stale}", ErrorCode.UNAVAILABLE, "STALE_CATALOG", retry_after=1.0
            )

    # ---- policy (router.policy_admin) --------------------------------------------------

    @property
    def policy(self) -> CompiledPolicy:
        """The active compiled policy."""
        return self._engine.policy

    def regions(self) -> RegionRegistry:
        """Builtin regions plus the active policy's private regions."""
        return self._engine.policy.registry

    def get_policy(self) -> ActivePolicy:
        return self._policies.get_policy()

    async def get_policy_version(self, version: str) -> ActivePolicy:
        """A policy from the history by its version; NOT_FOUND when never recorded."""
        return await self._policies.get_policy_version(version)

    def policy_activations(self) -> tuple[PolicyVersion, ...]:
        """Every activation in the policy history, newest first."""
        return self._policies.policy_activations()

    async def set_policy(
        self, policy_yaml: str, *, dry_run: bool = False, activation: Mapping[str, str] | None = None
    ) -> PolicyUpdate:
        """See `PolicyAdministration.set_policy`."""
        return await self._policies.set_policy(policy_yaml, dry_run=dry_run, activation=activation)

    async def policy_impact(self, policy_yaml: str) -> PolicyImpact:
        """See `PolicyAdministration.policy_impact`."""
        return await self._policies.policy_impact(policy_yaml)

    # ---- decisions ---------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._id_prefix}{self._lane.take_ids(1):010x}"

    def _decision(
        self, dataset_id: str, op: Operation, region: str, verdict: Verdict, now: datetime, caller: str
    ) -> Decision:
        return Decision(
            self._new_id(),
            verdict.outcome,
            dataset_id,
            op,
            region,
            verdict.allowed_regions,
            verdict.reasons,
            self._engine.policy.version,
            self._follower.revision,
            now,
            caller,
            verdict.inherited_only,
        )

    def _log_decisions(
        self,
        decisions: Sequence[Decision],
        kind: str,
        policy_hash: str,
        context: Mapping[str, str] | None = None,
        *,
        hold: bool = False,
        render: concurrent.futures.Executor | None = None,
    ) -> None:
        """Queue decisions for the log (no I/O here). `policy_hash` must be the content hash of
        the policy that made them; `hold` and `render` as `DecisionLog.append_many` says. Raises
        UNAVAILABLE when the log has failed: a decision that cannot be logged is not answered."""
        self._log.append_many(decisions, context, kind=kind, policy_hash=policy_hash, hold=hold, render=render)

    async def logged(self) -> None:
        """Return when the decisions made so far may be answered: at once with the non-durable
        log; with `durable_decision_log`, once they are on disk (a wait the load shedder's
        concurrency limits do not count: the log bounds its queue)."""
        if self._durable_log:
            with slots_given_back():
                await self._log.flush()

    def _undecided(
        self, dataset_id: str, op: Operation, region: str, context: Mapping[str, str] | None, caller: str
    ) -> UnaryDecisionFields:
        """`decide` where the engine's call alone did not decide (see `Decide`): a context to
        log, the view's freshness run out, an unknown region, or the lane refusing."""
        facts = list(logged_caller_context(context).items()) if context else None
        return self._made(lambda stale: self._decider.decide_as(dataset_id, op, region, caller, facts, stale), None)

    def _made(self, make: Callable[[str], _T | None], first: _T | None) -> _T:
        """What the engine's unary decider made: `first` (its first try, None when it made
        nothing), else `make(stale)` asked until it makes something. It makes nothing when the
        view's freshness ran out (`stale` is then the follower's word on it: the DENY /
        STALE_CATALOG message, or '' when the view is fresh after all) or when the lane refused
        (the log says why -- UNAVAILABLE -- or waits for room). An unknown region is
        INVALID_ARGUMENT, its field named."""
        made = first
        while made is None:
            try:
                made = self._until_queued(lambda: make(self._stale_message() or ""))
            except UnknownRegion as exc:
                raise invalid_field(exc.args[0], exc.args[1]) from None
        return made

    def _until_queued(self, attempt: Callable[[], _T]) -> _T:
        """`attempt()` until the engine's lane takes what it queues: while the lane refuses
        (`LogRefused`, nothing queued), the log says why -- UNAVAILABLE -- or waits for room."""
        while True:
            try:
                return attempt()
            except LogRefused as refused:
                self._log.lane_refused(refused.args[0])

    def _stale_message(self) -> str | None:
        """The DENY / STALE_CATALOG message while the view's freshness has run out, else None."""
        stale = self._follower.stale_reason()
        return f"fail closed: {stale}" if stale else None

    async def batch_decide(
        self,
        requests: Sequence[tuple[str, Operation, str]],
        answer: Callable[[Sequence[Decision]], Any] = _unchanged,
        *,
        caller: str = "",
    ) -> Any:
        """`decide` for each (dataset_id, op, region), in order, in one engine call, with one
        decide time and one freshness check for the whole batch; returns `answer(decisions)`
        (by default the decisions: a sequence that makes each `Decision` when it is read).
        Every region is checked before anything is decided: an unknown one raises
        INVALID_ARGUMENT on `requests[i].region`.

        `answer` runs before anything is logged: it makes what the caller will send and may
        refuse it (an answer too large to send) by raising, and then no decision of the batch
        is logged."""
        decisions = self._engine.batch_decide(
            requests, self._clock(), self._stale_message(), self._follower.revision, self._lane, caller
        )
        answered = answer(decisions)
        self._log_decisions(decisions, "batch_decide", decisions.policy_hash)
        await self.logged()
        return answered

    async def batch_decide_wire(
        self,
        request: bytes,
        max_batch: int,
        *,
        caller: str = "",
        admit: Callable[[int, bytes], None] | None = None,
    ) -> tuple[bytes, DecisionBatch]:
        """BatchDecide on a serialized BatchDecideRequest of at most `max_batch` questions, all
        in the engine (parsing, checks, decisions, the answer's encoding): (the serialized
        BatchDecideResponse, its decisions). One decide time and one freshness check
        for the whole batch; INVALID_ARGUMENT for a malformed request or bad fields (each
        named), before anything is decided. `admit(number of decisions, answer)` runs before
        anything is logged and may refuse the answer by raising (as `batch_decide`'s `answer`)."""
        call = functools.partial(
            self._engine.batch_decide_wire,
            request,
            self._clock(),
            self._stale_message(),
            self._follower.revision,
            self._lane,
            max_batch,
            caller,
        )
        render: concurrent.futures.Executor | None = None
        if len(request) >= _OFF_LOOP_REQUEST_BYTES and not self._closed:  # (closed: the log refuses it)
            answer, decisions = await asyncio.get_running_loop().run_in_executor(self._batch_threads, call)
            # Its log entries are rendered on these threads too, beside the next call: the log's
            # writer, one thread for every caller, is left the chain's hashing and the writes.
            render = self._batch_threads
        else:
            answer, decisions = call()
        if admit is not None:
            admit(len(decisions), answer)
        self._log_decisions(decisions, "batch_decide", decisions.policy_hash, render=render)
        await self.logged()
        return answer, decisions

    async def route(
        self, dataset_id: str, op: Operation, candidates: Sequence[str], *, caller: str = ""
    ) -> RouteResult:
        """The first candidate where `op` is allowed, with its (logged) decision; when none is,
        region '' and the decision for the first candidate. Only the returned decision is
        logged. Every candidate must be a known region (`candidates[i]`). One engine call
        decides and queues the decision, as `decide`."""
        if not candidates:
            raise invalid_field("candidates", "must not be empty")
        listed = list(candidates)
        chosen, _, decision = self._made(lambda stale: self._decider.route(dataset_id, op, listed, caller, stale), None)
        await self.logged()
        return RouteResult("" if chosen < 0 else candidates[chosen], decision)

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
        *,
        caller: str = "",
    ) -> Any:
        """Pre-flight check of a pipeline job: a PROCESS decision for each input in
        `run_region`, then a STORE decision for each output in `output_region` on the
        attributes it would have after the job -- the union of the inputs' effective
        attributes minus what `transform` removes when the policy grants it to `job` (never
        without a `job`), plus the output's current effective attributes when it already
        exists. `allowed` is True when every decision is ALLOW. An unknown input is DENY /
        UNKNOWN_DATASET. Every decision is logged with the caller's `context`. Returns
        `answer(the JobCheck)`, made before anything is logged (see `batch_decide`)."""
        decisions = self._made(
            lambda stale: self._decider.check_job(
                list(inputs), list(outputs), run_region, output_region, transform, job, caller, stale
            ),
            None,
        )
        answered = answer(JobCheck(all(d.outcome is Outcome.ALLOW for d in decisions), tuple(decisions)))
        caller_facts = logged_caller_context(context)
        job_facts = {CONTEXT_JOB_INPUTS: "\n".join(inputs), CONTEXT_JOB_TRANSFORM: transform, **caller_facts}
        if job:
            job_facts[CONTEXT_JOB] = job
        process, store = decisions[: len(inputs)], decisions[len(inputs) :]
        for logged, facts in ((process, caller_facts), (store, job_facts)):
            if logged:
                self._until_queued(functools.partial(self._decider.log, logged, "check_job", list(facts.items())))
        await self.logged()
        return answered

    async def judge_observed(
        self, questions: Sequence[tuple[str, Operation, str]], context: Mapping[str, str], *, caller: str = ""
    ) -> list[Decision]:
        """Decisions on flows that already happened (observed-flow drift, `access.drift`): one
        per (dataset_id, op, region), made in one engine call and logged (kind `observed_flow`,
        with `context`) as `batch_decide` would. Every region must be known to the policy.
        Returns the DENYs among them (the findings), in order.

        Returns once the decisions may be reported: when one is a DENY (a finding the caller
        reports), once all of them are logged as `logged` says; ALLOWs alone, which nobody is
        answered from, at once -- the durable log writes them with its next write somebody
        waits for, or within its flush interval (`DecisionLog.append_many`'s `hold`)."""
        if not questions:
            return []
        # The engine renders the ALLOWs into the log: no Python object is made for them.
        decisions = self._engine.batch_decide(
            questions, self._clock(), self._stale_message(), self._follower.revision, self._lane, caller
        )
        by_outcome, _ = decisions.counts()
        denied = any(outcome is Outcome.DENY and n for (_, outcome), n in by_outcome.items())
        self._log_decisions(decisions, "observed_flow", decisions.policy_hash, context, hold=not denied)
        if not denied:
            return []
        await self.logged()
        return [decision for decision in decisions if decision.outcome is Outcome.DENY]

    def set_intent_sink(self, sink: IntentSink | None) -> None:
        """Count the intents of logged decisions into `sink` (see `DecisionLog.set_intent_sink`)."""
        self._log.set_intent_sink(sink)

    def locations_of(self, dataset_id: str) -> tuple[str, ...]:
        """Where the catalog says the dataset is stored, as the router sees it (empty when unknown)."""
        return self._engine.locations(dataset_id)

    def effective_labels(self, dataset_id: str) -> tuple[str, ...]:
        """The dataset's effective classification labels as the router sees them (empty when unknown)."""
        return self._engine.labels(dataset_id)

    def explain(self, dataset_id: str) -> Explanation:
        """The dataset's effective labels and origins (each with its lineage path) and where the
        active policy lets it be stored and processed now. NOT_FOUND for an unknown dataset,
        UNAVAILABLE (STALE_CATALOG) when the view is stale."""
        self._require_fresh()
        return self._engine.explanation(dataset_id, self._clock(), self._follower.revision)

    # ---- lineage writes (lineage/trust.py) ----------------------------------------------

    def current_transform(self, input: str, output: str, job: str) -> str | None:
        """The transform of the current edge `output DERIVED_FROM input` by `job` in this
        router's view; None when there is none."""
        return self._engine.edge_transform(input, output, job)

    def lineage_constraints(self, dataset_ids: Iterable[str], *, downstream: bool = True) -> dict[str, frozenset[str]]:
        """The effective labels and origins (`UNDESCRIBED` included) of `dataset_ids` -- and of
        everything downstream of them unless `downstream` is False -- in this router's view."""
        return self._engine.constraints(dataset_ids, downstream=downstream)

    def summarize_datasets(self) -> DatasetSummary:
        """Counts of the datasets decisions judge (described ones and derived placeholders) by
        effective classification, origin and location (see `DatasetSummary`); remembered until
        the catalog or the policy changes."""
        self._require_fresh()
        key = (self._follower.revision, id(self._engine.policy))
        if self._summary is None or self._summary[0] != key:
            summary = self._engine.summary()
            self._summary = (
                key,
                DatasetSummary(
                    summary.datasets, summary.classifications, summary.origins, summary.regions, self._follower.revision
                ),
            )
        return self._summary[1]

    async def scan_violations(self, answer: Callable[[list[Violation]], Any] = _unchanged, *, caller: str = "") -> Any:
        """Every (dataset, location) where the dataset is stored but the policy does not allow
        storing it, ordered by dataset id then region, each with a logged DENY decision; returns
        `answer(the violations)`, made before anything is logged (see `batch_decide`).
        UNAVAILABLE (STALE_CATALOG) when the view is stale: a stale scan proves nothing."""
        violations = await self._current_violations()
        now = self._clock()
        found = [
            Violation(
                v.dataset_id, v.region, self._decision(v.dataset_id, Operation.STORE, v.region, v.verdict, now, caller)
            )
            for v in violations.page(None, len(violations))
        ]
        answered = answer(found)
        self._log_decisions([v.decision for v in found], "scan_violations", self._engine.policy.content_hash)
        await self.logged()
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
        return violation_page(
            self._violations, region, size, token, self._engine.policy.version, self._follower.revision
        )

    async def residency_states(self, dataset_ids: Sequence[str]) -> ResidencyStates:
        """Each dataset's residency state in the router's view now (see `DatasetResidency`),
        in the order asked. UNAVAILABLE (STALE_CATALOG) when the view is stale."""
        self._require_fresh()
        violations = self._violations
        await violations.refresh_of(dataset_ids)
        return ResidencyStates(
            residency_of(self._engine, dataset_ids, lambda d: tuple(v.region for v in violations.of(d))),
            self._engine.policy.version,
            self._follower.revision,
        )

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

    # ---- replay (router.replay) --------------------------------------------------------

    async def replay(self, decision_id: str) -> ReplayResult:
        """The logged decision re-evaluated (see `Replayer.replay`). NOT_FOUND for an unknown id
        (or another replica's, as `get_decision`)."""
        return await self._replayer.replay(await self.get_decision(decision_id))

    async def explain_at(self, dataset_id: str, as_of: datetime) -> Explanation:
        """See `Replayer.explain_at`."""
        return await self._replayer.explain_at(dataset_id, as_of)

    async def residency_states_at(self, dataset_ids: Sequence[str], as_of: datetime) -> ResidencyStates:
        """See `Replayer.residency_states_at`."""
        return await self._replayer.residency_states_at(dataset_ids, as_of)


# ---- helpers -------------------------------------------------------------------------------


def _micros_clock(clock: Clock) -> Callable[[], int] | None:
    """`clock` as microseconds since the Unix epoch; None for the system clock, which the
    engine reads itself."""
    if clock is utc_clock:
        return None
    return lambda: to_micros(clock())
