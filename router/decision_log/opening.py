"""Opening a decision log: what is on disk is checked before the writer continues it -- a
format-2 log verified and moved aside, an empty active file begun (a new chain, or the
continuation of the last rotated file), the active file verified line by line."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domicile.appendfile import AppendOnlyFile, fsync_directory
from domicile.errors import DomicileError, failed_precondition
from domicile.router.decision_log import legacy
from domicile.router.decision_log.checkpoints import TrustedKeys
from domicile.router.decision_log.format import (
    CHECKPOINT,
    FILE,
    LineError,
    decision_ids,
    parse_line,
    record_line,
)
from domicile.router.decision_log.index import DecisionIndex, WrittenLine
from domicile.router.decision_log.series import Series
from domicile.router.decision_log.verify import ChainState, ChainVerifier

log = logging.getLogger(__name__)

REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


def default_replica() -> str:
    """The host name, as a replica id (characters outside [A-Za-z0-9._-] become '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63].strip(".-_") or "replica"
    return name if REPLICA_ID.match(name) else "replica"


@dataclass(frozen=True)
class Opened:
    state: ChainState
    file_number: int
    file_started: float
    uncovered: int


def migrate_format2(series: Series) -> dict[str, Any] | None:
    """When the active file is a format-2 log: verify it, move it aside, return the `previous`
    the new file's first line names. Raises DECISION_LOG_CORRUPT when it is damaged."""
    try:
        with open(series.active, "rb") as reader:
            first = reader.readline()
    except FileNotFoundError:
        return None
    if not first or not legacy.is_format2(first):
        return None
    file = AppendOnlyFile.open(series.active, what="decision log", in_use_reason="DECISION_LOG_IN_USE")
    try:
        report = legacy.verify_format2(series.active)
        if report.first_bad_line is not None:
            raise _corrupt(series.active, report.first_bad_line, f"{report.problem} (a format-2 log)")
        aside = series.legacy_name()
        os.rename(series.active, aside)
        fsync_directory(series.directory)
    finally:
        file.close()
    log.warning(
        "decision log %s was written by a release before format 3 (format 2, %d lines, head %s): verified, moved to %s, "
        "and continued in a new file whose first line records that head",
        series.active,
        report.lines,
        report.head,
        aside,
    )
    return {
        "file": aside.name,
        "format": 2,
        "seq": report.lines,
        "hash": report.head,
        "max_catalog_revision": report.max_catalog_revision,
        "decisions": report.decisions,
    }


def begin_file(file: AppendOnlyFile, series: Series, replica: str | None, previous: dict[str, Any] | None) -> None:
    """Write the first line of an empty active file: the start of a new chain, the continuation
    of a format-2 log (`previous`), or of the last rotated file (a crash between a rotation's
    rename and its new file)."""
    state = ChainState(replica=replica or default_replica())
    number = 1
    if previous is not None:  # a format-2 log moved aside
        state = ChainState(
            previous["seq"], previous["hash"], previous["decisions"], previous["max_catalog_revision"], state.replica
        )
        previous = {key: previous[key] for key in ("file", "format", "seq", "hash")}
    else:
        rotated = series.rotated()
        if rotated:
            number, path = rotated[-1]
            record = rotated_checkpoint(path)
            state = ChainState(
                record["seq"], record["hash"], record["decisions"], record["max_catalog_revision"], record["replica"]
            )
            previous = previous_file(path, record)
            number += 1
    line, _ = file_line(state, number, previous)
    file.write(line)
    file.sync()


def rotated_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint a rotated file ends with; DECISION_LOG_CORRUPT when it ends otherwise."""
    try:
        record = parse_line(_last_line(path))
    except LineError as exc:
        raise _corrupt(path, None, f"its last line: {exc}") from None
    if record["type"] != CHECKPOINT:
        raise _corrupt(path, None, "a rotated file must end with a checkpoint")
    return record


def previous_file(path: Path, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The next file's `previous`: the rotated file `path`, the format of its last line (its
    closing `checkpoint`) and the chain's head there."""
    return {"file": path.name, "format": checkpoint["format"], "seq": checkpoint["seq"], "hash": checkpoint["hash"]}


def file_line(state: ChainState, number: int, previous: dict[str, Any] | None) -> tuple[bytes, str]:
    return record_line(
        state.seq + 1,
        state.head,
        FILE,
        {
            "replica": state.replica,
            "number": number,
            "created": now_text(),
            "max_catalog_revision": state.max_catalog_revision,
            "decisions": state.decisions,
            "previous": previous,
        },
    )


def verify_active(file: AppendOnlyFile, series: Series, keys: TrustedKeys, index: DecisionIndex) -> Opened:
    """Verify every line of the active file and tell the index about each."""
    verifier = ChainVerifier(keys)
    pending: list[WrittenLine] = []
    first: dict[str, Any] | None = None
    uncovered = 0
    for number, (offset, line) in enumerate(file.lines(), start=1):
        try:
            record = verifier.feed(line)
        except LineError as exc:
            raise _corrupt(file.path, number, str(exc)) from None
        if first is None:
            first = record
            if record["previous"] is not None:
                _check_previous(series, record)
            index.start_file(record["seq"])
        pending.append(
            WrittenLine(record["seq"], offset, bytes.fromhex(record["hash"]), tuple(decision_ids(record)), line)
        )
        if record["type"] == CHECKPOINT:
            index.note_lines(pending, offset + len(line))
            pending = []
            assert verifier.last_checkpoint is not None
            index.note_checkpoint(verifier.last_checkpoint)
            uncovered = 0
        else:
            uncovered += 1
            if len(pending) >= 1000:
                index.note_lines(pending, offset + len(line))
                pending = []
    if first is None:
        raise _corrupt(file.path, 1, "the file is empty")
    index.note_lines(pending, file.size)
    created = datetime.fromisoformat(first["created"]).timestamp()
    return Opened(verifier.state, first["number"], created, uncovered)


def _check_previous(series: Series, first: Mapping[str, Any]) -> None:
    """The active file's first line must continue the file it names, when that file is here."""
    previous = first["previous"]
    path = series.directory / previous["file"]
    if previous.get("format") == 2 or not path.exists():
        return  # a format-2 file was checked when it was moved aside; an archived file is audit verify's
    try:
        record = parse_line(_last_line(path))
    except LineError as exc:
        raise _corrupt(path, None, f"its last line: {exc}") from None
    if (record["seq"], record["hash"]) != (previous["seq"], previous["hash"]):
        raise _corrupt(series.active, 1, f"it does not continue {path.name}, whose last line is seq {record['seq']}")


def _last_line(path: Path) -> bytes:
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - 65536)
        while True:
            file.seek(start)
            data = file.read(size - start)
            newline = data.rfind(b"\n", 0, len(data) - 1)
            if newline >= 0 or start == 0:
                return data[newline + 1 :]
            start = max(0, start - 65536)


def _corrupt(path: Path, line: int | None, problem: str) -> DomicileError:
    where = f"{path} line {line}" if line else str(path)
    return failed_precondition(
        f"decision log damaged at {where}: {problem}; refusing to start (run `domicile audit verify --log {path}`)",
        "DECISION_LOG_CORRUPT",
    )


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
