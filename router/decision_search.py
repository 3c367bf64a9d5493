"""Searching the decision log: the decisions matching a query, newest first, and counts of
decisions by outcome per time bucket (ListDecisions and SummarizeDecisions).

The log is only appended to, so a search reads it backwards from its end, line by line, in
a worker thread. Every line a search parses is verified on its own (its hash matches its
bytes, as `GetDecision` checks); a line that does not verify stops the search with
DECISION_LOG_CORRUPT rather than show a forged decision. Lines that cannot match (their
bytes lack the dataset id, caller or rule asked for) are skipped without parsing.

Decisions are written in the order they were made, so their times fall along the file, up to
the few seconds a queued decision waits for the writer: a search stops `TIME_SLACK` before
`start` and scans every line after `end`. Each call reads at most `budget_bytes` of the file;
a search that stops there answers `complete=False` with a page token to go on from.

A page token holds the byte offset where the next page's scan ends and how many matching
decisions of the line ending there were already returned; offsets stay valid because the file
only grows.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from domicile.errors import failed_precondition
from domicile.logfiles import decode_position_token, encode_position_token, lines_backwards, open_for_reading
from domicile.router.decision_log import LoggedDecision, decisions_of_line
from domicile.router.decision_log.format import newest_decision_time
from domicile.router.types import Outcome

TIME_SLACK = timedelta(minutes=5)
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DecisionQuery:
    """What to search for; empty fields match everything. Times: [start, end).

    `dataset_id_as_written` is the dataset id as the caller wrote it when that is not its
    normal form (`dataset_id`): decisions logged before ids were normalised name the dataset
    as their caller wrote it, and are found under that form too."""

    dataset_id: str = ""
    caller: str = ""
    outcome: Outcome | None = None
    rule_id: str = ""
    start: datetime | None = None
    end: datetime | None = None
    dataset_id_as_written: str = ""

    def _dataset_ids(self) -> tuple[str, ...]:
        if self.dataset_id_as_written and self.dataset_id_as_written != self.dataset_id:
            return (self.dataset_id, self.dataset_id_as_written)
        return (self.dataset_id,)

    def matches(self, logged: LoggedDecision) -> bool:
        decision = logged.decision
        return (
            (not self.dataset_id or decision.dataset_id in self._dataset_ids())
            and (not self.caller or decision.caller == self.caller)
            and (self.outcome is None or decision.outcome is self.outcome)
            and (not self.rule_id or any(r.rule_id == self.rule_id for r in decision.reasons))
            and (self.start is None or decision.decide_time >= self.start)
            and (self.end is None or decision.decide_time < self.end)
        )

    def needles(self) -> tuple[tuple[bytes, ...], ...]:
        """Byte strings a line holding a match contains: one of each tuple (the decision log's
        lines hold each dataset id and rule id as a JSON string, each caller as an entry's
        `caller`)."""
        found = []
        if self.dataset_id:
            found.append(tuple(orjson.dumps(i) for i in self._dataset_ids()))
        if self.caller:
            found.append((b'"caller":' + orjson.dumps(self.caller),))
        if self.rule_id:
            found.append((orjson.dumps(self.rule_id),))
        return tuple(found)

    def fingerprint(self) -> str:
        text = json.dumps(
            [
                *self._dataset_ids(),
                self.caller,
                self.outcome.value if self.outcome else "",
                self.rule_id,
                self.start.isoformat() if self.start else "",
                self.end.isoformat() if self.end else "",
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SearchPage:
    decisions: tuple[LoggedDecision, ...]
    next_token: str
    complete: bool


@dataclass(frozen=True)
class DecisionBucket:
    start: datetime
    allow: int
    deny: int


def search(
    path: Path, query: DecisionQuery, size: int, token: str = "", *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> SearchPage:
    """Up to `size` decisions matching `query`, newest first (blocking: run it in a thread)."""
    fingerprint = query.fingerprint()
    end, skip = decode_position_token(token, fingerprint)
    needles = query.needles()
    found: list[LoggedDecision] = []
    with open_for_reading(path) as fd:
        end = os.fstat(fd).st_size if end is None else end
        for start, line in lines_backwards(fd, end):
            # At least one line per call, so that a search always makes progress.
            if end - start > budget_bytes and start + len(line) < end:
                return SearchPage(tuple(found), encode_position_token(start + len(line), 0, fingerprint), False)
            if query.start is not None and _newest_time(line) < query.start - TIME_SLACK:
                return SearchPage(tuple(found), "", True)
            if not all(any(needle in line for needle in one_of) for one_of in needles):
                skip = 0
                continue
            matches = [d for d in reversed(_decisions(path, line, start)) if query.matches(d)]
            taken = matches[skip : skip + size - len(found)]
            found += taken
            if len(found) == size:
                if skip + len(taken) < len(matches):
                    return SearchPage(
                        tuple(found), encode_position_token(start + len(line), skip + len(taken), fingerprint), True
                    )
                return SearchPage(tuple(found), encode_position_token(start, 0, fingerprint) if start else "", True)
            skip = 0
    return SearchPage(tuple(found), "", True)


def summarize(
    path: Path, start: datetime, end: datetime, bucket: timedelta, *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> tuple[list[DecisionBucket], bool]:
    """ALLOW/DENY counts per `bucket` over [start, end), oldest bucket first, and whether the
    whole range was read within the budget (blocking: run it in a thread)."""
    count = max(1, -(-(end - start) // bucket))
    allow = [0] * count
    deny = [0] * count
    complete = True
    with open_for_reading(path) as fd:
        size = os.fstat(fd).st_size
        for offset, line in lines_backwards(fd, size):
            if size - offset > budget_bytes:
                complete = False
                break
            if _newest_time(line) < start - TIME_SLACK:
                break
            for logged in _decisions(path, line, offset):
                time = logged.decision.decide_time
                if start <= time < end:
                    index = (time - start) // bucket
                    if logged.decision.outcome is Outcome.ALLOW:
                        allow[index] += 1
                    else:
                        deny[index] += 1
    buckets = [DecisionBucket(start + i * bucket, allow[i], deny[i]) for i in range(count)]
    return buckets, complete


def _newest_time(line: bytes) -> datetime:
    """The time of the last decision written in `line` (the newest, give or take the queue);
    the latest possible for a line without decisions, so that it never ends a search."""
    return newest_decision_time(line) or datetime.max.replace(tzinfo=UTC)


def _decisions(path: Path, line: bytes, offset: int) -> list[LoggedDecision]:
    try:
        return decisions_of_line(line)
    except ValueError as exc:
        raise failed_precondition(
            f"decision log {path} is damaged at byte offset {offset}: {exc}", "DECISION_LOG_CORRUPT"
        ) from None
