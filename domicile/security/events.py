"""The security event log: one JSON object per line, appended to `settings.security_log_path`.

Format (documented in docs/security.md; keep both in step):

    {"time": "2026-11-30T04:00:00.123Z", "event": "authz_denied", "outcome": "denied",
     "principal": "svc-a", "method": "/domicile.v1.CatalogService/UpsertDataset",
     "peer": "ipv4:127.0.0.1:53412", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
     "reason": "MISSING_SCOPE", "detail": {"required": "catalog:write"}}

Every key is always present (empty string when unknown); `detail` is an object whose keys
depend on the event. Tokens and private keys are never written.

The file is an append-only file (`domicile.appendfile`): one server writes it at a time, and a
line torn by a crash is cut when it is opened again. Events are written as they happen; `sync`
makes them durable (done after decision log checkpoints, which anchor the log's chain).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domicile.appendfile import AppendOnlyFile

log = logging.getLogger(__name__)

AUTH_FAILURE = "auth_failure"
AUTHZ_DENIED = "authz_denied"
RATE_LIMITED = "rate_limited"
POLICY_CHANGE = "policy_change"
CERT_RELOAD = "cert_reload"
KEYS_RELOAD = "keys_reload"
# Lineage (lineage/trust.py): a job claimed a declassifying transform the policy does not
# grant it; a lineage change loosened the effective constraints of datasets.
UNAPPROVED_DECLASSIFICATION = "unapproved_declassification"
LINEAGE_LOOSENED = "lineage_loosened"
# Policy changes needing a second pair of hands (router/policy_changes.py).
POLICY_PROPOSED = "policy_proposed"
POLICY_APPROVED = "policy_approved"
POLICY_REJECTED = "policy_rejected"
POLICY_BREAK_GLASS = "policy_break_glass"
# Access (access/alerts.py): a run did what the policy forbids; an actor left its baseline.
OBSERVED_VIOLATION = "observed_violation"
ACCESS_ANOMALY = "access_anomaly"

# The decision log (router/decision_log): copies of its signed checkpoints, decisions refused
# below the disk-space floor, a catalog behind the log accepted by the operator.
DECISION_LOG_CHECKPOINT = "decision_log_checkpoint"
DISK_SPACE_LOW = "disk_space_low"
CATALOG_ROLLBACK_ACCEPTED = "catalog_rollback_accepted"

EVENT_TYPES = frozenset(
    {
        AUTH_FAILURE,
        AUTHZ_DENIED,
        RATE_LIMITED,
        POLICY_CHANGE,
        CERT_RELOAD,
        KEYS_RELOAD,
        UNAPPROVED_DECLASSIFICATION,
        LINEAGE_LOOSENED,
        POLICY_PROPOSED,
        POLICY_APPROVED,
        POLICY_REJECTED,
        POLICY_BREAK_GLASS,
        OBSERVED_VIOLATION,
        ACCESS_ANOMALY,
        DECISION_LOG_CHECKPOINT,
        DISK_SPACE_LOW,
        CATALOG_ROLLBACK_ACCEPTED,
    }
)


class SecurityEventLog:
    """Appends security events to a file (created 0600), safe to call from any thread.

    gRPC calls the certificate fetcher from its own threads, so writes are serialised by a
    lock; each event is one `write` of one line so a reader never sees half an event.
    Raises DomicileError FAILED_PRECONDITION (SECURITY_LOG_IN_USE) when another server writes
    the file, OSError when it cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = AppendOnlyFile.open(path, what="security event log", in_use_reason="SECURITY_LOG_IN_USE")
        self._lock = threading.Lock()

    def record(
        self,
        event: str,
        *,
        outcome: str,
        principal: str = "",
        method: str = "",
        peer: str = "",
        trace_id: str = "",
        reason: str = "",
        **detail: Any,
    ) -> dict[str, Any]:
        """Append one event and return it (see `sync` for durability). `event` must be one of
        EVENT_TYPES; `detail` values must be JSON-serialisable. A write that fails is logged,
        not raised: the action being recorded has happened."""
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown security event type {event!r}")
        now = datetime.now(UTC)
        entry = {
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "event": event,
            "outcome": outcome,
            "principal": principal,
            "method": method,
            "peer": peer,
            "trace_id": trace_id,
            "reason": reason,
            "detail": detail,
        }
        line = json.dumps(entry, separators=(",", ":"), sort_keys=False) + "\n"
        with self._lock:
            if self._file.closed:
                log.warning("security event after shutdown: %s", line.rstrip())
                return entry
            try:
                self._file.write(line.encode("utf-8"))
            except OSError as exc:
                log.error("security event log %s: cannot write %s: %s", self.path, line.rstrip(), exc)
        return entry

    def sync(self) -> None:
        """Make every event recorded so far durable (fsync); a failure is logged, not raised."""
        with self._lock:
            if self._file.closed:
                return
            try:
                self._file.sync()
            except OSError as exc:
                log.error("security event log %s: cannot fsync: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            self._file.close()
