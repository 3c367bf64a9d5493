"""Conversions between protobuf Timestamps and aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp

from domicile.catalog.model import from_micros, to_micros


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


def optional_time(message, field_name: str) -> datetime | None:
    """The datetime of an optional Timestamp field, None when unset."""
    return from_timestamp(getattr(message, field_name)) if message.HasField(field_name) else None


def parse_time(text: str) -> datetime:
    """ISO 8601 (`2026-11-30T10:00:00Z`, offsets allowed; a bare date means midnight UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
