"""The application object: what the servicers share within one server process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from domicile.catalog.regions import RegionRegistry
from domicile.catalog.store import GraphStore
from domicile.config import Settings

if TYPE_CHECKING:
    from domicile.access.tracking import AccessTracking
    from domicile.router.policy_changes import PolicyChanges
    from domicile.router.runtime import Router
    from domicile.security.budgets import Budgets, Resource
    from domicile.security.events import SecurityEventLog


@dataclass
class App:
    """Holds the store, the router and settings for the servicers of one process.

    Writers call `after_write(revision)` once a write is acknowledged by the store, before
    answering; that is what makes the router's next decision in this process see the write
    (read-your-writes).
    """

    settings: Settings
    store: GraphStore
    router: Router | None = None
    # Where security-relevant actions (policy changes) are recorded; None with --insecure.
    security_events: SecurityEventLog | None = None
    # How policy changes become active (proposals and approvals); set with the router.
    policy_changes: PolicyChanges | None = None
    # Access records, drift and anomalies; None when `access.enabled` is false.
    access: AccessTracking | None = None
    # Per-principal budgets (None when rate limiting is off).
    budgets: Budgets | None = None

    def regions(self) -> RegionRegistry:
        """Builtin regions plus the active policy's private regions."""
        if self.router is not None:
            return self.router.regions()
        return RegionRegistry.builtin()

    def charge(self, resource: Resource, amount: int) -> None:
        """Charge `amount` of `resource` to the calling principal's budget; RESOURCE_EXHAUSTED
        past it (see `domicile.security.budgets`). Call after validating the request."""
        if self.budgets is not None:
            self.budgets.charge_caller(resource, amount)

    async def after_write(self, revision: int) -> None:
        if self.router is not None:
            await self.router.note_local_write(revision)
