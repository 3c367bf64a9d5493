"""Every policy that was ever active, with its text, so any logged decision can be replayed.

File: `<data_dir>/policies.jsonl`, one activation per line, appended and fsynced:

    {"activated_time":"2026-11-30T04:00:00.000000Z","hash":"<sha256 hex of yaml>","semantics":2,
     "version":"2026.11.1","yaml":"..."}

`semantics` is 2 for a version first recorded since declassifiers name the jobs they grant;
lines without it were written before, and their versions keep the meaning they had then (a
declassifier without `jobs` grants every job, `defaults.undescribed_outputs` unset is
`deny`: see `router.policy.load_policy`'s `legacy`), so their decisions replay unchanged.
A version keeps the semantics of its first recording when it is activated again.

`activation` (present when a caller activated it) says how: `{"by": principal}` for a
SetPolicy that needed no approval, with `"break_glass_reason"` when it bypassed a required
approval, or `{"by": approver, "proposal_id": ..., "proposed_by": ...}` for an approved
proposal (see `router.policy_proposals`).

A version names exactly one text: `record` refuses a different text under a version already
recorded (SetPolicy refuses that). Re-activating an earlier version appends another
line, so `active_at(t)` answers which policy was in force at any time. Activation times never
decrease (a clock stepping back is clamped to the previous activation), which keeps
`active_at` a binary search.

The file is an append-only file (`domicile.appendfile`), held open and locked by the one router
process that owns it until `close`. Crash behaviour: `record` returns after the line is
fsynced. A crash during the write leaves at most an incomplete last line, which `open` cuts off
(that activation never returned). A complete line whose hash does not match its text makes
`open` fail: the history is evidence, it is not silently repaired.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from domicile.appendfile import AppendOnlyFile
from domicile.errors import DomicileError, failed_precondition
from domicile.router.jsonl_files import format_time
from domicile.router.policy import content_hash

POLICIES_FILE = "policies.jsonl"
SEMANTICS = 2
LEGACY_SEMANTICS = 1


class PolicyVersion(NamedTuple):
    """One activation of a policy: its `metadata.version`, its text, the text's content hash
    (`router.policy.content_hash`) and when it became active."""

    version: str
    yaml: str
    hash: str
    activated_time: datetime
    # First recorded before declassifiers named their jobs (no `semantics` in its line).
    legacy: bool = False
    # How it was activated, when a caller did (see the module docstring): `by`, and
    # `break_glass_reason` or `proposal_id` with `proposed_by`.
    activation: Mapping[str, str] | None = None


class PolicyHistory:
    """The policy history of one data directory; see the module docstring.

    Reads are answered from memory; `record` appends to the file. Not shared between
    processes: the router process that serves PolicyService owns it (`close` releases it).
    """

    def __init__(self, file: AppendOnlyFile, activations: list[PolicyVersion]) -> None:
        # Use `open`.
        self.path = file.path
        self._file = file
        self._activations = activations
        self._times = [a.activated_time for a in activations]
        self._texts = {a.version: a.yaml for a in activations}
        self._legacy = {a.version for a in activations if a.legacy}
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: str | os.PathLike[str]) -> PolicyHistory:
        """Open and lock `<data_dir>/policies.jsonl` (created if missing) and load it.

        Raises DomicileError FAILED_PRECONDITION: POLICY_HISTORY_CORRUPT when a complete line
        is not a valid activation, POLICY_HISTORY_IN_USE when another process holds it.
        """
        return await asyncio.to_thread(cls._open_sync, Path(data_dir) / POLICIES_FILE)

    @classmethod
    def _open_sync(cls, path: Path) -> PolicyHistory:
        file = AppendOnlyFile.open(path, what="policy history", in_use_reason="POLICY_HISTORY_IN_USE")
        try:
            return cls(file, _load(file))
        except BaseException:
            file.close()
            raise

    def close(self) -> None:
        """Release the file. Idempotent."""
        self._file.close()

    async def get(self, version: str) -> str | None:
        """The text recorded under `version`, or None."""
        return self._texts.get(version)

    def is_legacy(self, version: str) -> bool:
        """True when `version` was first recorded before declassifiers named their jobs: load
        its text with `load_policy(..., legacy=True)`."""
        return version in self._legacy

    def records_text(self, text: str) -> bool:
        """True when `text` is recorded under some version."""
        return text in self._texts.values()

    def records_legacy_text(self, text: str) -> bool:
        """True when `text` is recorded under a legacy version (see `is_legacy`)."""
        return any(self._texts[version] == text for version in self._legacy)

    async def latest(self) -> PolicyVersion | None:
        """The last activation, or None for an empty history."""
        return self._activations[-1] if self._activations else None

    def active_at(self, time: datetime) -> PolicyVersion | None:
        """The policy in force at `time` (the last activation at or before it), or None."""
        position = bisect.bisect_right(self._times, time)
        return self._activations[position - 1] if position else None

    def versions(self) -> tuple[PolicyVersion, ...]:
        """Every activation, oldest first."""
        return tuple(self._activations)

    async def record(
        self, version: str, text: str, *, at: datetime | None = None, activation: Mapping[str, str] | None = None
    ) -> PolicyVersion:
        """Record that policy `version` with `text` is active from `at` (default: now), activated
        as `activation` says (who, and a break-glass reason or the approved proposal).

        Durable when it returns. A no-op returning the last activation when that is already
        this version. Raises DomicileError FAILED_PRECONDITION (reason
        POLICY_VERSION_CONFLICT) when `version` was recorded with another text.
        """
        async with self._write_lock:
            recorded = self._texts.get(version)
            if recorded is not None and recorded != text:
                raise failed_precondition(
                    f"policy version {version!r} is already recorded with a different text", "POLICY_VERSION_CONFLICT"
                )
            if self._activations and self._activations[-1].version == version:
                return self._activations[-1]
            when = at or datetime.now(UTC)
            if self._times and when < self._times[-1]:
                when = self._times[-1]
            legacy = version in self._legacy
            flags = dict(activation) if activation else None
            recorded_activation = PolicyVersion(version, text, content_hash(text), when, legacy, flags)
            record: dict[str, object] = {
                "activated_time": format_time(when),
                "hash": recorded_activation.hash,
                "semantics": LEGACY_SEMANTICS if legacy else SEMANTICS,
                "version": version,
                "yaml": text,
            }
            if flags:
                record["activation"] = flags
            line = json.dumps(record, sort_keys=True, separators=(",", ":"))
            await asyncio.to_thread(self._append, (line + "\n").encode("utf-8"))
            self._activations.append(recorded_activation)
            self._times.append(when)
            self._texts[version] = text
            return recorded_activation

    def _append(self, data: bytes) -> None:
        size = self._file.size
        try:
            self._file.write(data)
            self._file.sync()
        except OSError:
            self._file.truncate(size)  # nothing half-written stays behind a refused activation
            raise


def _load(file: AppendOnlyFile) -> list[PolicyVersion]:
    activations: list[PolicyVersion] = []
    first_legacy: dict[str, bool] = {}
    for number, (_, raw) in enumerate(file.lines(), start=1):
        try:
            record = json.loads(raw)
            semantics = record.get("semantics", LEGACY_SEMANTICS)
            if semantics not in (LEGACY_SEMANTICS, SEMANTICS):
                raise ValueError(f"unknown semantics {semantics!r}")
            # A version's meaning is that of its first recording.
            legacy = first_legacy.setdefault(record["version"], semantics == LEGACY_SEMANTICS)
            flags = record.get("activation")
            if flags is not None and not (isinstance(flags, dict) and all(isinstance(v, str) for v in flags.values())):
                raise ValueError("activation is not an object of text")
            activation = PolicyVersion(
                record["version"],
                record["yaml"],
                record["hash"],
                datetime.fromisoformat(record["activated_time"]),
                legacy,
                flags,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise _corrupt(file.path, number, f"not a policy activation ({exc})") from None
        if content_hash(activation.yaml) != activation.hash:
            raise _corrupt(file.path, number, "the hash does not match the policy text")
        activations.append(activation)
    return activations


def _corrupt(path: Path, line: int, problem: str) -> DomicileError:
    return failed_precondition(f"policy history {path} is damaged at line {line}: {problem}", "POLICY_HISTORY_CORRUPT")
