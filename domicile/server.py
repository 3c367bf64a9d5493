"""Server assembly: `create_server` builds and starts everything; `serve` runs until a signal.

Tests call `create_server(settings)` with `listen="127.0.0.1:0"` and talk to the returned
ports over real channels; `domicile serve` calls `serve(settings)`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from domicile.access.service import AccessServicer, add_access_service
from domicile.access.tracking import AccessTracking
from domicile.app import App
from domicile.audit_service import AuditServicer
from domicile.catalog.service import CatalogServicer
from domicile.catalog.store import GraphStore
from domicile.catalog.stores import open_configured_store
from domicile.catalog.stores.sqlite import path_from_uri
from domicile.config import Settings
from domicile.grpc_errors import ErrorMappingInterceptor, RequestParsingInterceptor
from domicile.grpc_handlers import chained
from domicile.grpc_services import registration
from domicile.health import SERVICE_NAMES, ServiceHealth
from domicile.http_server import HTTPServer
from domicile.lineage.service import LineageServicer
from domicile.listening import add_grpc_port, serve_http
from domicile.loadshed import LoadShedder, PrincipalLoadShedding, ServerLoadShedding
from domicile.ops import OpsEndpoints
from domicile.private_files import make_private_directory, warn_if_not_private
from domicile.reflection import enable_reflection
from domicile.router.policy_changes import PolicyChanges
from domicile.router.policy_history import POLICIES_FILE
from domicile.router.runtime import Router
from domicile.router.service import PolicyServicer, ResidencyServicer, add_residency_service
from domicile.security import Security, build_security
from domicile.telemetry.access import AccessInterceptor, access_lines, access_middleware
from domicile.telemetry.metrics import server_registry
from domicile.telemetry.store import InstrumentedStore
from domicile.telemetry.tracing import configure_tracing, grpc_server_interceptor
from domicile.v1 import audit_pb2, catalog_pb2, lineage_pb2, policy_pb2

log = logging.getLogger(__name__)


@dataclass
class RunningServer:
    """A started server. `port` / `http_port` are the bound ports (useful with port 0)."""

    app: App
    grpc_server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    security: Security
    service_health: ServiceHealth
    shedder: LoadShedder | None = None
    http: HTTPServer | None = None
    console: HTTPServer | None = None
    # The console's base URL and the one-time sign-in link minted at start (--dev).
    console_url: str = ""
    console_sign_in_link: str = ""
    # The plaintext listener of `ops_listen` (metrics and probes), when configured.
    ops: HTTPServer | None = None
    # The plaintext grpc.health.v1 listener of `health_listen`, when configured.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http is not None else None

    @property
    def ops_port(self) -> int | None:
        return self.ops.port if self.ops is not None else None

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: refuse new RPCs, let in-flight ones finish within `grace` seconds,
        then close the router, the HTTP endpoints and the store (in that order)."""
        grace = self.app.settings.shutdown_grace_seconds if grace is None else grace
        await self.service_health.close()
        await self.health.enter_graceful_shutdown()
        for listener in (self.http, self.console, self.ops):
            if listener is not None:
                await listener.stop()
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.grpc_server.stop(grace)
        if self.app.access is not None:
            await self.app.access.close()
        if self.shedder is not None:
            await self.shedder.close()
        if self.app.router is not None:
            await self.app.router.close()
        await self.security.close()
        await self.app.store.close()
        access_lines.flush()  # the last calls' lines, before the process may exit

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()


def _server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Without this a second server could silently share the port (SO_REUSEPORT).
        ("grpc.so_reuseport", 0),
    ]


def servicers(app: App) -> list[tuple[Callable[[Any, grpc.aio.Server], None], Any]]:
    """(registration function, servicer) for every domicile.v1 service."""
    return [
        (registration(catalog_pb2, "CatalogService"), CatalogServicer(app)),
        (registration(lineage_pb2, "LineageService"), LineageServicer(app)),
        (add_residency_service, ResidencyServicer(app)),
        (registration(policy_pb2, "PolicyService"), PolicyServicer(app)),
        (registration(audit_pb2, "AuditService"), AuditServicer(app)),
        (add_access_service, AccessServicer(app)),
    ]


def _service_servicers(registered: list[tuple[Callable[[Any, grpc.aio.Server], None], Any]]):
    """(service full name, servicer) of each registered servicer, named by its generated base
    class (`XServiceServicer` serves `domicile.v1.XService`)."""
    for _, servicer in registered:
        base = next(c for c in type(servicer).__mro__ if c.__name__.endswith("ServiceServicer"))
        yield f"domicile.v1.{base.__name__.removesuffix('Servicer')}", servicer


async def create_server(settings: Settings, *, store: GraphStore | None = None) -> RunningServer:
    """Open the store, build the services and start serving on `settings.listen` (and
    `settings.http_listen` / `settings.ops_listen` when set). The store is closed again if
    start-up fails. Tracing is on when the environment asks for it (see
    `domicile.telemetry.tracing`)."""
    tracing = configure_tracing()
    make_private_directory(settings.data_dir)
    security = build_security(settings)
    try:
        store = InstrumentedStore(store or await open_configured_store(settings))
    except BaseException:
        await security.close()
        raise
    app: App | None = None
    server: grpc.aio.Server | None = None
    running: RunningServer | None = None
    shedder = LoadShedder(settings.load_shedding) if settings.load_shedding.enabled else None
    try:
        await security.start()
        if shedder is not None:
            await shedder.start()
        app = App(settings=settings, store=store, security_events=security.events, budgets=security.budgets)
        if settings.demo:
            from domicile.demo import load_demo_catalog

            await load_demo_catalog(store)
        app.router = await Router.start(app)
        app.policy_changes = await PolicyChanges.open(
            app.router,
            settings.data_dir,
            require_approval=settings.policy_changes_need_approval,
            events=security.events,
        )
        if settings.access.enabled:
            app.access = AccessTracking.start(app, app.router)
        interceptors: list[grpc.aio.ServerInterceptor] = [grpc_server_interceptor()] if tracing else []
        if shedder is not None:
            interceptors.append(ServerLoadShedding(shedder))
        interceptors += [
            AccessInterceptor(log_access=settings.access_log),
            ErrorMappingInterceptor(),
            *security.interceptors,
        ]
        if shedder is not None and not settings.insecure:  # --insecure: no principal to count
            interceptors.append(PrincipalLoadShedding(shedder))
        interceptors.append(RequestParsingInterceptor())
        server = grpc.aio.server(interceptors=chained(interceptors), options=_server_options(settings))
        servicers_by_registration = servicers(app)
        for add, servicer in servicers_by_registration:
            add(servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        enable_reflection((*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server)
        port = add_grpc_port(server, "gRPC", settings.listen, security.server_credentials)
        await server.start()
        issuer_keys = security.issuer_keys
        service_health = ServiceHealth(
            app, health_servicer, keys_known=(lambda: bool(issuer_keys.keys)) if issuer_keys is not None else None
        )
        await service_health.start()
        running = RunningServer(
            app=app,
            grpc_server=server,
            port=port,
            health=health_servicer,
            security=security,
            service_health=service_health,
            shedder=shedder,
        )
        if settings.health_listen:
            running.health_server, running.health_port = await _start_health(health_servicer, settings)
        registry, collector = server_registry(
            app,
            issuer_keys=security.issuer_keys,
            shedder=shedder,
        )
        ops = OpsEndpoints(app, registry, collector, service_health)
        if settings.http_listen:
            running.http = await _start_http(app, security, ops, settings.http_listen)
        if settings.console.listen:
            from domicile.console.server import start_console

            started = await start_console(app, security, dict(_service_servicers(servicers_by_registration)))
            if started is not None:
                running.console, running.console_url, running.console_sign_in_link = started
        if settings.ops_listen:
            running.ops = await _start_ops(ops, settings)
        warn_if_not_private(_private_paths(settings))
        log.info("serving gRPC on %s (port %d), store %s", settings.listen, port, _redact(settings.store))
        return running
    except BaseException:
        if shedder is not None:
            await shedder.close()
        if running is not None:
            await running.service_health.close()
            for listener in (running.http, running.ops):
                if listener is not None:
                    await listener.stop()
            if running.health_server is not None:
                await running.health_server.stop(0)
        if server is not None:
            await server.stop(0)
        if app is not None and app.access is not None:
            await app.access.close()
        if app is not None and app.router is not None:
            await app.router.close()
        await store.close()
        await security.close()
        raise


async def _start_http(app: App, security: Security, ops: OpsEndpoints, address: str) -> HTTPServer:
    from domicile.http_api import create_http_app

    http_app = create_http_app(
        app,
        outer=[access_middleware(log_access=app.settings.access_log)],
        middlewares=security.http_middlewares,
    )
    ops.add_routes(http_app)
    return await _listen(http_app, address, security.http_ssl_context, "HTTP", app.settings)


async def _start_health(servicer: health.aio.HealthServicer, settings: Settings) -> tuple[grpc.aio.Server, int]:
    """A plaintext gRPC server with only the health service (the same statuses as the main
    port), for probes that cannot present client certificates."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = add_grpc_port(server, "gRPC health", settings.health_listen, None)
    await server.start()
    log.info("serving gRPC health (plaintext) on %s (port %d)", settings.health_listen, port)
    return server, port


async def _start_ops(ops: OpsEndpoints, settings: Settings) -> HTTPServer:
    """The plaintext ops listener: metrics and probes only, no authentication."""
    ops_app = web.Application(middlewares=[access_middleware(log_access=settings.access_log)])
    ops.add_routes(ops_app)
    return await _listen(ops_app, settings.ops_listen, None, "ops HTTP", settings)


async def _listen(
    http_app: web.Application, address: str, ssl_context: ssl.SSLContext | None, what: str, settings: Settings
) -> HTTPServer:
    """Serve `http_app` behind the connection limits of the `http` settings."""
    return await serve_http(http_app, address, settings.http, ssl_context, what)


def _private_paths(settings: Settings) -> list[Path]:
    """The data directory and the files in which the server keeps what it knows."""
    paths = [
        settings.data_dir,
        settings.decision_log_path,
        settings.security_log_path,
        settings.data_dir / POLICIES_FILE,
    ]
    if settings.store.startswith("sqlite:"):
        paths.append(path_from_uri(settings.store))
    return paths


def _redact(uri: str) -> str:
    """Hide a password that may be embedded in a store URI."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully (in-flight RPCs finish)."""
    running = await create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"domicile serving gRPC on {settings.listen} (port {running.port})", flush=True)
    if running.http_port is not None:
        print(f"domicile serving HTTP on {settings.http_listen} (port {running.http_port})", flush=True)
    if running.console_url:
        print(f"domicile console on {running.console_url}", flush=True)
    if running.console_sign_in_link:
        print(f"  sign in (one-time link): {running.console_sign_in_link}", flush=True)
    if running.ops_port is not None:
        print(f"domicile serving ops HTTP on {settings.ops_listen} (port {running.ops_port})", flush=True)
    if running.health_port is not None:
        print(f"domicile serving gRPC health on {settings.health_listen} (port {running.health_port})", flush=True)
    await stop.wait()
    log.info("shutting down (grace %.1fs)", settings.shutdown_grace_seconds)
    await running.stop()
    print("domicile stopped", flush=True)
