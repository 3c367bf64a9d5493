"""The HTTP listeners (the OpenLineage endpoint, the console, ops): aiohttp behind connection
limits.

aiohttp alone keeps a connection that trickles a request head (slowloris) for as long as its
keep-alive timeout allows (an hour by default) and has no bound on how many such connections
it holds. Here (settings section `http`):

- **Head timeout.** A new connection (TLS handshake included) must deliver a complete request
  head within `header_timeout_seconds`, else it is closed.
- **Pending cap.** At most `max_pending_connections` connections may be waiting for their
  first complete request head; a connection beyond that is closed as soon as it is made. The
  cap is global, not per address: addresses are shared behind NATs and sidecars.
- **Keep-alive timeout.** After an answer, the connection is closed unless the next request
  head is complete within `keepalive_timeout_seconds` (aiohttp's own timer: partial data does
  not extend it).
- **Body timeout.** An admitted request's body must arrive within `body_timeout_seconds`
  (408 otherwise); bodies are read only after the security middleware admitted the caller.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from domicile.config import HTTPSettings, split_host_port

log = logging.getLogger(__name__)


class ConnectionLimits:
    """Tracks the connections that have not yet delivered a complete request head."""

    def __init__(self, settings: HTTPSettings) -> None:
        self.settings = settings
        self._pending: dict[asyncio.BaseTransport, _Watched] = {}
        self._waiting = 0  # accepted and not yet past their first request head
        self.refused = 0

    @property
    def waiting(self) -> int:
        """Connections waiting for their first complete request head (or TLS handshake)."""
        return self._waiting

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """`inner` (aiohttp's request handler factory) with each connection watched."""

        def make() -> asyncio.Protocol:
            return _Watched(self, inner)

        return make

    @web.middleware
    async def head_complete(self, request: web.Request, handler):
        """Outermost middleware: the request head is complete, the connection no longer pending."""
        watched = self._pending.pop(request.transport, None) if request.transport is not None else None
        if watched is not None:
            watched.settle()
        return await handler(request)

    @web.middleware
    async def read_body(self, request: web.Request, handler):
        """Innermost middleware (after admission): read the body within the body timeout;
        aiohttp keeps it for the handler's own `read()`."""
        if request.can_read_body:
            try:
                async with asyncio.timeout(self.settings.body_timeout_seconds):
                    await request.read()
            except TimeoutError:
                raise web.HTTPRequestTimeout(
                    text=f"the request body did not arrive within {self.settings.body_timeout_seconds:g} s"
                ) from None
        return await handler(request)


class _Watched(asyncio.Protocol):
    """A connection's protocol: aiohttp's, created lazily once the connection is admitted."""

    def __init__(self, limits: ConnectionLimits, inner_factory: Callable[[], asyncio.Protocol]) -> None:
        self._limits = limits
        self._inner_factory = inner_factory
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = limits.waiting < limits.settings.max_pending_connections
        if self._counted:
            limits._waiting += 1
            self._timer = asyncio.get_running_loop().call_later(limits.settings.header_timeout_seconds, self._expire)

    def settle(self) -> None:
        """No longer waiting for a first request head (it arrived, or the connection ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._limits._waiting -= 1

    def _expire(self) -> None:
        self._timer = None
        self.settle()
        if self._transport is not None:
            self._limits._pending.pop(self._transport, None)
            self._transport.abort()
        # Without a transport the TLS handshake has not finished; asyncio's handshake timeout
        # (the same length) ends it.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream server's connection
        if not self._counted:  # over the cap, or already expired during the TLS handshake
            self._limits.refused += 1
            transport.abort()
            return
        self._transport = transport
        self._limits._pending[transport] = self
        self._inner = self._inner_factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._limits._pending.pop(self._transport, None)
        self.settle()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


@dataclass
class HTTPServer:
    """A started HTTP endpoint. `port` is the bound port (useful with port 0)."""

    runner: web.AppRunner
    server: asyncio.AbstractServer
    port: int
    limits: ConnectionLimits

    async def stop(self) -> None:
        """Stop accepting, close the connections (in-flight requests get aiohttp's grace)."""
        self.server.close()
        await self.runner.cleanup()


async def serve(
    http_app: web.Application,
    address: str,
    settings: HTTPSettings,
    ssl_context: ssl.SSLContext | None,
    what: str = "HTTP",
) -> HTTPServer:
    """Serve `http_app` on `address` behind the connection limits of `settings`: the limits'
    middlewares become its first (head complete) and last (body read) ones. OSError when the
    address cannot be listened on."""
    limits = ConnectionLimits(settings)
    http_app.middlewares.insert(0, limits.head_complete)
    http_app.middlewares.append(limits.read_body)
    runner = web.AppRunner(http_app, access_log=None, keepalive_timeout=settings.keepalive_timeout_seconds)
    await runner.setup()
    host, port = split_host_port(address)
    try:
        assert runner.server is not None
        server = await asyncio.get_running_loop().create_server(
            limits.protocol_factory(runner.server),
            host or None,
            port,
            ssl=ssl_context,
            ssl_handshake_timeout=settings.header_timeout_seconds if ssl_context is not None else None,
            reuse_port=False,
        )
    except BaseException:
        await runner.cleanup()
        raise
    bound = server.sockets[0].getsockname()[1]
    log.info("serving %s on %s (port %d)", what, address, bound)
    return HTTPServer(runner, server, bound, limits)
