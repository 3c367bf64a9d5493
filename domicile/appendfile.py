"""Append-only files of lines: one writer at a time, a torn last line cut at open, explicit fsync.

The decision log, the policy history and the security event log are files that only grow, one
line per record. What they share lives here:

- **One writer.** `open` takes an exclusive `flock` on the file; a second `open` -- from another
  process or this one -- fails with DomicileError FAILED_PRECONDITION (the reason the caller
  names, e.g. DECISION_LOG_IN_USE) instead of interleaving its lines with the first writer's.
  The lock is released by `close` (or by the process ending).
- **A torn last line is cut.** A crash in the middle of a write leaves at most one incomplete
  last line (bytes after the last newline). `open` cuts them off, fsyncs, and reports how many
  bytes it cut (`torn_bytes`): nobody was told such a line was written. Anything else about
  the content is the caller's to check.
- **Durability is explicit.** `write` appends (all of the bytes, or raises `OSError`, possibly
  after writing some of them; `write_pieces` the same for bytes in pieces); `sync` makes them
  durable; `truncate` takes the file back to an earlier size, which is how a writer undoes a
  failed write before trying again. A new file's directory entry is fsynced when `open`
  creates it.
- **Or every write is durable** (`open(..., synced_writes=True)`, for a writer that syncs after
  every write anyway): the file is opened with `O_DSYNC`, so each write system call returns
  once its bytes are durable as after `sync` -- one call where a write and a sync take two
  (a thread of this interpreter lets go of the interpreter lock once instead of twice). A sync
  that fails then fails the write (`OSError`, the bytes possibly in the file but not durable:
  `truncate` back, as after any failed write).
- **`sync` is `fdatasync`** (and `O_DSYNC` its per-write form), exactly as durable here as
  `fsync`: it flushes the data and the metadata needed to read it back -- the file's size,
  which appending (or `truncate`) changed, and the blocks allocated for it -- and skips only
  what a read does not need (the modification time). These files are read back by their size
  and bytes alone.

Lines are split on b"\\n" only.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from domicile.errors import failed_precondition
from domicile.private_files import PRIVATE_FILE_MODE, make_private_directory

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # pieces one writev takes


class AppendOnlyFile:
    """An open, locked append-only file. Not thread-safe: one thread writes at a time."""

    def __init__(self, path: Path, fd: int, size: int, torn_bytes: int, created: bool) -> None:
        # Use `open`.
        self.path = path
        self.size = size  # bytes in the file, as this writer left it
        self.torn_bytes = torn_bytes  # cut off the end by `open`
        self.created = created  # `open` created the file
        self._fd = fd

    @classmethod
    def open(cls, path: Path, *, what: str, in_use_reason: str, synced_writes: bool = False) -> AppendOnlyFile:
        """Open `path` for appending (creating it and its directory, owner-only: see
        `private_files`), lock it, cut a torn last line.

        `what` names the file in messages ("decision log"); `in_use_reason` is the error reason
        when another writer holds it; with `synced_writes`, every write is durable when it
        returns (see the module docstring). Raises OSError when the file cannot be opened.
        """
        make_private_directory(path.parent)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | (os.O_DSYNC if synced_writes else 0)
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise failed_precondition(f"{what} {path} is in use by another writer", in_use_reason) from None
            size = os.fstat(fd).st_size
            created = size == 0
            if created:
                fsync_directory(path.parent)
            complete = _end_of_last_line(fd, size)
            file = cls(path, fd, size, size - complete, created)
            if complete < size:
                log.warning(
                    "%s %s: cutting an incomplete last line (%d bytes) left by a crash", what, path, size - complete
                )
                file.truncate(complete)
            return file
        except BaseException:
            os.close(fd)
            raise

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, data: bytes | memoryview) -> None:
        """Append all of `data` (not yet durable, see `sync`, unless `synced_writes`). On
        OSError some of it may have been written: `truncate(size)` to the size before the call
        undoes that."""
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self.size += written
            view = view[written:]

    def write_pieces(self, pieces: Sequence[bytes | memoryview]) -> None:
        """`write` of the pieces' bytes, in order, without joining them (`writev`)."""
        views = [memoryview(piece) for piece in pieces if piece]
        start = 0
        while start < len(views):
            written = os.writev(self._fd, views[start : start + _IOV_MAX])
            self.size += written
            while written:  # past the pieces written; a piece written in part keeps its rest
                if written >= len(views[start]):
                    written -= len(views[start])
                    start += 1
                else:
                    views[start] = views[start][written:]
                    written = 0

    def sync(self) -> None:
        """Make everything written so far durable, its size included (fdatasync: see the
        module docstring)."""
        os.fdatasync(self._fd)

    def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes and make that durable."""
        os.ftruncate(self._fd, size)
        self.sync()
        self.size = size

    def pread(self, length: int, offset: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the file)."""
        return os.pread(self._fd, length, offset)

    def lines(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(offset, line with its newline) for each complete line from byte `start` (a line's
        start) up to `end` (default: the size), read in chunks."""
        yield from read_lines(self._fd, start, self.size if end is None else end)

    def close(self) -> None:
        """Release the lock and the file. Idempotent."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def read_lines(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each complete line of `fd` between `start` and `end`, by pread (the
    file position is left alone, so readers do not disturb each other or a writer)."""
    offset = start
    pending = b""
    while offset + len(pending) < end:
        chunk = os.pread(fd, min(_CHUNK, end - offset - len(pending)), offset + len(pending))
        if not chunk:
            break
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield offset, line + b"\n"
            offset += len(line) + 1


def _end_of_last_line(fd: int, size: int) -> int:
    """The offset just after the last newline of the first `size` bytes (0 without one)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def fsync_directory(directory: Path) -> None:
    """Make a created, renamed or removed directory entry durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory; their entries are durable anyway
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
