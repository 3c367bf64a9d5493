"""Access alerts pushed to webhooks: CloudEvents 1.0 in structured JSON mode, signed.

Each alert is one CloudEvent (`type` `dev.domicile.access.observed_violation.v1` or
`dev.domicile.access.anomaly.v1`, `source` `/domicile/access`, `subject` the dataset or
actor, `data` the alert as the AccessService returns it, in protobuf JSON), POSTed with
`Content-Type: application/cloudevents+json` and

    X-Domicile-Signature-256: sha256=<hex HMAC-SHA256 of the exact body, keyed by the secret>

so a receiver proves the sender and the content by recomputing it over the bytes it got.
Delivery is at least once: any 2xx answer delivers; anything else (another status, a refused
connection, a timeout) is retried after 1, 2, 4, ... seconds (at most 60) up to
`access.webhook_attempts` attempts; then the event goes to the dead-letter file (JSON Lines:
`{"time", "url", "attempts", "error", "event"}`), as do deliveries still pending at shutdown
after a short grace. Alerting never delays or fails what raised the alert.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from domicile.config import WebhookSettings
from domicile.errors import failed_precondition

log = logging.getLogger(__name__)

SOURCE = "/domicile/access"
SIGNATURE_HEADER = "X-Domicile-Signature-256"
EVENT_TYPES = {
    "observed_violation": "dev.domicile.access.observed_violation.v1",
    "access_anomaly": "dev.domicile.access.anomaly.v1",
}
MAX_BACKOFF = 60.0
# Deliveries in flight at once (each one's retries wait without holding a slot's work).
MAX_CONCURRENT = 16


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Hook:
    url: str
    secret: bytes
    events: frozenset[str]


class WebhookDispatcher:
    """Delivers alerts to the configured webhooks (see the module docstring)."""

    def __init__(
        self,
        hooks: list[WebhookSettings],
        *,
        attempts: int,
        timeout: float,
        dead_letter: Path,
        first_backoff: float = 1.0,
    ) -> None:
        self._hooks = [_Hook(h.url, _read_secret(h.secret_file), frozenset(h.events)) for h in hooks]
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._dead_letter = dead_letter
        self._first_backoff = first_backoff
        self._session: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    def publish(self, alert: str, subject: str, data: Mapping[str, Any]) -> None:
        """Queue one alert (`observed_violation` or `access_anomaly`) for every webhook that
        takes it; returns at once."""
        targets = [h for h in self._hooks if alert in h.events]
        if not targets:
            return
        event = CloudEvent(
            {"type": EVENT_TYPES[alert], "source": SOURCE, "subject": subject, "datacontenttype": "application/json"},
            dict(data),
        )
        message = to_structured(event, JSONFormat())
        for hook in targets:
            task = asyncio.get_running_loop().create_task(self._deliver(hook, message.headers, message.body))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, hook: _Hook, headers: Mapping[str, str], body: bytes) -> None:
        error = ""
        attempt = 0
        try:
            for attempt in range(1, self._attempts + 1):
                async with self._slots:
                    error = await self._post(hook, headers, body)
                if not error:
                    return
                if attempt < self._attempts:
                    await asyncio.sleep(min(MAX_BACKOFF, self._first_backoff * 2 ** (attempt - 1)))
        except asyncio.CancelledError:
            error = error or "not delivered before shutdown"
            self._dead(hook, attempt, f"shutdown: {error}", body)
            raise
        log.warning("webhook %s: giving up after %d attempts: %s", hook.url, attempt, error)
        self._dead(hook, attempt, error, body)

    async def _post(self, hook: _Hook, headers: Mapping[str, str], body: bytes) -> str:
        """One attempt; '' when delivered, else what went wrong."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                hook.url, data=body, headers={**headers, SIGNATURE_HEADER: signature(hook.secret, body)}
            ) as response:
                if 200 <= response.status < 300:
                    return ""
                return f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _dead(self, hook: _Hook, attempts: int, error: str, body: bytes) -> None:
        record = {
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "url": hook.url,
            "attempts": attempts,
            "error": error,
            "event": json.loads(body),
        }
        self._dead_letter.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._dead_letter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as file:
            file.write(json.dumps(record, separators=(",", ":")) + "\n")

    async def close(self, grace: float = 5.0) -> None:
        """Let pending deliveries finish for up to `grace` seconds; dead-letter the rest."""
        pending = set(self._deliveries)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise failed_precondition(f"webhook secret file {path}: {exc.strerror}", "WEBHOOK_SECRET_UNREADABLE") from None
    if len(secret) < 16:
        raise failed_precondition(
            f"webhook secret file {path}: use a secret of at least 16 bytes", "WEBHOOK_SECRET_WEAK"
        )
    return secret
