"""Where Domicile keeps what it knows: created private, checked at start.

The catalog, the decision log, the policy history and the security log say where regulated
data lives and who asked about it, so the data directory is created 0700 and each of those
files 0600 (owner only). Files and directories that already exist are left as they are (an
operator may have reasons, e.g. a backup group) but `warn_if_not_private` reports every one
that group or others can reach when the server starts.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_directory(path: Path) -> None:
    """Create `path` (and missing parents) owner-only; an existing directory is left alone."""
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)


def create_private_file(path: Path) -> bool:
    """Create `path` empty and owner-only unless it exists; True when it was created. For
    files another library opens (SQLite), which would otherwise create them world-readable."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE))
    except FileExistsError:
        return False
    return True


def warn_if_not_private(paths: Iterable[Path]) -> list[str]:
    """Log a warning for each existing path that group or others may access; returns them."""
    warnings = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            expected = PRIVATE_DIRECTORY_MODE if path.is_dir() else PRIVATE_FILE_MODE
            warning = f"{path} is accessible to group or others (mode {mode:04o}); Domicile creates it {expected:04o}"
            log.warning("%s: chmod %04o %s", warning, expected, path)
            warnings.append(warning)
    return warnings
