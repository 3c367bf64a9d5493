"""aiohttp middleware guarding the HTTP endpoint with the same Guard as gRPC.

`GET /healthz`, `/livez` and `/readyz` are open; every other request needs `Authorization: Bearer <token>` (the header
the OpenLineage client's HttpTransport sends with `auth: {type: api_key}`) and the scope the
`HTTP_SCOPES` table names. Refusals have the endpoint's JSON error shape (401, 403, 429 with
the trace id in `error.metadata.trace_id`), with `WWW-Authenticate` on 401 and `Retry-After`
on 429.
"""

from __future__ import annotations

import ssl

from aiohttp import web

from domicile.errors import DomicileError, ErrorCode
from domicile.http_api import error_response
from domicile.security.budgets import Budgets, Resource
from domicile.security.context import current_caller, current_trace_id
from domicile.security.guard import Guard
from domicile.security.scopes import HTTP_OPEN, HTTP_SCOPES
from domicile.telemetry.security import describe_caller, describe_refusal, request_trace_id

# Where the middleware leaves the principal on the request, for the access log (the context
# variables are reset when the handler returns).
PRINCIPAL_KEY = web.RequestKey("domicile_principal", str)


def _peer_certificate_der(request: web.Request) -> bytes | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if not isinstance(ssl_object, (ssl.SSLObject, ssl.SSLSocket)):
        return None
    return ssl_object.getpeercert(binary_form=True)


def _required(request: web.Request) -> frozenset[str] | None:
    """The scopes for this route; None when a route exists but has no mapping (refused).
    Unknown paths need only authentication so that aiohttp answers 404 to callers, not to
    anonymous scanners."""
    key = (request.method, request.path)
    if key in HTTP_SCOPES:
        return HTTP_SCOPES[key]
    if request.match_info.http_exception is not None:
        return frozenset()
    return None


def _refusal(error: DomicileError) -> web.Response:
    """The endpoint's JSON error answer (`domicile.http_api.error_response`), plus the
    `WWW-Authenticate` challenge RFC 6750 requires on 401."""
    response = error_response(error)
    if error.code is ErrorCode.UNAUTHENTICATED:
        response.headers["WWW-Authenticate"] = (
            "Bearer" if error.reason == "MISSING_TOKEN" else 'Bearer error="invalid_token"'
        )
    return response


def anonymous_middleware(budgets: Budgets):
    """Without authentication (--insecure): every request but the open ones spends the
    anonymous principal's request budget."""

    @web.middleware
    async def charge_request(request: web.Request, handler):
        if (request.method, request.path) not in HTTP_OPEN:
            trace_id = request_trace_id(request.headers.get("traceparent"))
            try:
                budgets.charge(
                    "",
                    Resource.REQUESTS,
                    method=f"{request.method} {request.path}",
                    peer=request.remote or "",
                    trace_id=trace_id,
                )
            except DomicileError as error:
                return _refusal(error)
        return await handler(request)

    return charge_request


def security_middleware(guard: Guard):
    """The middleware admitting HTTP requests through `guard`."""

    @web.middleware
    async def guard_request(request: web.Request, handler):
        if (request.method, request.path) in HTTP_OPEN:
            return await handler(request)
        trace_id = request_trace_id(request.headers.get("traceparent"))
        authorization = request.headers.getall("Authorization", [])
        peer = request.remote or ""
        required = _required(request)
        try:
            caller = await guard.admit(
                method=f"{request.method} {request.path}",
                required=required,
                authorization=authorization[0] if len(authorization) == 1 else None,
                certificate_der=_peer_certificate_der(request),
                peer=peer,
                trace_id=trace_id,
            )
        except DomicileError as error:
            describe_refusal(error)
            return _refusal(error)
        describe_caller(caller, required)
        request[PRINCIPAL_KEY] = caller.principal
        caller_token = current_caller.set(caller)
        trace_token = current_trace_id.set(trace_id)
        try:
            return await handler(request)
        finally:
            current_trace_id.reset(trace_token)
            current_caller.reset(caller_token)

    return guard_request
