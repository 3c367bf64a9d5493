"""`AccessRecorder`: access records buffered in memory and written in periodic batches.

Nothing is written to the store on the paths that record accesses: a run or a catalog write
only updates in-memory aggregates (per actor, dataset, operation, region and UTC day) and
pending run records; the decision log's writer counts the intents of the decisions it wrote
into the engine's tally (`intents`, aggregates of the same shape). A background task flushes
them every `access.flush_interval_seconds` as one `AccessStore.write_batch`, after checking the
batch for anomalies (`access.anomalies`); the intents go with a flush every
`access.intent_flush_seconds`, or as soon as they hold `access.intent_max_keys` aggregates. Observed violations are the exception: `record_violations`
writes them, in a batch of their own, before it returns, so an ingest answer never reports a
violation the store could lose (the accesses pending beside them wait for the periodic flush
and its anomaly check: a run with a violation costs one small write, not a flush).

A run's decisions are in the decision log before its record is in the store: a flush that
takes run records first waits for the decisions logged so far (`decisions_logged`; the durable
log may hold a run's ALLOWs for a moment, see `Router.judge_observed`), so a run the store
remembers as judged -- and will not judge again -- never lacks its decisions after a crash.

Failure: a batch whose write fails is kept as it was (same id, same anomalies) and written
again before anything newer; the store applies a batch id at most once, so a retry after an
unknown outcome cannot count twice. A crash loses what was not flushed yet (at most one
interval of access records, one intent interval of intents -- the decisions they count are in
the decision log; never a violation already answered). Reads of access records flush
everything first, so this process reads its own records.

Once per run: `run_accesses` says what was recorded for a run before. The accesses of the runs
this process saw lately (`KNOWN_RUNS`, the most recently used) are kept in memory, so only an
event of a run it has not seen reads the store (a run's START and COMPLETE read it once);
they are forgotten at each hourly prune, so a run whose events also reach another server
sharing the store is read again at least that often. That read can ride on a store call the
caller makes anyway (`stored_run`: the catalog's lineage write reads the run's access record
in its own transaction); it stands only if this recorder wrote no batch since the caller asked
for it -- a read that raced a flush of the run's records is made again.

Thread-safety: the tally (`intents`) takes additions from any thread (the decision log's
writer); everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from domicile.access import anomalies as anomaly_rules
from domicile.access.model import (
    UNAUTHENTICATED,
    AccessBatch,
    AccessCount,
    AccessKey,
    AccessOperation,
    Anomaly,
    CountRow,
    ObservedViolation,
    RunAccess,
    RunRecord,
    day_of,
)
from domicile.access.store import AccessStore
from domicile.catalog.model import utcnow
from domicile.config import AccessSettings
from domicile.router import _engine

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# How often old run records are pruned.
PRUNE_INTERVAL = timedelta(hours=1)
# Runs whose recorded accesses are kept in memory (about 1 kB each with 4 accesses).
KNOWN_RUNS = 10_000


@dataclass(frozen=True)
class StoredRun:
    """A read of what the store holds for run (`job`, `run_id`) -- `accesses`, None until made
    -- that the caller makes along with a store call of its own (`GraphStore.record_lineage`'s
    `access_run`); `writes` is how many batches the recorder had written when it was asked for."""

    job: str
    run_id: str
    writes: int
    accesses: frozenset[RunAccess] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.job, self.run_id

    def read(self, accesses: frozenset[RunAccess] | None) -> StoredRun:
        """This read, answered with `accesses`."""
        return StoredRun(self.job, self.run_id, self.writes, accesses)


class AccessRecorder:
    """Buffers access records for `store` and flushes them (see the module docstring)."""

    def __init__(
        self,
        store: AccessStore,
        settings: AccessSettings,
        *,
        labels_of: Callable[[str], Iterable[str]],
        on_anomalies: Callable[[Sequence[Anomaly]], Awaitable[None]] | None = None,
        decisions_logged: Callable[[], Awaitable[None]] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._decisions_logged = decisions_logged
        self._settings = settings
        self._labels_of = labels_of
        self._on_anomalies = on_anomalies
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[AccessKey, list] = {}  # key -> [count, first_seen, last_seen]
        # The intents of logged decisions, counted by the engine (see the module docstring).
        self.intents = _engine.IntentTally(
            (AccessOperation.INTENT_STORE.value, AccessOperation.INTENT_PROCESS.value), UNAUTHENTICATED
        )
        self._intents_taken = time.monotonic()
        self._runs: dict[tuple[str, str], RunRecord] = {}
        # (job, run id) -> every access recorded for the run, stored or pending (see the module docstring).
        self._known: OrderedDict[tuple[str, str], frozenset[RunAccess]] = OrderedDict()
        self._unwritten: AccessBatch | None = None
        self._writes = 0  # batches written: see `stored_run`
        # The runs of `_unwritten` by (job, run id), made when a read first needs them.
        self._unwritten_runs: tuple[AccessBatch, dict[tuple[str, str], RunRecord]] | None = None
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_prune: datetime | None = None
        self._closed = False

    # ---- recording (no I/O) --------------------------------------------------------------

    def count(
        self, actor: str, dataset_id: str, operation: AccessOperation, region: str, at: datetime, n: int = 1
    ) -> None:
        """Add `n` accesses at time `at` to the aggregate of their day."""
        self._add(AccessKey(actor, dataset_id, operation, region, day_of(at)), n, at, at)

    def _add(self, key: AccessKey, n: int, first: datetime, last: datetime) -> None:
        with self._lock:
            self._add_locked(key, n, first, last)

    def _add_locked(self, key: AccessKey, n: int, first: datetime, last: datetime) -> None:
        entry = self._counts.get(key)
        if entry is None:
            self._counts[key] = [n, first, last]
        else:
            entry[0] += n
            entry[1], entry[2] = min(entry[1], first), max(entry[2], last)

    def record_catalog_write(self, principal: str, dataset_id: str) -> None:
        self.count(principal or UNAUTHENTICATED, dataset_id, AccessOperation.CATALOG_WRITE, "", self._clock())

    def record_run(self, run: RunRecord, new_accesses: Iterable[RunAccess]) -> None:
        """Keep `run` (merged with what is pending for it) and count `new_accesses` -- those
        not recorded for this run before -- once each, at the run's event time."""
        at, day = run.event_time, day_of(run.event_time)
        with self._lock:
            for access in new_accesses:
                self._add_locked(AccessKey(run.job, access.dataset_id, access.operation, access.region, day), 1, at, at)
        key = (run.job, run.run_id)
        known = self._known.get(key)
        if known is not None:
            self._known[key] = known.union(run.accesses)
        pending = self._runs.get(key)
        if pending is not None:
            run = RunRecord(
                run.job,
                run.run_id,
                pending.producer or run.producer,
                pending.principal or run.principal,
                pending.run_region or run.run_region,
                min(pending.event_time, run.event_time),
                max(pending.last_event_time, run.last_event_time),
                pending.record_time,
                tuple(sorted(set(pending.accesses) | set(run.accesses), key=_access_order)),
            )
        self._runs[key] = run

    def stored_run(self, job: str, run_id: str) -> StoredRun | None:
        """A read of the run's stored accesses for the caller to make along with a store call
        of its own and hand to `run_accesses`; None when the run is known here (no read needed)."""
        if (job, run_id) in self._known:
            return None
        return StoredRun(job, run_id, self._writes)

    async def run_accesses(self, job: str, run_id: str, stored: StoredRun | None = None) -> frozenset[RunAccess]:
        """The accesses recorded for a run so far, pending or stored (the store is read only for
        a run not seen lately, and not at all when `stored` has read it and still stands)."""
        key = (job, run_id)
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
            return known
        if stored is not None and stored.accesses is not None and stored.key == key and stored.writes == self._writes:
            recorded = stored.accesses
        else:
            recorded = await self._store.run_accesses(job, run_id)
        pending = self._runs.get(key)
        unwritten = self._unwritten_run(key)
        if unwritten is not None:
            recorded |= frozenset(unwritten.accesses)
        known = recorded | frozenset(pending.accesses) if pending is not None else recorded
        # Another event of the run may have been read, recorded and flushed during the read,
        # which then missed it: keep what is known of the run rather than replace it.
        known |= self._known.get(key, frozenset())
        self._known[key] = known
        if len(self._known) > KNOWN_RUNS:
            self._known.popitem(last=False)
        return known

    async def record_violations(self, violations: Sequence[ObservedViolation]) -> None:
        """Write `violations` to the store before returning (after any batch not written yet)."""
        async with self._flush_lock:
            if self._unwritten is not None:
                await self._write(self._unwritten)
            await self._write(AccessBatch(uuid.uuid4().hex, self._clock(), violations=tuple(violations)))

    def _unwritten_run(self, key: tuple[str, str]) -> RunRecord | None:
        """The run `key` in the batch being written (or kept after a failed write), if any."""
        batch = self._unwritten
        if batch is None or not batch.runs:
            return None
        if self._unwritten_runs is None or self._unwritten_runs[0] is not batch:
            self._unwritten_runs = (batch, {(r.job, r.run_id): r for r in batch.runs})
        return self._unwritten_runs[1].get(key)

    # ---- flushing ------------------------------------------------------------------------

    def _take(self) -> tuple[list[AccessCount], list[RunRecord]]:
        with self._lock:
            counts, self._counts = self._counts, {}
        runs, self._runs = list(self._runs.values()), {}
        return (
            [
                AccessCount(k.actor, k.dataset_id, k.operation, k.region, n, f, last, k.day)
                for k, (n, f, last) in counts.items()
            ],
            runs,
        )

    def _intents_due(self) -> bool:
        return (
            time.monotonic() - self._intents_taken >= self._settings.intent_flush_seconds
            or len(self.intents) >= self._settings.intent_max_keys
        )

    async def flush(self, *, intents: bool = True) -> None:
        """Write everything recorded so far (the intents counted so far only with `intents`);
        raises the store's error when it cannot (what was not written is kept and tried
        again)."""
        async with self._flush_lock:
            if self._unwritten is not None:
                await self._write(self._unwritten)
            counts, runs = self._take()
            if not (counts or runs or (intents and len(self.intents))):
                return
            now = self._clock()
            try:
                if runs and self._decisions_logged is not None:
                    await self._decisions_logged()  # the runs' decisions were logged before they were taken
                baselines = await self._store.baselines(
                    anomaly_rules.observed_actors(counts),
                    since=now - timedelta(days=self._settings.anomalies.baseline_window_days),
                )
            except BaseException:
                self._restore(counts, runs)
                raise
            found, entries = anomaly_rules.detect(counts, baselines, self._labels_of, self._settings.anomalies, now)
            taken: Sequence[CountRow] = ()
            if intents:
                taken, self._intents_taken = self.intents.take(), time.monotonic()
            await self._write(
                AccessBatch(
                    uuid.uuid4().hex,
                    now,
                    tuple(counts),
                    tuple(runs),
                    anomalies=tuple(found),
                    baselines=tuple(entries),
                    intents=taken,
                )
            )

    async def _write(self, batch: AccessBatch) -> None:
        self._unwritten = batch
        await self._store.write_batch(batch)
        self._writes += 1  # (a failed write keeps the batch in `_unwritten`, which reads merge)
        self._unwritten = self._unwritten_runs = None
        if batch.anomalies and self._on_anomalies is not None:
            await self._on_anomalies(batch.anomalies)

    def _restore(self, counts: list[AccessCount], runs: list[RunRecord]) -> None:
        for c in counts:
            self._add(c.key, c.count, c.first_seen, c.last_seen)
        for run in runs:
            self.record_run(run, ())

    async def prune(self) -> int:
        """Delete run records past `access.run_retention_days`."""
        now = self._clock()
        self._last_prune = now
        self._known.clear()
        return await self._store.prune_runs(now - timedelta(days=self._settings.run_retention_days))

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic flush (and hourly pruning) on the running event loop."""
        self._task = asyncio.create_task(self._run(), name="access-recorder-flush")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.flush_interval_seconds)
            try:
                await self.flush(intents=self._intents_due())
                if self._last_prune is None or self._clock() - self._last_prune >= PRUNE_INTERVAL:
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round retries; nothing pending is dropped
                log.warning("access records not flushed: %s", exc)

    async def close(self) -> None:
        """Stop the periodic flush and write what is pending (logged if the store refuses)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception as exc:
            log.error("access records lost at shutdown: %s", exc)


def _access_order(access: RunAccess) -> tuple[str, str, str]:
    return access.dataset_id, access.operation.value, access.region
