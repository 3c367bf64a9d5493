"""The router's native helpers (router/_native.c), or None.

`pip install -e .` builds them where a C compiler exists (setup.py; optional). Without them
every caller uses its Python reference, which gives the same results, slower: the decision
log's `_LineBuilder`, `DecisionEncoder.encode_batch_python`, the servicer's protobuf parsing
and checks, and no untracking of BatchDecide's decisions.
"""

from __future__ import annotations

from types import ModuleType

try:
    from domicile.router import _native as _module
except ImportError:  # pragma: no cover - the Python references stand in
    _module = None

native: ModuleType | None = _module
