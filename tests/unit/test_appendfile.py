"""AppendOnlyFile: `write_pieces` writes the pieces in order whatever writev takes per call; `open`
cuts a torn last line durably; `synced_writes` makes every write a synced one."""

from __future__ import annotations

import fcntl
import os

from domicile import appendfile
from domicile.appendfile import AppendOnlyFile


def test_pieces_are_written_in_order_across_short_writes_and_the_iovec_limit(tmp_path, monkeypatch) -> None:
    pieces = [f"{n}:".encode() * (n % 7) for n in range(3 * appendfile._IOV_MAX)]  # some empty
    calls = []
    real_writev = os.writev

    def short_writev(fd, buffers):  # at most 1,000 bytes a call, sometimes ending inside a piece
        calls.append(len(buffers))
        assert len(buffers) <= appendfile._IOV_MAX
        taken, budget = [], 1000
        for buffer in buffers:
            taken.append(bytes(buffer)[:budget])
            budget -= len(taken[-1])
            if not budget:
                break
        return real_writev(fd, taken)

    monkeypatch.setattr("domicile.appendfile.os.writev", short_writev)
    file = AppendOnlyFile.open(tmp_path / "log", what="log", in_use_reason="IN_USE")
    try:
        file.write(b"first\n")
        file.write_pieces(pieces)
        assert file.size == 6 + sum(map(len, pieces))
    finally:
        file.close()
    assert (tmp_path / "log").read_bytes() == b"first\n" + b"".join(pieces)
    assert len(calls) > sum(map(len, pieces)) // 1000


def test_open_cuts_a_torn_last_line_durably(tmp_path, monkeypatch) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo\nthr")
    events = []
    real_ftruncate, real_sync = os.ftruncate, os.fdatasync
    monkeypatch.setattr(
        "domicile.appendfile.os.ftruncate", lambda fd, n: (events.append(("cut", n)), real_ftruncate(fd, n))
    )
    monkeypatch.setattr("domicile.appendfile.os.fdatasync", lambda fd: (events.append(("sync",)), real_sync(fd)))
    file = AppendOnlyFile.open(path, what="log", in_use_reason="IN_USE")
    try:
        assert (file.size, file.torn_bytes, file.created) == (8, 3, False)
        assert events == [("cut", 8), ("sync",)]
        file.write(b"four\n")
    finally:
        file.close()
    assert path.read_bytes() == b"one\ntwo\nfour\n"


def test_synced_writes_are_synced_by_the_kernel_and_the_default_ones_are_not(tmp_path, monkeypatch) -> None:
    syncs = []
    real_sync = os.fdatasync
    monkeypatch.setattr("domicile.appendfile.os.fdatasync", lambda fd: (syncs.append(fd), real_sync(fd)))
    synced = AppendOnlyFile.open(tmp_path / "synced", what="log", in_use_reason="IN_USE", synced_writes=True)
    plain = AppendOnlyFile.open(tmp_path / "plain", what="log", in_use_reason="IN_USE")
    try:
        # O_DSYNC: each write returns once its bytes and the file's size are durable.
        assert fcntl.fcntl(synced._fd, fcntl.F_GETFL) & os.O_DSYNC
        assert not fcntl.fcntl(plain._fd, fcntl.F_GETFL) & os.O_DSYNC
        synced.write(b"one\n")
        synced.write_pieces([b"tw", b"o\n"])
        assert synced.size == 8 and syncs == []  # no sync call of its own
    finally:
        synced.close()
        plain.close()
    assert (tmp_path / "synced").read_bytes() == b"one\ntwo\n"
