"""Argument handling shared by the access-record halves of every backend: time ranges and
page tokens (backends must agree on both; `tests/contract/test_access.py` checks it)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from domicile import external_json
from domicile.access.model import DAY
from domicile.catalog.model import MAX_TIME_MICROS, MIN_TIME_MICROS, PageRequest
from domicile.catalog.stores.common import decode_page_token, encode_page_token, micros_arg
from domicile.errors import invalid_field

# No range end: far enough in either direction for any stored time.
MIN_US = -(2**62)
MAX_US = 2**62
DAY_US = int(DAY.total_seconds()) * 1_000_000


def time_range(since: datetime | None, until: datetime | None) -> tuple[int, int]:
    """[since, until) in microseconds, open ends widened; INVALID_ARGUMENT when empty."""
    low = micros_arg(since, "since")
    high = micros_arg(until, "until")
    low = MIN_US if low is None else low
    high = MAX_US if high is None else high
    if low >= high:
        raise invalid_field("until", "must be later than since")
    return low, high


def day_range(since: datetime | None, until: datetime | None) -> tuple[int, int]:
    """The days (their start, µs) overlapping [since, until): `low <= day < high`."""
    low, high = time_range(since, until)
    return (low - DAY_US + 1 if low != MIN_US else MIN_US), high


def day_rows_range(since: datetime | None, until: datetime | None) -> tuple[int, int, int, int]:
    """What selects the day aggregates of [since, until), in µs: `(low, high, since, until)`
    for `low <= day < high AND last_seen >= since AND first_seen < until`. The days are those
    overlapping the range (`day_range`); a day row whose accesses all lie beyond a range end
    (later that day than `until`) is left out all the same."""
    return (*day_range(since, until), *time_range(since, until))


def range_fingerprint(low: int, high: int) -> str:
    return hashlib.sha256(json.dumps([low, high]).encode()).hexdigest()[:12]


def page_start(page: PageRequest, kind: str, low: int, high: int) -> tuple[int, str] | None:
    """The (time, id) after which `page` continues, None for the first page."""
    if page.size <= 0:
        raise invalid_field("page_size", "must be positive")
    after, _ = decode_page_token(page.token, kind, None, range_fingerprint(low, high))
    if after is None:
        return None
    try:
        time_us, record_id = external_json.parse(after)
        if (
            not isinstance(time_us, int)
            or not MIN_TIME_MICROS <= time_us <= MAX_TIME_MICROS
            or not isinstance(record_id, str)
        ):
            raise ValueError
    except (ValueError, TypeError):
        raise invalid_field("page_token", "malformed page token") from None
    return time_us, record_id


def next_token(kind: str, low: int, high: int, last: tuple[int, str]) -> str:
    return encode_page_token(kind, json.dumps(list(last)), None, range_fingerprint(low, high))
