"""The admission decision shared by the gRPC interceptor and the HTTP middleware.

`Guard.admit` authenticates a request's bearer token, applies the caller's rate limit and
checks the required scopes, in that order, and records a security event for every refusal.
Rate limiting comes before the scope check so that a principal hammering methods it may not
call is slowed down too.

Failed authentications are budgeted per client: per client certificate (its SHA-256
thumbprint) when the connection has one, else per address. A client that spends its budget
has its further *failures* answered TOO_MANY_AUTH_FAILURES without a log line each; a valid
token is always admitted, so nobody sharing an address (a NAT, a sidecar) or even the same
certificate is locked out by someone else's bad tokens.
"""

from __future__ import annotations

import os
import re
import time
from typing import Protocol

from domicile.errors import DomicileError, ErrorCode
from domicile.security import events as ev
from domicile.security.budgets import Budgets, Resource
from domicile.security.context import Caller
from domicile.security.events import SecurityEventLog
from domicile.security.ratelimit import RateLimiter
from domicile.security.scopes import describe, is_allowed
from domicile.security.tokens import AuthenticationError, TokenVerifier, certificate_thumbprint
from domicile.telemetry.metrics import AUTHENTICATION_FAILURES, AUTHORIZATION_FAILURES

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_from(traceparent: str | None) -> str:
    """The trace id of a W3C `traceparent` header, or a new random one when it is absent or
    malformed (so every event still has an id the caller can be told about)."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return os.urandom(16).hex()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def peer_host(peer: str) -> str:
    """The client address of a gRPC peer (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`) or of an
    HTTP remote (already an address), without the port."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
    return peer


class KeySource(Protocol):
    """Where the verifier's keys come from: files (`KeyFileReloader`) or an identity provider
    (`domicile.security.oidc.IssuerKeys`). Either replaces the verifier's keys itself."""

    def check(self) -> object:
        """Called before each token is verified: pick up changed keys (cheap; the result is
        not used)."""

    async def refetch(self) -> bool:
        """Called when a token names a key the verifier lacks: look for new keys now, if the
        source's rate limit allows; True when the verifier's keys changed."""


def failure_key(certificate_der: bytes | None, peer: str) -> str:
    """Whose failure budget a failed authentication spends: the client certificate's
    thumbprint when there is one (an identity), else the client address."""
    if certificate_der is not None:
        return "x5t#S256:" + certificate_thumbprint(certificate_der)
    return "address:" + peer_host(peer)


def _refusal(
    code: ErrorCode, reason: str, message: str, trace_id: str, retry_after: float | None = None
) -> DomicileError:
    return DomicileError(message, code, reason, retry_after=retry_after, metadata={"trace_id": trace_id})


class Guard:
    """Admits or refuses requests; see the module docstring for the order of checks."""

    def __init__(
        self,
        verifier: TokenVerifier,
        events: SecurityEventLog,
        budgets: Budgets | None,
        key_source: KeySource | None = None,
        failure_limiter: RateLimiter | None = None,
    ) -> None:
        self.verifier = verifier
        # Budget of failed authentications per client (see `failure_key`), and the clients
        # whose failures are answered without a log line until a time (monotonic) for having
        # spent it.
        self.failure_limiter = failure_limiter
        self._throttled: dict[str, float] = {}
        self.events = events
        self.budgets = budgets
        self.key_source = key_source

    async def admit(
        self,
        *,
        method: str,
        required: frozenset[str] | None,
        authorization: str | None,
        certificate_der: bytes | None,
        peer: str,
        trace_id: str,
    ) -> Caller:
        """The authenticated caller, allowed to call `method`.

        `required` is the method's entry in the scopes table, None for an unmapped method
        (always refused). Raises DomicileError: UNAUTHENTICATED (no or invalid token),
        RESOURCE_EXHAUSTED with retry_after (rate limit), PERMISSION_DENIED (scope); its
        metadata carries the trace id of the matching security event. Every refusal is
        counted in the authentication / authorization failure metrics.
        """
        try:
            return await self._admit(
                method=method,
                required=required,
                authorization=authorization,
                certificate_der=certificate_der,
                peer=peer,
                trace_id=trace_id,
            )
        except DomicileError as refusal:
            # Refusals before a caller is known; `authorize` counts the others.
            if refusal.code is ErrorCode.UNAUTHENTICATED or refusal.reason == "TOO_MANY_AUTH_FAILURES":
                AUTHENTICATION_FAILURES.labels(refusal.reason).inc()
            raise

    async def _admit(
        self,
        *,
        method: str,
        required: frozenset[str] | None,
        authorization: str | None,
        certificate_der: bytes | None,
        peer: str,
        trace_id: str,
    ) -> Caller:
        where = {"method": method, "peer": peer, "trace_id": trace_id}
        token = bearer_token(authorization)
        if token is None:
            raise self._failed(failure_key(certificate_der, peer), "MISSING_TOKEN", "a bearer token is required", where)
        try:
            caller = await self._verify(token, certificate_der)
        except AuthenticationError as exc:
            raise self._failed(failure_key(certificate_der, peer), exc.reason, str(exc), where) from None
        self.authorize(caller, method=method, required=required, peer=peer, trace_id=trace_id)
        return caller

    def authorize(
        self, caller: Caller, *, method: str, required: frozenset[str] | None, peer: str, trace_id: str
    ) -> None:
        """Apply `caller`'s rate limit and check its scopes against `required` (None: an
        unmapped method, always refused) -- the part of `admit` after authentication, also
        used for callers authenticated otherwise (console sessions). Raises as `admit` does."""
        try:
            self._authorize(caller, method=method, required=required, peer=peer, trace_id=trace_id)
        except DomicileError as refusal:
            AUTHORIZATION_FAILURES.labels(refusal.reason).inc()
            raise

    def _authorize(
        self, caller: Caller, *, method: str, required: frozenset[str] | None, peer: str, trace_id: str
    ) -> None:
        where = {"method": method, "peer": peer, "trace_id": trace_id}
        principal = caller.principal
        if self.budgets is not None:
            self.budgets.charge(caller.subject, Resource.REQUESTS, method=method, peer=peer, trace_id=trace_id)
        if required is None:
            self.events.record(
                ev.AUTHZ_DENIED, outcome="denied", principal=principal, reason="UNMAPPED_METHOD", **where
            )
            raise _refusal(
                ErrorCode.PERMISSION_DENIED,
                "UNMAPPED_METHOD",
                f"{method} has no permission mapping and is refused",
                trace_id,
            )
        if not is_allowed(required, caller.scopes):
            self.events.record(
                ev.AUTHZ_DENIED,
                outcome="denied",
                principal=principal,
                reason="MISSING_SCOPE",
                required=describe(required),
                **where,
            )
            raise _refusal(
                ErrorCode.PERMISSION_DENIED, "MISSING_SCOPE", f"{method} requires scope {describe(required)}", trace_id
            )

    async def _verify(self, token: str, certificate_der: bytes | None) -> Caller:
        """The verifier's answer; a token signed by a key the verifier does not know yet (a
        rotation at the identity provider) gets one more try after the key source refetched."""
        if self.key_source is not None:
            self.key_source.check()
        try:
            return self.verifier.verify(token, certificate_der)
        except AuthenticationError as exc:
            if exc.reason != "UNKNOWN_KEY" or self.key_source is None or not await self.key_source.refetch():
                raise
        return self.verifier.verify(token, certificate_der)

    def _failed(self, client: str, reason: str, message: str, where: dict[str, str]) -> DomicileError:
        """The refusal of a failed authentication by `client` (see `failure_key`): within its
        failure budget an UNAUTHENTICATED with an `auth_failure` event; past it
        TOO_MANY_AUTH_FAILURES (with retry info) and no event, one `rate_limited` event having
        marked the start."""
        trace_id = where["trace_id"]
        now = time.monotonic()
        until = self._throttled.get(client)
        if until is not None:
            if until > now:
                return _refusal(
                    ErrorCode.RESOURCE_EXHAUSTED,
                    "TOO_MANY_AUTH_FAILURES",
                    "too many failed authentications from this client",
                    trace_id,
                    retry_after=until - now,
                )
            del self._throttled[client]
        self.events.record(ev.AUTH_FAILURE, outcome="denied", reason=reason, **where)
        if self.failure_limiter is not None:
            wait = self.failure_limiter.acquire(client)
            if wait is not None:
                if len(self._throttled) >= 10_000:
                    self._throttled = {c: t for c, t in self._throttled.items() if t > now}
                # Throttle the client for at least a second; one event marks the start.
                self._throttled[client] = now + max(wait, 1.0)
                self.events.record(
                    ev.RATE_LIMITED,
                    outcome="denied",
                    reason="TOO_MANY_AUTH_FAILURES",
                    retry_after_seconds=round(max(wait, 1.0), 3),
                    **where,
                )
        return _refusal(ErrorCode.UNAUTHENTICATED, reason, message, trace_id)
