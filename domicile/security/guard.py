"""The admission decision shared by the gRPC interceptor and the HTTP middleware.

`Guard.admit` authenticates a request's bearer token, applies the caller's rate limit and
checks the required scopes, in that order, and records a security event for every refusal.
Rate limiting comes before the scope check so that a principal hammering methods it may not
call is slowed down too.
"""

from __future__ import annotations

import re
import uuid

from domicile.errors import DomicileError, ErrorCode
from domicile.security import events as ev
from domicile.security.context import Caller
from domicile.security.events import SecurityEventLog
from domicile.security.keyfiles import KeyFileReloader
from domicile.security.ratelimit import RateLimiter
from domicile.security.scopes import describe, is_allowed
from domicile.security.tokens import AuthenticationError, TokenVerifier

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_from(traceparent: str | None) -> str:
    """The trace id of a W3C `traceparent` header, or a new random one when it is absent or
    malformed (so every event still has an id the caller can be told about)."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return uuid.uuid4().hex


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _refusal(code: ErrorCode, reason: str, message: str, trace_id: str, retry_after: float | None = None) -> DomicileError:
    return DomicileError(message, code, reason, retry_after=retry_after, metadata={"trace_id": trace_id})


class Guard:
    """Admits or refuses requests; see the module docstring for the order of checks."""

    def __init__(
        self,
        verifier: TokenVerifier,
        events: SecurityEventLog,
        limiter: RateLimiter | None,
        key_reloader: KeyFileReloader | None = None,
    ) -> None:
        self.verifier = verifier
        self.events = events
        self.limiter = limiter
        self.key_reloader = key_reloader

    def admit(
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
        metadata carries the trace id of the matching security event.
        """
        where = {"method": method, "peer": peer, "trace_id": trace_id}
        token = bearer_token(authorization)
        if token is None:
            self.events.record(ev.AUTH_FAILURE, outcome="denied", reason="MISSING_TOKEN", **where)
            raise _refusal(ErrorCode.UNAUTHENTICATED, "MISSING_TOKEN", "a bearer token is required", trace_id)
        if self.key_reloader is not None:
            self.key_reloader.check()
        try:
            caller = self.verifier.verify(token, certificate_der)
        except AuthenticationError as exc:
            self.events.record(ev.AUTH_FAILURE, outcome="denied", reason=exc.reason, **where)
            raise _refusal(ErrorCode.UNAUTHENTICATED, exc.reason, str(exc), trace_id) from None
        principal = caller.principal
        if self.limiter is not None:
            wait = self.limiter.acquire(caller.subject)
            if wait is not None:
                self.events.record(ev.RATE_LIMITED, outcome="denied", principal=principal, reason="RATE_LIMITED",
                                   retry_after_seconds=round(wait, 3), **where)
                raise _refusal(ErrorCode.RESOURCE_EXHAUSTED, "RATE_LIMITED",
                               f"rate limit exceeded for {caller.subject}", trace_id, retry_after=wait)
        if required is None:
            self.events.record(ev.AUTHZ_DENIED, outcome="denied", principal=principal, reason="UNMAPPED_METHOD", **where)
            raise _refusal(ErrorCode.PERMISSION_DENIED, "UNMAPPED_METHOD",
                           f"{method} has no permission mapping and is refused", trace_id)
        if not is_allowed(required, caller.scopes):
            self.events.record(ev.AUTHZ_DENIED, outcome="denied", principal=principal, reason="MISSING_SCOPE",
                               required=describe(required), **where)
            raise _refusal(ErrorCode.PERMISSION_DENIED, "MISSING_SCOPE",
                           f"{method} requires scope {describe(required)}", trace_id)
        return caller
