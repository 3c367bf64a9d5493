"""The router's native helpers (router/_native.c), or None.

`pip install -e .` builds them where a C compiler exists (setup.py; optional). Only the
BatchDecide request parser is used; without it the servicer's protobuf parsing and checks
give the same results, slower. (Its decision loop, encoder, line renderer and untracking
predate `Decision.inherited_only` and are not called: the Python reference code runs.)
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
