"""Reading line files backwards (domicile/logfiles.py)."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from domicile.logfiles import lines_backwards, open_for_reading

_line = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"") + b"\n")


@given(
    lines=st.lists(_line, max_size=15),
    torn=st.binary(max_size=9).map(lambda b: b.replace(b"\n", b"")),
    chunk=st.integers(1, 20),
)
def test_every_complete_line_last_first(tmp_path_factory, lines, torn, chunk):
    path = tmp_path_factory.mktemp("lines") / "log"
    data = b"".join(lines) + torn
    path.write_bytes(data)
    expected, offset = [], 0
    for line in lines:
        expected.append((offset, line))
        offset += len(line)
    with open_for_reading(path) as fd:
        assert list(lines_backwards(fd, len(data), chunk)) == expected[::-1]
        # From an earlier end (a page token's): only the lines ending before it.
        if lines:
            end = expected[-1][0]
            assert list(lines_backwards(fd, end, chunk)) == expected[-2::-1]


def test_missing_file_reads_as_empty(tmp_path):
    with open_for_reading(tmp_path / "absent") as fd:
        assert list(lines_backwards(fd, os.fstat(fd).st_size)) == []
