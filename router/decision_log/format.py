"""The decision log's line format (format 4; format 3 is still read): what a line holds and
how its hash is made.

A log file is UTF-8 JSON Lines. Every line is one JSON object whose **last member is `hash`**,
the lower-case hex SHA-256 of **every byte of the line before the `,"hash":"` that introduces
it**; so a line always ends in the 76 bytes `,"hash":"<64 hex>"}` + newline, and the hash covers
exactly the bytes written before them. Nothing is re-rendered to check it: any JSON encoder
can write a line (render the object without `hash`, drop its closing brace, hash those bytes,
append the tail).

The members before `hash` start with:

    "format": 4 (3 for a line an earlier release wrote)
    "seq":    the line's number in the replica's chain: 1 for the first line ever, +1 per line,
              continuing across rotated files
    "prev":   the previous line's hash (64 zeros before the first line ever; the last line of a
              previous log's chain when the log continues one)
    "type":   "decisions" | "checkpoint" | "file" | "note"

so a line is bound to everything before it (a hash chain). The format is the line's own: a
chain may hold format-3 lines followed by format-4 lines (a release writing format 4 continues
a format-3 file), and the two differ only in the entries of `decisions` lines. By type:

- `decisions`: `"entries": [ENTRY, ...]`. An entry holds the decisions of one request (or of
  consecutive requests that share everything but their decisions):

      {"kind": "decide" | "batch_decide" | "route" | "check_job" | "scan_violations",
       "caller": "...", "policy_version": "...", "policy_hash": "<sha256 of the policy text>",
       "catalog_revision": 7,
       "context": {"check_job_inputs": "...", ...},       (optional; text to text)
       "region_sets": [["aws:eu-central-1", ...], ...],
       "reason_texts": [[CODE, MESSAGE, RULE_ID, CITATION], ...],
       "reason_sets": [[[TEXT, [LINEAGE PATH...]], ...], ...],
       "decisions": [[DECISION_ID, DATASET_ID, OPERATION, REGION, OUTCOME,
                      REGION_SET, REASON_SET, DECIDE_TIME, INHERITED_ONLY], ...]}

  OPERATION is `store` | `process`, OUTCOME `allow` | `deny`; REGION_SET and REASON_SET index
  the entry's `region_sets` (the allowed regions) and `reason_sets` (the reasons), which list
  each distinct value once; a reason is its TEXT, an index into `reason_texts` (each distinct
  text once), and its lineage path; DECIDE_TIME is RFC 3339; INHERITED_ONLY is true for a
  decision on a derived placeholder, judged by what it inherits (absent reads as false).
  Format 3 has no `reason_texts`: each reason in `reason_sets` is `[CODE, MESSAGE, RULE_ID,
  CITATION, [LINEAGE PATH...]]`.
- `checkpoint`: a signed statement about the line before it (see `checkpoints`):
  `"replica", "signed_seq", "signed_hash", "time", "key_id", "signature", "decisions"` (decisions
  in the chain so far) and `"max_catalog_revision"`.
- `file`: the first line of every file: `"replica"`, `"number"` (the file's place in the series,
  from 1), `"created"`, `"max_catalog_revision"` and `"decisions"` (the highest catalog revision
  named and the decisions held by the chain before this file) and `"previous"`: null, or the
  file the chain continues from (`{"file": name, "format": 2 for a format-2 log, else the
  format of that file's last line, "seq": its last line's seq, "hash": its last line's hash}`).
- `note`: an operator decision the log must remember (`"note"`, `"detail"`). The one note
  written today, `catalog_rollback_accepted` (`detail`: `store_revision`, `log_revision`),
  records that the operator accepted a catalog store behind the log: from that line on, the
  highest catalog revision the chain holds is `store_revision`.

Readers ignore members they do not know, so later releases may add some; a decision row, a
reason and a reason text may grow at their end for the same reason.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

# The format this release writes, and the formats it reads.
FORMAT = 4
FORMATS = frozenset((3, FORMAT))
ZERO_HASH = "0" * 64
TAIL_BYTES = len(b',"hash":"') + 64 + len(b'"}\n')
_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"\}\n\Z')
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

DECISIONS, CHECKPOINT, FILE, NOTE = "decisions", "checkpoint", "file", "note"
TYPES = frozenset((DECISIONS, CHECKPOINT, FILE, NOTE))

_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


class LineError(ValueError):
    """A line that is not a valid line of a format read here; the message says what is wrong."""


# ---- writing ---------------------------------------------------------------------------------


# A piece of a line: bytes, or a view of the buffer the engine rendered a batch's entries into.
Piece = bytes | memoryview


def sealed(*pieces: Piece) -> tuple[tuple[Piece, ...], str]:
    """The line whose content is `pieces` in order (a JSON object's text up to, without, its
    closing brace), as the pieces of its bytes in order (`pieces` and the tail), and that
    line's hash. The pieces are hashed where they lie and not copied: the writer hands them to
    one `writev`."""
    hasher = hashlib.sha256()
    for piece in pieces:
        hasher.update(piece)
    digest = hasher.hexdigest()
    return (*pieces, b',"hash":"', digest.encode("ascii"), b'"}\n'), digest


def seal(*pieces: Piece) -> tuple[bytes, str]:
    """`sealed`, the line's bytes in one piece."""
    line, digest = sealed(*pieces)
    return b"".join(line), digest


def _head(seq: int, prev: str, kind: str) -> bytes:
    return b'{"format":%d,"seq":%d,"prev":"%s","type":"%s"' % (FORMAT, seq, prev.encode("ascii"), kind.encode("ascii"))


def decisions_line(seq: int, prev: str, entries: Sequence[Piece]) -> tuple[bytes, str]:
    """A `decisions` line holding `entries`, each an entry's JSON as the residency engine renders
    it (`domicile.router._engine.log_entry`, `DecisionBatch.log_entries`: one renderer, in
    crates/engine)."""
    line, digest = decisions_pieces(seq, prev, entries)
    return b"".join(line), digest


def decisions_pieces(seq: int, prev: str, entries: Sequence[Piece]) -> tuple[tuple[Piece, ...], str]:
    """`decisions_line` as the pieces of the line (see `sealed`). The entries of a line of
    several are joined (copied); the one entry of a line of one -- a BatchDecide's -- is not."""
    joined = entries[0] if len(entries) == 1 else b",".join(entries)
    return sealed(_head(seq, prev, DECISIONS), b',"entries":[', joined, b"]")


def record_line(seq: int, prev: str, kind: str, members: Mapping[str, Any]) -> tuple[bytes, str]:
    """A `checkpoint`, `file` or `note` line with `members` after the common ones."""
    body = orjson.dumps(members, option=_JSON_OPTIONS)
    return seal(_head(seq, prev, kind) + (b"," + body[1:-1] if len(body) > 2 else b""))


# ---- reading ---------------------------------------------------------------------------------


def parse_line(line: bytes) -> dict[str, Any]:
    """The record of one complete line (its newline included), checked on its own: the hash
    covers what was written, the common members and the members of its type are well formed.
    Raises LineError naming the problem. The chain (seq, prev) is the caller's to check."""
    if not line.endswith(b"\n"):
        raise LineError("incomplete line (no newline)")
    tail = _TAIL.search(line, max(0, len(line) - TAIL_BYTES))
    if tail is None:
        raise LineError('does not end in ,"hash":"<64 hex>"} (not a line of format 3 or later)')
    digest = tail.group(1).decode("ascii")
    if hashlib.sha256(memoryview(line)[: tail.start()]).hexdigest() != digest:
        raise LineError("hash does not match the line's content (the line was modified)")
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("hash") != digest:
        raise LineError("not a JSON object ending in its hash")
    if record.get("format") not in FORMATS or type(record["format"]) is not int:
        raise LineError(f"format is {record.get('format')!r}, expected one of {sorted(FORMATS)}")
    seq, prev, kind = record.get("seq"), record.get("prev"), record.get("type")
    if type(seq) is not int or seq < 1 or not isinstance(prev, str) or not _HEX64.match(prev):
        raise LineError("bad seq or prev")
    if kind not in TYPES:
        raise LineError(f"unknown type {kind!r}")
    problem = _SHAPE_CHECKS[kind](record)
    if problem:
        raise LineError(problem)
    return record


def line_digest(line: bytes) -> str:
    """The hash of a complete line as written (computed, not read from the line)."""
    return hashlib.sha256(memoryview(line)[: len(line) - TAIL_BYTES]).hexdigest()


_OUTCOMES = frozenset(o.value for o in Outcome)
_OPERATIONS = frozenset(o.value for o in Operation)
_REASON_CODES = frozenset(c.value for c in ReasonCode)
_ENTRY_TEXT = ("kind", "caller", "policy_version", "policy_hash")


def _check_decisions(record: Mapping[str, Any]) -> str:
    """Everything `decisions_in` reads from a decisions line is checked here, so a line that
    passes reads back."""
    entries = record.get("entries")
    if not isinstance(entries, list) or not entries:
        return "a decisions line without entries"
    for number, entry in enumerate(entries, start=1):
        problem = _check_entry(entry, record["format"])
        if problem:
            return f"entry {number}: {problem}"
    return ""


def _check_entry(entry: Any, format: int) -> str:
    if not isinstance(entry, dict):
        return "not an object"
    if not all(isinstance(entry.get(key), str) for key in _ENTRY_TEXT):
        return "kind, caller, policy_version or policy_hash missing or not text"
    if type(entry.get("catalog_revision")) is not int:
        return "catalog_revision missing or not an integer"
    context = entry.get("context")
    if context is not None and not (isinstance(context, dict) and all(isinstance(v, str) for v in context.values())):
        return "context is not text facts"
    region_sets, rows = entry.get("region_sets"), entry.get("decisions")
    if not isinstance(region_sets, list) or not all(
        isinstance(regions, list) and all(isinstance(r, str) for r in regions) for regions in region_sets
    ):
        return "region_sets is not a list of region lists"
    problem = _check_reasons(entry, format)
    if problem:
        return problem
    if not isinstance(rows, list) or not rows:
        return "no decisions"
    sets, reasons = len(region_sets), len(entry["reason_sets"])  # (checked by _check_reasons)
    for number, row in enumerate(rows, start=1):
        if not (
            isinstance(row, list)
            and len(row) >= 8
            and all(isinstance(row[i], str) for i in (0, 1, 2, 3, 4, 7))
            and row[2] in _OPERATIONS
            and row[4] in _OUTCOMES
            and type(row[5]) is int
            and 0 <= row[5] < sets
            and type(row[6]) is int
            and 0 <= row[6] < reasons
            and (len(row) < 9 or type(row[8]) is bool)
        ):
            return f"decision {number} is malformed"
        try:
            datetime.fromisoformat(row[7])
        except ValueError:
            return f"decision {number} has a time that is not RFC 3339"
    return ""


def _check_reasons(entry: Mapping[str, Any], format: int) -> str:
    """`reason_sets` (and in format 4 `reason_texts`) of an entry."""
    reason_sets = entry.get("reason_sets")
    if format == 3:
        if not isinstance(reason_sets, list) or not all(
            isinstance(reasons, list) and all(_is_format3_reason(reason) for reason in reasons)
            for reasons in reason_sets
        ):
            return "reason_sets is not a list of reason lists"
        return ""
    texts = entry.get("reason_texts")
    if not isinstance(texts, list) or not all(_is_reason_text(text) for text in texts):
        return "reason_texts is not a list of reason texts"
    if not isinstance(reason_sets, list) or not all(
        isinstance(reasons, list) and all(_is_reason(reason, len(texts)) for reason in reasons)
        for reasons in reason_sets
    ):
        return "reason_sets is not a list of reason lists naming reason texts"
    return ""


def _is_reason_text(text: Any) -> bool:
    return (
        isinstance(text, list)
        and len(text) >= 4
        and text[0] in _REASON_CODES
        and all(isinstance(text[i], str) for i in (1, 2, 3))
    )


def _is_reason(reason: Any, texts: int) -> bool:
    return (
        isinstance(reason, list)
        and len(reason) >= 2
        and type(reason[0]) is int
        and 0 <= reason[0] < texts
        and _is_path(reason[1])
    )


def _is_format3_reason(reason: Any) -> bool:
    return isinstance(reason, list) and len(reason) >= 5 and _is_reason_text(reason) and _is_path(reason[4])


def _is_path(path: Any) -> bool:
    return isinstance(path, list) and all(isinstance(step, str) for step in path)


def _check_checkpoint(record: Mapping[str, Any]) -> str:
    if not all(isinstance(record.get(key), str) for key in ("replica", "signed_hash", "time", "key_id", "signature")):
        return "a checkpoint without replica, signed_hash, time, key_id or signature"
    if not all(type(record.get(key)) is int for key in ("signed_seq", "decisions", "max_catalog_revision")):
        return "a checkpoint without signed_seq, decisions or max_catalog_revision"
    return ""


def _check_file(record: Mapping[str, Any]) -> str:
    if not isinstance(record.get("replica"), str) or not isinstance(record.get("created"), str):
        return "a file line without replica or created"
    if not all(type(record.get(key)) is int for key in ("number", "max_catalog_revision", "decisions")):
        return "a file line without number, max_catalog_revision or decisions"
    previous = record.get("previous")
    if previous is not None and not (
        isinstance(previous, dict)
        and isinstance(previous.get("file"), str)
        and type(previous.get("seq")) is int
        and isinstance(previous.get("hash"), str)
    ):
        return "a file line whose previous file is malformed"
    return ""


def _check_note(record: Mapping[str, Any]) -> str:
    if not isinstance(record.get("note"), str) or not isinstance(record.get("detail"), dict):
        return "a note without note or detail"
    return ""


_SHAPE_CHECKS = {DECISIONS: _check_decisions, CHECKPOINT: _check_checkpoint, FILE: _check_file, NOTE: _check_note}


CATALOG_ROLLBACK_NOTE = "catalog_rollback_accepted"


def note_revision(note: str, detail: Mapping[str, Any], current: int) -> int:
    """The highest catalog revision the chain holds after a note line (see the module docstring)."""
    revision = detail.get("store_revision") if note == CATALOG_ROLLBACK_NOTE else None
    return revision if type(revision) is int else current


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
    # How the line was verified when it was read back (`index.Proof`); None until then.
    proof: Any = None


def decisions_of_line(line: bytes) -> list[LoggedDecision]:
    """Every decision of one complete line (with its newline), in the order logged, once the
    line verifies on its own (`parse_line`; LineError, a ValueError, naming the problem
    otherwise); none for a line that holds no decisions. What decision search reads with."""
    record = parse_line(line)
    if record["type"] != DECISIONS:
        return []
    return [_logged(record, entry, row) for entry in record["entries"] for row in entry["decisions"]]


_ROW_TIME = re.compile(rb'"(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d))",(?:true|false)\]')


def newest_decision_time(line: bytes) -> datetime | None:
    """The decide time of the last decision written in `line`, read without parsing the line
    (decisions are written in about the order they were made); None when it holds none."""
    times = _ROW_TIME.findall(line)
    if not times:
        return None
    try:
        return datetime.fromisoformat(times[-1].decode("ascii"))
    except ValueError:
        return None


def decision_ids(record: Mapping[str, Any]) -> list[str]:
    """The ids of a decisions line's decisions, in order (none for other lines)."""
    if record["type"] != DECISIONS:
        return []
    return [row[0] for entry in record["entries"] for row in entry["decisions"]]


def catalog_revisions(record: Mapping[str, Any]) -> int:
    """The highest catalog revision a line names (0 when it names none)."""
    if record["type"] == DECISIONS:
        return max(entry["catalog_revision"] for entry in record["entries"])
    return record.get("max_catalog_revision", 0) if record["type"] in (CHECKPOINT, FILE) else 0


def find_decision(record: Mapping[str, Any], decision_id: str) -> LoggedDecision | None:
    """The decision `decision_id` of a checked decisions line (the last one, should an id be
    logged twice), or None."""
    found = None
    if record["type"] == DECISIONS:
        for entry in record["entries"]:
            for row in entry["decisions"]:
                if row[0] == decision_id:
                    found = (entry, row)
    return None if found is None else _logged(record, *found)


def _logged(record: Mapping[str, Any], entry: Mapping[str, Any], row: list[Any]) -> LoggedDecision:
    decision = Decision(
        decision_id=row[0],
        outcome=Outcome(row[4]),
        dataset_id=row[1],
        operation=Operation(row[2]),
        region=row[3],
        allowed_regions=tuple(entry["region_sets"][row[5]]),
        reasons=_reasons(record["format"], entry, row[6]),
        policy_version=entry["policy_version"],
        catalog_revision=entry["catalog_revision"],
        decide_time=datetime.fromisoformat(row[7]),
        caller=entry["caller"],
        inherited_only=len(row) > 8 and row[8],
    )
    context = entry.get("context")
    return LoggedDecision(
        seq=record["seq"],
        decision=decision,
        kind=entry["kind"],
        policy_hash=entry["policy_hash"],
        context=MappingProxyType(dict(context)) if context else None,
        prev_hash=record["prev"],
        hash=record["hash"],
    )


def _reasons(format: int, entry: Mapping[str, Any], number: int) -> tuple[Reason, ...]:
    """The reasons of reason set `number` of a checked entry of a line of `format`."""
    if format == 3:
        return tuple(
            Reason(ReasonCode(code), message, rule_id, citation, tuple(path))
            for code, message, rule_id, citation, path, *_ in entry["reason_sets"][number]
        )
    texts = entry["reason_texts"]
    return tuple(
        Reason(ReasonCode(texts[text][0]), texts[text][1], texts[text][2], texts[text][3], tuple(path))
        for text, path, *_ in entry["reason_sets"][number]
    )


class Entry(NamedTuple):
    """A rendered entry waiting to be written: its JSON (a format-4 entry, see `decisions_line`;
    a BatchDecide's is a view of the buffer the engine rendered the batch into), the ids of its
    decisions in order (a batch's are made as text only when read), and the catalog revision
    they name."""

    data: Piece
    ids: Collection[str]
    catalog_revision: int
