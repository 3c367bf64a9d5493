"""`AccessTracking`: the access side of one server process -- the recorder, observed-flow
drift at ingest, and the alerts -- assembled from the settings (`access.*`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from domicile.access.alerts import AccessAlerts
from domicile.access.drift import DriftResult, ObservedRun, observe_run
from domicile.access.recorder import AccessRecorder, StoredRun
from domicile.access.webhooks import WebhookDispatcher
from domicile.catalog.model import qualified_job, utcnow
from domicile.security.context import current_trace
from domicile.security.events import SecurityEventLog

if TYPE_CHECKING:
    from domicile.access.model import ObservedViolation
    from domicile.app import App
    from domicile.router.runtime import Router


class AccessTracking:
    """What the servicers and the ingest path call; see `access.recorder` and `access.drift`."""

    def __init__(
        self,
        app: App,
        router: Router,
        recorder: AccessRecorder,
        alerts: AccessAlerts,
        own_events: SecurityEventLog | None,
        clock=utcnow,
    ) -> None:
        self._settings = app.settings.access
        self._router = router
        self.recorder = recorder
        self._alerts = alerts
        self._own_events = own_events
        self._clock = clock
        # Runs being judged: (job, run id) -> [its lock, how many events hold or wait for it].
        self._judging: dict[tuple[str, str], list] = {}

    @classmethod
    def start(cls, app: App, router: Router, *, clock=utcnow) -> AccessTracking:
        """Open the alert sinks and start the periodic flush. With --insecure (no security
        event log of the server's own) the security event log is opened here: findings are
        recorded there in every mode."""
        settings = app.settings
        access = settings.access
        webhooks = None
        if access.webhooks:  # first: a bad secret file stops the start before anything is opened
            webhooks = WebhookDispatcher(
                access.webhooks,
                attempts=access.webhook_attempts,
                timeout=access.webhook_timeout_seconds,
                dead_letter=settings.access_dead_letter_path,
            )
        own_events = None
        events = app.security_events
        if events is None:
            events = own_events = SecurityEventLog(settings.security_log_path)
        alerts = AccessAlerts(events, webhooks)
        recorder = AccessRecorder(
            app.store.access,
            access,
            labels_of=router.effective_labels,
            on_anomalies=alerts.anomalies,
            decisions_logged=lambda: _flush_decision_log(router),
            clock=clock,
        )
        recorder.start()
        router.set_intent_sink(recorder.intents)
        return cls(app, router, recorder, alerts, own_events, clock)

    def stored_run(self, job: str, run_id: str) -> StoredRun | None:
        """A read of what the store recorded for the run, for the ingest path to make with its
        lineage write (`GraphStore.record_lineage`'s `access_run`) and hand to `observe_run`;
        None when no read is needed (`AccessRecorder.stored_run`)."""
        return self.recorder.stored_run(qualified_job(job), run_id)

    async def observe_run(self, run: ObservedRun, stored: StoredRun | None = None) -> DriftResult:
        """Record an ingested run and judge what it did (observed-flow drift). Events of one
        run are judged one after the other, so each judges only what the ones before it did
        not report; events of different runs at the same time, so that they share the
        durable decision log's fsyncs. `stored`: see `stored_run`."""
        trace = current_trace()

        async def announce(violations: Sequence[ObservedViolation]) -> None:
            await self._alerts.violations(violations, trace_id=trace)

        key = (qualified_job(run.job), run.run_id)
        judging = self._judging.get(key)
        if judging is None:
            judging = self._judging[key] = [asyncio.Lock(), 0]
        judging[1] += 1
        try:
            async with judging[0]:
                return await observe_run(
                    run,
                    router=self._router,
                    recorder=self.recorder,
                    late_after=timedelta(seconds=self._settings.late_event_seconds),
                    now=self._clock(),
                    on_violations=announce,
                    stored=stored,
                )
        finally:
            judging[1] -= 1
            if not judging[1]:
                del self._judging[key]

    def catalog_write(self, principal: str, dataset_id: str) -> None:
        self.recorder.record_catalog_write(principal, dataset_id)

    async def flush(self) -> None:
        """Write what is pending (intents of decisions logged so far included)."""
        await _flush_decision_log(self._router)
        await self.recorder.flush()

    async def close(self) -> None:
        """Flush what is pending, then let alerts in flight finish (briefly)."""
        await _flush_decision_log(self._router)
        self._router.set_intent_sink(None)
        await self.recorder.close()
        await self._alerts.close()
        if self._own_events is not None:
            self._own_events.close()


async def _flush_decision_log(router: Router) -> None:
    # A failed decision log is reported by the router itself (its decisions are refused); what
    # it holds is written once it writes again.
    with contextlib.suppress(Exception):
        await router.flush_decision_log()
