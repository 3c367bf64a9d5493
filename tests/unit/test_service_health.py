"""ServiceHealth's own lifecycle (what it reports is tested against real servers in
tests/e2e/test_health.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from grpc_health.v1 import health

from domicile.health import ServiceHealth


class _Store:
    """A store whose revision read, once armed, answers just as the checks are being closed."""

    def __init__(self) -> None:
        self.service_health: ServiceHealth | None = None
        self.closing: asyncio.Task[None] | None = None

    async def revision(self) -> int:
        if self.service_health is not None and self.closing is None:
            self.closing = asyncio.ensure_future(self.service_health.close())
        return 7


async def test_close_ends_the_checks_even_when_a_check_swallows_the_cancellation() -> None:
    # asyncio.wait_for (Python 3.11) returns a result that arrives together with the
    # cancellation and drops the cancellation: the check must still stop when closed.
    store = _Store()
    service_health = ServiceHealth(
        SimpleNamespace(store=store, router=None), health.aio.HealthServicer(), interval=0.01
    )
    await service_health.start()
    store.service_health = service_health  # the next periodic check closes it mid-read
    for _ in range(500):
        if store.closing is not None:
            break
        await asyncio.sleep(0.01)
    assert store.closing is not None
    done, _ = await asyncio.wait([store.closing], timeout=30)
    assert done, "close() did not return: the checks go on"
