"""Logs written before format 3 (format 2), checked once and moved aside.

Format 2 held a line's canonical JSON (orjson, sorted keys) with its SHA-256 as a last `hash`
member, the previous line's hash in `prev_hash` and the line number in `seq`. Checking a line
means rendering its content again and comparing bytes -- the reason format 3 hashes what was
written instead. At start a format-2 log is verified here (so a damaged one is refused like a
damaged format-3 log), renamed to `<name>.format2-<UTC time>` unchanged, and the new log's first
line records its name, last seq and head hash; its chain continues from that hash. `domicile
audit verify` checks such a file too, and GetDecision (so ReplayDecision) still finds its
decisions (`find_decision`): the file is verified again up to its head, which must be the one the
new chain recorded.

This module goes away once no format-2 log can be left to migrate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from domicile.router.decision_log.format import ZERO_HASH, LoggedDecision
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

_KEYS = frozenset(("prev_hash", "reasons", "region_sets", "requests", "seq", "hash"))


@dataclass(frozen=True)
class LegacyReport:
    """A format-2 file checked: `first_bad_line` (1-based) and `problem` when it is damaged."""

    lines: int
    head: str
    decisions: int
    max_catalog_revision: int
    first_bad_line: int | None = None
    problem: str = ""


def is_format2(first_line: bytes) -> bool:
    try:
        record = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(record, dict) and "requests" in record and "prev_hash" in record and "format" not in record


def verify_format2(path: Path) -> LegacyReport:
    """Check a format-2 file line by line (an incomplete last line counts as damage: cut it
    before, as opening a log does). Raises OSError when it cannot be read."""
    head, lines, decisions, revision = ZERO_HASH, 0, 0, 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            problem = _problem(line, number, head)
            if problem:
                return LegacyReport(lines, head, decisions, revision, number, problem)
            record = orjson.loads(line)
            head, lines = record["hash"], number
            for request in record["requests"]:
                decisions += len(request["decisions"])
                revision = max(revision, request["catalog_revision"])
    return LegacyReport(lines, head, decisions, revision)


def _problem(line: bytes, number: int, prev_hash: str) -> str:
    if not line.endswith(b"\n"):
        return "incomplete last line (no newline)"
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(record, dict) or _KEYS - record.keys():
        return "not a format-2 decision log line"
    body = dict(record)
    stored = body.pop("hash")
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(canonical).hexdigest()
    if digest != stored or canonical[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n' != line:
        return "hash does not match the line's content (the line was modified)"
    if record["prev_hash"] != prev_hash or record["seq"] != number:
        return "the line does not continue the chain (a line was inserted, deleted or reordered)"
    try:
        if not all(type(request["catalog_revision"]) is int for request in record["requests"]):
            return "a request without a catalog revision"
        sum(len(request["decisions"]) for request in record["requests"])
    except (KeyError, TypeError):
        return "a malformed request"
    return ""


def find_decision(path: Path, decision_id: str) -> LoggedDecision | None:
    """The decision `decision_id` of a format-2 file (its last copy), read from a line of the
    file as it is -- the caller verifies the file (`verify_format2`). Raises OSError."""
    needle = b'"decision_id":' + orjson.dumps(decision_id)
    found = None
    with open(path, "rb") as file:
        for line in file:
            if needle not in line:
                continue
            record = orjson.loads(line)
            for request in record["requests"]:
                for entry in request["decisions"]:
                    if entry["decision_id"] == decision_id:
                        found = _logged(record, request, entry)
    return found


def _logged(line: Mapping[str, Any], request: Mapping[str, Any], entry: Mapping[str, Any]) -> LoggedDecision:
    reasons = line["reasons"]
    decision = Decision(
        decision_id=entry["decision_id"],
        outcome=Outcome(entry["outcome"]),
        dataset_id=entry["dataset_id"],
        operation=Operation(entry["operation"]),
        region=entry["region"],
        allowed_regions=tuple(line["region_sets"][entry["allowed_regions"]]),
        reasons=tuple(
            Reason(
                ReasonCode(reasons[number]["code"]),
                reasons[number]["message"],
                reasons[number]["rule_id"],
                reasons[number]["citation"],
                tuple(path),
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
