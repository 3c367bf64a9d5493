"""The security context of a request on its span, and the trace id that ties a request's
security events, error details, access log line and decision log lines to its trace.

Span attributes (only when tracing is on; never a token or any other credential):
`enduser.id` (the token's `sub`), `domicile.principal` (`sub (via actor > ...)`),
`domicile.auth.actors` (the `act` chain, current actor first), `domicile.auth.outcome`
(`granted` or `refused`), `domicile.auth.scope` (the scope that granted the call) or
`domicile.auth.reason` (why it was refused, as in the error details).
"""

from __future__ import annotations

from opentelemetry import trace

from domicile.errors import DomicileError
from domicile.security.context import Caller
from domicile.security.guard import trace_id_from


def request_trace_id(traceparent: str | None) -> str:
    """The trace id of the current span when tracing is on (it continues the caller's
    `traceparent`); else the `traceparent`'s, or a new one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x")
    return trace_id_from(traceparent)


def describe_caller(caller: Caller, required: frozenset[str] | None) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    granting = sorted((required or frozenset()) & caller.scopes)
    span.set_attributes(
        {
            "enduser.id": caller.subject,
            "domicile.principal": caller.principal,
            "domicile.auth.actors": list(caller.actors),
            "domicile.auth.outcome": "granted",
            "domicile.auth.scope": granting[0] if granting else "",
        }
    )


def describe_refusal(error: DomicileError) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({"domicile.auth.outcome": "refused", "domicile.auth.reason": error.reason})
