"""Finding a logged decision again, and proving that its line is the one the chain holds.

What the index holds (bounded, whatever the log's size):

- for every line of the active file: its offset and hash -- verified when the log was opened,
  or computed by the writer that wrote it -- so a line read back from disk is checked with one
  hash of its own bytes (a line changed on disk since is refused, naming it);
- the lines of the last `recent_capacity` decisions, as bytes (read back from them only once a
  rotation took their file away; an active-file line is always read from disk and checked);
- decision id -> line for the last `index_capacity` decisions of the active file; older ids
  are found by scanning the active file, then the rotated files, newest first;
- the checkpoints this process verified or wrote, by the line they sign.

A line's **proof** names the first signed checkpoint after it (its chain reaches that
checkpoint) or, for a line no checkpoint covers yet, the live chain this process verified at
start and extended itself. A line of a rotated file is proven by checking the chain from it to
the next checkpoint in that file (every rotated file ends with one).

The writer does not index ids as it writes: it notes each line's ids and the first `get`
after writes folds them in (at most `index_capacity` ids), so a log nobody reads pays nothing
per decision for being readable.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from array import array
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from domicile.appendfile import read_lines
from domicile.errors import failed_precondition
from domicile.router.decision_log import legacy
from domicile.router.decision_log.checkpoints import Checkpoint, TrustedKeys
from domicile.router.decision_log.format import LineError, LoggedDecision, Piece, find_decision, line_digest, parse_line
from domicile.router.decision_log.series import Series
from domicile.router.decision_log.verify import prove


@dataclass(frozen=True)
class Proof:
    """Why a decision read back can be relied on: the line that holds it (`line_seq`,
    `line_hash`, in `replica`'s chain) and the first signed checkpoint whose chain from that
    line holds (`checkpoint`), or None when no checkpoint covers the line yet and it is held by
    the live chain this server verified when it opened the log and has extended since."""

    replica: str
    line_seq: int
    line_hash: str
    checkpoint: Checkpoint | None


class LineIds:
    """The decision ids of one line: its entries' ids, read (a batch's made as text) only when
    the index folds them in."""

    __slots__ = ("_count", "_parts")

    def __init__(self, parts: tuple[Collection[str], ...]) -> None:
        self._parts = parts
        self._count = sum(map(len, parts))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._parts)

    def __contains__(self, decision_id: object) -> bool:
        return any(decision_id in part for part in self._parts)


@dataclass(frozen=True)
class WrittenLine:
    """What the writer tells the index about a line it wrote (and fsynced)."""

    seq: int
    offset: int
    digest: bytes  # the raw 32-byte SHA-256
    ids: Collection[str]  # its decisions' ids (none for other lines)
    data: bytes | tuple[Piece, ...]  # the line, or the pieces of its bytes in order (as written)


class DecisionIndex:
    """The reading side of a `DecisionLog` (see the module docstring). The writer thread calls
    `note_*`; `find` runs in worker threads."""

    def __init__(
        self,
        series: Series,
        replica: str,
        keys: TrustedKeys,
        *,
        recent_capacity: int,
        index_capacity: int,
        archive_dir: Path | None = None,
    ) -> None:
        self._series = series
        self._archive_dir = archive_dir
        self.replica = replica
        self._keys = keys
        self._recent_capacity = recent_capacity
        self._index_capacity = index_capacity
        # A read-only descriptor of the active file; readers hold `_read_lock` while they use it,
        # and a rotation (`start_file`) while it replaces it.
        self._read_fd = -1
        self._read_lock = threading.Lock()
        self._lock = threading.Lock()  # guards everything below against the writer's notes
        self._fold_lock = threading.Lock()
        self._first_seq = 1  # of the active file
        self._offsets = array("Q")
        self._digests = bytearray()
        self._size = 0
        self._checkpoints: list[Checkpoint] = []
        self._signed_seqs: list[int] = []
        self._ids: dict[str, int] = {}  # decision id -> line seq, for seqs >= `_indexed_from`
        self._order: list[int] = []  # the seq of each id indexed, in order (for trimming)
        self._indexed_from = 1  # a seq; ids of active-file lines before it are found by scanning
        self._recent: dict[str, tuple[int, bytes | tuple[Piece, ...]]] = {}
        self._unindexed: deque[tuple[Collection[str], int]] = deque()
        self._unindexed_ids = 0
        self._unindexed_lines: deque[tuple[Collection[str], int, bytes | tuple[Piece, ...]]] = deque()
        self._unindexed_line_ids = 0

    # ---- the writer's notes ------------------------------------------------------------

    def start_file(self, first_seq: int) -> None:
        """The active file (new, or just opened) begins at line `first_seq`: what was indexed by
        line of a previous one is dropped (its ids are found by scanning; the recent lines stay).
        Raises OSError when the file cannot be opened for reading."""
        fd = os.open(self._series.active, os.O_RDONLY | os.O_CLOEXEC)
        with self._read_lock:
            if self._read_fd >= 0:
                os.close(self._read_fd)
            self._read_fd = fd
        with self._lock:
            self._first_seq = first_seq
            self._offsets = array("Q")
            self._digests = bytearray()
            self._size = 0
            self._ids, self._order = {}, []
            self._indexed_from = first_seq
            self._unindexed.clear()
            self._unindexed_ids = 0

    def note_lines(self, lines: Sequence[WrittenLine], size: int) -> None:
        """Lines of the active file written (and durable) or verified at open, in order; `size`
        is the file's size after them."""
        with self._lock:
            for line in lines:
                self._offsets.append(line.offset)
                self._digests += line.digest
                if line.ids:
                    self._unindexed.append((line.ids, line.seq))
                    self._unindexed_ids += len(line.ids)
                    self._unindexed_lines.append((line.ids, line.seq, line.data))
                    self._unindexed_line_ids += len(line.ids)
            self._size = size
            unindexed, recent = self._unindexed, self._unindexed_lines
            while unindexed and self._unindexed_ids - len(unindexed[0][0]) >= self._index_capacity:
                self._unindexed_ids -= len(unindexed.popleft()[0])
                self._indexed_from = max(self._indexed_from, unindexed[0][1])
            while recent and self._unindexed_line_ids - len(recent[0][0]) >= self._recent_capacity:
                self._unindexed_line_ids -= len(recent.popleft()[0])

    def note_checkpoint(self, checkpoint: Checkpoint) -> None:
        """A checkpoint verified at open or written (in order of the lines they sign)."""
        with self._lock:
            self._checkpoints.append(checkpoint)
            self._signed_seqs.append(checkpoint.signed_seq)

    # ---- reading -----------------------------------------------------------------------

    def needs_fold(self) -> bool:
        return bool(self._unindexed_lines) or self._fold_lock.locked()

    def fold(self) -> None:
        """Fold the lines noted since the last fold into the id index and the recent lines."""
        with self._fold_lock, self._lock:
            unindexed, self._unindexed, self._unindexed_ids = self._unindexed, deque(), 0
            lines, self._unindexed_lines, self._unindexed_line_ids = self._unindexed_lines, deque(), 0
            ids, order = self._ids, self._order
            for line_ids, seq in unindexed:
                if seq >= self._first_seq:
                    ids.update(dict.fromkeys(line_ids, seq))
                    order.extend(itertools.repeat(seq, len(line_ids)))
            if len(order) >= 2 * self._index_capacity:
                boundary = order[-self._index_capacity]
                del order[: bisect.bisect_left(order, boundary)]
                self._ids = {key: seq for key, seq in ids.items() if seq >= boundary}
                self._indexed_from = max(self._indexed_from, boundary)
            recent = self._recent
            for line_ids, seq, data in lines:
                recent.update(dict.fromkeys(line_ids, (seq, data)))
            excess = len(recent) - self._recent_capacity
            if excess > 0:
                for decision_id in list(itertools.islice(recent, excess)):
                    del recent[decision_id]

    def find(self, decision_id: str) -> tuple[LoggedDecision, Proof] | None:
        """The logged decision with this id (the newest copy) and its proof, or None. Runs in
        a worker thread. Raises DomicileError FAILED_PRECONDITION (DECISION_LOG_CORRUPT) when
        the line that holds it does not verify."""
        with self._lock:
            recent = self._recent.get(decision_id)
            seq = self._ids.get(decision_id)
            indexed_from = self._indexed_from
        found = None
        if recent is not None:
            seq = recent[0]
            if seq < self._first_seq:  # written before a rotation: the bytes this process wrote
                data = recent[1]
                found = self._from_line(data if isinstance(data, bytes) else b"".join(data), decision_id, seq)
        if found is None and seq is not None:
            # From disk, checked against the hash held for it: a line changed on disk since is
            # refused now, not only at the next start.
            found = self._from_active(decision_id, seq)
        if found is None:
            needle = b'["' + orjson.dumps(decision_id)[1:]
            found = (
                self._scan_active(decision_id, needle, indexed_from)
                or self._scan_rotated(decision_id, needle)
                or self._scan_legacy(decision_id)
            )
        return found

    def _from_active(self, decision_id: str, seq: int) -> tuple[LoggedDecision, Proof] | None:
        line = self._line_of_active(seq - self._first_seq)
        return None if line is None else self._from_line(line, decision_id, seq)

    def _line_of_active(self, position: int) -> bytes | None:
        """Line `position` (from 0) of the active file, read from disk and checked against the
        hash held for it (DECISION_LOG_CORRUPT when it changed); None when there is no such line
        (rotated away meanwhile)."""
        with self._lock:
            if not 0 <= position < len(self._offsets):
                return None
            offset = self._offsets[position]
            end = self._offsets[position + 1] if position + 1 < len(self._offsets) else self._size
            digest = bytes(self._digests[32 * position : 32 * position + 32])
        with self._read_lock:
            line = os.pread(self._read_fd, end - offset, offset)
        if line_digest(line) != digest.hex():
            raise self._changed(self._series.active, position + 1)
        return line

    def _from_line(self, line: bytes, decision_id: str, seq: int) -> tuple[LoggedDecision, Proof] | None:
        """A line this process holds as verified (in memory, or checked against its hash)."""
        try:
            record = parse_line(line)
        except LineError as exc:  # it verified before: memory or disk changed under us
            raise _corrupt(f"line seq {seq}: {exc}") from None
        found = find_decision(record, decision_id)
        if found is None:
            return None
        with self._lock:
            position = bisect.bisect_left(self._signed_seqs, seq)
            checkpoint = self._checkpoints[position] if position < len(self._checkpoints) else None
        return found, Proof(self.replica, seq, record["hash"], checkpoint)

    def _scan_active(self, decision_id: str, needle: bytes, before_seq: int) -> tuple[LoggedDecision, Proof] | None:
        with self._lock:
            count = min(before_seq - self._first_seq, len(self._offsets))
            if count <= 0:
                return None
            end = self._offsets[count] if count < len(self._offsets) else self._size
            first_seq = self._first_seq
        found = None
        with self._read_lock:
            for number, (_, line) in enumerate(read_lines(self._read_fd, 0, end)):
                if needle in line and decision_id in _ids_of(line):
                    found = first_seq + number
        return None if found is None else self._from_active(decision_id, found)

    def _scan_rotated(self, decision_id: str, needle: bytes) -> tuple[LoggedDecision, Proof] | None:
        for path in reversed(self._series.files(self._archive_dir)):
            if path == self._series.active or self._series.is_legacy(path):
                continue  # (the active file was scanned; format-2 logs are not searched)
            hit = None
            with open(path, "rb") as file:
                offset = 0
                for line in file:
                    if needle in line and decision_id in _ids_of(line):
                        hit = offset  # the last copy in this file
                    offset += len(line)
            if hit is None:
                continue
            try:
                proven = prove(path, hit, self._keys)
            except LineError as exc:
                raise _corrupt(f"{path.name}, after byte {hit}: {exc}") from None
            if proven is None:
                raise _corrupt(f"{path.name}: no checkpoint after the line of decision {decision_id}")
            record, checkpoint = proven
            found = find_decision(record, decision_id)
            if found is not None:
                return found, Proof(self.replica, record["seq"], record["hash"], checkpoint)
        return None

    def _scan_legacy(self, decision_id: str) -> tuple[LoggedDecision, Proof] | None:
        """A decision of a format-2 log (a release before format 3) that this series continues: the
        whole file is verified up to its head, which the next file's first line must record, and
        the proof is the first checkpoint after that line."""
        files = self._series.files(self._archive_dir)
        for position, path in enumerate(files[:-1]):
            if not self._series.is_legacy(path):
                continue
            found = legacy.find_decision(path, decision_id)
            if found is None:
                continue
            report = legacy.verify_format2(path)
            successor = files[position + 1]
            if successor == self._series.active:  # its first line is in the chain verified at open
                line = self._line_of_active(0)
                if line is None:
                    return None
                first = parse_line(line)
                with self._lock:
                    position_after = bisect.bisect_left(self._signed_seqs, first["seq"])
                    checkpoint = self._checkpoints[position_after] if position_after < len(self._checkpoints) else None
            else:
                try:
                    proven = prove(successor, 0, self._keys)
                except LineError as exc:
                    raise _corrupt(f"{successor.name}, from its first line: {exc}") from None
                if proven is None:
                    raise _corrupt(f"{successor.name}: no checkpoint after its first line")
                first, checkpoint = proven
            previous = first.get("previous") or {}
            if report.first_bad_line is not None or (previous.get("seq"), previous.get("hash")) != (
                report.lines,
                report.head,
            ):
                problem = report.problem or "its head is not the one the log continuing it recorded"
                raise _corrupt(f"{path.name} (format 2): {problem}")
            return found, Proof(self.replica, found.seq, found.hash, checkpoint)
        return None

    def close(self) -> None:
        with self._read_lock:
            if self._read_fd >= 0:
                os.close(self._read_fd)
                self._read_fd = -1

    def _changed(self, path: Path, line_number: int):
        return _corrupt(
            f"{path.name} line {line_number} changed on disk after it was verified (run `domicile audit verify`)"
        )


def _ids_of(line: bytes) -> list[str]:
    try:
        record = orjson.loads(line)
        return [row[0] for entry in record.get("entries", ()) for row in entry["decisions"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError):
        return []


def _corrupt(where: str):
    return failed_precondition(f"decision log damaged: {where}", "DECISION_LOG_CORRUPT")
