"""The SDK's values as JSON data: what `domicile --json` prints, and what an Airflow task
can push to XCom."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as JSON data: dataclasses and named tuples become objects of their fields,
    enums their values, datetimes ISO 8601 strings in UTC (`2026-11-30T10:00:00Z`), tuples
    and sets lists (sets sorted), mappings objects."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Fields left out of repr are caches, not values (EffectiveAttributes.engine_cache).
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: jsonable(item) for name, item in zip(value._fields, value, strict=True)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")
