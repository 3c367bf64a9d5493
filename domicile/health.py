"""Health: what each service can do now, for grpc.health.v1 and the HTTP probes.

`ServiceHealth` looks at the server's dependencies every `CHECK_INTERVAL` seconds and sets
the grpc.health.v1 status of each service:

- `domicile.v1.CatalogService`, `domicile.v1.LineageService`: NOT_SERVING while the catalog
  store does not answer (a `revision()` read fails or takes longer than `STORE_TIMEOUT`).
- `domicile.v1.ResidencyService`: NOT_SERVING while the decision log cannot write -- a
  decision that cannot be logged is not answered. A router whose view of the catalog is
  stale stays SERVING: it answers, with the explained `DENY / STALE_CATALOG`.
- `domicile.v1.PolicyService`, `domicile.v1.AuditService`: SERVING while the router runs;
  `domicile.v1.AccessService` while the store answers.
- `""` (the server as a whole: readiness): SERVING when every service is, and the token keys
  are known (with an identity provider, at least one key set was fetched).
- `liveness`: SERVING while the process and its event loop answer; never changed by a
  dependency, so an orchestrator does not restart a server that waits for its disk or store.

`GET /livez` and `GET /readyz` (and `/healthz`, the same as `/readyz`) answer the same on HTTP:
200 or 503 with `{"status", "services": {name: status}, "problems": [...]}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from grpc_health.v1 import health, health_pb2

from domicile.app import App
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

log = logging.getLogger(__name__)

LIVENESS = "liveness"
READINESS = ""
CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
LINEAGE = lineage_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name
RESIDENCY = residency_pb2.DESCRIPTOR.services_by_name["ResidencyService"].full_name
POLICY = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
AUDIT = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
ACCESS = access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name
SERVICE_NAMES = (CATALOG, LINEAGE, RESIDENCY, POLICY, AUDIT, ACCESS)

CHECK_INTERVAL = 2.0
STORE_TIMEOUT = 5.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServiceHealth:
    """Keeps the health servicer's statuses in step with the dependencies (module docstring).
    `keys_known` says whether tokens can be verified (None: no identity provider to wait for)."""

    def __init__(
        self,
        app: App,
        servicer: health.aio.HealthServicer,
        *,
        keys_known: Callable[[], bool] | None = None,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self._app = app
        self._servicer = servicer
        self._keys_known = keys_known
        self._interval = interval
        self._statuses: dict[str, int] = {}
        self._problems: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def statuses(self) -> dict[str, int]:
        """The status of each service name (READINESS and LIVENESS included)."""
        return dict(self._statuses)

    @property
    def problems(self) -> list[str]:
        """Why services are NOT_SERVING, one line each (empty when all serve)."""
        return list(self._problems)

    async def start(self) -> None:
        """Check once, then every interval in the background."""
        await self.check()
        self._task = asyncio.create_task(self._follow(), name="service-health")

    async def close(self) -> None:
        """Stop the checks and wait until they have stopped."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # (not `await task`: that would swallow our own cancellation)
            self._task = None

    async def _follow(self) -> None:
        # The flag ends the loop too: a cancellation can be lost in a check (asyncio.wait_for
        # in Python 3.11 returns a result that arrives together with the cancellation).
        while not self._closed:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # a bug here must not stop the checks
                log.exception("health check failed")

    async def check(self) -> None:
        """Look at every dependency now and publish the statuses."""
        problems: list[str] = []
        store_error = await self._store_error()
        if store_error:
            problems.append(f"catalog store: {store_error}")
        router = self._app.router
        log_failure = router.status().decision_log_failure if router is not None else "the router is not running"
        if log_failure:
            problems.append(log_failure)
        statuses = {
            CATALOG: NOT_SERVING if store_error else SERVING,
            LINEAGE: NOT_SERVING if store_error else SERVING,
            RESIDENCY: NOT_SERVING if log_failure else SERVING,
            POLICY: SERVING if router is not None else NOT_SERVING,
            AUDIT: SERVING if router is not None else NOT_SERVING,
            ACCESS: NOT_SERVING if store_error else SERVING,
        }
        keys_known = self._keys_known is None or self._keys_known()
        if not keys_known:
            problems.append("no token keys from the identity provider yet")
        ready = keys_known and all(status == SERVING for status in statuses.values())
        statuses[READINESS] = SERVING if ready else NOT_SERVING
        statuses[LIVENESS] = SERVING
        await self._publish(statuses, problems)

    async def _store_error(self) -> str:
        try:
            await asyncio.wait_for(self._app.store.revision(), STORE_TIMEOUT)
        except TimeoutError:
            return f"no answer within {STORE_TIMEOUT:g}s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return ""

    async def _publish(self, statuses: dict[str, int], problems: list[str]) -> None:
        for name, status in statuses.items():
            if self._statuses.get(name) != status:
                await self._servicer.set(name, status)
                if name and name != LIVENESS and name in self._statuses:
                    label = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                    (log.info if status == SERVING else log.warning)("%s is %s", name, label)
        if problems != self._problems and problems:
            log.warning("not ready: %s", "; ".join(problems))
        self._statuses, self._problems = statuses, problems

    # ---- HTTP ------------------------------------------------------------------------

    def add_routes(self, http_app: web.Application) -> None:
        http_app.router.add_get("/livez", self.livez)
        http_app.router.add_get("/readyz", self.readyz)
        http_app.router.add_get("/healthz", self.readyz)

    async def livez(self, request: web.Request) -> web.Response:
        """Answered by the event loop: that it answers is the check."""
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        services = {
            name: health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            for name, status in self._statuses.items()
            if name not in (READINESS, LIVENESS)
        }
        ready = self._statuses.get(READINESS) == SERVING
        return web.json_response(
            {"status": "ready" if ready else "not ready", "services": services, "problems": self._problems},
            status=200 if ready else 503,
        )
