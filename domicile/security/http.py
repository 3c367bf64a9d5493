"""aiohttp middleware guarding the HTTP endpoint with the same Guard as gRPC.

`GET /healthz` is open; every other request needs `Authorization: Bearer <token>` (the header
the OpenLineage client's HttpTransport sends with `auth: {type: api_key}`) and the scope the
`HTTP_SCOPES` table names. Refusals are JSON: {"error": {"code", "reason", "message",
"trace_id"}}, with `WWW-Authenticate` on 401 and `Retry-After` on 429.
"""

from __future__ import annotations

import math
import ssl

from aiohttp import web

from domicile.errors import DomicileError, ErrorCode
from domicile.security.context import current_caller, current_trace_id
from domicile.security.guard import Guard, trace_id_from
from domicile.security.scopes import HTTP_OPEN, HTTP_SCOPES

HTTP_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
}


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


def _error_response(error: DomicileError) -> web.Response:
    status = HTTP_STATUS[error.code]
    headers = {}
    if error.code is ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if error.reason != "MISSING_TOKEN" else "Bearer"
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    body = {"error": {"code": error.code.value, "reason": error.reason, "message": str(error),
                      "trace_id": error.metadata.get("trace_id", "")}}
    return web.json_response(body, status=status, headers=headers)


def security_middleware(guard: Guard):
    """The middleware admitting HTTP requests through `guard`."""

    @web.middleware
    async def guard_request(request: web.Request, handler):
        if (request.method, request.path) in HTTP_OPEN:
            return await handler(request)
        trace_id = trace_id_from(request.headers.get("traceparent"))
        authorization = request.headers.getall("Authorization", [])
        peer = request.remote or ""
        try:
            caller = guard.admit(
                method=f"{request.method} {request.path}",
                required=_required(request),
                authorization=authorization[0] if len(authorization) == 1 else None,
                certificate_der=_peer_certificate_der(request),
                peer=peer,
                trace_id=trace_id,
            )
        except DomicileError as error:
            return _error_response(error)
        caller_token = current_caller.set(caller)
        trace_token = current_trace_id.set(trace_id)
        try:
            return await handler(request)
        finally:
            current_trace_id.reset(trace_token)
            current_caller.reset(caller_token)

    return guard_request
