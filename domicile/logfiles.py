"""Reading append-only line files (the decision log, the security event log) from their end:
searches want the newest entries first and must not read a whole file to find them."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from domicile import external_json
from domicile.errors import invalid_field

CHUNK = 1 << 20


@contextmanager
def open_for_reading(path: Path) -> Iterator[int]:
    """A read-only descriptor of `path` (the writer keeps its own); a missing file reads as empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def lines_backwards(fd: int, end: int, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its newline) of every complete line ending at or before byte `end`,
    last first, reading `chunk` bytes at a time. A torn last line (no newline yet: being
    written) is left out."""
    position = end
    buffer = b""  # the bytes [position, position + limit) not yielded yet
    limit = 0
    trimmed = False
    while True:
        if not trimmed:
            cut = buffer.rfind(b"\n", 0, limit)
            if cut >= 0 or position == 0:
                limit = cut + 1
                trimmed = True
        if trimmed:
            while limit:
                newline = buffer.rfind(b"\n", 0, limit - 1)
                if newline < 0 and position > 0:
                    break  # the first line may start in the part not read yet
                yield position + newline + 1, buffer[newline + 1 : limit]
                limit = newline + 1
        if position == 0:
            return
        read = min(chunk, position)
        position -= read
        buffer = os.pread(fd, read, position) + buffer[:limit]
        limit += read


def encode_position_token(end: int, skip: int, fingerprint: str) -> str:
    """A page token for a backwards search: go on with the lines ending at or before byte
    `end`, skipping the first `skip` matches of the line ending there; `fingerprint` ties it to
    the search's filters."""
    raw = json.dumps({"end": end, "skip": skip, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_position_token(token: str, fingerprint: str) -> tuple[int | None, int]:
    """(end, skip) of a token from `encode_position_token`; (None, 0) for the first page.
    INVALID_ARGUMENT (field page_token) for a token that is not one, or of other filters."""
    if not token:
        return None, 0
    try:
        data = external_json.parse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        end, skip, token_fingerprint = data["end"], data["skip"], data["f"]
        # Byte offsets and counts: what a file offset can be (os.pread refuses more).
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in (end, skip)):
            raise ValueError("unexpected token content")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid_field("page_token", "malformed page token") from None
    if token_fingerprint != fingerprint:
        raise invalid_field("page_token", "the page token belongs to a search with other filters")
    return end, skip
