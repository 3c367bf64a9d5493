"""A replica's decision log as a series of files: naming, listing, retention.

The configured path (`decisions.jsonl` by default) is the file being written. Rotation renames
it to a numbered file -- `decisions.000001.jsonl`, `decisions.000002.jsonl`, ... -- and starts a
new one whose first line names the file it continues (see `format`). A log written by a
release before format 3 (format 2) is moved aside once, to `decisions.jsonl.format2-<UTC time>`, and
the new chain continues from its last hash.

Retention: with `keep_files` > 0, numbered files beyond the newest `keep_files` are moved to
`archive_dir` (when set) or deleted. The chain stays checkable across the gap: each file's first
line records the hash of the file before it.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from domicile.appendfile import fsync_directory

log = logging.getLogger(__name__)


class Series:
    """The files of one decision log, named after its active file's path."""

    def __init__(self, active: Path) -> None:
        self.active = active
        self.directory = active.parent
        self._stem, self._suffix = (active.stem, active.suffix) if active.suffix else (active.name, "")
        self._numbered = re.compile(re.escape(self._stem) + r"\.(\d{6,})" + re.escape(self._suffix) + r"\Z")

    def numbered(self, number: int) -> Path:
        """Where file `number` of the series lives once rotated."""
        return self.directory / f"{self._stem}.{number:06d}{self._suffix}"

    def rotated(self, directory: Path | None = None) -> list[tuple[int, Path]]:
        """The numbered files present in `directory` (default: the log's), oldest first."""
        found = []
        try:
            names = [p.name for p in (directory or self.directory).iterdir()]
        except FileNotFoundError:
            return []
        for name in names:
            match = self._numbered.match(name)
            if match:
                found.append((int(match.group(1)), (directory or self.directory) / name))
        return sorted(found)

    def files(self, archive_dir: Path | None = None) -> list[Path]:
        """Every file of the series, oldest first: a format-2 log it continues, the numbered
        files (archived ones too, given `archive_dir`), then the active file."""
        numbered = dict(self.rotated(archive_dir)) if archive_dir else {}
        numbered.update(self.rotated())
        files = sorted(self.directory.glob(f"{glob.escape(self.active.name)}.format2-*"))
        files += [path for _, path in sorted(numbered.items())]
        if self.active.exists():
            files.append(self.active)
        return files

    def is_legacy(self, path: Path) -> bool:
        """Whether `path` is a format-2 log this series continues."""
        return path.name.startswith(f"{self.active.name}.format2-")

    def legacy_name(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.directory / f"{self.active.name}.format2-{stamp}"


def apply_retention(series: Series, keep_files: int, archive_dir: Path | None) -> None:
    """Move (to `archive_dir`) or delete the numbered files beyond the newest `keep_files`."""
    if keep_files <= 0:
        return
    rotated = series.rotated()
    for _, path in rotated[: max(0, len(rotated) - keep_files)]:
        try:
            if archive_dir is not None:
                archive_dir.mkdir(parents=True, exist_ok=True)
                target = archive_dir / path.name
                partial = archive_dir / f".{path.name}.partial"
                shutil.copy2(path, partial)
                _fsync_file(partial)
                partial.rename(target)
                fsync_directory(archive_dir)
                log.info("decision log file %s archived to %s", path, target)
            else:
                log.info("decision log file %s deleted (retention: keep %d files)", path, keep_files)
            path.unlink()
            fsync_directory(series.directory)
        except OSError as exc:
            log.error("decision log retention: cannot archive or delete %s: %s", path, exc)
            return


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
