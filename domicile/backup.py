"""Backup and restore of what a server keeps: the catalog (SQLite), the policy history and the
decision log, taken together so that the restored set passes the start-up checks.

Order is what makes a backup consistent while the server runs: the decision log is copied
first, then the policy history, then the catalog (SQLite's online backup, a snapshot of one
transaction). The catalog only grows, so the copy of the catalog is at least as new as every
catalog revision the copied log names -- the check `Router.start` makes (a store behind its
log is refused). Each append-only file is copied up to its last complete line; the log's
files are listed again after copying, and copied again if a rotation happened meanwhile.

A backup directory holds the files under their own names and `backup.json`: when it was
taken, each file's size and SHA-256, the log's head and highest catalog revision, and the
catalog's revision. `restore` checks those hashes, moves whatever is in the way to
`DATA_DIR/pre-restore-<UTC time>/` (nothing is deleted) and copies the backup into place;
it refuses while a server holds the decision log. The SQLite catalog only: a Neo4j catalog is
backed up with Neo4j's own tools after this copied the log and the history (docs/audit.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domicile.appendfile import AppendOnlyFile, fsync_directory
from domicile.catalog.stores.sqlite import SQLiteGraphStore, path_from_uri
from domicile.config import Settings
from domicile.errors import failed_precondition
from domicile.private_files import PRIVATE_DIRECTORY_MODE, create_private_file, make_private_directory
from domicile.router.decision_log import Series, verify_series
from domicile.router.decision_log.verify import ChainState
from domicile.router.policy_history import POLICIES_FILE

MANIFEST = "backup.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupReport:
    directory: Path
    files: int
    log_head_seq: int
    log_max_catalog_revision: int
    catalog_revision: int


async def backup(settings: Settings, destination: Path) -> BackupReport:
    """Copy the decision log series, the policy history and the SQLite catalog of `settings`
    into `destination` (created; must be empty). Safe while the server runs."""
    catalog = _sqlite_path(settings)
    log_files, copied = await asyncio.to_thread(_copy_files, settings, catalog, destination)
    report = verify_series([copied[path.name] for path in log_files], None) if log_files else None
    if report is not None and not report.ok:
        raise failed_precondition(f"the decision log copied is not intact: {report.problem}", "BACKUP_LOG_DAMAGED")
    revision = await _catalog_revision(copied[catalog.name].absolute())
    head = report.state if report else ChainState()
    manifest = {
        "taken": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "decision_log": [path.name for path in log_files],
        "policy_history": POLICIES_FILE if POLICIES_FILE in copied else None,
        "catalog": catalog.name,
        "log_head_seq": head.seq,
        "log_head_hash": head.head,
        "log_max_catalog_revision": head.max_catalog_revision,
        "catalog_revision": revision,
        "files": {name: _digest(path) for name, path in sorted(copied.items())},
    }
    (destination / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
    fsync_directory(destination)
    return BackupReport(destination, len(copied), head.seq, head.max_catalog_revision, revision)


def _copy_files(settings: Settings, catalog: Path, destination: Path) -> tuple[list[Path], dict[str, Path]]:
    """Copy in the order that keeps the set consistent: the log, the history, the catalog."""
    make_private_directory(destination)
    if any(destination.iterdir()):
        raise failed_precondition(f"backup directory {destination} is not empty", "BACKUP_DIRECTORY_NOT_EMPTY")
    log_files = _copy_log(Series(settings.decision_log_path), destination)
    copied = {path.name: destination / path.name for path in log_files}
    history = settings.data_dir / POLICIES_FILE
    if history.exists():
        copied[POLICIES_FILE] = _copy_complete_lines(history, destination / POLICIES_FILE)
    copied[catalog.name] = destination / catalog.name
    _backup_sqlite(catalog, copied[catalog.name])
    return log_files, copied


def restore(settings: Settings, source: Path) -> Path:
    """Put the backup in `source` in place of `settings`' decision log, policy history and SQLite
    catalog; returns the directory where what was there before has been moved. Refuses while
    a server holds the decision log, and when a file does not match the manifest."""
    manifest = _manifest(source)
    catalog = _sqlite_path(settings)
    log_path = settings.decision_log_path
    try:
        lock = AppendOnlyFile.open(log_path, what="decision log", in_use_reason="DECISION_LOG_IN_USE")
    except Exception as exc:
        raise failed_precondition(f"cannot restore while {log_path} is in use: stop the server first ({exc})") from None
    try:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = settings.data_dir / f"pre-restore-{stamp}"
        aside.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True)
        in_the_way = [
            *Series(log_path).files(),
            settings.data_dir / POLICIES_FILE,
            catalog,
            catalog.with_name(catalog.name + "-wal"),
            catalog.with_name(catalog.name + "-shm"),
        ]
        for path in in_the_way:
            if path.exists():
                os.rename(path, aside / path.name)
        targets = {name: log_path.parent / name for name in manifest["decision_log"]}
        if manifest["policy_history"]:
            targets[manifest["policy_history"]] = settings.data_dir / POLICIES_FILE
        targets[manifest["catalog"]] = catalog
        for name, target in targets.items():
            make_private_directory(target.parent)
            create_private_file(target)  # (copyfile keeps the mode of a file that exists)
            shutil.copyfile(source / name, target)
            _fsync(target)
        for directory in {target.parent for target in targets.values()}:
            fsync_directory(directory)
        return aside
    finally:
        lock.close()


def _manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise failed_precondition(f"{source} is not a backup: {MANIFEST}: {exc}", "BACKUP_INVALID") from None
    for name, expected in manifest["files"].items():
        try:
            actual = _digest(source / name)
        except OSError as exc:
            raise failed_precondition(f"backup {source}: {name}: {exc.strerror}", "BACKUP_INVALID") from None
        if actual != expected:
            raise failed_precondition(f"backup {source}: {name} does not match its manifest", "BACKUP_INVALID")
    return manifest


def _sqlite_path(settings: Settings) -> Path:
    if not settings.store.startswith("sqlite:"):
        raise failed_precondition(
            "backup and restore copy a SQLite catalog; back up a Neo4j catalog with Neo4j's tools (docs/audit.md)",
            "BACKUP_UNSUPPORTED_STORE",
        )
    return path_from_uri(settings.store)


def _copy_log(series: Series, destination: Path) -> list[Path]:
    """Copy the series' files; again when a rotation renamed the active file meanwhile."""
    while True:
        files = series.files()
        for path in files:
            _copy_complete_lines(path, destination / path.name)
        if series.files() == files:
            return files
        for path in destination.iterdir():
            path.unlink()


def _copy_complete_lines(source: Path, target: Path) -> Path:
    """Copy `source` up to its last newline (a writer may be appending to it)."""
    create_private_file(target)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        pending = b""
        while chunk := reader.read(_CHUNK):
            data = pending + chunk
            cut = data.rfind(b"\n") + 1
            writer.write(data[:cut])
            pending = data[cut:]
        writer.flush()
        os.fsync(writer.fileno())
    return target


def _backup_sqlite(source: Path, target: Path) -> None:
    if not source.exists():
        raise failed_precondition(f"no SQLite catalog at {source}", "BACKUP_NO_CATALOG")
    create_private_file(target)  # (SQLite would create it readable by all)
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
    finally:
        writer.close()
        reader.close()
    _fsync(target)


async def _catalog_revision(path: Path) -> int:
    """The revision of a copied catalog (an absolute path), read by the store itself (which also
    checks that it opens)."""
    store = await SQLiteGraphStore.open(f"sqlite:///{path}")
    try:
        return await store.revision()
    finally:
        await store.close()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
