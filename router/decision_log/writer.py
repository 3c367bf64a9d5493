"""The live decision log: what callers append, and the thread that makes it durable.

Appending: `append` queues one decision, `append_many` a request's decisions as one queue item
(no Python work per decision; a batch the engine decided may be rendered on the caller's
executor, see `render`), `append_entries` entries rendered elsewhere (see `format.Entry`).
Decisions asked one at a time skip the queue: the residency engine keeps each in its own
queue, the log's lane (`attach_lane`, `_engine.LogLane`), as it makes it, and renders them
when the writer takes them. A writer thread takes everything queued, and the lane's entries,
renders what is not rendered yet (`batches`: one entry per request, at most `line_decisions`
decisions per line), chains the lines, writes them with one `writev` (their pieces as they
lie, not joined) that returns once they are fsynced (the file's writes are synced, `O_DSYNC`:
see `AppendOnlyFile`); then it releases whoever awaits `flush()`. What is on disk is checked at
`open` (`opening`).

**Durable by default.** With `durable` (the default), the writer never waits to fill a batch:
callers await `flush()` before answering, and whatever was queued while the previous fsync
ran is written with the next one (group commit: concurrent requests share an fsync). Without
it (the documented opt-out), the writer gathers for up to `flush_interval` seconds and a
crash loses what was not yet written. Decisions appended with `hold` (nobody answers from
them: e.g. the ALLOWs of an observed run) are gathered that way in durable mode too: they
go with the next write somebody waits for, or `flush_interval` after the writer saw the first
of them; a crash loses at most those.

**Faults.** When a write or its sync fails (a full disk, an I/O error), the writer cuts the
file back to its last durable size (after a failed fsync the kernel may have dropped the
pages, so the bytes are written again rather than trusted) and retries the same lines with
backoff (`retry_initial` doubling up to `retry_max` seconds) until they are written -- then it
carries on by itself. Meanwhile every waiting `flush()` and every `append` fails with
UNAVAILABLE (reason DECISION_LOG_UNWRITABLE, with a retry delay), and `failure()` names the
problem (the server's health reports ResidencyService NOT_SERVING meanwhile). Decisions queued before the fault are still
written once it clears; in durable mode their callers were told UNAVAILABLE, so the log may
hold a decision nobody received, never the reverse.

**Disk-space floor.** When the file system holding the log has less than `min_free_bytes`
free, `append` refuses with RESOURCE_EXHAUSTED (reason DISK_SPACE_LOW) before the disk is full,
a `disk_space_low` security event is recorded, and `failure()` names it; the writer checks
again every second and lifts the refusal when space is back.

**Checkpoints** (see `checkpoints`): after every `checkpoint_lines` lines, at most
`checkpoint_seconds` after the first line not yet covered, before a rotation and at `close`,
the writer signs the head and appends a checkpoint line, then hands the checkpoint to the sinks.

**Rotation** (see `series`): before writing, when the file has `rotate_bytes` or is
`rotate_seconds` old, the writer closes it with a checkpoint, renames it to the next numbered
name and starts a new file whose first line continues the chain.

Backpressure: at most `max_queue` decisions wait for the writer in the queue, and as many in
the lane. An `append` that finds the queue full blocks (also the event loop: the router then
answers no faster than it logs) until the writer takes it, for at most `append_timeout`
seconds, then fails with UNAVAILABLE (DECISION_LOG_BEHIND); so does a decision the lane refused
for being full (`lane_refused`). A decision is never dropped from the log silently.

One process owns a log at a time (an exclusive lock on the active file).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

from domicile.appendfile import AppendOnlyFile, fsync_directory
from domicile.errors import DomicileError, ErrorCode, failed_precondition
from domicile.router import _engine
from domicile.router.decision_log.batches import (
    IntentSink,
    Note,
    Queued,
    Rendered,
    count_intents,
    render_batch,
    render_decided,
)
from domicile.router.decision_log.checkpoints import (
    Checkpoint,
    CheckpointSigner,
    CheckpointSink,
    TrustedKeys,
)
from domicile.router.decision_log.format import (
    CHECKPOINT,
    NOTE,
    Entry,
    LoggedDecision,
    Piece,
    decisions_pieces,
    note_revision,
    parse_line,
    record_line,
)
from domicile.router.decision_log.index import DecisionIndex, LineIds, WrittenLine
from domicile.router.decision_log.opening import (
    REPLICA_ID,
    Opened,
    begin_file,
    file_line,
    migrate_format2,
    now_text,
    previous_file,
    rotated_checkpoint,
    verify_active,
)
from domicile.router.decision_log.series import Series, apply_retention
from domicile.router.decision_log.verify import ChainState
from domicile.router.engine import DecisionBatch
from domicile.router.types import Decision
from domicile.security.events import DISK_SPACE_LOW, SecurityEventLog
from domicile.telemetry.metrics import DECISION_LOG_WRITE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogOptions:
    """How a `DecisionLog` behaves; see the module docstring for each part."""

    # None: the replica id the log records, or the host name for a new log.
    replica: str | None = None
    durable: bool = True
    flush_interval: float = 0.05
    max_batch: int = 10_000
    line_decisions: int = 1_000
    recent_capacity: int = 10_000
    index_capacity: int = 200_000
    max_queue: int = 20_000
    append_timeout: float = 10.0
    checkpoint_lines: int = 1_000
    checkpoint_seconds: float = 60.0
    rotate_bytes: int = 64 * 2**20
    rotate_seconds: float = 0.0  # 0: never by age
    keep_files: int = 0  # 0: keep every rotated file
    archive_dir: Path | None = None
    min_free_bytes: int = 0
    retry_initial: float = 0.05
    retry_max: float = 5.0

    def __post_init__(self) -> None:
        if self.replica is not None and not REPLICA_ID.match(self.replica):
            raise ValueError(f"replica id {self.replica!r}: 1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
        if min(self.flush_interval, self.append_timeout, self.rotate_seconds, self.min_free_bytes) < 0:
            raise ValueError("flush_interval, append_timeout, rotate_seconds and min_free_bytes must be >= 0")
        if min(self.max_batch, self.line_decisions, self.max_queue, self.index_capacity, self.recent_capacity) < 1:
            raise ValueError("max_batch, line_decisions, max_queue, index_capacity and recent_capacity must be >= 1")
        if min(self.checkpoint_lines, self.rotate_bytes) < 1 or min(self.checkpoint_seconds, self.retry_initial) <= 0:
            raise ValueError("checkpoint_lines, checkpoint_seconds, rotate_bytes and retry_initial must be > 0")


class DecisionLog:
    """The live, append-only decision log of one process (see the module docstring).

    Use `await DecisionLog.open(path, signer=...)`; `append` from the event loop or any thread;
    `await flush()` for durability; `get` to read back (with a proof); `await close()` at the end.
    """

    def __init__(
        self,
        series: Series,
        file: AppendOnlyFile,
        opened: Opened,
        index: DecisionIndex,
        options: LogOptions,
        signer: CheckpointSigner,
        sinks: Sequence[CheckpointSink],
        events: SecurityEventLog | None,
    ) -> None:
        # Use `open`: it checks the file and takes its lock first.
        self.path = series.active
        self.options = options
        self.durable = options.durable
        state = opened.state
        self.replica = state.replica
        self._series = series
        self._file = file
        self._index = index
        self._signer = signer
        self._sinks = tuple(sinks)
        self._events = events
        # Writer-owned (read by others through `head()` and properties, under `_lock`):
        self._state = state
        self._file_number = opened.file_number
        self._file_started = opened.file_started  # time.time() of the active file's first line
        self._uncovered = opened.uncovered  # lines after the last checkpoint
        self._uncovered_since = time.monotonic()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the writer waits on it
        self._space = threading.Condition(self._lock)  # appenders wait on it when the queue is full
        # Guarded by _lock. Queue entries are decisions (and notes), counted from 1 per open log;
        # `_appended_seq` counts the queue's, `_queue_taken` those the writer took of them.
        # `_taken_seq` and `_durable_seq` count the queue's and the lane's together: the entries
        # taken by the writer, and written and fsynced.
        self._queue: list[Queued | Future[Rendered]] = []
        self._lane: _engine.LogLane | None = None
        self._lane_taken: Callable[[], None] | None = None
        self._writer_waiting = False
        self._space_waiters = 0
        self._appended_seq = 0
        self._queue_taken = 0
        self._unheld_seq = 0  # the queue's last entry appended without `hold`
        self._taken_seq = 0
        self._durable_seq = 0
        # Callers of `flush()` waiting for the next batch the writer takes, and for the batch it
        # is writing: each batch's are released together, with one wake-up per event loop.
        self._next_commit: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._in_commit: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._flush_requested = False
        self._closing = False
        self._closed = False
        self._unwritable = ""  # why writes fail now ('' when they do not)
        self._retry_after = 0.0
        self._space_low = ""  # why appends are refused for disk space ('' when they are not)
        self._space_checked = 0.0
        self._intent_sink: IntentSink | None = None
        self._check_space()
        self._writer = threading.Thread(target=self._run, name=f"decision-log-writer:{series.active.name}", daemon=True)
        self._writer.start()

    # ---- opening -----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        signer: CheckpointSigner,
        trusted_keys: TrustedKeys | None = None,
        sinks: Iterable[CheckpointSink] = (),
        events: SecurityEventLog | None = None,
        **options: Any,
    ) -> DecisionLog:
        """Open (creating it and its directory if needed) the log at `path`, verify it and
        continue its chain.

        The whole active file is verified: every line's hash, the chain, and every checkpoint's
        signature against `trusted_keys` (default: the signer's own public key; give old public
        keys too after a key rotation); its first line must continue the last rotated file. Only
        a torn last line is repaired (cut off). A log of a release before format 3 (format 2) is
        verified, moved aside and continued (see `legacy`). `options` are `LogOptions` fields.

        Raises DomicileError FAILED_PRECONDITION: DECISION_LOG_CORRUPT naming the file and the
        first bad line; DECISION_LOG_IN_USE when another writer has it open;
        DECISION_LOG_REPLICA_MISMATCH when `replica` is set and the log is another replica's.
        Runs in a worker thread (O(active file size)).
        """
        settings = LogOptions(**options)
        keys = trusted_keys if trusted_keys is not None else TrustedKeys([signer.public_key])
        keys = keys.with_key(signer.public_key)
        return await asyncio.to_thread(cls._open_sync, Path(path), settings, signer, keys, tuple(sinks), events)

    @classmethod
    def _open_sync(
        cls,
        path: Path,
        options: LogOptions,
        signer: CheckpointSigner,
        keys: TrustedKeys,
        sinks: tuple[CheckpointSink, ...],
        events: SecurityEventLog | None,
    ) -> DecisionLog:
        series = Series(path)
        previous = migrate_format2(series)
        file = _open_active(path)
        index = DecisionIndex(
            series,
            "",
            keys,
            recent_capacity=options.recent_capacity,
            index_capacity=options.index_capacity,
            archive_dir=options.archive_dir,
        )
        try:
            if file.size == 0:
                begin_file(file, series, options.replica, previous)
            opened = verify_active(file, series, keys, index)
            if options.replica is not None and opened.state.replica != options.replica:
                raise failed_precondition(
                    f"decision log {path} is replica {opened.state.replica!r}'s chain, but this server is "
                    f"configured as replica {options.replica!r}: set the replica id back, or give this replica "
                    "a data directory of its own",
                    "DECISION_LOG_REPLICA_MISMATCH",
                )
            index.replica = opened.state.replica
            return cls(series, file, opened, index, options, signer, sinks, events)
        except BaseException:
            index.close()
            file.close()
            raise

    # ---- what callers see -----------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last durable line of the chain."""
        with self._lock:
            return self._state.seq, self._state.head

    @property
    def healthy(self) -> bool:
        """False while the log cannot write (its writer retries) or takes no decisions for want
        of disk space (see `failure`)."""
        return not self.failure()

    def failure(self) -> str:
        """Why the log takes no decisions now ('' while it does): it cannot write (its writer
        retries), the disk is below the floor, or it is closed."""
        with self._lock:
            if self._unwritable:
                return f"decision log {self.path} cannot write: {self._unwritable}"
            if self._space_low:
                return f"decision log {self.path}: {self._space_low}"
            return f"decision log {self.path} is closed" if self._closed else ""

    def queued(self) -> int:
        """Decisions appended and not yet written and fsynced."""
        with self._lock:
            return self._total_appended() - self._durable_seq

    @property
    def max_catalog_revision(self) -> int:
        """The highest catalog revision any logged decision (or rollback note) names."""
        with self._lock:
            return self._state.max_catalog_revision

    def append(
        self, decision: Decision, context: Mapping[str, str] | None = None, kind: str = "decide", policy_hash: str = ""
    ) -> int:
        """Queue `decision` (with optional `context` facts: text to text) and return its number
        among the decisions appended since `open` (from 1). Returns at once; see `flush`.

        Raises DomicileError: UNAVAILABLE when the log cannot write (DECISION_LOG_UNWRITABLE,
        with a retry delay), is closed, or stayed full for `append_timeout` (DECISION_LOG_BEHIND);
        RESOURCE_EXHAUSTED (DISK_SPACE_LOW) below the disk-space floor. A decision that cannot be
        logged must not be answered."""
        if context:
            _check_context(context)
        with self._lock:
            self._refuse_if_unable()
            if self._appended_seq - self._queue_taken >= self.options.max_queue:
                self._wait_for_space()
            self._appended_seq += 1
            self._unheld_seq = self._appended_seq
            self._queue.append((decision, context, kind, policy_hash))
            self._wake_writer(len(self._queue) == 1 or self.durable)
            return self._total_appended()

    def append_many(
        self,
        decisions: Iterable[Decision],
        context: Mapping[str, str] | None = None,
        *,
        kind: str = "decide",
        policy_hash: str = "",
        hold: bool = False,
        render: Executor | None = None,
    ) -> int:
        """`append` for each decision, in order, as one queue item while the queue has room (no
        Python work per decision); returns the number of the last one. The decisions of one call
        should come from one request: they are logged as one entry when they share caller,
        policy version and catalog revision. With `hold`, nobody is answered from them: the
        durable log writes them with the next write somebody waits for, or after
        `flush_interval` (see the module docstring). With `render`, the log entries of a batch
        the engine decided are rendered on that executor's threads (in order: the writer waits
        for them) rather than by the writer, one thread for every caller. Errors as for
        `append`; when it raises, the decisions before the one it could not queue stay
        queued."""
        if context:
            _check_context(context)
        # The log's own tuple: the caller may change its list. A batch the engine decided is
        # immutable and builds each Decision only when the writer reads it.
        pending = decisions if isinstance(decisions, DecisionBatch) else tuple(decisions)
        with self._lock:
            self._refuse_if_unable()
            was_empty = not self._queue
            start = 0
            while start < len(pending):
                room = self.options.max_queue - (self._appended_seq - self._queue_taken)
                if room <= 0:
                    self._wait_for_space()
                    was_empty = was_empty or not self._queue
                    continue
                chunk = pending if start == 0 and room >= len(pending) else pending[start : start + room]
                if render is not None and isinstance(chunk, DecisionBatch):
                    line_decisions = self.options.line_decisions
                    self._queue.append(render.submit(render_decided, chunk, context, kind, policy_hash, line_decisions))
                else:
                    self._queue.append((chunk, context, kind, policy_hash))
                self._appended_seq += len(chunk)
                start += len(chunk)
            if not hold:
                self._unheld_seq = self._appended_seq
            self._wake_writer(was_empty or (self.durable and not hold))
            return self._total_appended()

    def append_entries(self, entries: Sequence[Entry]) -> int:
        """Queue entries rendered elsewhere (each as the engine renders one, see `format.Entry`, with
        its decision ids and catalog revision), for an engine that makes decisions without a
        Python object per decision. Errors as for `append`."""
        with self._lock:
            self._refuse_if_unable()
            if self._appended_seq - self._queue_taken >= self.options.max_queue:
                self._wait_for_space()
            was_empty = not self._queue
            self._queue.append(Rendered(tuple(entries)))
            self._appended_seq += sum(len(entry.ids) for entry in entries)
            self._unheld_seq = self._appended_seq
            self._wake_writer(was_empty or self.durable)
            return self._total_appended()

    def attach_lane(self, lane: _engine.LogLane, taken: Callable[[], None] | None = None) -> None:
        """Take the entries of `lane` too (the residency engine's queue of decisions made one at
        a time, see the module docstring), with the same guarantees: `flush()` waits for them,
        the lane refuses decisions while the log takes none. It is made with this log's
        `line_decisions` and `max_queue`, and `wake` to call. The writer thread calls `taken`
        after each time it took the lane's entries, before their `flush()` callers return (e.g.
        to count the decisions for the metrics); one that raises is logged."""
        with self._lock:
            self._lane = lane
            self._lane_taken = taken
            self._sync_lane()

    def wake(self) -> None:
        """A decision landed in the empty lane: the writer, if it waits for work, starts."""
        with self._lock:
            self._wake_writer(True)

    def lane_refused(self, full: bool) -> None:
        """After the lane refused a decision (`_engine.LogRefused`): raises why the log takes
        none (as `append` does), or, when the lane was `full`, returns once the writer took it
        (blocking as `append` does on a full queue; DECISION_LOG_BEHIND after `append_timeout`)."""
        with self._lock:
            self._refuse_if_unable()
            if full:
                self._wait_for_space(self._lane_waiting)

    def set_intent_sink(self, sink: IntentSink | None) -> None:
        """After writing each batch, the writer thread adds the batch's intents to `sink`
        (`count_intents`, at the time of writing): off the decision path, from what it already
        holds, before the batch's `flush()` callers return. A sink that raises is logged and
        does not stop the log."""
        self._intent_sink = sink

    async def note(self, note: str, **detail: Any) -> None:
        """Append a `note` line (an operator decision the log must remember, e.g. accepting a
        catalog that went back in time) and wait until it is durable."""
        with self._lock:
            self._refuse_if_unable()
            self._queue.append(Note(note, detail))
            self._appended_seq += 1
            self._unheld_seq = self._appended_seq
            self._wake_writer(True)
        await self.flush()

    async def flush(self) -> None:
        """Return once everything appended before this call is written and fsynced.

        Raises DomicileError UNAVAILABLE if the log cannot write meanwhile or is closed."""
        loop = asyncio.get_running_loop()
        with self._lock:
            seq = self._total_appended()
            if seq <= self._durable_seq:
                return
            if self._unwritable or self._closed:
                raise self._unavailable()
            future: asyncio.Future[None] = loop.create_future()
            if seq > self._taken_seq:
                self._next_commit.append((loop, future))
                self._flush_requested = True
                self._wake_writer(True)
            else:  # in the batch being written
                self._in_commit.append((loop, future))
        await future

    async def get(self, decision_id: str) -> LoggedDecision | None:
        """The logged decision with this id (its newest copy) with its `proof`, or None. What is
        queued is flushed first. Lines are read and checked in a worker thread.

        Raises DomicileError FAILED_PRECONDITION (DECISION_LOG_CORRUPT) when the line holding it
        does not verify (changed on disk, or its chain does not reach a checkpoint)."""
        if self._durable_seq < self._total_appended():
            await self.flush()
        if self._index.needs_fold():
            await asyncio.to_thread(self._index.fold)
        found = await asyncio.to_thread(self._index.find, decision_id)
        if found is None:
            return None
        entry, proof = found
        return dataclasses.replace(entry, proof=proof)

    async def close(self) -> None:
        """Write what is queued, sign a last checkpoint, stop the writer and release the file.
        Idempotent. Does not raise when the log cannot write: that was reported to `flush`
        callers and logged, and shutting down must still complete."""
        with self._lock:
            self._closing = True
            self._sync_lane()
            self._wakeup.notify()
            self._space.notify_all()
        await asyncio.to_thread(self._writer.join)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._index.close()
        self._file.close()
        for sink in self._sinks:
            sink.close()

    # ---- the request side's locking ------------------------------------------------------

    def _refuse_if_unable(self) -> None:
        """Holds _lock."""
        if self._unwritable or self._closing:
            raise self._unavailable()
        if self._space_low:
            raise DomicileError(
                f"refusing decisions: {self._space_low}",
                ErrorCode.RESOURCE_EXHAUSTED,
                "DISK_SPACE_LOW",
                retry_after=5.0,
            )

    def _total_appended(self) -> int:
        """Entries appended to the queue and the lane since `open`."""
        return self._appended_seq + (self._lane.appended() if self._lane is not None else 0)

    def _queue_waiting(self) -> int:
        return self._appended_seq - self._queue_taken

    def _lane_waiting(self) -> int:
        return self._lane.waiting() if self._lane is not None else 0

    def _sync_lane(self) -> None:
        """Holds _lock: the lane refuses decisions while the log takes none."""
        if self._lane is not None:
            self._lane.set_refusing(bool(self._unwritable or self._space_low or self._closing))

    def _wake_writer(self, now: bool) -> None:
        """Holds _lock: wake a waiting writer when there is something to do now."""
        if self._writer_waiting and (now or self._queue_waiting() >= self.options.max_batch):
            self._writer_waiting = False
            self._wakeup.notify()

    def _wait_for_space(self, waiting: Callable[[], int] | None = None) -> None:
        """Block until the queue (or what `waiting` counts) has room. Holds _lock."""
        waiting = waiting or self._queue_waiting
        self._space_waiters += 1
        try:
            self._wake_writer(True)  # a full queue is a full batch: start writing now
            roomy = self._space.wait_for(
                lambda: waiting() < self.options.max_queue or self._unwritable or self._closing,
                timeout=self.options.append_timeout,
            )
        finally:
            self._space_waiters -= 1
        self._refuse_if_unable()
        if not roomy:
            raise DomicileError(
                f"decision log {self.path} is {waiting()} decisions behind and did not "
                f"catch up within {self.options.append_timeout:g}s; refusing decisions it cannot log",
                ErrorCode.UNAVAILABLE,
                "DECISION_LOG_BEHIND",
                retry_after=1.0,
            )

    def _unavailable(self) -> DomicileError:
        if self._unwritable:
            return DomicileError(
                f"decision log {self.path} cannot write ({self._unwritable}); retrying",
                ErrorCode.UNAVAILABLE,
                "DECISION_LOG_UNWRITABLE",
                retry_after=max(1.0, self._retry_after),
            )
        return DomicileError(f"decision log {self.path} is closed", ErrorCode.UNAVAILABLE, "DECISION_LOG_CLOSED")

    # ---- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing and not self._queue and (not self._uncovered or self._unwritable):
                        break
                    batch, last_entry = self._take()
                    closing = self._closing
                if batch:
                    self._write_batch(batch, last_entry)
                elif self._checkpoint_due() or (closing and self._uncovered):
                    self._commit_checkpoint()
                if self._space_check_due():
                    self._check_space()
        except BaseException:  # a bug: fail everyone rather than hang them
            log.exception("decision log %s: the writer stopped", self.path)
            with self._lock:
                self._unwritable = "the writer stopped on an internal error"
        with self._lock:
            self._closing = True
            self._sync_lane()
            self._release_waiters(None)
            self._space.notify_all()

    def _take(self) -> tuple[list[Queued | Future[Rendered]], int]:
        """Wait for work (holds _lock); take the queue whole."""
        while not self._queue and not self._lane_waiting() and not self._closing and not self._checkpoint_due():
            self._writer_waiting = True
            self._wakeup.wait(timeout=self._idle_timeout())
            if self._space_check_due():
                break
        if (
            (self._queue or self._lane_waiting())
            and not self._closing
            and not self._flush_requested
            and not self._awaited()
            and self.options.flush_interval
        ):
            # Give the batch time to fill; a flush request, something a caller awaits, a full
            # batch or a full queue end the wait.
            self._writer_waiting = True
            self._wakeup.wait_for(
                lambda: (
                    self._flush_requested
                    or self._closing
                    or self._space_waiters
                    or self._awaited()
                    or self._queue_waiting() >= self.options.max_batch
                    or self._lane_waiting() >= self.options.max_batch
                ),
                timeout=self.options.flush_interval,
            )
        self._writer_waiting = False
        batch, self._queue = self._queue, []
        self._queue_taken = taken = self._appended_seq
        if self._lane is not None:
            entries, lane_appended, intents = self._lane.take()
            if self._lane_taken is not None:
                try:
                    self._lane_taken()
                except Exception:
                    log.exception("decision log %s: the lane's `taken` failed", self.path)
            taken += lane_appended
            if entries:
                batch.append(
                    Rendered(tuple(Entry(data, ids, revision) for data, ids, revision in entries), tuple(intents))
                )
        self._taken_seq = taken
        self._in_commit, self._next_commit = self._in_commit + self._next_commit, []
        self._flush_requested = False
        if self._space_waiters:
            self._space.notify_all()
        return batch, self._taken_seq

    def _awaited(self) -> bool:
        """Holds _lock: the durable log has queued entries that were not appended with `hold`
        (their callers await `flush()`: written at once)."""
        return self.durable and (self._unheld_seq > self._queue_taken or self._lane_waiting() > 0)

    def _idle_timeout(self) -> float:
        due = self.options.checkpoint_seconds - (time.monotonic() - self._uncovered_since) if self._uncovered else 1.0
        return max(0.01, min(1.0, due))

    def _space_check_due(self) -> bool:
        return bool(self.options.min_free_bytes) and time.monotonic() - self._space_checked >= 1.0

    def _checkpoint_due(self) -> bool:
        return bool(self._uncovered) and (
            self._uncovered >= self.options.checkpoint_lines
            or time.monotonic() - self._uncovered_since >= self.options.checkpoint_seconds
        )

    def _write_batch(self, taken: list[Queued | Future[Rendered]], last_entry: int) -> None:
        batch, problem = _rendered(taken)
        entries, unrenderable = render_batch(batch, self.options.line_decisions)
        problem = problem or unrenderable
        written = not self._rotation_due() or self._rotate()
        lines: list[_Line] = []
        if written:
            lines, state = self._lines(entries)
            written = not lines or self._write_lines(lines)
        sink = self._intent_sink
        if written and sink is not None:
            self._hand_intents(sink, batch)
        # One hold of the lock for the new head and the waiters it releases; their event loops
        # are woken after it, so that nobody waits for the lock while the writer sends.
        with self._lock:
            if written:
                if lines:
                    self._advance(lines, state)
                self._durable_seq = last_entry
                settled = self._settled_waiters(last_entry, problem)
            else:
                settled = self._settled_waiters(None)
        _wake_loops(settled)
        if written and self._checkpoint_due():
            self._commit_checkpoint()

    def _lines(self, entries: list[Entry | Note]) -> tuple[list[_Line], ChainState]:
        """The lines for `entries` after the current head (at most `line_decisions` decisions a
        line; a note is a line of its own), and the chain's state after them."""
        lines: list[_Line] = []
        state = self._state
        pending: list[Entry] = []
        count = 0

        def close_line() -> None:
            nonlocal state, pending, count
            pieces, digest = decisions_pieces(state.seq + 1, state.head, [entry.data for entry in pending])
            ids = LineIds(tuple(entry.ids for entry in pending))
            lines.append(_Line(pieces, digest, ids))
            revision = max(entry.catalog_revision for entry in pending)
            state = ChainState(
                state.seq + 1,
                digest,
                state.decisions + len(ids),
                max(state.max_catalog_revision, revision),
                state.replica,
            )
            pending, count = [], 0

        for item in entries:
            if isinstance(item, Note):
                if pending:
                    close_line()
                line, digest = record_line(state.seq + 1, state.head, NOTE, {"note": item.note, "detail": item.detail})
                lines.append(_Line((line,), digest, ()))
                state = dataclasses.replace(
                    state,
                    seq=state.seq + 1,
                    head=digest,
                    max_catalog_revision=note_revision(item.note, item.detail, state.max_catalog_revision),
                )
                continue
            if pending and count + len(item.ids) > self.options.line_decisions:
                close_line()
            pending.append(item)
            count += len(item.ids)
        if pending:
            close_line()
        return lines, state

    def _commit(self, lines: list[_Line], state: ChainState) -> bool:
        """Write `lines` (built on the current head), fsync, retrying until they are durable;
        then move the head to `state`. False when the log closed before they could be written."""
        if not self._write_lines(lines):
            return False
        with self._lock:
            self._advance(lines, state)
        for line in lines:
            if line.checkpoint is not None:
                self._index.note_checkpoint(line.checkpoint)
                self._publish(line.checkpoint)
        return True

    def _write_lines(self, lines: list[_Line]) -> bool:
        """Write `lines` after the current head, durable when it returns, retrying until they
        are, and index them. False when the log closed before they could be written."""
        start = self._file.size
        pieces = [piece for line in lines for piece in line.pieces]
        if not self._retrying(lambda: self._write_all(pieces), lambda: self._file.truncate(start)):
            return False
        offset, seq = start, self._state.seq
        written = []
        for line in lines:
            seq += 1
            written.append(WrittenLine(seq, offset, bytes.fromhex(line.digest), line.ids, line.pieces))
            offset += sum(map(len, line.pieces))
        self._index.note_lines(written, self._file.size)
        return True

    def _advance(self, lines: list[_Line], state: ChainState) -> None:
        """Holds _lock: the head is `state`, after `lines` (written)."""
        self._state = state
        if any(line.checkpoint is not None for line in lines):
            self._uncovered = 0
        else:
            if not self._uncovered:
                self._uncovered_since = time.monotonic()
            self._uncovered += len(lines)

    def _commit_checkpoint(self) -> bool:
        """Sign the head and append a checkpoint line (see `checkpoints`)."""
        state = self._state
        checkpoint = self._signer.sign(
            state.replica,
            state.seq,
            state.head,
            now_text(),
            decisions=state.decisions,
            max_catalog_revision=state.max_catalog_revision,
        )
        line, digest = record_line(state.seq + 1, state.head, CHECKPOINT, checkpoint.members())
        return self._commit(
            [_Line((line,), digest, (), checkpoint)], dataclasses.replace(state, seq=state.seq + 1, head=digest)
        )

    def _hand_intents(self, sink: IntentSink, batch: list[Queued]) -> None:
        try:
            count_intents(batch, sink, time.time_ns() // 1000)
        except Exception:
            log.exception("decision log %s: the intent sink failed", self.path)

    def _write_all(self, pieces: Sequence[Piece]) -> None:
        # The file's writes are synced (`synced_writes`): durable when this returns, written and
        # synced in one system call, so the writer lets go of the interpreter lock once.
        started = time.perf_counter()
        self._file.write_pieces(pieces)
        DECISION_LOG_WRITE.observe(time.perf_counter() - started)

    def _retrying(self, action: Callable[[], None], undo: Callable[[], None]) -> bool:
        """Run `action` until it succeeds. After an OSError: report the fault, wait with backoff,
        run `undo` (itself retried: the action is not tried again on a file that could not be
        cut back). False when the log is closing and the last try failed."""
        delay = self.options.retry_initial
        while True:
            try:
                action()
            except OSError as exc:
                self._fault(exc, delay)
                while True:
                    if self._sleep(delay):
                        return False
                    delay = min(delay * 2, self.options.retry_max)
                    try:
                        undo()
                        break
                    except OSError as undo_exc:
                        self._fault(undo_exc, delay)
                continue
            if self._unwritable:
                self._recovered()
            return True

    def _sleep(self, delay: float) -> bool:
        """Wait `delay` seconds unless the log closes first: True when closing (give up)."""
        with self._lock:
            if not self._closing:
                self._wakeup.wait_for(lambda: self._closing, timeout=delay)
            return self._closing

    def _fault(self, exc: OSError, delay: float) -> None:
        with self._lock:
            first = not self._unwritable
            self._unwritable = exc.strerror or str(exc)
            self._retry_after = delay
            self._sync_lane()
        if first:
            log.error("decision log %s cannot write: %s; refusing decisions and retrying", self.path, exc)
        with self._lock:
            self._release_waiters(None)
            self._space.notify_all()

    def _recovered(self) -> None:
        with self._lock:
            self._unwritable = ""
            self._sync_lane()
        log.warning("decision log %s writes again; decisions resume", self.path)

    def _publish(self, checkpoint: Checkpoint) -> None:
        for sink in self._sinks:
            try:
                sink.publish(checkpoint)
            except Exception:  # a sink must never stop the log
                log.exception("checkpoint sink %r failed", sink)

    # ---- rotation ----------------------------------------------------------------------

    def _rotation_due(self) -> bool:
        age = self.options.rotate_seconds
        return self._file.size >= self.options.rotate_bytes or bool(age and time.time() - self._file_started >= age)

    def _rotate(self) -> bool:
        """Close the active file with a checkpoint, rename it to its number and begin the next
        file. Each step is retried on OSError like a write; False when closing interrupted it."""
        if self._uncovered and not self._commit_checkpoint():
            return False
        target = self._series.numbered(self._file_number)
        if not self._retrying(lambda: self._rename_active(target), lambda: None):
            return False
        new: list[AppendOnlyFile] = []

        def begin() -> None:
            if not new:
                new.append(_open_active(self.path))
            file = new[0]
            if file.size:
                file.truncate(0)
            # (As opening a log does: the file's last line names the format, which is an older
            # one when a log of an earlier release is rotated before it wrote anything.)
            line, _ = file_line(self._state, self._file_number + 1, previous_file(target, rotated_checkpoint(target)))
            file.write(line)  # durable when it returns (synced_writes)
            fsync_directory(self._series.directory)

        if not self._retrying(begin, lambda: None):
            return False
        old, self._file = self._file, new[0]
        old.close()
        line = self._file.pread(self._file.size, 0)
        record = parse_line(line)
        self._file_number += 1
        self._file_started = time.time()
        self._index.start_file(record["seq"])
        self._index.note_lines(
            [WrittenLine(record["seq"], 0, bytes.fromhex(record["hash"]), (), line)], self._file.size
        )
        with self._lock:
            self._state = dataclasses.replace(self._state, seq=record["seq"], head=record["hash"])
            self._uncovered, self._uncovered_since = 1, time.monotonic()
        log.info("decision log rotated: %s, continuing in %s", target, self.path)
        if self.options.keep_files:
            threading.Thread(
                target=apply_retention,
                args=(self._series, self.options.keep_files, self.options.archive_dir),
                name="decision-log-retention",
                daemon=True,
            ).start()
        return True

    def _rename_active(self, target: Path) -> None:
        if self._file.path != target:
            os.rename(self.path, target)
            self._file.path = target
        fsync_directory(self._series.directory)

    # ---- disk space and status -----------------------------------------------------------

    def _check_space(self) -> None:
        floor = self.options.min_free_bytes
        self._space_checked = time.monotonic()
        if not floor:
            return
        try:
            stats = os.statvfs(self._series.directory)
        except OSError as exc:
            log.warning("decision log %s: cannot read the free disk space: %s", self.path, exc)
            return
        free = stats.f_bavail * stats.f_frsize
        low = free < floor
        with self._lock:
            entering = low and not self._space_low
            leaving = not low and self._space_low
            if low:
                self._space_low = (
                    f"{free / 2**20:.1f} MiB free where the decision log is written ({self._series.directory}), "
                    f"below the floor of {floor / 2**20:.1f} MiB"
                )
            else:
                self._space_low = ""
            self._sync_lane()
        if entering:
            log.error("decision log: %s; refusing decisions until space is freed", self._space_low)
            if self._events is not None:
                self._events.record(
                    DISK_SPACE_LOW,
                    outcome="refused",
                    reason="DISK_SPACE_LOW",
                    path=str(self._series.directory),
                    free_bytes=free,
                    floor_bytes=floor,
                )
        if leaving:
            log.warning("decision log: free disk space is back above the floor; decisions resume")

    def _release_waiters(self, upto: int | None, failed: str = "") -> None:
        """Holds _lock: `_settled_waiters`, and their event loops woken."""
        _wake_loops(self._settled_waiters(upto, failed))

    def _settled_waiters(self, upto: int | None, failed: str = "") -> _Settled:
        """Holds _lock: the waiters of the batch written up to entry `upto`, each with its error
        (failed when `failed` is given; every waiter, failed, when `upto` is None), by event loop:
        no longer waiting here, to be woken by `_wake_loops`."""
        if upto is None:
            waiters, self._in_commit, self._next_commit = self._in_commit + self._next_commit, [], []
        else:
            waiters, self._in_commit = self._in_commit, []
        settled: _Settled = {}
        for loop, future in waiters:
            if upto is None:
                error: BaseException | None = self._unavailable()
            elif failed:
                error = DomicileError(
                    f"decision log {self.path}: {failed}", ErrorCode.UNAVAILABLE, "DECISION_LOG_FAILED"
                )
            else:
                error = None
            settled.setdefault(loop, []).append((future, error))
        return settled


_Settled = dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]]


def _wake_loops(settled: _Settled) -> None:
    """Resolve the settled waiters: one wake-up of each event loop for all of its own."""
    for loop, outcomes in settled.items():
        with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, outcomes)


def _open_active(path: Path) -> AppendOnlyFile:
    """The active file as the writer writes it, when a log opens and after each rotation: every
    write synced (`synced_writes`), so that a commit is one system call."""
    return AppendOnlyFile.open(path, what="decision log", in_use_reason="DECISION_LOG_IN_USE", synced_writes=True)


class _Line(NamedTuple):
    """A line built for writing: its bytes (in pieces, see `format.sealed`), hash, decision ids,
    and the checkpoint it is (if so)."""

    pieces: tuple[Piece, ...]
    digest: str
    ids: Collection[str]
    checkpoint: Checkpoint | None = None


def _rendered(batch: list[Queued | Future[Rendered]]) -> tuple[list[Queued], str]:
    """The batch with the entries being rendered elsewhere (`append_many`'s `render`) waited
    for, in order; and what failed there (its decisions are not logged: their waiters fail)."""
    if all(type(item) is not Future for item in batch):
        return cast("list[Queued]", batch), ""
    out: list[Queued] = []
    problem = ""
    for item in batch:
        if type(item) is not Future:
            out.append(cast("Queued", item))
            continue
        try:
            out.append(item.result())
        except Exception as exc:
            log.exception("decision log: cannot render a batch of decisions; they are NOT logged")
            problem = f"cannot log decisions ({exc})"
    return out, problem


def _check_context(context: Mapping[str, str]) -> None:
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in context.items()):
        raise ValueError("a decision's logged context maps text to text")


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in outcomes:
        if future.done():  # the waiter was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
