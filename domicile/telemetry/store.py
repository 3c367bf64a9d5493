"""A GraphStore that measures its backend: every call's latency by backend, operation and
outcome (`domicile_store_operation_duration_seconds`), and a `store.OPERATION` span per call made
while serving a traced request (attributes `db.system`, `domicile.store.operation`).

`InstrumentedStore(store)` forwards everything to `store`; its coroutine methods are wrapped
when first used, so whatever the GraphStore protocol gains is measured without a change here.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from domicile.catalog.store import GraphStore
from domicile.telemetry.metrics import STORE_DURATION
from domicile.telemetry.tracing import child_span


def backend_name(store: GraphStore) -> str:
    """`sqlite`, `neo4j`, ...: the backend class name without `GraphStore`."""
    return type(store).__name__.removesuffix("GraphStore").lower() or type(store).__name__


class InstrumentedStore:
    """`store` with every coroutine method measured (see the module docstring)."""

    def __init__(self, store: GraphStore) -> None:
        self._store = store
        self._backend = backend_name(store)

    @property
    def wrapped(self) -> GraphStore:
        """The backend itself."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        measured = _measured(attribute, self._backend, name)
        setattr(self, name, measured)  # found directly from now on
        return measured


def _measured(method: Callable[..., Any], backend: str, operation: str) -> Callable[..., Any]:
    ok = STORE_DURATION.labels(backend, operation, "ok")
    failed = STORE_DURATION.labels(backend, operation, "error")
    span_name = f"store.{operation}"
    attributes = {"db.system": backend, "domicile.store.operation": operation}

    async def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            with child_span(span_name, attributes):
                result = await method(*args, **kwargs)
        except BaseException:
            failed.observe(time.perf_counter() - started)
            raise
        ok.observe(time.perf_counter() - started)
        return result

    call.__name__ = operation
    call.__doc__ = method.__doc__
    return call
