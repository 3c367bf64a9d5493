"""The operator's HTTP endpoints: `GET /metrics` (Prometheus text format, or OpenMetrics when
asked for) and the probes of `domicile.health` (`/livez`, `/readyz`, `/healthz`).

They are mounted on the main HTTP listener (where `/metrics` needs a token with the
`metrics:read` scope, like any other route) and, when `ops_listen` is set, on a plaintext
listener of their own without authentication -- for a scraper inside the cluster that should
hold no credentials; bind it to loopback or a cluster-internal address (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from domicile.app import App
from domicile.health import ServiceHealth
from domicile.telemetry.metrics import ServerCollector

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# A scrape reads the store's head revision (for the change-feed lag); a store that does not
# answer within this bound leaves those two gauges out rather than delaying the scrape.
STORE_READ_TIMEOUT = 2.0


class OpsEndpoints:
    """The handlers, bound to one server's registry and collector."""

    def __init__(
        self, app: App, registry: CollectorRegistry, collector: ServerCollector, health: ServiceHealth
    ) -> None:
        self._app = app
        self._registry = registry
        self._collector = collector
        self._health = health

    def add_routes(self, http_app: web.Application) -> None:
        http_app.router.add_get(METRICS_PATH, self.metrics)
        self._health.add_routes(http_app)

    async def metrics(self, request: web.Request) -> web.Response:
        try:
            self._collector.catalog_head = await asyncio.wait_for(self._app.store.revision(), STORE_READ_TIMEOUT)
        except Exception as exc:  # the store's own metrics and health say why
            log.debug("metrics: store revision unavailable: %s", exc)
            self._collector.catalog_head = None
        # The Prometheus text format, or OpenMetrics when the scraper asks for it.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self._registry), headers={"Content-Type": content_type})
