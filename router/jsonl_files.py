"""The router's small JSON Lines files that are opened for each use (policy proposals):
durable appends, and reading back what a crash left -- through the one append-only-file helper
(`domicile.appendfile`) that the policy history and the decision log use too.

An append returns once its bytes are fsynced (and, for a new file, its directory entry). A
crash during an append leaves at most an incomplete last line, which `complete_lines` cuts off
(no caller was told it was written); the complete lines are for the caller to check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from domicile.appendfile import AppendOnlyFile


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and `Z`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def complete_lines(path: Path, what: str) -> list[bytes]:
    """The complete lines of `path` ([] when it does not exist), after cutting off an
    incomplete last line; `what` names the file in messages."""
    if not path.exists():
        return []
    file = _open(path, what)
    try:
        return [line[:-1] for _, line in file.lines()]
    finally:
        file.close()


def append_line(path: Path, data: bytes) -> None:
    """Append `data` (one or more complete lines) to `path` and fsync it (blocking)."""
    file = _open(path, path.name)
    try:
        file.write(data)
        file.sync()
    finally:
        file.close()


def _open(path: Path, what: str) -> AppendOnlyFile:
    return AppendOnlyFile.open(path, what=what, in_use_reason="FILE_IN_USE")
