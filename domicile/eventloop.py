"""The server's event loop, watched for saturation: when it last waited for work.

grpc.aio takes calls from gRPC's C core one per turn of the event loop. When calls arrive
faster than the loop can take them, they queue in the core, out of Python's sight, until their
deadline cancels them -- and nothing the loop itself measures shows it: it is not late (every
turn is short) and few calls are in flight (each one finishes quickly). What does show it is
that the loop never waits: a loop blocked in `select()` with nothing to run has taken every call
the core had for it. So the time since the loop last waited bounds how long any call still
queued has waited -- the signal load shedding refuses calls on (domicile/loadshed.py).

`new_event_loop()` builds such a loop (`domicile serve` runs on one); `idle_tracker(loop)`
finds its tracker. A loop built otherwise (a server started in process, in a test) has none.
"""

from __future__ import annotations

import asyncio
import selectors
import time
import weakref
from collections.abc import Callable

_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IdleTrackingSelector] = weakref.WeakKeyDictionary()


class IdleTrackingSelector(selectors.DefaultSelector):
    """The platform's default selector, adding up the time its loop spent waiting for work
    (`waited_seconds`: the time spent in `select()`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self.waited_seconds = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        started = self._clock()
        try:
            return super().select(timeout)
        finally:
            self.waited_seconds += self._clock() - started


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio event loop whose idleness `idle_tracker` reports."""
    selector = IdleTrackingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    _trackers[loop] = selector
    return loop


def idle_tracker(loop: asyncio.AbstractEventLoop) -> IdleTrackingSelector | None:
    """The tracker of a loop built by `new_event_loop` (None for any other loop)."""
    return _trackers.get(loop)
