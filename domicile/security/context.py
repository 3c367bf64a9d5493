"""Who is calling: set by the authentication interceptor for the duration of one RPC."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the token's `sub`, the delegation chain of its `act` claim
    (RFC 8693; outermost actor first), its scopes, and its other claims whose values are text
    or lists of text (`claim`), which configuration may refer to."""

    subject: str
    actors: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    claims: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def claim(self, name: str) -> tuple[str, ...]:
        """The values of claim `name` (one for a text claim), or () when the token lacks it."""
        for key, values in self.claims:
            if key == name:
                return values
        return ()

    @property
    def principal(self) -> str:
        """`sub`, or `sub (via actor1 > actor2)` when the call was delegated."""
        if not self.actors:
            return self.subject
        return f"{self.subject} (via {' > '.join(self.actors)})"


current_caller: ContextVar[Caller | None] = ContextVar("domicile_caller", default=None)
# W3C trace id of the current request (from its `traceparent` header, or generated), so that
# security events, decision log lines and error details can be correlated.
current_trace_id: ContextVar[str] = ContextVar("domicile_trace_id", default="")


def current_principal() -> str:
    """The calling principal for audit fields; empty when authentication is off."""
    caller = current_caller.get()
    return caller.principal if caller else ""


def current_trace() -> str:
    """The trace id of the request being served; empty outside a request."""
    return current_trace_id.get()
