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


def test_security_event_search_pages_and_budget(tmp_path):
    from domicile.security.event_search import EventQuery, search_events
    from domicile.security.events import AUTH_FAILURE, SecurityEventLog

    log = SecurityEventLog(tmp_path / "security.jsonl")
    for n in range(6):
        log.record(AUTH_FAILURE, outcome="denied", reason=f"R{n}", principal="p" if n % 2 else "")
    log.close()
    with (tmp_path / "security.jsonl").open("a") as file:
        file.write("not an event\n")
    path = tmp_path / "security.jsonl"
    page = search_events(path, EventQuery(), 4)
    assert [e["reason"] for e in page.events] == ["R5", "R4", "R3", "R2"]
    rest = search_events(path, EventQuery(), 4, page.next_token)
    assert [e["reason"] for e in rest.events] == ["R1", "R0"] and rest.next_token == ""
    found, token = [], ""
    for _ in range(20):  # a budget below one line still moves a line per call
        answer = search_events(path, EventQuery(principal="p"), 10, token, budget_bytes=1)
        found += [e["reason"] for e in answer.events]
        token = answer.next_token
        if not token:
            break
    assert found == ["R5", "R3", "R1"]
