"""The router's native helpers (router/_native.c), or None.

`pip install -e .` builds them where a C compiler exists (setup.py; optional). Without them
every caller uses its Python reference, which gives the same results, slower: the decision
log's `_LineBuilder`, `DecisionEncoder.encode_batch_python`, the servicer's protobuf parsing
and checks, and no untracking of BatchDecide's decisions.
"""

from __future__ import annotations

import importlib
from types import ModuleType

native: ModuleType | None
try:
    # By name: an extension module has no type information to import it by.
    native = importlib.import_module("domicile.router._native")
except ImportError:  # pragma: no cover - the Python references stand in
    native = None
