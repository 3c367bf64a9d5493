"""The decision log: append-only, hash-chained JSON Lines, written off the decision path.

Line format -- one line per write of the writer thread, holding the decisions queued since the
previous one (at most `line_decisions` of them), UTF-8, ending in a newline:

    {"prev_hash":"<64 hex>",
     "reasons":[{"citation":"GDPR Art. 44","code":"RULE_DENIED","message":"...","rule_id":"..."}, ...],
     "region_sets":[["aws:eu-central-1",...], ...],
     "requests":[{"caller":"...","catalog_revision":7,["context":{...},]
                  "decisions":[{"allowed_regions":0,"dataset_id":"...","decision_id":"...",
                                ["inherited_only":true,]"operation":"store","outcome":"deny",
                                "reasons":[[0,["s3://raw/...","s3://derived/..."]], ...],
                                "region":"...","time":"...Z"}, ...],
                  "kind":"decide","policy_hash":"...","policy_version":"..."}, ...],
     "seq":1,"hash":"<64 hex>"}

`inherited_only` is present (and true) only for a decision on a derived placeholder (judged
by what it inherits). A `requests` entry holds consecutive decisions that share who asked, what was asked (`kind`:
decide, batch_decide, route, check_job, scan_violations, ...), the policy and the catalog
revision -- the decisions of one BatchDecide, or a run of Decide calls from one caller.
Each decision's `allowed_regions` is an index into its line's `region_sets`, and each of its
reasons is [index into the line's `reasons`, lineage path]: decisions mostly share a handful of
allowed-region lists (one per label mix and operation) and reason texts (one per rule and
region), which would otherwise be most of every record; the lineage path is the dataset's own.
Everything before `"hash"` is the canonical JSON of the line (orjson with sorted keys: no
spaces, UTF-8); `hash` is the SHA-256 (hex) of exactly those bytes, which include
`prev_hash`, the previous line's `hash` (64 zeros for the first line). `seq` counts lines from
1. So a line is valid only if it is byte-for-byte the canonical rendering of its own content,
and the chain breaks at any modified, inserted, deleted or reordered line; `verify` names the
first line where it breaks. What a chain cannot show on its own is the loss of its *last*
lines: compare `DecisionLog.head()` (or
`VerifyResult.head_hash`) with a copy kept elsewhere (`verify(path, expected_head=...)`).

Writing: `append` only enqueues (O(1), under a short lock); `append_many` enqueues a whole
batch as one item (O(1) Python work, whatever its size). A writer thread takes everything
queued, renders it into lines, hashes them (hashlib lets go of the interpreter lock for large
inputs), writes them with one `write` and `fsync`s the file, at the latest `flush_interval`
seconds after the first queued entry or as soon as `max_batch` entries wait or someone awaits
`flush()`. Grouping decisions into lines, and what they share into `requests`, `region_sets`
and `reasons`, is what keeps logging from capping decision throughput: the writer runs under
the same interpreter lock as the router, so each decision must cost it little (`_LineBuilder`
renders them). Lines are
UTF-8, not ASCII: split the file on b"\n" only (U+2028 and friends may occur inside a line).

Backpressure: the queue holds at most `max_queue` entries. An `append` that finds it full
blocks its caller until the writer has taken the queue, for at most `append_timeout` seconds,
and then raises UNAVAILABLE -- a decision is never dropped from the log silently, and one that
cannot be queued is not answered (fail closed). On the router's event loop that block stalls
the loop: the router then answers no faster than the log writes, which is the point.

Reading back: `get` finds the lines of the last `recent_capacity` written decisions in memory
and the last `index_capacity` decision ids by byte offset; older ids are found by scanning the
part of the file before the oldest indexed line (in a worker thread), so memory stays bounded
however long the log grows. The writer only notes each written line's ids; the first `get`
after a write indexes them (in a worker thread; at most `index_capacity` ids, whatever was
written since), so logging costs nothing per decision for the index while nobody reads.

What is guaranteed on a crash:
- An entry is durable once a `flush()` started after its `append` has returned.
- Entries not yet flushed are lost if the process dies: in the default (asynchronous) mode
  a decision already answered may be missing from the log, up to `flush_interval` seconds'
  worth plus one batch being written. `durable=True` is the mode for callers that await
  `flush()` before answering (the router does, with `router.durable_decision_log`); the
  writer then never waits to fill a batch.
- A crash in the middle of a write leaves at most one incomplete last line; `open` cuts it
  off (it was never flushed, so no caller waited for it) and continues the chain after the
  last complete line. `open` verifies that last complete line and refuses the file if it
  does not verify; `domicile audit verify` checks every line.

Logs written before 2026-11-30 hold one decision per line (format 1, recognised by a
top-level `decision_id`). `verify` still checks them; `open` moves such a file aside (to
`<name>.format1-<UTC time>`, intact) and starts a new log, since the two formats cannot share
a chain.

One process owns a log file at a time (an exclusive `flock`); a second `open` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import orjson

from domicile.errors import DomicileError, ErrorCode, failed_precondition
from domicile.private_files import PRIVATE_FILE_MODE, make_private_directory
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode
from domicile.telemetry.metrics import DECISION_LOG_FSYNC, DECISION_LOG_WRITE

log = logging.getLogger(__name__)

ZERO_HASH = "0" * 64
_HASH_KEY = b',"hash":"'
# Every line ends with `,"hash":"<64 hex>"}\n`: the hash sits at a fixed distance from the end.
_TAIL = len('"}\n')
_ID_KEY = b'"decision_id":'
# A decision id in a line as bytes: the JSON string after the key (escapes included).
_ID_PATTERN = re.compile(rb'[,{]"decision_id":"((?:[^"\\]|\\.)*)"')
_READ_CHUNK = 1 << 20
_LINE_KEYS = frozenset(("prev_hash", "reasons", "region_sets", "requests", "seq"))
_REASON_KEYS = frozenset(("citation", "code", "message", "rule_id"))
_REQUEST_KEYS = frozenset(("caller", "catalog_revision", "decisions", "kind", "policy_hash", "policy_version"))
_DECISION_KEYS = frozenset(
    ("allowed_regions", "dataset_id", "decision_id", "operation", "outcome", "reasons", "region", "time")
)
_CANONICAL = orjson.OPT_SORT_KEYS

# A queue item: (decisions, context, kind, policy_hash), `decisions` being one Decision (from
# `append`) or a tuple of them (`append_many`: one item for a whole BatchDecide, so that queueing
# it costs no Python work per decision).
_Queued = tuple["Decision | tuple[Decision, ...]", "Mapping[str, str] | None", str, str]


# The kinds of decisions that answer a caller's question about storing or processing a dataset
# somewhere: access records count them as the caller's intents (`set_intent_sink`).
INTENT_KINDS = frozenset({"decide", "batch_decide", "route", "check_job"})
# Receives, per written batch, how many intents each (caller, dataset, operation, region) had.
IntentSink = Callable[[dict[tuple[str, str, Operation, str], int]], None]


def intent_counts(batch: Iterable[_Queued]) -> dict[tuple[str, str, Operation, str], int]:
    """Decisions of INTENT_KINDS in queued items, counted per (caller, dataset, operation, region)."""
    counts: dict[tuple[str, str, Operation, str], int] = {}
    get = counts.get
    for item, _, kind, _ in batch:
        if kind not in INTENT_KINDS:
            continue
        decisions = (item,) if isinstance(item, Decision) else item
        for d in decisions:
            key = (d.caller, d.dataset_id, d.operation, d.region)
            counts[key] = get(key, 0) + 1
    return counts


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as the log holds it, with the line (`seq`, `prev_hash`, `hash`) that holds it."""

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
    lines read, `decisions` the decisions in the lines that verified; `head_hash` is the hash
    of the last line that verified."""

    ok: bool
    lines: int
    first_bad_line: int | None
    message: str
    head_hash: str = ZERO_HASH
    decisions: int = 0


# ---- rendering and checking one line ------------------------------------------------------


def _format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and `Z` (what `isoformat` gives, at half its cost:
    the writer formats the time of every Decide)."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("decide_time must be timezone-aware")
        value = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 -- the fastest way to format it
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _time_value(value: datetime) -> datetime | str:
    """What `_LineBuilder.add` takes as a decision's time: the datetime itself where orjson
    renders it exactly as `_format_time` would (UTC, microseconds not zero: orjson leaves a zero
    fraction out), at a fifth of the cost, and `_format_time`'s text otherwise."""
    if type(value) is datetime and value.tzinfo is UTC and value.microsecond:
        return value  # (orjson refuses datetime subclasses)
    return _format_time(value)


class _LineBuilder:
    """Collects the decisions of one line and renders it.

    Each decision is rendered by orjson as it is added, and the line is assembled from those
    pieces with the punctuation between them: the builder then holds bytes, not thousands of
    dicts and lists that would live long enough to be promoted through the garbage collector's
    generations (and make it walk them, over and over, under the router's interpreter lock).
    The pieces are dicts with their keys in sorted order and the assembly keeps that order, so
    the result is the canonical rendering; tests hold it equal to orjson's sorted-key rendering
    of the parsed line.
    """

    __slots__ = (
        "_group",
        "_reason_index",
        "_reasons",
        "_region_sets",
        "_requests",
        "_set_by_id",
        "_set_by_value",
        "_shared",
        "ids",
    )

    def __init__(self) -> None:
        self.ids: list[str] = []  # of the decisions added, in order
        # (request head, its decisions) per request entry; the head renders the keys sorted
        # before "decisions", the tail those after it.
        self._requests: list[tuple[bytes, list[bytes], bytes]] = []
        self._region_sets: list[tuple[str, ...]] = []
        # The engine hands out one tuple per allowed-region list, so identity finds most;
        # equal lists from different objects still share one entry.
        self._set_by_id: dict[int, int] = {}
        self._set_by_value: dict[tuple[str, ...], int] = {}
        self._reasons: list[dict[str, str]] = []
        self._reason_index: dict[tuple[str, str, str, str], int] = {}
        self._group: list[bytes] = []  # the decisions of the last request entry
        self._shared: tuple[Any, ...] = ()  # what that entry's decisions share

    def add(
        self,
        decision: Decision,
        context: Mapping[str, str] | None,
        kind: str,
        policy_hash: str,
        time_text: datetime | str,
    ) -> None:
        """Add `decision`; `time_text` is `_time_value(decision.decide_time)`."""
        regions = decision.allowed_regions
        index = self._set_by_id.get(id(regions))
        if index is None:
            index = self._set_by_value.setdefault(regions, len(self._region_sets))
            if index == len(self._region_sets):
                self._region_sets.append(regions)
            # Safe: `regions` stays alive (held by the decision) as long as this builder.
            self._set_by_id[id(regions)] = index
        shared = self._shared
        # Decisions of one request share these very objects: identity settles the common case.
        same = (
            bool(shared)
            and decision.caller is shared[0]
            and decision.catalog_revision is shared[1]
            and context is shared[2]
            and kind is shared[3]
            and policy_hash is shared[4]
            and decision.policy_version is shared[5]
        )
        if not same:
            key = (decision.caller, decision.catalog_revision, context, kind, policy_hash, decision.policy_version)
            if key != shared:
                self._new_request(key)
        reasons = []
        if decision.reasons:
            known = self._reason_index
            for reason in decision.reasons:
                code, message, rule_id, citation, path = reason
                reason_key = (code._value_, message, rule_id, citation)  # not the Enum: it hashes in Python
                number = known.get(reason_key)
                if number is None:
                    number = known[reason_key] = len(self._reasons)
                    self._reasons.append(
                        {"citation": citation, "code": code._value_, "message": message, "rule_id": rule_id}
                    )
                reasons.append((number, path))
        self.ids.append(decision.decision_id)
        entry: dict[str, Any] = {
            "allowed_regions": index,
            "dataset_id": decision.dataset_id,
            "decision_id": decision.decision_id,
        }
        if decision.inherited_only:  # (keys in sorted order: the rendering is canonical)
            entry["inherited_only"] = True
        entry["operation"] = decision.operation._value_  # `_value_`: without the property's cost
        entry["outcome"] = decision.outcome._value_
        entry["reasons"] = reasons
        entry["region"] = decision.region
        entry["time"] = time_text
        self._group.append(orjson.dumps(entry, option=orjson.OPT_UTC_Z))

    def _new_request(self, shared: tuple[Any, ...]) -> None:
        """Start a request entry for decisions sharing (caller, revision, context, kind, policy
        hash, policy version)."""
        self._shared = shared
        self._group = []
        head, tail = _request_parts(shared)
        self._requests.append((head, self._group, tail))

    def parts(self) -> _LineParts:
        """What `_line` assembles."""
        requests = [(head, b",".join(group), tail) for head, group, tail in self._requests]
        return self.ids, requests, self._region_sets, self._reasons


# A line's content before assembly: its decision ids; (head, decisions joined by ",", tail) per
# request entry; its region sets; its reasons.
_LineParts = tuple[list[str], list[tuple[bytes, bytes, bytes]], list[tuple[str, ...]], list[dict[str, str]]]


def _request_parts(shared: tuple[Any, ...]) -> tuple[bytes, bytes]:
    """A request entry's JSON before and after its "decisions", for its (caller, revision,
    context, kind, policy hash, policy version): `{"caller":...,"catalog_revision":...` and
    `"kind":...,"policy_hash":...,"policy_version":...}` (keys sorted)."""
    caller, revision, context, kind, policy_hash, version = shared
    head: dict[str, Any] = {"caller": caller, "catalog_revision": revision}
    if context:
        head["context"] = dict(sorted(context.items()))
    tail = {"kind": kind, "policy_hash": policy_hash, "policy_version": version}
    return orjson.dumps(head)[:-1], orjson.dumps(tail)[1:]


def _render_line(queue: list[_Queued], item: int, offset: int, limit: int) -> tuple[_LineParts, int, int]:
    """The parts of the line holding the next (at most) `limit` decisions of `queue`, from
    decision `offset` of `queue[item]` on, and where the line after it starts (item, offset)."""
    builder = _LineBuilder()
    add = builder.add
    time_of: datetime | None = None
    time_text: datetime | str = ""
    count = 0
    while item < len(queue) and count < limit:
        decisions, context, kind, policy_hash = queue[item]
        many = type(decisions) is tuple  # else one Decision (a NamedTuple)
        size = len(decisions) if many else 1
        while offset < size and count < limit:
            decision = cast("tuple[Decision, ...]", decisions)[offset] if many else cast(Decision, decisions)
            # Decisions of one request share their decide time: format it once.
            if decision.decide_time is not time_of:
                time_of, time_text = decision.decide_time, _time_value(decision.decide_time)
            add(decision, context, kind, policy_hash, time_text)
            offset += 1
            count += 1
        if offset < size:
            break  # the line is full: the next one starts inside this item
        item, offset = item + 1, 0
    return builder.parts(), item, offset


def _line(parts: _LineParts, seq: int, prev_hash: str) -> tuple[bytes, str]:
    """The sealed line (and its hash) for a line's parts."""
    _, requests, region_sets, reasons = parts
    canonical = b"".join(
        (
            b'{"prev_hash":',
            orjson.dumps(prev_hash),
            b',"reasons":',
            orjson.dumps(reasons),
            b',"region_sets":',
            orjson.dumps(region_sets),
            b',"requests":[',
            b",".join([b"".join((head, b',"decisions":[', body, b"],", tail)) for head, body, tail in requests]),
            b'],"seq":',
            str(seq).encode("ascii"),
            b"}",
        )
    )
    return _seal(canonical)


def _seal(canonical: bytes) -> tuple[bytes, str]:
    """The line for a record's canonical JSON (without `hash`), and its hash."""
    digest = hashlib.sha256(canonical).hexdigest()
    return b"".join((canonical[:-1], _HASH_KEY, digest.encode("ascii"), b'"}\n')), digest


def _logged(line: Mapping[str, Any], request: Mapping[str, Any], entry: Mapping[str, Any]) -> LoggedDecision:
    """The LoggedDecision of one decision of a verified line."""
    decision = Decision(
        decision_id=entry["decision_id"],
        outcome=Outcome(entry["outcome"]),
        dataset_id=entry["dataset_id"],
        operation=Operation(entry["operation"]),
        region=entry["region"],
        allowed_regions=tuple(line["region_sets"][entry["allowed_regions"]]),
        reasons=tuple(
            Reason(
                code=ReasonCode(line["reasons"][number]["code"]),
                message=line["reasons"][number]["message"],
                rule_id=line["reasons"][number]["rule_id"],
                citation=line["reasons"][number]["citation"],
                lineage_path=tuple(path),
            )
            for number, path in entry["reasons"]
        ),
        policy_version=request["policy_version"],
        catalog_revision=request["catalog_revision"],
        decide_time=datetime.fromisoformat(entry["time"]),
        caller=request["caller"],
        inherited_only=entry.get("inherited_only", False),
    )
    context = request.get("context")
    return LoggedDecision(
        seq=line["seq"],
        decision=decision,
        kind=request["kind"],
        policy_hash=request["policy_hash"],
        context=MappingProxyType(dict(context)) if context else None,
        prev_hash=line["prev_hash"],
        hash=line["hash"],
    )


def decisions_of_line(line: bytes) -> list[LoggedDecision]:
    """Every decision of one complete line (with its newline), in the order logged, once the
    line verifies on its own (its hash matches its bytes); ValueError naming the problem
    otherwise. What decision search (`router.decision_search`) reads the log with."""
    record, problem = _check_line(line)
    if record is None:
        raise ValueError(problem)
    return [_logged(record, request, entry) for request in record["requests"] for entry in request["decisions"]]


def _check_line(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """Parse and verify one line on its own; returns (record, '') or (None, what is wrong)."""
    record, problem = _sealed_record(
        line, orjson.loads, lambda body: orjson.dumps(body, option=_CANONICAL), _LINE_KEYS, "decision log line"
    )
    if record is not None:
        problem = _check_shape(record)
    return (record, "") if not problem else (None, problem)


def _sealed_record(
    line: bytes,
    loads: Callable[[bytes], Any],
    render: Callable[[dict[str, Any]], bytes],
    keys: frozenset[str],
    what: str,
) -> tuple[dict[str, Any] | None, str]:
    """The record of a complete line whose keys include `keys` and whose bytes are exactly
    `_seal` of `render` (the format's canonical JSON) of its content; or (None, the problem).
    Shared by both formats, which differ only in their JSON codec and keys."""
    if not line.endswith(b"\n"):
        return None, "incomplete last line (no newline)"
    try:
        record = loads(line)
    except ValueError as exc:  # orjson's and json's decode errors are both ValueErrors
        return None, f"not valid JSON ({exc})"
    if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
        return None, "not a decision log line (no hash)"
    missing = keys - record.keys()
    if missing:
        return None, f"not a {what} (missing {', '.join(sorted(missing))})"
    body = dict(record)
    stored = body.pop("hash")
    expected, digest = _seal(render(body))
    if digest != stored or expected != line:
        return None, "hash does not match the line's content (the line was modified)"
    return record, ""


_OUTCOMES = frozenset(outcome.value for outcome in Outcome)
_OPERATIONS = frozenset(op.value for op in Operation)
_REASON_CODES = frozenset(code.value for code in ReasonCode)


def _check_shape(record: Mapping[str, Any]) -> str:
    """What makes a line whose hash is right still not a line this log writes ('' if nothing):
    everything `get` and replay read from it is checked here, so that `verify` passing means
    every decision of the line can be read back."""
    requests, region_sets, reasons = record["requests"], record["region_sets"], record["reasons"]
    if (
        not isinstance(requests, list)
        or not requests
        or not isinstance(region_sets, list)
        or not isinstance(reasons, list)
    ):
        return "not a decision log line (no requests)"
    if not isinstance(record["seq"], int) or not isinstance(record["prev_hash"], str):
        return "not a decision log line (bad seq or prev_hash)"
    if not all(isinstance(regions, list) and all(isinstance(r, str) for r in regions) for regions in region_sets):
        return "a region set of the line is not a list of region ids"
    for number, reason in enumerate(reasons, start=1):
        if not isinstance(reason, dict) or _REASON_KEYS - reason.keys() or not _all_str(reason, _REASON_KEYS):
            return f"reason {number} of the line is incomplete"
        if reason["code"] not in _REASON_CODES:
            return f"reason {number} of the line has an unknown code {reason['code']!r}"
    number = 0
    for request_number, request in enumerate(requests, start=1):
        if (
            not isinstance(request, dict)
            or _REQUEST_KEYS - request.keys()
            or not _all_str(request, ("caller", "kind", "policy_hash", "policy_version"))
            or type(request["catalog_revision"]) is not int
            or not isinstance(request["decisions"], list)
            or not request["decisions"]
        ):
            return f"request {request_number} of the line is incomplete"
        context = request.get("context")
        if context is not None and not (isinstance(context, dict) and _all_str(context, context.keys())):
            return f"request {request_number} of the line has a context that is not text facts"
        for entry in request["decisions"]:
            number += 1
            problem = _check_decision(entry, len(region_sets), len(reasons))
            if problem:
                return f"decision {number} of the line {problem}"
    return ""


def _all_str(mapping: Mapping[str, Any], keys: Iterable[str]) -> bool:
    return all(isinstance(key, str) and isinstance(mapping[key], str) for key in keys)


def _check_decision(entry: Any, region_sets: int, reasons: int) -> str:
    """What is wrong with one decision entry ('' if nothing)."""
    if not isinstance(entry, dict) or _DECISION_KEYS - entry.keys():
        return "is incomplete"
    if not _all_str(entry, ("dataset_id", "decision_id", "operation", "outcome", "region", "time")):
        return "has a field that is not text"
    if entry["outcome"] not in _OUTCOMES or entry["operation"] not in _OPERATIONS:
        return "has an unknown outcome or operation"
    try:
        datetime.fromisoformat(entry["time"])
    except ValueError:
        return f"has a time that is not RFC 3339: {entry['time'][:40]!r}"
    if entry.get("inherited_only", True) is not True:
        return "has an inherited_only that is not true (it is left out when false)"
    index = entry["allowed_regions"]
    if type(index) is not int or not 0 <= index < region_sets:
        return "refers to a region set the line does not hold"
    items = entry["reasons"]
    if not isinstance(items, list) or not all(
        isinstance(item, list)
        and len(item) == 2
        and type(item[0]) is int
        and 0 <= item[0] < reasons
        and isinstance(item[1], list)
        and all(isinstance(step, str) for step in item[1])
        for item in items
    ):
        return "refers to a reason the line does not hold"
    return ""


def _decisions_in(record: Mapping[str, Any]) -> int:
    return sum(len(request["decisions"]) for request in record["requests"])


# Format 1 (logs written before 2026-11-30): one decision per line, canonical JSON by the
# standard library (sorted keys, no spaces, ASCII escapes), otherwise the same chain.
_FORMAT1_KEYS = frozenset(
    (
        "allowed_regions",
        "caller",
        "catalog_revision",
        "decision_id",
        "outcome",
        "policy_hash",
        "policy_version",
        "prev_hash",
        "reasons",
        "request",
        "seq",
        "time",
    )
)
_FORMAT1_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _check_format1_line(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """`_check_line` for a format-1 line."""
    return _sealed_record(
        line,
        json.loads,
        lambda body: _FORMAT1_ENCODER.encode(body).encode("ascii"),
        _FORMAT1_KEYS,
        "format-1 decision log line",
    )


def _is_format1(first_line: bytes) -> bool:
    """Whether a log's first line is a format-1 record (a decision at the top level)."""
    try:
        record = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(record, dict) and "decision_id" in record and "requests" not in record


def _line_ids(line: bytes) -> list[str]:
    """The decision ids a complete line holds, in order, read without parsing the whole line.

    The pattern wants the key where a key can start (after `{` or `,`), so no string value
    matches it; decision entries are the only objects with that key, since `append` refuses a
    context that has one.
    """
    return [
        raw.decode("utf-8") if b"\\" not in raw else orjson.loads(b'"' + raw + b'"')
        for raw in _ID_PATTERN.findall(line)
    ]


def verify(path: str | os.PathLike[str], *, expected_head: str | None = None) -> VerifyResult:
    """Check a decision log file: every line canonical with a correct hash and well formed,
    each `prev_hash` equal to the previous line's hash (zeros first), `seq` counting up from 1.

    With `expected_head` (a hash kept elsewhere, see the module docstring) the last line's
    hash must also equal it, which detects lines cut off the end. Reads the file once,
    streaming; an empty or missing-newline file is reported like any other bad line.
    """
    prev_hash = ZERO_HASH
    number = decisions = 0
    with open(path, "rb") as file:
        format1 = _is_format1(file.readline())
        file.seek(0)
        check = _check_format1_line if format1 else _check_line
        for number, line in enumerate(file, start=1):
            record, problem = check(line)
            if record is None:
                return VerifyResult(False, number, number, f"line {number}: {problem}", prev_hash, decisions)
            if record["prev_hash"] != prev_hash:
                what = "the first line must start the chain" if number == 1 else f"it does not follow line {number - 1}"
                return VerifyResult(
                    False,
                    number,
                    number,
                    f"line {number}: prev_hash breaks the chain ({what}: a line was inserted, deleted or reordered)",
                    prev_hash,
                    decisions,
                )
            if record["seq"] != number:
                return VerifyResult(
                    False,
                    number,
                    number,
                    f"line {number}: seq is {record['seq']}, expected {number}",
                    prev_hash,
                    decisions,
                )
            prev_hash = record["hash"]
            decisions += 1 if format1 else _decisions_in(record)
    if expected_head is not None and expected_head != prev_hash:
        return VerifyResult(
            False,
            number,
            number or None,
            f"the last line's hash is not the expected head {expected_head} (lines were cut off the end?)",
            prev_hash,
            decisions,
        )
    kind = " (format 1, before 2026-11-30)" if format1 else ""
    return VerifyResult(
        True,
        number,
        None,
        f"{_count(decisions, 'decision')} in {_count(number, 'line')}{kind}, chain intact",
        prev_hash,
        decisions,
    )


# ---- the live log -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    """What `open` learns from an existing file."""

    offsets: dict[str, int]  # the last ids' line offsets: every id on a line at or after `indexed_from`
    order: list[int]  # the line offset of each indexed id, in file order
    indexed_from: int  # byte offset; ids only on lines before it are found by `_find`
    seq: int
    head: str
    size: int


def _trim(offsets: dict[str, int], capacity: int, line_offsets: list[int]) -> tuple[dict[str, int], int]:
    """The index of only the last `capacity` ids, and the offset from which it is complete
    (`line_offsets` holds the line offset of each id indexed, in order, and is trimmed alike;
    a line is kept whole). Kept by offset, not by insertion order, so that an id logged twice
    keeps its last line. A new dict, so that a reader holding the old one sees a complete index."""
    boundary = line_offsets[-capacity]
    start = len(line_offsets) - capacity
    while start > 0 and line_offsets[start - 1] == boundary:
        start -= 1
    del line_offsets[:start]
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
                log.warning(
                    "decision log %s: cutting an incomplete last line (%d bytes) left by a crash", path, len(line)
                )
                os.ftruncate(fd, offset)
                os.fsync(fd)
                break
            ids = _line_ids(line)
            if not ids:
                raise _corrupt(path, f"line {lines + 1}", "no decision_id")
            for decision_id in ids:
                offsets[decision_id] = offset  # a repeated id (a caller's bug) finds its last line
            line_offsets.extend(itertools.repeat(offset, len(ids)))
            if len(line_offsets) >= 2 * index_capacity:  # trimming in bulk keeps the scan linear
                offsets, indexed_from = _trim(offsets, index_capacity, line_offsets)
            offset += len(line)
            lines += 1
            previous, last = last, line
    if len(line_offsets) > index_capacity:
        offsets, indexed_from = _trim(offsets, index_capacity, line_offsets)
    if not last:
        return _Scan(offsets, line_offsets, indexed_from, 0, ZERO_HASH, offset)
    record, problem = _check_line(last)
    if record is None:
        raise _corrupt(path, f"line {lines}", problem)
    expected_prev = previous[-_TAIL - 64 : -_TAIL].decode("ascii") if previous else ZERO_HASH
    if record["prev_hash"] != expected_prev or record["seq"] != lines:
        raise _corrupt(path, f"line {lines}", "the last line does not continue the chain")
    return _Scan(offsets, line_offsets, indexed_from, lines, record["hash"], offset)


def _set_aside_format1(path: Path, fd: int) -> int:
    """Move a format-1 log (locked through `fd`) to `<name>.format1-<UTC time>` and return a
    locked descriptor of a new, empty log at `path`. The old file is kept byte for byte, so
    `verify` can still check it; it is renamed while locked, so no other writer appends to it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.format1-{stamp}")
    os.rename(path, aside)
    _fsync_directory(path.parent)
    log.warning(
        "decision log %s was written in format 1 (before 2026-11-30); moved to %s, which "
        "`domicile audit verify --log %s` still checks, and starting a new log",
        path,
        aside,
        aside,
    )
    new_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(new_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(new_fd)
        raise
    os.close(fd)
    return new_fd


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

    def __init__(
        self,
        path: Path,
        fd: int,
        scan: _Scan,
        *,
        durable: bool,
        flush_interval: float,
        max_batch: int,
        line_decisions: int,
        recent_capacity: int,
        index_capacity: int,
        max_queue: int,
        append_timeout: float,
    ) -> None:
        # Use `open`: it scans and locks the file first.
        self.path = path
        self.durable = durable
        self._fd = fd
        self._flush_interval = 0.0 if durable else flush_interval
        self._max_batch = max_batch
        self._line_decisions = line_decisions
        self._recent_capacity = recent_capacity
        self._index_capacity = index_capacity
        self._max_queue = max_queue
        self._append_timeout = append_timeout
        # The index `get` reads: decision id -> line offset for (at least) the last
        # `index_capacity` ids, complete from byte `_indexed_from` on (ids before it are found by
        # scanning the file). The writer does not update it: it queues each line's ids in
        # `_unindexed` and `get` folds them in first (`_fold`) -- so a log nobody reads pays
        # nothing per decision for being readable. Folding holds `_fold_lock`.
        self._offsets = scan.offsets
        self._offsets_order = scan.order
        self._indexed_from = scan.indexed_from
        # The lines of the last `recent_capacity` decisions folded (what `get` is mostly asked
        # for), as bytes: bytes are invisible to the cyclic garbage collector, while keeping the
        # Decision values would add a few hundred thousand objects for every full collection to walk.
        self._recent: dict[str, bytes] = {}
        # Written, not yet folded, guarded by `_unindexed_lock`: (ids, offset) per line, at most
        # `index_capacity` ids beyond the first line (older lines are dropped, and
        # `_indexed_from` moves past them), and (ids, line) for the lines of the last
        # `recent_capacity` decisions.
        self._unindexed: deque[tuple[tuple[str, ...], int]] = deque()
        self._unindexed_ids = 0
        self._unindexed_lines: deque[tuple[tuple[str, ...], bytes]] = deque()
        self._unindexed_line_ids = 0
        self._unindexed_lock = threading.Lock()
        self._fold_lock = threading.Lock()
        self._size = scan.size
        self._head = (scan.seq, scan.head)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the writer waits on it
        self._space = threading.Condition(self._lock)  # appenders wait on it when the queue is full
        # Guarded by _lock: the queue, the entry counters, waiters, flags. Entries are counted
        # from 1 per open log; `_durable_seq` is the last entry written and fsynced.
        self._queue: list[_Queued] = []
        # The writer is (or is about to be) waiting on `_wakeup`: only then does an append
        # need to notify it (a notify costs more than the append itself).
        self._writer_waiting = False
        self._space_waiters = 0
        self._appended_seq = 0
        self._taken_seq = 0  # the last entry the writer has taken: `_appended_seq - _taken_seq` wait
        self._durable_seq = 0
        self._waiters: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiter_order = itertools.count()
        self._flush_requested = False
        self._closing = False
        self._fd_closed = False
        self._failure: BaseException | None = None
        self._intent_sink: IntentSink | None = None
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
        line_decisions: int = 1_000,
        recent_capacity: int = 10_000,
        index_capacity: int = 200_000,
        max_queue: int = 20_000,
        append_timeout: float = 10.0,
    ) -> DecisionLog:
        """Open (creating it and its directory if needed) the log at `path` and continue its chain.

        `line_decisions` bounds the decisions in one line (a `get` reads and checks a whole
        line). `max_queue` bounds the entries waiting for the writer and `append_timeout` how long an
        `append` waits for room (see "Backpressure" in the module docstring);
        `recent_capacity` and `index_capacity` bound what `get` keeps in memory.

        Raises DomicileError FAILED_PRECONDITION with reason DECISION_LOG_IN_USE when another
        process (or another `DecisionLog`) has it open, DECISION_LOG_CORRUPT when its last
        complete line does not verify. Scanning is O(file size) and runs in a worker thread.
        """
        if (
            flush_interval < 0
            or append_timeout < 0
            or min(max_batch, line_decisions, max_queue, index_capacity, recent_capacity) < 1
        ):
            raise ValueError(
                "flush_interval and append_timeout must be >= 0, max_batch, line_decisions, max_queue, "
                "index_capacity and recent_capacity >= 1"
            )
        log_path = Path(path)
        options = {
            "durable": durable,
            "flush_interval": flush_interval,
            "max_batch": max_batch,
            "line_decisions": line_decisions,
            "recent_capacity": recent_capacity,
            "index_capacity": index_capacity,
            "max_queue": max_queue,
            "append_timeout": append_timeout,
        }
        return await asyncio.to_thread(cls._open_sync, log_path, options)

    @classmethod
    def _open_sync(cls, path: Path, options: dict[str, Any]) -> DecisionLog:
        make_private_directory(path.parent)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise failed_precondition(
                    f"decision log {path} is in use by another writer", "DECISION_LOG_IN_USE"
                ) from None
            if not created and _is_format1(os.pread(fd, _READ_CHUNK, 0).split(b"\n", 1)[0]):
                fd = _set_aside_format1(path, fd)
                created = True
            if created:
                _fsync_directory(path.parent)
            scan = _scan(fd, path, options["index_capacity"])
            return cls(path, fd, scan, **options)
        except BaseException:
            os.close(fd)
            raise

    # ---- writing ---------------------------------------------------------------------

    def append(
        self, decision: Decision, context: Mapping[str, str] | None = None, kind: str = "decide", policy_hash: str = ""
    ) -> int:
        """Queue `decision` (with optional `context` facts) for the log; returns its number
        among the entries appended since `open` (from 1).

        Returns at once: the line is written by the writer thread (see the module docstring
        for when it is durable). `kind` names the question (decide, route, check_job, scan,
        ...); `policy_hash` is the active policy's content hash. Strings must be valid Unicode
        (no lone surrogates; the gRPC layer guarantees it for everything the router logs), and
        `context` maps text to text without a `decision_id` key (ValueError). When `max_queue`
        entries are already waiting, blocks until the writer takes them (backpressure), at most
        `append_timeout` seconds. Raises DomicileError UNAVAILABLE when the log has failed, is
        closed, or stayed full that long: a decision that cannot be logged must not be answered.
        """
        if context:
            _check_context(context)
        with self._lock:
            if self._failure is not None or self._closing:
                raise self._unavailable()
            if self._appended_seq - self._taken_seq >= self._max_queue:
                self._wait_for_space()
            queue = self._queue
            self._appended_seq += 1
            seq = self._appended_seq
            queue.append((decision, context, kind, policy_hash))
            if self._writer_waiting and (len(queue) == 1 or seq - self._taken_seq >= self._max_batch):
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
        """`append` for each decision, in order, as one queue item while the queue has room (no
        Python work per decision); returns the number of the last entry appended so far.
        Backpressure and errors as for `append`; when it raises, the decisions before the one
        it could not queue stay queued."""
        if context:
            _check_context(context)
        # The log's own tuple: the caller may change its list after this returns.
        pending = tuple(decisions)
        with self._lock:
            if self._failure is not None or self._closing:
                raise self._unavailable()
            was_empty = not self._queue
            start = 0
            while start < len(pending):
                room = self._max_queue - (self._appended_seq - self._taken_seq)
                if room <= 0:
                    self._wait_for_space()
                    was_empty = was_empty or not self._queue
                    continue
                chunk = pending if start == 0 and room >= len(pending) else pending[start : start + room]
                self._queue.append((chunk, context, kind, policy_hash))
                self._appended_seq += len(chunk)
                start += len(chunk)
            if (
                self._writer_waiting
                and self._queue
                and (was_empty or self._appended_seq - self._taken_seq >= self._max_batch)
            ):
                self._writer_waiting = False
                self._wakeup.notify()
            return self._appended_seq

    def set_intent_sink(self, sink: IntentSink | None) -> None:
        """After writing each batch, the writer thread hands `sink` the batch's intent counts
        (`intent_counts`): off the decision path, from what it already holds. A sink that
        raises is logged and does not stop the log."""
        self._intent_sink = sink

    def _wait_for_space(self) -> None:
        """Block (holding nothing but the wait) until the queue has room. Holds _lock."""
        self._space_waiters += 1
        try:
            if self._writer_waiting:  # a full queue is a full batch: start writing now
                self._writer_waiting = False
                self._wakeup.notify()
            roomy = self._space.wait_for(
                lambda: (
                    self._appended_seq - self._taken_seq < self._max_queue or self._failure is not None or self._closing
                ),
                timeout=self._append_timeout,
            )
        finally:
            self._space_waiters -= 1
        if self._failure is not None or self._closing:
            raise self._unavailable()
        if not roomy:
            raise DomicileError(
                f"decision log {self.path} is {self._appended_seq - self._taken_seq} entries behind and did not "
                f"catch up within {self._append_timeout:g}s; refusing to answer decisions it cannot log",
                ErrorCode.UNAVAILABLE,
                "DECISION_LOG_BEHIND",
                retry_after=1.0,
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

    def failure(self) -> str:
        """Why the log cannot take decisions now (its writer failed), or '' while it can."""
        failure = self._failure
        return "" if failure is None else f"decision log {self.path} failed: {failure}"

    def queued(self) -> int:
        """Entries appended and not yet written and fsynced (a BatchDecide is one entry)."""
        return self._appended_seq - self._durable_seq

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last durable line: its number in the file and its hash; (0, 64
        zeros) for an empty log."""
        with self._lock:
            return self._head

    @property
    def healthy(self) -> bool:
        """False once the writer has failed: nothing more is written to the chain."""
        return self._failure is None

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
                        lambda: (
                            self._flush_requested
                            or self._closing
                            or self._space_waiters
                            or self._appended_seq - self._taken_seq >= self._max_batch
                        ),
                        timeout=self._flush_interval,
                    )
                self._writer_waiting = False
                batch, self._queue = self._queue, []
                last_entry = self._taken_seq = self._appended_seq
                self._flush_requested = False
                if self._space_waiters:
                    self._space.notify_all()
                stop = self._closing and not batch
            if stop:
                return
            try:
                self._write(batch, last_entry)
            except BaseException as exc:  # disk full, I/O error: fail every waiter, refuse more
                log.error("decision log %s failed: %s", self.path, exc)
                with self._lock:
                    self._failure = exc
                    self._release_waiters(upto=None)
                    self._space.notify_all()
                return

    def _hand_intents(self, sink: IntentSink, batch: list[_Queued]) -> None:
        try:
            counts = intent_counts(batch)
            if counts:
                sink(counts)
        except Exception:
            log.exception("decision log %s: the intent sink failed", self.path)

    def _write(self, batch: list[_Queued], last_entry: int) -> None:
        """Render `batch` (the queue taken whole; `last_entry` is the number of its last
        entry) into lines, write and fsync them, then index them and release the waiters."""
        seq, prev_hash = self._head
        lines: list[bytes] = []
        line_ids: list[list[str]] = []
        line_offsets: list[int] = []
        offset = self._size
        item = within = 0  # where the next line starts: decision `within` of batch[item]
        while item < len(batch):
            parts, item, within = _render_line(batch, item, within, self._line_decisions)
            if not parts[0]:
                continue  # (empty items only)
            seq += 1
            line, prev_hash = _line(parts, seq, prev_hash)
            lines.append(line)
            line_ids.append(parts[0])
            line_offsets.append(offset)
            offset += len(line)
        data = memoryview(b"".join(lines))
        started = time.perf_counter()
        while data:
            data = data[os.write(self._fd, data) :]
        written = time.perf_counter()
        os.fsync(self._fd)
        DECISION_LOG_WRITE.observe(written - started)
        DECISION_LOG_FSYNC.observe(time.perf_counter() - written)
        self._size = offset
        self._note_unindexed(line_ids, line_offsets, lines)
        sink = self._intent_sink
        if sink is not None:  # before the waiters go: a flush() returns with the intents handed over
            self._hand_intents(sink, batch)
        with self._lock:
            self._head = (seq, prev_hash)
            self._durable_seq = last_entry
            self._release_waiters(upto=last_entry)

    def _note_unindexed(self, line_ids: list[list[str]], line_offsets: list[int], lines: list[bytes]) -> None:
        """Queue written lines for `_fold` (O(lines), not O(decisions)), dropping what falls
        out of the index's and the recent lines' capacity unfolded."""
        with self._unindexed_lock:
            unindexed, recent = self._unindexed, self._unindexed_lines
            for ids_of_line, line_offset, line in zip(line_ids, line_offsets, lines, strict=True):
                # A tuple of strings, not the list: the collector stops tracking it after one
                # pass, instead of visiting up to `index_capacity` ids in every full collection.
                ids = tuple(ids_of_line)
                unindexed.append((ids, line_offset))
                recent.append((ids, line))
                self._unindexed_ids += len(ids)
                self._unindexed_line_ids += len(ids)
            while self._unindexed_ids - len(unindexed[0][0]) >= self._index_capacity:
                self._unindexed_ids -= len(unindexed.popleft()[0])
                # Nothing before the first line left is indexed any more: `get` scans for it.
                self._indexed_from = max(self._indexed_from, unindexed[0][1])
            while self._unindexed_line_ids - len(recent[0][0]) >= self._recent_capacity:
                self._unindexed_line_ids -= len(recent.popleft()[0])

    def _fold(self) -> None:
        """Fold the lines written since the last fold into the index and the recent lines."""
        with self._fold_lock:
            with self._unindexed_lock:
                unindexed, self._unindexed, self._unindexed_ids = self._unindexed, deque(), 0
                lines, self._unindexed_lines, self._unindexed_line_ids = self._unindexed_lines, deque(), 0
            index, order, recent = self._offsets, self._offsets_order, self._recent
            for ids, line_offset in unindexed:
                index.update(dict.fromkeys(ids, line_offset))
                order.extend(itertools.repeat(line_offset, len(ids)))
            if len(order) >= 2 * self._index_capacity:
                trimmed, boundary = _trim(index, self._index_capacity, order)
                with self._unindexed_lock:
                    self._indexed_from = max(self._indexed_from, boundary)
                self._offsets = trimmed
            for ids, line in lines:
                recent.update(dict.fromkeys(ids, line))
            excess = len(recent) - self._recent_capacity
            if excess > 0:
                for decision_id in list(itertools.islice(recent, excess)):
                    del recent[decision_id]

    def _release_waiters(self, upto: int | None) -> None:
        """Resolve waiters up to seq `upto` (all of them, failed, when None). Holds _lock."""
        while self._waiters and (upto is None or self._waiters[0][0] <= upto):
            _, _, loop, future = heapq.heappop(self._waiters)
            error = None if upto is not None else self._unavailable()
            with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, future, error)

    def _unavailable(self) -> DomicileError:
        if self._failure is not None:
            return DomicileError(
                f"decision log {self.path} failed: {self._failure}", ErrorCode.UNAVAILABLE, "DECISION_LOG_FAILED"
            )
        return DomicileError(f"decision log {self.path} is closed", ErrorCode.UNAVAILABLE, "DECISION_LOG_CLOSED")

    # ---- reading ---------------------------------------------------------------------

    async def get(self, decision_id: str) -> LoggedDecision | None:
        """The logged decision with this id, or None. What is queued is flushed first, so what
        is returned is always the durable line's (the last one, should an id be logged twice).
        Lines are parsed and checked in a worker thread: one holds up to `line_decisions`
        decisions, milliseconds of work that the event loop should not wait for."""
        if self._durable_seq < self._appended_seq:
            await self.flush()
        # (While another `get` folds, `_unindexed` is already empty but its ids not yet in the
        # index: `_fold` then waits for that fold to finish.)
        if self._unindexed or self._fold_lock.locked():
            await asyncio.to_thread(self._fold)
        line = self._recent.get(decision_id)
        if line is not None:
            return await asyncio.to_thread(_entry, self.path, line, decision_id, f"decision {decision_id}")
        offset = self._offsets.get(decision_id)
        if offset is None:
            if not self._indexed_from:
                return None
            offset = await asyncio.to_thread(self._find, decision_id, self._indexed_from)
            if offset is None:
                return None
        line = await asyncio.to_thread(self._read_at, offset)
        return await asyncio.to_thread(_entry, self.path, line, decision_id, f"byte offset {offset}")

    def _find(self, decision_id: str, end: int) -> int | None:
        """Offset of the last line before byte `end` holding `decision_id`, or None: the lookup
        for ids older than the in-memory index (O(file size before `end`))."""
        if self._fd_closed:
            raise self._unavailable()
        needle = _ID_KEY + orjson.dumps(decision_id)
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
                if needle in line and decision_id in _line_ids(line):
                    found = offset
                offset += len(line) + 1
        return found

    def _read_at(self, offset: int) -> bytes:
        """The line starting at byte `offset` (without a newline if the file ends first)."""
        if self._fd_closed:
            raise self._unavailable()
        parts = []
        position = offset
        while True:
            chunk = os.pread(self._fd, 1 << 16, position)
            if not chunk:
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                parts.append(chunk[: newline + 1])
                break
            parts.append(chunk)
            position += len(chunk)
        return b"".join(parts)


def _entry(path: Path, line: bytes, decision_id: str, where: str) -> LoggedDecision | None:
    """The decision `decision_id` of a line, checked; raises DECISION_LOG_CORRUPT if the line
    does not verify (on disk: someone edited the file; in memory: memory corruption)."""
    record, problem = _check_line(line)
    if record is None:
        raise _corrupt(path, where, problem)
    found = None
    for request in record["requests"]:
        for entry in request["decisions"]:
            if entry["decision_id"] == decision_id:
                found = (request, entry)  # the last one, should a caller have logged an id twice
    return None if found is None else _logged(record, *found)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_context(context: Mapping[str, str]) -> None:
    if "decision_id" in context:
        raise ValueError("a decision's logged context cannot have a 'decision_id' key (it would read as a decision)")
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in context.items()):
        raise ValueError("a decision's logged context maps text to text")


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
