"""Reading the security event log back: events matching a query, newest first
(AuditService.ListSecurityEvents). The file is read backwards from its end in a worker
thread, at most `budget_bytes` per call; pages continue by byte offset (the file only grows)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from domicile.logfiles import decode_position_token, encode_position_token, lines_backwards, open_for_reading

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class EventQuery:
    """Empty fields match everything. Times: [start, end)."""

    event: str = ""
    principal: str = ""
    start: datetime | None = None
    end: datetime | None = None

    def fingerprint(self) -> str:
        text = json.dumps([self.event, self.principal, str(self.start or ""), str(self.end or "")])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EventPage:
    # Each event as the log holds it, `time` parsed to a datetime.
    events: tuple[dict[str, Any], ...]
    next_token: str


def search_events(
    path: Path, query: EventQuery, size: int, token: str = "", *, budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> EventPage:
    """Up to `size` events matching `query`, newest first (blocking: run it in a thread).
    Events are appended in time order, so the search stops at the first one before `start`.
    A line that is not an event (never written by the server) is skipped."""
    fingerprint = query.fingerprint()
    end, _ = decode_position_token(token, fingerprint)
    found: list[dict[str, Any]] = []
    with open_for_reading(path) as fd:
        end = os.fstat(fd).st_size if end is None else end
        for offset, line in lines_backwards(fd, end):
            # At least one line per call, so that a search always makes progress.
            if len(found) == size or (end - offset > budget_bytes and offset + len(line) < end):
                return EventPage(tuple(found), encode_position_token(offset + len(line), 0, fingerprint))
            try:
                event = json.loads(line)
                event["time"] = datetime.fromisoformat(event["time"])
            except (ValueError, KeyError, TypeError):
                continue
            if query.start is not None and event["time"] < query.start:
                break
            if (
                (not query.event or event.get("event") == query.event)
                and (not query.principal or event.get("principal") == query.principal)
                and (query.end is None or event["time"] < query.end)
            ):
                found.append(event)
    return EventPage(tuple(found), "")
