"""Where observed violations and anomalies are announced: the security event log and the
configured webhooks (`access.webhooks`)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import json_format

from domicile.access.convert import anomaly_to_proto, violation_to_proto
from domicile.access.model import Anomaly, ObservedViolation
from domicile.access.webhooks import WebhookDispatcher
from domicile.router.convert import DecisionEncoder
from domicile.security.events import ACCESS_ANOMALY, OBSERVED_VIOLATION, SecurityEventLog


class AccessAlerts:
    def __init__(self, events: SecurityEventLog | None, webhooks: WebhookDispatcher | None) -> None:
        self._events = events
        self._webhooks = webhooks
        self._encoder = DecisionEncoder()

    async def violations(self, violations: Sequence[ObservedViolation], *, trace_id: str = "") -> None:
        for v in violations:
            if self._events is not None:
                self._events.record(
                    OBSERVED_VIOLATION,
                    outcome="observed",
                    principal=v.principal,
                    trace_id=trace_id,
                    reason=v.kind.value,
                    violation_id=v.violation_id,
                    job=v.job,
                    run_id=v.run_id,
                    dataset_id=v.dataset_id,
                    operation=v.operation.value,
                    region=v.region,
                    decision_id=v.decision.decision_id if v.decision else "",
                    rules=[r.rule_id for r in v.decision.reasons if r.rule_id] if v.decision else [],
                    late=v.late,
                )
            if self._webhooks is not None:
                data = json_format.MessageToDict(violation_to_proto(v, self._encoder), preserving_proto_field_name=True)
                self._webhooks.publish("observed_violation", v.dataset_id or v.job, data)

    async def anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        for a in anomalies:
            if self._events is not None:
                self._events.record(
                    ACCESS_ANOMALY,
                    outcome="detected",
                    principal=a.actor,
                    reason=a.kind.value,
                    anomaly_id=a.anomaly_id,
                    actor=a.actor,
                    datasets=list(a.dataset_ids),
                    value=a.value,
                    baseline_since=a.baseline_since.isoformat(),
                    message=a.message,
                )
            if self._webhooks is not None:
                data = json_format.MessageToDict(anomaly_to_proto(a), preserving_proto_field_name=True)
                self._webhooks.publish("access_anomaly", a.actor, data)

    async def close(self) -> None:
        if self._webhooks is not None:
            await self._webhooks.close()
