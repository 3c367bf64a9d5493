"""Checking a decision log: one line after another, a file, a whole series, against anchors.

`ChainVerifier` is the one place where a chain is checked -- by the server when it opens its log,
by `domicile audit verify`, and when GetDecision proves a line of an older file. For each line,
in order: the line is well formed and its hash covers what was written (`format.parse_line`);
its `seq` is one more than the line before and its `prev` is that line's hash; a file's first
line, and only it, is a `file` line; a checkpoint signs exactly the line before it, for this
chain's replica, and its signature verifies with one of the trusted keys.

What that proves and what it does not is in docs/audit.md: in short, any change to a line
breaks the chain at that line; a rewrite of the chain from some line on (a "reseal") breaks at
the next checkpoint unless whoever rewrote it also holds a signing key; lines cut off the end
are found only against a checkpoint kept elsewhere (`anchors`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domicile.router.decision_log import legacy
from domicile.router.decision_log.checkpoints import Checkpoint, TrustedKeys
from domicile.router.decision_log.format import (
    CHECKPOINT,
    DECISIONS,
    FILE,
    NOTE,
    ZERO_HASH,
    LineError,
    catalog_revisions,
    note_revision,
    parse_line,
)


@dataclass(frozen=True)
class ChainState:
    """Where a chain stands after some lines."""

    seq: int = 0
    head: str = ZERO_HASH
    decisions: int = 0
    max_catalog_revision: int = 0
    replica: str = ""


class ChainVerifier:
    """Checks the lines of a chain in order (see the module docstring).

    `start` is the state before the first line fed (None: take the first line's own seq and
    prev as the start -- checking a file on its own, or from the middle). `keys` None skips
    signature checks (each checkpoint is then only counted in `unsigned_checkpoints`)."""

    def __init__(self, keys: TrustedKeys | None, start: ChainState | None = None) -> None:
        self._keys = keys
        self.state = start or ChainState()
        self._anchored = start is not None
        # Whether `state.decisions` counts from the chain's start (else from the first checkpoint seen).
        self._counted = start is not None
        self.line_in_file = 0
        self.last_checkpoint: Checkpoint | None = None
        self.checkpoints = 0
        self.unsigned_checkpoints = 0

    def next_file(self) -> None:
        """The next line fed is the first of a file."""
        self.line_in_file = 0

    def feed(self, line: bytes) -> dict[str, Any]:
        """Check one line; returns its record. Raises LineError naming what is wrong."""
        record = parse_line(line)
        state = self.state
        self.line_in_file += 1
        if self._anchored:
            if record["seq"] != state.seq + 1:
                raise LineError(f"seq is {record['seq']}, expected {state.seq + 1} (lines missing or inserted)")
            if record["prev"] != state.head:
                raise LineError(
                    "prev does not match the previous line's hash (a line was changed, removed or reordered)"
                )
        kind = record["type"]
        if (kind == FILE) != (self.line_in_file == 1):
            raise LineError("a file line must be, and only be, a file's first line")
        replica = state.replica
        if kind == FILE:
            if replica and record["replica"] != replica:
                raise LineError(f"the chain of replica {replica!r} continues as replica {record['replica']!r}")
            replica = record["replica"]
            previous = record["previous"]
            if self._anchored:
                if previous is None or (previous["seq"], previous["hash"]) != (state.seq, state.head):
                    raise LineError("its previous file is not the one the chain comes from")
                if self._counted and (record["decisions"], record["max_catalog_revision"]) != (
                    state.decisions,
                    state.max_catalog_revision,
                ):
                    raise LineError("its decision count or catalog revision does not continue the chain")
            else:
                if previous is None and (record["seq"], record["prev"]) != (1, ZERO_HASH):
                    raise LineError("a chain that starts here must start at seq 1 from 64 zeros")
                state = ChainState(state.seq, state.head, record["decisions"], record["max_catalog_revision"], replica)
                self._counted = True
        elif kind == CHECKPOINT:
            self._check_checkpoint(record, state, replica)
        decisions = state.decisions
        if kind == DECISIONS:
            decisions += sum(len(entry["decisions"]) for entry in record["entries"])
        elif kind == CHECKPOINT:
            if self._counted and record["decisions"] != decisions:
                raise LineError(f"the checkpoint counts {record['decisions']} decisions, the chain holds {decisions}")
            decisions, self._counted = record["decisions"], True
        revision = max(state.max_catalog_revision, catalog_revisions(record))
        if kind == NOTE:
            revision = note_revision(record["note"], record["detail"], revision)
        self.state = ChainState(record["seq"], record["hash"], decisions, revision, replica)
        self._anchored = True
        return record

    def _check_checkpoint(self, record: dict[str, Any], state: ChainState, replica: str) -> None:
        checkpoint = Checkpoint.from_record(record)
        if self._anchored and (checkpoint.signed_seq, checkpoint.signed_hash) != (state.seq, state.head):
            raise LineError(
                f"the checkpoint signs line {checkpoint.signed_seq} with hash {checkpoint.signed_hash[:16]}..., "
                f"but the chain has {state.head[:16]}... at line {state.seq} (lines before it were rewritten)"
            )
        if replica and checkpoint.replica != replica:
            raise LineError(f"the checkpoint is for replica {checkpoint.replica!r}, the chain is {replica!r}'s")
        if self._keys is None:
            self.unsigned_checkpoints += 1
        else:
            problem = self._keys.problem(checkpoint)
            if problem:
                raise LineError(f"checkpoint {problem}")
            self.last_checkpoint = checkpoint
        self.checkpoints += 1


# ---- a series, as `domicile audit verify` checks it -------------------------------------------


@dataclass
class SeriesReport:
    """What `verify_series` found. `ok` False names the first problem in `problem` (and the file
    and 1-based line in `bad_file` / `bad_line` when it is a line)."""

    ok: bool = True
    problem: str = ""
    bad_file: str = ""
    bad_line: int | None = None
    files: int = 0
    lines: int = 0
    state: ChainState = field(default_factory=ChainState)
    last_checkpoint: Checkpoint | None = None
    checkpoints: int = 0
    unsigned_checkpoints: int = 0
    anchors_checked: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, problem: str, file: Path | None = None, line: int | None = None) -> SeriesReport:
        self.ok = False
        self.problem = f"{file.name} line {line}: {problem}" if file is not None and line else problem
        self.bad_file, self.bad_line = (str(file) if file else ""), line
        return self


def verify_series(files: Iterable[Path], keys: TrustedKeys | None, anchors: Iterable[Checkpoint] = ()) -> SeriesReport:
    """Check the files of one replica's series, oldest first, as one chain, then against
    `anchors` (checkpoints kept elsewhere): each anchor for this replica must verify and name
    a line that the series holds with that very hash. An incomplete last line of the last file
    is noted, not failed (the server may be writing it, or a crash left it: the server cuts it).
    Raises OSError when a file cannot be read."""
    report = SeriesReport()
    verifier = ChainVerifier(keys)
    files = list(files)
    anchors = list(anchors)
    wanted = {a.signed_seq for a in anchors}
    seen: dict[int, str] = {}
    for position, path in enumerate(files):
        report.files += 1
        last_file = position == len(files) - 1
        with open(path, "rb") as file:
            first = file.readline()
            file.seek(0)
            if legacy.is_format2(first):
                if position != 0:
                    return report.fail("a format-2 file can only begin a series", path, 1)
                old = legacy.verify_format2(path)
                if old.first_bad_line is not None:
                    return report.fail(f"{old.problem} (format 2)", path, old.first_bad_line)
                report.lines += old.lines
                report.notes.append(
                    f"{path.name}: {old.lines} lines of format 2 (a release before format 3), chain intact"
                )
                verifier = ChainVerifier(keys, ChainState(old.lines, old.head, old.decisions, old.max_catalog_revision))
                continue
            verifier.next_file()
            for number, line in enumerate(file, start=1):
                if last_file and not line.endswith(b"\n"):
                    report.notes.append(f"{path.name}: an incomplete last line ({len(line)} bytes) is not checked")
                    break
                try:
                    record = verifier.feed(line)
                except LineError as exc:
                    return _with_counts(report.fail(str(exc), path, number), verifier)
                if number == 1 and position == 0 and record["previous"] is not None:
                    previous = record["previous"]
                    report.notes.append(
                        f"{path.name} continues {previous['file']} (seq {previous['seq']}), which was not given"
                    )
                report.lines += 1
                if record["seq"] in wanted:
                    seen[record["seq"]] = record["hash"]
    _with_counts(report, verifier)
    for anchor in anchors:
        if anchor.replica != report.state.replica:
            continue
        report.anchors_checked += 1
        problem = keys.problem(anchor) if keys is not None else ""
        if problem:
            return report.fail(f"anchored checkpoint of line {anchor.signed_seq}: {problem}")
        if anchor.signed_seq > report.state.seq:
            return report.fail(
                f"an anchored checkpoint ({anchor.time}) signs line {anchor.signed_seq}, but the log ends at line "
                f"{report.state.seq}: lines were cut off the end"
            )
        if anchor.signed_seq in seen and seen[anchor.signed_seq] != anchor.signed_hash:
            return report.fail(
                f"line {anchor.signed_seq} has hash {seen[anchor.signed_seq][:16]}..., but the checkpoint anchored "
                f"at {anchor.time} signed {anchor.signed_hash[:16]}... (the log was rewritten)"
            )
    return report


def _with_counts(report: SeriesReport, verifier: ChainVerifier) -> SeriesReport:
    report.state = verifier.state
    report.last_checkpoint = verifier.last_checkpoint
    report.checkpoints = verifier.checkpoints
    report.unsigned_checkpoints = verifier.unsigned_checkpoints
    return report


def read_anchors(path: Path) -> list[Checkpoint]:
    """The checkpoints in an anchor file (one JSON object per line, as `FileSink` writes them)
    or in a security event log (its `decision_log_checkpoint` events). Lines that are neither
    are skipped. Raises OSError when the file cannot be read."""
    found = []
    with open(path, "rb") as file:
        for line in file:
            try:
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == "decision_log_checkpoint":
                    record = record.get("detail")
                found.append(Checkpoint.from_record(record))
            except (ValueError, KeyError, TypeError):
                continue
    return found


def prove(path: Path, offset: int, keys: TrustedKeys) -> tuple[dict[str, Any], Checkpoint] | None:
    """The record of the line at `offset` of a (rotated) file and the first checkpoint after it
    whose chain from that line holds, or None when the file ends first. Raises LineError when
    a line on the way is damaged, OSError when the file cannot be read."""
    verifier = ChainVerifier(keys)
    if offset:
        verifier.line_in_file = 1  # past a file's first line: no file line may come
    first = None
    with open(path, "rb") as file:
        file.seek(offset)
        for line in file:
            record = verifier.feed(line)
            if first is None:
                first = record
            elif record["type"] == CHECKPOINT:
                assert verifier.last_checkpoint is not None
                return first, verifier.last_checkpoint
    return None
