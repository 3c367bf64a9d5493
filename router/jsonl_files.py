"""The router's small append-only JSON Lines files (the policy history, policy proposals):
durable appends, and reading back what a crash left.

An append returns once its bytes are fsynced (and, for a new file, its directory entry). A
crash during an append leaves at most an incomplete last line, which `complete_lines` cuts off
(no caller was told it was written); the complete lines are for the caller to check.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from domicile.private_files import PRIVATE_FILE_MODE, make_private_directory

log = logging.getLogger(__name__)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and `Z`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def complete_lines(path: Path, what: str) -> list[bytes]:
    """The complete lines of `path` ([] when it does not exist), after cutting off an
    incomplete last line; `what` names the file in the warning."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    complete, torn = lines[:-1], lines[-1]
    if torn:
        log.warning("%s %s: cutting an incomplete last line (%d bytes) left by a crash", what, path, len(torn))
        with open(path, "r+b") as file:
            file.truncate(len(data) - len(torn))
            os.fsync(file.fileno())
    return complete


def append_line(path: Path, data: bytes) -> None:
    """Append `data` (one or more complete lines) to `path` and fsync it (blocking)."""
    make_private_directory(path.parent)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
