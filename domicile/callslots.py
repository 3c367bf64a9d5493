"""A call's slots in the load shedder's concurrency limits (domicile/loadshed.py), seen from
the code the call runs.

Those limits bound the work a server does at once. A call that waits for something shared,
whose backlog is bounded elsewhere -- a decision waiting for the decision log's group commit,
whose queue has its own limit and backpressure -- is not work: refusing new calls because many
wait would save nothing (their decisions would share the same fsync) and would turn one slow
fsync into a burst of refusals. Such a wait runs inside `slots_given_back()`: the call does not
count as in flight meanwhile, and counts again afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol


class Slot(Protocol):
    """One call's place in a count of calls in flight."""

    def give_back(self) -> None: ...

    def take_again(self) -> None: ...


# The slots the current call holds (each call runs in its own task, with its own context).
held_slots: ContextVar[list[Slot] | None] = ContextVar("held_slots", default=None)


def hold(slot: Slot) -> None:
    """Record that the current call holds `slot` (the load shedder, as it admits the call)."""
    slots = held_slots.get()
    if slots is None:
        held_slots.set([slot])
    else:
        slots.append(slot)


@contextlib.contextmanager
def slots_given_back() -> Iterator[None]:
    """Around a wait for shared work bounded elsewhere: the current call's slots are free
    meanwhile. Without a load shedder (in process, or shedding off) it does nothing."""
    slots = held_slots.get()
    if not slots:
        yield
        return
    for slot in slots:
        slot.give_back()
    try:
        yield
    finally:
        for slot in slots:
            slot.take_again()
