"""JSON that arrives from outside the process (HTTP bodies, page tokens): one strict decoder.

Python's `json` accepts what JSON does not define (`NaN`, `Infinity`, lone surrogates) and
recurses once per nesting level, so a body of a few thousand brackets raises RecursionError
deep inside a request. `parse` refuses all of that with a ValueError naming the problem:

- nesting deeper than `MAX_DEPTH` levels (arrays and objects);
- non-finite numbers (`NaN`, `Infinity`, and literals such as `1e400` that overflow);
- strings that are not valid Unicode (invalid UTF-8, unpaired surrogate escapes).
"""

from __future__ import annotations

from typing import Any

import orjson

# orjson's own bound (it refuses deeper documents without recursing in Python); far more
# than any OpenLineage event needs, including Spark's nested plan facets.
MAX_DEPTH = 1024


class JSONRefused(ValueError):
    """The text is not JSON this process accepts; the message says why (safe to return)."""


def parse(data: bytes | bytearray | memoryview | str) -> Any:
    """The decoded value of `data`; JSONRefused for anything the module docstring excludes."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONRefused(_describe(exc)) from None


def _describe(exc: orjson.JSONDecodeError) -> str:
    text = str(exc)
    if "depth limit" in text:
        return f"nested deeper than {MAX_DEPTH} levels"
    return text
