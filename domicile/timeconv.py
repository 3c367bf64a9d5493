"""Conversions between protobuf Timestamps and aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp

from domicile.catalog.model import MAX_TIME_MICROS, MIN_TIME_MICROS, from_micros, to_micros
from domicile.errors import FieldErrors


@overload
def to_timestamp(value: datetime) -> Timestamp: ...
@overload
def to_timestamp(value: None) -> None: ...
def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromMicroseconds(to_micros(value))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return from_micros(ts.ToMicroseconds())


def timestamp_problem(ts: Timestamp) -> str:
    """Why `ts` is not a valid Timestamp ('' when it is): a request's field must be refused
    with this, not converted (a conversion out of range fails deep inside with no field)."""
    if not 0 <= ts.nanos <= 999_999_999:
        return f"nanos {ts.nanos} must be between 0 and 999999999"
    if not MIN_TIME_MICROS // 1_000_000 <= ts.seconds <= MAX_TIME_MICROS // 1_000_000:
        return f"seconds {ts.seconds} is outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z"
    return ""


def optional_time(errors: FieldErrors, message, field_name: str) -> datetime | None:
    """The datetime of an optional Timestamp field of a request, None when unset; when it is
    out of range, a violation of `field_name` is added to `errors` (and None returned)."""
    if not message.HasField(field_name):
        return None
    ts = getattr(message, field_name)
    problem = timestamp_problem(ts)
    if problem:
        errors.add(field_name, problem)
        return None
    return from_timestamp(ts)


def parse_time(text: str) -> datetime:
    """ISO 8601 (`2026-11-30T10:00:00Z`, offsets allowed; a bare date means midnight UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
