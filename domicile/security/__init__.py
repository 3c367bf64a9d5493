"""Transport security and authentication for the gRPC server and the HTTP endpoint.

`build_security(settings, events)` returns the interceptors, server credentials and HTTP TLS
context that `domicile.server` installs.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import grpc

from domicile.config import Settings
from domicile.errors import failed_precondition

log = logging.getLogger(__name__)


@dataclass
class Security:
    """What the server needs from the security layer."""

    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)
    # None: serve plaintext (only with --insecure, on loopback).
    server_credentials: grpc.ServerCredentials | None = None
    http_ssl_context: ssl.SSLContext | None = None
    # aiohttp middlewares guarding the HTTP endpoint.
    http_middlewares: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        """Stop background work (certificate reload watchers)."""


def build_security(settings: Settings) -> Security:
    """Security for `settings`. With --insecure: plaintext, no authentication, a warning."""
    if settings.insecure:
        log.warning(
            "serving WITHOUT TLS or authentication (--insecure) on %s; use only for local development",
            settings.listen,
        )
        return Security()
    raise failed_precondition(
        "TLS and authentication are not configured: pass --insecure for local plaintext use"
    )
