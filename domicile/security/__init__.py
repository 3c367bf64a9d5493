"""Transport security and authentication for the gRPC server and the HTTP endpoint.

`build_security(settings)` returns the interceptors, server credentials, HTTP TLS context and
HTTP middlewares that `domicile.server` installs. Nothing is open by default: without
--insecure the server needs a certificate and JWT verification keys (or --dev, which creates
local ones), and every call needs a token whose scopes the method's entry in
`domicile.security.scopes` accepts. See docs/security.md.

Domain modules import `domicile.security.context` (who is calling), which imports this package
first; so this module imports neither grpc nor the security machinery at import time -- the
assembly lives in `domicile.security.assembly` and is loaded by `build_security`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    import grpc

    from domicile.config import Settings
    from domicile.security.budgets import Budgets
    from domicile.security.events import SecurityEventLog
    from domicile.security.guard import Guard
    from domicile.security.oidc import IssuerKeys
    from domicile.security.tls import CertificateReloader
    from domicile.security.tokens import TokenVerifier


@dataclass
class Security:
    """What the server needs from the security layer."""

    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)
    # None: serve plaintext (only with --insecure, on loopback).
    server_credentials: grpc.ServerCredentials | None = None
    http_ssl_context: ssl.SSLContext | None = None
    # aiohttp middlewares guarding the HTTP endpoint.
    http_middlewares: list[Any] = field(default_factory=list)
    # The security event log (None with --insecure); PolicyService records policy changes here.
    events: SecurityEventLog | None = None
    certificates: CertificateReloader | None = None
    # Rate limits and scope checks for callers authenticated otherwise (console sessions).
    guard: Guard | None = None
    # --dev: verifies the console's one-time sign-in links (dev key, their own audience).
    console_link_verifier: TokenVerifier | None = None
    # Per-principal budgets (None when rate_limit.enabled is false); servicers charge
    # decisions and lineage edges to them, admission charges requests.
    budgets: Budgets | None = None
    # The identity provider (its metadata and current keys) when `auth.issuer` is used for
    # discovery; None with key files, --dev and --insecure.
    issuer_keys: IssuerKeys | None = None

    async def start(self) -> None:
        """Fetch the identity provider's keys and keep them fresh (when configured)."""
        if self.issuer_keys is not None:
            await self.issuer_keys.start()

    async def close(self) -> None:
        """Stop refreshing keys and release the event log. Certificate reloads need no
        background work to stop: they happen when connections arrive."""
        if self.issuer_keys is not None:
            await self.issuer_keys.close()
        if self.events is not None:
            self.events.close()


def build_security(settings: Settings) -> Security:
    """Security for `settings`.

    --insecure: plaintext, no authentication, a warning (the settings already refused
    non-loopback addresses); every caller spends the anonymous principal's budgets. Otherwise TLS (mTLS when a client CA is configured; always with
    --dev) and JWT authentication with scope checks, rate limits and the security event log.
    Misconfiguration raises FAILED_PRECONDITION naming the setting or file.
    """
    from domicile.security.assembly import assemble

    return assemble(settings)
