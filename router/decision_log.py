"""The decision log: append-only, hash-chained JSON Lines, written off the decision path.

Line format -- one decision per line, UTF-8, ending in a newline:

    {"allowed_regions":[...],"caller":"...","catalog_revision":7,["context":{...},]
     "decision_id":"...","outcome":"deny","policy_hash":"...","policy_version":"...",
     "prev_hash":"<64 hex>","reasons":[{"citation":"","code":"RULE_DENIED",
     "lineage_path":[...],"message":"...","rule_id":"..."}],"request":{"dataset_id":"...",
     "kind":"decide","operation":"store","region":"..."},"seq":1,"time":"...Z","hash":"<64 hex>"}

Everything before `"hash"` is the canonical JSON of the record (keys sorted, no spaces,
ASCII-only escapes); `hash` is the SHA-256 (hex) of exactly those bytes, which include
`prev_hash`, the previous line's `hash` (64 zeros for the first line). `seq` counts lines
from 1. So a line is valid only if it is byte-for-byte the canonical rendering of its own
content, and the chain breaks at any modified, inserted, deleted or reordered line; `verify`
names the first line where it breaks. What a chain cannot show on its own is the loss of its
*last* lines: compare `DecisionLog.head()` (or `VerifyResult.head_hash`) with a copy kept
elsewhere (`verify(path, expected_head=...)`) to detect that.

Writing: `append` only enqueues (O(1), under a short lock). A writer thread takes everything
queued, renders and hashes it, writes it with one `write` and `fsync`s the file, at the latest
`flush_interval` seconds after the first queued entry or as soon as `max_batch` entries wait
or someone awaits `flush()`. Rendering reuses the JSON of values shared between decisions
(allowed-region lists, reason messages), which are cached by object identity.

Backpressure: the queue holds at most `max_queue` entries. An `append` that finds it full
blocks its caller until the writer has taken the queue, for at most `append_timeout` seconds,
and then raises UNAVAILABLE -- a decision is never dropped from the log silently, and one that
cannot be queued is not answered (fail closed). On the router's event loop that block stalls
the loop: the router then answers no faster than the log writes, which is the point.

Reading back: `get` finds the last `recent_capacity` written lines in memory and the last
`index_capacity` decision ids by byte offset; older ids are found by scanning the part of the
file before the oldest indexed line (in a worker thread), so memory stays bounded however long
the log grows.

What is guaranteed on a crash:
- An entry is durable once a `flush()` started after its `append` has returned.
- Entries not yet flushed are lost if the process dies: in the default (asynchronous) mode
  a decision already answered may be missing from the log, up to `flush_interval` seconds'
  worth plus one batch being written. `durable=True` is the mode for callers that await
  `flush()` before answering (the router does, with `router.durable_decision_log`); the
  writer then never waits to fill a batch.
- A crash in the middle of a write leaves at most one incomplete last line; `open` cuts it
  off (it was never flushed, so no caller waited for it) and continues the chain after the
  last complete line. Complete lines that fail verification make `open` refuse the file.

One process owns a log file at a time (an exclusive `flock`); a second `open` fails.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import heapq
import itertools
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

from domicile.errors import DomicileError, ErrorCode, failed_precondition
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

log = logging.getLogger(__name__)

ZERO_HASH = "0" * 64
_HASH_KEY = b',"hash":"'
# Every line ends with `,"hash":"<64 hex>"}\n`: the hash sits at a fixed distance from the end.
_TAIL = len('"}\n')
_ID_KEY = b'"decision_id":"'
_READ_CHUNK = 1 << 20
_REQUIRED_KEYS = frozenset(
    (
        "allowed_regions", "caller", "catalog_revision", "decision_id", "outcome", "policy_hash",
        "policy_version", "prev_hash", "reasons", "request", "seq", "time",
    )
)

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
# Bound of the rendering cache (entries); it is cleared when full and refills from what is used.
_JSON_CACHE_LIMIT = 50_000

# An appended entry: (seq, decision, context, kind, policy_hash).
_Queued = tuple[int, Decision, "Mapping[str, str] | None", str, str]


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as the log holds it, with its place in the chain."""

    seq: int
    decision: Decision
    kind: str
    policy_hash: str
    # Extra facts the caller logged beside the decision (e.g. a CheckJob's inputs); None if none.
    context: Mapping[str, str] | None
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify`: `first_bad_line` is 1-based (None when `ok`); `lines` counts the
    lines read; `head_hash` is the hash of the last line that verified."""

    ok: bool
    lines: int
    first_bad_line: int | None
    message: str
    head_hash: str = ZERO_HASH


# ---- rendering and checking one line ------------------------------------------------------


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("decide_time must be timezone-aware")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


_json_string = json.encoder.encode_basestring_ascii  # the C-accelerated string encoder json uses


def _json_strings(values: Iterable[str]) -> str:
    return "[" + ",".join(map(_json_string, values)) + "]"


class _JsonCache:
    """JSON renderings of immutable values by object identity. The engine hands out one tuple
    per allowed-region set and one string per cached reason message, so most decisions repeat
    objects rendered before (lineage paths are per dataset and rarely repeat: not cached).
    Each entry keeps its object alive, so an id is never reused while cached. Used by the
    writer thread only."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[object, str]] = {}

    def strings(self, values: tuple[str, ...]) -> str:
        entry = self._entries.get(id(values))
        if entry is not None and entry[0] is values:
            return entry[1]
        return self._put(values, _json_strings(values))

    def string(self, value: str) -> str:
        entry = self._entries.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        return self._put(value, _json_string(value))

    def _put(self, value: object, rendered: str) -> str:
        if len(self._entries) >= _JSON_CACHE_LIMIT:
            self._entries.clear()
        self._entries[id(value)] = (value, rendered)
        return rendered


def _canonical(
    seq: int, decision: Decision, kind: str, policy_hash: str, context: Mapping[str, str] | None, prev_hash: str,
    time_text: str, cache: _JsonCache | None = None,
) -> bytes:
    """The canonical JSON of a record without `hash`, written out by hand.

    Byte-identical to `_encoder.encode` of the same record (keys sorted, no spaces, ASCII
    escapes) -- which is what `verify` recomputes -- at a fraction of the cost, because the
    writer renders every decision the router makes. tests/unit/test_decision_log*.py hold
    the two renderings equal, also for hostile strings.
    """
    s = _json_string
    if cache is None:
        strings, string = _json_strings, s
    else:
        strings, string = cache.strings, cache.string
    # Enum `_value_` is the member's value without the `value` property's lookup cost.
    reasons = ",".join(
        [
            f'{{"citation":{s(r.citation)},"code":{s(r.code._value_)},"lineage_path":{_json_strings(r.lineage_path)},'
            f'"message":{string(r.message)},"rule_id":{s(r.rule_id)}}}'
            for r in decision.reasons
        ]
    )
    context_json = ""
    if context:
        items = ",".join([f"{s(key)}:{s(value)}" for key, value in sorted(context.items())])
        context_json = f',"context":{{{items}}}'
    return (
        f'{{"allowed_regions":{strings(decision.allowed_regions)},"caller":{s(decision.caller)},'
        f'"catalog_revision":{int(decision.catalog_revision)}{context_json},"decision_id":{s(decision.decision_id)},'
        f'"outcome":{s(decision.outcome._value_)},"policy_hash":{s(policy_hash)},'
        f'"policy_version":{s(decision.policy_version)},"prev_hash":{s(prev_hash)},"reasons":[{reasons}],'
        f'"request":{{"dataset_id":{s(decision.dataset_id)},"kind":{s(kind)},'
        f'"operation":{s(decision.operation._value_)},"region":{s(decision.region)}}},'
        f'"seq":{int(seq)},"time":{s(time_text)}}}'
    ).encode("ascii")


def _seal(canonical: bytes) -> tuple[bytes, str]:
    """The line for a record's canonical JSON (without `hash`), and its hash."""
    digest = hashlib.sha256(canonical).hexdigest()
    return b"".join((canonical[:-1], _HASH_KEY, digest.encode("ascii"), b'"}\n')), digest


def _decision_from(body: Mapping[str, Any]) -> LoggedDecision:
    request = body["request"]
    decision = Decision(
        decision_id=body["decision_id"],
        outcome=Outcome(body["outcome"]),
        dataset_id=request["dataset_id"],
        operation=Operation(request["operation"]),
        region=request["region"],
        allowed_regions=tuple(body["allowed_regions"]),
        reasons=tuple(
            Reason(
                code=ReasonCode(r["code"]),
                message=r["message"],
                rule_id=r["rule_id"],
                citation=r["citation"],
                lineage_path=tuple(r["lineage_path"]),
            )
            for r in body["reasons"]
        ),
        policy_version=body["policy_version"],
        catalog_revision=body["catalog_revision"],
        decide_time=datetime.fromisoformat(body["time"]),
        caller=body["caller"],
    )
    context = body.get("context")
    return LoggedDecision(
        seq=body["seq"],
        decision=decision,
        kind=request["kind"],
        policy_hash=body["policy_hash"],
        context=MappingProxyType(dict(context)) if context else None,
        prev_hash=body["prev_hash"],
        hash=body["hash"],
    )


def _check_line(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """Parse and verify one line on its own; returns (record, '') or (None, what is wrong)."""
    if not line.endswith(b"\n"):
        return None, "incomplete last line (no newline)"
    try:
        record = json.loads(line)
    except ValueError as exc:
        return None, f"not valid JSON ({exc.msg})"
    if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
        return None, "not a decision record (no hash)"
    missing = _REQUIRED_KEYS - record.keys()
    if missing:
        return None, f"not a decision record (missing {', '.join(sorted(missing))})"
    body = dict(record)
    stored = body.pop("hash")
    expected, digest = _seal(_encoder.encode(body).encode("ascii"))
    if digest != stored or expected != line:
        return None, "hash does not match the line's content (the line was modified)"
    return record, ""


def verify(path: str | os.PathLike[str], *, expected_head: str | None = None) -> VerifyResult:
    """Check a decision log file: every line canonical with a correct hash, each `prev_hash`
    equal to the previous line's hash (zeros first), `seq` counting up from 1.

    With `expected_head` (a hash kept elsewhere, see the module docstring) the last line's
    hash must also equal it, which detects lines cut off the end. Reads the file once,
    streaming; an empty or missing-newline file is reported like any other bad line.
    """
    prev_hash = ZERO_HASH
    number = 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            record, problem = _check_line(line)
            if record is None:
                return VerifyResult(False, number, number, f"line {number}: {problem}", prev_hash)
            if record["prev_hash"] != prev_hash:
                what = "the first line must start the chain" if number == 1 else f"it does not follow line {number - 1}"
                return VerifyResult(
                    False, number, number,
                    f"line {number}: prev_hash breaks the chain ({what}: a line was inserted, deleted or reordered)",
                    prev_hash,
                )
            if record["seq"] != number:
                return VerifyResult(False, number, number, f"line {number}: seq is {record['seq']}, expected {number}", prev_hash)
            prev_hash = record["hash"]
    if expected_head is not None and expected_head != prev_hash:
        return VerifyResult(
            False, number, number or None,
            f"the last line's hash is not the expected head {expected_head} (lines were cut off the end?)",
            prev_hash,
        )
    return VerifyResult(True, number, None, f"{number} decisions, chain intact", prev_hash)


# ---- the live log -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    """What `open` learns from an existing file."""

    offsets: dict[str, int]  # the last ids' offsets: every line at or after `indexed_from`
    indexed_from: int  # byte offset; ids only on lines before it are found by `_find`
    seq: int
    head: str
    size: int


def _line_id(line: bytes) -> str | None:
    """The decision id of a complete line, or None when it has none."""
    start = line.find(_ID_KEY) + len(_ID_KEY)
    end = line.find(b'"', start)
    if start < len(_ID_KEY) or end < 0:
        return None
    raw = line[start:end]
    # An escaped quote always follows a backslash: without one, `end` is the real end.
    return raw.decode("ascii") if b"\\" not in raw else json.loads(line)["decision_id"]


def _trim(offsets: dict[str, int], capacity: int, line_offsets: list[int]) -> tuple[dict[str, int], int]:
    """The index of only the last `capacity` lines, and the offset from which it is complete
    (`line_offsets` holds the offsets of the lines indexed, in order, and is trimmed alike).
    Kept by offset, not by insertion order, so that an id logged twice keeps its last line. A
    new dict, so that a reader holding the old one sees a complete index."""
    boundary = line_offsets[-capacity]
    del line_offsets[:-capacity]
    return {decision_id: offset for decision_id, offset in offsets.items() if offset >= boundary}, boundary


def _scan(fd: int, path: Path, index_capacity: int) -> _Scan:
    """Index the last decision ids by offset, cut a torn last line, verify the last complete line."""
    offsets: dict[str, int] = {}
    line_offsets: list[int] = []
    indexed_from = 0
    offset = lines = 0
    last = previous = b""
    with open(fd, "rb", closefd=False, buffering=_READ_CHUNK) as file:
        file.seek(0)
        for line in file:
            if not line.endswith(b"\n"):
                log.warning("decision log %s: cutting an incomplete last line (%d bytes) left by a crash", path, len(line))
                os.ftruncate(fd, offset)
                os.fsync(fd)
                break
            decision_id = _line_id(line)
            if decision_id is None:
                raise _corrupt(path, f"line {lines + 1}", "no decision_id")
            offsets[decision_id] = offset  # a repeated id (a caller's bug) finds its last line
            line_offsets.append(offset)
            if len(line_offsets) >= 2 * index_capacity:  # trimming in bulk keeps the scan linear
                offsets, indexed_from = _trim(offsets, index_capacity, line_offsets)
            offset += len(line)
            lines += 1
            previous, last = last, line
    if len(line_offsets) > index_capacity:
        offsets, indexed_from = _trim(offsets, index_capacity, line_offsets)
    if not last:
        return _Scan(offsets, indexed_from, 0, ZERO_HASH, offset)
    record, problem = _check_line(last)
    if record is None:
        raise _corrupt(path, f"line {lines}", problem)
    expected_prev = previous[-_TAIL - 64 : -_TAIL].decode("ascii") if previous else ZERO_HASH
    if record["prev_hash"] != expected_prev or record["seq"] != lines:
        raise _corrupt(path, f"line {lines}", "the last line does not continue the chain")
    return _Scan(offsets, indexed_from, lines, record["hash"], offset)


def _corrupt(path: Path, where: str, problem: str) -> DomicileError:
    return failed_precondition(
        f"decision log {path} is damaged at {where}: {problem}; run `domicile audit verify --log {path}`",
        "DECISION_LOG_CORRUPT",
    )


class DecisionLog:
    """The live, append-only decision log of one process (see the module docstring).

    Use `await DecisionLog.open(path)`; `append` from the event loop or any thread; `await
    flush()` for durability; `await close()` at the end (it drains the queue).
    """

    def __init__(self, path: Path, fd: int, scan: _Scan, *, durable: bool, flush_interval: float, max_batch: int,
                 recent_capacity: int, index_capacity: int, max_queue: int, append_timeout: float) -> None:
        # Use `open`: it scans and locks the file first.
        self.path = path
        self.durable = durable
        self._fd = fd
        self._flush_interval = 0.0 if durable else flush_interval
        self._max_batch = max_batch
        self._recent_capacity = recent_capacity
        self._index_capacity = index_capacity
        self._max_queue = max_queue
        self._append_timeout = append_timeout
        # Written by the writer thread only; `get` reads them (a dict lookup is atomic, and
        # `_offsets` is replaced, never emptied, when trimmed).
        self._offsets = scan.offsets
        self._offsets_order: list[int] = sorted(scan.offsets.values())
        self._indexed_from = scan.indexed_from
        self._json_cache = _JsonCache()
        self._size = scan.size
        self._head = (scan.seq, scan.head)
        # The last `recent_capacity` written lines (what `get` is mostly asked for), as bytes:
        # bytes are invisible to the cyclic garbage collector, while keeping the Decision values
        # would add a few hundred thousand objects for every full collection to walk.
        self._recent: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the writer waits on it
        self._space = threading.Condition(self._lock)  # appenders wait on it when the queue is full
        # Guarded by _lock: the queue, the next seq, waiters, flags.
        self._queue: list[_Queued] = []
        # The writer is (or is about to be) waiting on `_wakeup`: only then does an append
        # need to notify it (a notify costs more than the append itself).
        self._writer_waiting = False
        self._space_waiters = 0
        self._appended_seq = scan.seq
        self._durable_seq = scan.seq
        self._waiters: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiter_order = itertools.count()
        self._flush_requested = False
        self._closing = False
        self._fd_closed = False
        self._failure: BaseException | None = None
        self._writer = threading.Thread(target=self._run, name=f"decision-log-writer:{path.name}", daemon=True)
        self._writer.start()

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durable: bool = False,
        flush_interval: float = 0.05,
        max_batch: int = 10_000,
        recent_capacity: int = 10_000,
        index_capacity: int = 200_000,
        max_queue: int = 20_000,
        append_timeout: float = 10.0,
    ) -> DecisionLog:
        """Open (creating it and its directory if needed) the log at `path` and continue its chain.

        `max_queue` bounds the entries waiting for the writer and `append_timeout` how long an
        `append` waits for room (see "Backpressure" in the module docstring);
        `recent_capacity` and `index_capacity` bound what `get` keeps in memory.

        Raises DomicileError FAILED_PRECONDITION with reason DECISION_LOG_IN_USE when another
        process (or another `DecisionLog`) has it open, DECISION_LOG_CORRUPT when its last
        complete line does not verify. Scanning is O(file size) and runs in a worker thread.
        """
        if flush_interval < 0 or max_batch < 1 or max_queue < 1 or index_capacity < 1 or append_timeout < 0:
            raise ValueError(
                "flush_interval and append_timeout must be >= 0, max_batch, max_queue and index_capacity >= 1"
            )
        log_path = Path(path)
        options = {
            "durable": durable, "flush_interval": flush_interval, "max_batch": max_batch,
            "recent_capacity": recent_capacity, "index_capacity": index_capacity, "max_queue": max_queue,
            "append_timeout": append_timeout,
        }
        return await asyncio.to_thread(cls._open_sync, log_path, options)

    @classmethod
    def _open_sync(cls, path: Path, options: dict[str, Any]) -> DecisionLog:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise failed_precondition(f"decision log {path} is in use by another writer", "DECISION_LOG_IN_USE") from None
            if created:
                _fsync_directory(path.parent)
            scan = _scan(fd, path, options["index_capacity"])
            return cls(path, fd, scan, **options)
        except BaseException:
            os.close(fd)
            raise

    # ---- writing ---------------------------------------------------------------------

    def append(
        self, decision: Decision, context: Mapping[str, str] | None = None, *, kind: str = "decide", policy_hash: str = ""
    ) -> int:
        """Queue `decision` (with optional `context` facts) for the log; returns its seq.

        Returns at once: the line is written by the writer thread (see the module docstring
        for when it is durable). `kind` names the question (decide, route, check_job, scan,
        ...); `policy_hash` is the active policy's content hash. When `max_queue` entries are
        already waiting, blocks until the writer takes them (backpressure), at most
        `append_timeout` seconds. Raises DomicileError UNAVAILABLE when the log has failed, is
        closed, or stayed full that long: a decision that cannot be logged must not be answered.
        """
        with self._lock:
            if self._failure is not None or self._closing:
                raise self._unavailable()
            queue = self._queue
            if len(queue) >= self._max_queue:
                self._wait_for_space()
                queue = self._queue
            self._appended_seq += 1
            seq = self._appended_seq
            queue.append((seq, decision, context, kind, policy_hash))
            if self._writer_waiting and (len(queue) == 1 or len(queue) >= self._max_batch):
                self._writer_waiting = False
                self._wakeup.notify()
        return seq

    def append_many(
        self,
        decisions: Iterable[Decision],
        context: Mapping[str, str] | None = None,
        *,
        kind: str = "decide",
        policy_hash: str = "",
    ) -> int:
        """`append` for each decision, in order, with their seqs consecutive while the queue has
        room (one lock round instead of one per decision); returns the last seq (the current
        head seq when `decisions` is empty). Backpressure and errors as for `append`; when it
        raises, the decisions before the one it could not queue stay queued."""
        with self._lock:
            if self._failure is not None or self._closing:
                raise self._unavailable()
            queue = self._queue
            room = self._max_queue - len(queue)
            seq = self._appended_seq
            was_empty = not queue
            for decision in decisions:
                if room <= 0:
                    self._appended_seq = seq
                    self._wait_for_space()
                    queue = self._queue
                    room = self._max_queue - len(queue)
                    was_empty = was_empty or not queue
                seq += 1
                queue.append((seq, decision, context, kind, policy_hash))
                room -= 1
            self._appended_seq = seq
            if self._writer_waiting and queue and (was_empty or len(queue) >= self._max_batch):
                self._writer_waiting = False
                self._wakeup.notify()
        return seq

    def _wait_for_space(self) -> None:
        """Block (holding nothing but the wait) until the queue has room. Holds _lock."""
        self._space_waiters += 1
        try:
            if self._writer_waiting:  # a full queue is a full batch: start writing now
                self._writer_waiting = False
                self._wakeup.notify()
            roomy = self._space.wait_for(
                lambda: len(self._queue) < self._max_queue or self._failure is not None or self._closing,
                timeout=self._append_timeout,
            )
        finally:
            self._space_waiters -= 1
        if self._failure is not None or self._closing:
            raise self._unavailable()
        if not roomy:
            raise DomicileError(
                f"decision log {self.path} is {len(self._queue)} entries behind and did not catch up within "
                f"{self._append_timeout:g}s; refusing to answer decisions it cannot log",
                ErrorCode.UNAVAILABLE, "DECISION_LOG_BEHIND", retry_after=1.0,
            )

    async def flush(self) -> None:
        """Return once every entry appended before this call is written and fsynced.

        Raises DomicileError UNAVAILABLE if the log failed before that.
        """
        await self._wait_durable(self._appended_seq)

    async def _wait_durable(self, seq: int) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if seq <= self._durable_seq:
                return
            if self._failure is not None:
                raise self._unavailable()
            future: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiters, (seq, next(self._waiter_order), loop, future))
            self._flush_requested = True
            self._writer_waiting = False
            self._wakeup.notify()
        await future

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last durable line; (0, 64 zeros) for an empty log."""
        with self._lock:
            return self._head

    async def close(self) -> None:
        """Write everything queued, fsync, stop the writer and release the file. Idempotent.

        Does not raise when the log had failed: that was reported to `flush` callers and
        logged, and shutting down must still complete.
        """
        with self._lock:
            first = not self._closing
            self._closing = True
            self._wakeup.notify()
            self._space.notify_all()
        await asyncio.to_thread(self._writer.join)
        if first:
            os.close(self._fd)  # also releases the flock
            self._fd_closed = True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._writer_waiting = True
                    self._wakeup.wait()
                if self._queue and not self._closing and not self._flush_requested and self._flush_interval:
                    # Give the batch time to fill; a flush request, a full batch or a full queue
                    # (an appender waiting for room) ends the wait.
                    self._writer_waiting = True
                    self._wakeup.wait_for(
                        lambda: self._flush_requested or self._closing or self._space_waiters
                        or len(self._queue) >= self._max_batch,
                        timeout=self._flush_interval,
                    )
                self._writer_waiting = False
                batch, self._queue = self._queue, []
                self._flush_requested = False
                if self._space_waiters:
                    self._space.notify_all()
                stop = self._closing and not batch
            if stop:
                return
            try:
                self._write(batch)
            except BaseException as exc:  # disk full, I/O error: fail every waiter, refuse more
                log.error("decision log %s failed: %s", self.path, exc)
                with self._lock:
                    self._failure = exc
                    self._release_waiters(upto=None)
                    self._space.notify_all()
                return

    def _write(self, batch: list[_Queued]) -> None:
        prev_hash = self._head[1]
        lines = []
        offsets = []
        offset = self._size
        time_of, time_text = None, ""
        cache = self._json_cache
        for seq, decision, context, kind, policy_hash in batch:
            # Decisions of one request share their decide time: format it once.
            if decision.decide_time is not time_of:
                time_of, time_text = decision.decide_time, _format_time(decision.decide_time)
            line, digest = _seal(_canonical(seq, decision, kind, policy_hash, context, prev_hash, time_text, cache))
            lines.append(line)
            offsets.append((offset, prev_hash, digest))
            offset += len(line)
            prev_hash = digest
        data = memoryview(b"".join(lines))
        while data:
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)
        self._size = offset
        index, recent, order = self._offsets, self._recent, self._offsets_order
        for queued, line, (line_offset, _, _) in zip(batch, lines, offsets, strict=True):
            decision_id = queued[1].decision_id
            index[decision_id] = line_offset
            order.append(line_offset)
            recent[decision_id] = line
        if len(order) >= 2 * self._index_capacity:
            # Forgotten ids stay findable: `get` scans the file before `_indexed_from`. That is
            # moved first: a `get` (another thread) reading the old index finds every id from
            # the old boundary on in it, and one reading the new index scans up to the new one.
            trimmed, self._indexed_from = _trim(index, self._index_capacity, order)
            self._offsets = trimmed
        excess = len(recent) - self._recent_capacity
        if excess > 0:
            for decision_id in list(itertools.islice(recent, excess)):
                del recent[decision_id]
        with self._lock:
            self._head = (batch[-1][0], prev_hash)
            self._durable_seq = batch[-1][0]
            self._release_waiters(upto=self._durable_seq)

    def _release_waiters(self, upto: int | None) -> None:
        """Resolve waiters up to seq `upto` (all of them, failed, when None). Holds _lock."""
        while self._waiters and (upto is None or self._waiters[0][0] <= upto):
            _, _, loop, future = heapq.heappop(self._waiters)
            error = None if upto is not None else self._unavailable()
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass

    def _unavailable(self) -> DomicileError:
        if self._failure is not None:
            return DomicileError(f"decision log {self.path} failed: {self._failure}", ErrorCode.UNAVAILABLE, "DECISION_LOG_FAILED")
        return DomicileError(f"decision log {self.path} is closed", ErrorCode.UNAVAILABLE, "DECISION_LOG_CLOSED")

    # ---- reading ---------------------------------------------------------------------

    async def get(self, decision_id: str) -> LoggedDecision | None:
        """The logged decision with this id, or None. A decision still queued is flushed first,
        so what is returned is always the durable line."""
        if decision_id not in self._offsets and self._durable_seq < self._appended_seq:
            await self.flush()
        line = self._recent.get(decision_id)
        if line is not None:
            record, problem = _check_line(line)
            if record is None:  # only memory corruption could get here
                raise _corrupt(self.path, f"decision {decision_id}", problem)
            return _decision_from(record)
        offset = self._offsets.get(decision_id)
        if offset is None:
            if not self._indexed_from:
                return None
            offset = await asyncio.to_thread(self._find, decision_id, self._indexed_from)
            if offset is None:
                return None
        return await asyncio.to_thread(self._read_at, offset)

    def _find(self, decision_id: str, end: int) -> int | None:
        """Offset of the last line before byte `end` logged with `decision_id`, or None: the
        lookup for ids older than the in-memory index (O(file size before `end`))."""
        if self._fd_closed:
            raise self._unavailable()
        needle = _ID_KEY + _json_string(decision_id)[1:].encode("ascii")
        found = None
        offset = 0  # of the first line in `pending`
        pending = b""
        while offset < end:
            # pread, not the shared file position: lookups may run concurrently.
            chunk = os.pread(self._fd, min(_READ_CHUNK, end - offset - len(pending)), offset + len(pending))
            if not chunk:
                break
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()  # the unfinished line, completed by the next chunk
            for line in lines:
                if needle in line and _line_id(line) == decision_id:
                    found = offset
                offset += len(line) + 1
        return found

    def _read_at(self, offset: int) -> LoggedDecision:
        if self._fd_closed:
            raise self._unavailable()
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.pread(self._fd, 8192, offset + len(data))
            if not chunk:
                break
            newline = chunk.find(b"\n")
            data += chunk if newline < 0 else chunk[: newline + 1]
        record, problem = _check_line(data)
        if record is None:
            raise _corrupt(self.path, f"byte offset {offset}", problem)
        return _decision_from(record)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the waiter was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
