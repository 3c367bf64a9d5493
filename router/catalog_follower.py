"""Following the catalog: keeps the residency engine's index at the catalog's head.

The index is built from the store's residency snapshot at revision `r0` (`Router.start`); those
pages are not one snapshot (writes may land while they are read), and replaying the change feed
from `r0` repairs that, because every change is idempotent on the index (an upsert sets, a
delete forgets, an edge is keyed, an ended edge is removed only if it is the indexed version).
After that the follower polls the feed every `poll_interval` seconds and applies what it finds.

A large batch of changes (one big lineage event) is applied by the engine on another thread
while decisions keep being answered from the current view, to which the engine adds the batch
in one step: decisions see the catalog before the batch or after it, never a part of it.

Freshness: the view is *confirmed* when a poll found the feed's head. It is stale -- and
decisions fail closed -- when it was last confirmed more than `staleness_bound` seconds ago, or
when a write this process acknowledged could not be applied (`note_local_write`). While a
large batch is applied aside, the view before it counts as confirmed when the batch was read.
A write made here is acknowledged only once the index has applied it (read-your-writes), so
only a write whose application failed makes decisions fail closed; while it is being applied,
the others are answered from the view before it, which is what the catalog was until that
write is acknowledged.

The index is changed only under `lock` (the change feed here, a policy switch in
`router.policy_admin`), so that the event loop never waits for the engine's writer.

The view (its revision, and how long it stays fresh if nothing changes) is also published to
whoever decides without asking the follower each time (`publish_view`: the engine's unary
decider, which asks `stale_reason` only once that time ran out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from domicile.catalog.store import GraphStore
from domicile.router.engine import Engine

log = logging.getLogger("domicile.router.runtime")

_FEED_BATCH = 10_000
# A batch of changes at least this large is applied on another thread (handing it over costs
# about as much as applying a few hundred changes on the event loop).
_APPLY_ASIDE = 2_000


class ViewSink(Protocol):
    def __call__(self, catalog_revision: int, fresh_for: float, /) -> None:
        """The index reflects `catalog_revision`; the view is fresh for `fresh_for` more seconds
        (not at all when not positive) unless the follower says otherwise before."""


class CatalogFollower:
    """Applies the catalog's change feed to `engine` from `revision` on, and tells `changed` the
    ids whose answers each application may have changed (`Engine.apply`)."""

    def __init__(
        self,
        store: GraphStore,
        engine: Engine,
        revision: int,
        *,
        staleness_bound: float,
        poll_interval: float,
        changed: Callable[[Iterable[str]], None],
    ) -> None:
        self._store = store
        self._engine = engine
        self._changed = changed
        self._revision = revision
        self._staleness_bound = staleness_bound
        self._poll_interval = poll_interval
        self._confirmed_at = float("-inf")
        self._applying_since = float("-inf")  # when the batch being applied aside was read
        # The highest revision this process acknowledged to a writer although the index could
        # not apply it; decisions fail closed until it has (read-your-writes).
        self._required_revision = 0
        # Until when (monotonic) the view is fresh if nothing changes: every decision asks.
        self._fresh_until = float("-inf")
        self._view_sinks: list[ViewSink] = []
        self.lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self._poll_failures = 0

    @property
    def revision(self) -> int:
        """The catalog revision the index reflects."""
        return self._revision

    def publish_view(self, sink: ViewSink) -> None:
        """Tell `sink` the view now and after every change of its revision or freshness."""
        self._view_sinks.append(sink)
        sink(self._revision, self._fresh_until - time.monotonic())

    def start(self) -> None:
        """Start polling the feed in the background (`close` stops it)."""
        self._poll_task = asyncio.create_task(self._follow(), name="router-follow-catalog")

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task

    async def note_local_write(self, revision: int) -> None:
        """A write at `revision` made by this process is about to be acknowledged: bring the
        index to at least `revision` before returning (the writer's answer waits for it). If
        the store cannot be read now, this returns anyway (the write itself succeeded) and
        decisions fail closed with STALE_CATALOG until the background poll catches up."""
        if revision <= self._revision:
            return
        try:
            await self.catch_up(min_revision=revision)
        except Exception as exc:  # the poll loop retries; decisions fail closed meanwhile
            self._required_revision = max(self._required_revision, revision)
            self._set_fresh_until()
            log.warning("router could not apply local write at revision %d: %s", revision, exc)

    async def catch_up(self, min_revision: int = 0) -> None:
        """Apply the change feed up to its head. One caller at a time; a caller that waited for
        another one's catch-up skips its own when that already covers `min_revision`."""
        async with self.lock:
            if min_revision and self._revision >= min_revision:
                return
            while True:
                asked_at = time.monotonic()
                changes = await self._store.changes_since(self._revision, limit=_FEED_BATCH)
                if len(changes) >= _APPLY_ASIDE:
                    # The view before the batch is as fresh as this read while the batch is
                    # applied: the router is keeping up, just not done.
                    self._applying_since = asked_at
                    self._set_fresh_until()
                    try:
                        touched = await asyncio.to_thread(self._engine.apply, changes)
                    finally:
                        self._applying_since = float("-inf")
                        self._set_fresh_until()
                    self._changed(touched)
                    self._revision = changes[-1].revision
                elif changes:
                    self._changed(self._engine.apply(changes))
                    self._revision = changes[-1].revision
                self._set_fresh_until()
                if len(changes) < _FEED_BATCH:
                    self._confirmed_at = asked_at
                    self._set_fresh_until()
                    return

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep polling: the store may come back
                self._poll_failures += 1
                # One line when it starts failing, then one a minute or so.
                if self._poll_failures == 1 or self._poll_failures % max(1, int(60 / self._poll_interval)) == 0:
                    log.warning("router cannot follow the catalog (%d failed polls): %s", self._poll_failures, exc)
            else:
                if self._poll_failures:
                    log.info("router follows the catalog again after %d failed polls", self._poll_failures)
                self._poll_failures = 0

    def view_age(self) -> float:
        """Seconds since the view was last confirmed (infinite before the first time)."""
        return time.monotonic() - max(self._confirmed_at, self._applying_since)

    def _set_fresh_until(self) -> None:
        """After the view's revision or confirmation changed (see `stale_reason`)."""
        if self._revision < self._required_revision:
            self._fresh_until = float("-inf")
        else:
            self._fresh_until = max(self._confirmed_at, self._applying_since) + self._staleness_bound
        fresh_for = self._fresh_until - time.monotonic()
        for sink in self._view_sinks:
            sink(self._revision, fresh_for)

    def stale_reason(self) -> str:
        """Why the view cannot be trusted now, or '' when it is fresh."""
        if time.monotonic() < self._fresh_until:
            return ""
        if self._revision < self._required_revision:
            return f"catalog revision {self._required_revision} was written here but is not applied yet (at {self._revision})"
        age = self.view_age()
        if age > self._staleness_bound:
            if age == float("inf"):
                return "the view of the catalog was never confirmed"
            return f"the view of the catalog was last confirmed {age:.1f}s ago (bound {self._staleness_bound:g}s)"
        return ""
