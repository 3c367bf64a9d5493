"""The HTTP side of the server (aiohttp): OpenLineage ingestion (the probes and /metrics are
added by `domicile.health` and `domicile.ops`).

Routes are contributed by the domain packages; this module only assembles them and is the
one place where domain errors become HTTP answers: a `DomicileError` becomes the status of
its code with a JSON body `{"error": {"code", "reason", "message", "field_violations":
[{"field", "description"}]}}` (plus `Retry-After` when the error carries a delay); any other
exception is logged with an incident id and answered 500 without internals.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from domicile.app import App
from domicile.errors import DomicileError, ErrorCode
from domicile.lineage.http import add_lineage_routes

log = logging.getLogger(__name__)

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.FAILED_PRECONDITION: 412,
    ErrorCode.ABORTED: 409,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


def error_response(error: DomicileError) -> web.Response:
    """The HTTP answer for a domain error (bounded as `DomicileError.bounded` says). Its reason
    phrase carries the message too: the OpenLineage client reports a refused event as `400
    Client Error: <reason phrase> for url` and never reads the body."""
    error = error.bounded()
    body: dict[str, Any] = {
        "code": error.code.value,
        "reason": error.reason,
        "message": error.caller_text(),
        "field_violations": [{"field": v.field, "description": v.description} for v in error.violations],
    }
    if error.metadata:
        body["metadata"] = error.metadata
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return web.json_response(
        {"error": body}, status=HTTP_STATUS[error.code], headers=headers, reason=reason_phrase(error.caller_text())
    )


# Long enough for a message with a few field violations; reason phrases are one line of
# printable ASCII (RFC 9112) and proxies may cut long ones.
_MAX_REASON = 300


def reason_phrase(message: str) -> str:
    """`message` as an HTTP reason phrase: printable ASCII on one line, at most 300 characters."""
    text = " ".join(message.encode("ascii", "backslashreplace").decode("ascii").split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomicileError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        # aiohttp's own refusals (404 route, 405, 413 body too large) answered in the same JSON shape.
        return web.json_response(
            {
                "error": {
                    "code": exc.reason.upper().replace(" ", "_"),
                    "reason": "",
                    "message": exc.text or exc.reason,
                    "field_violations": [],
                }
            },
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("internal error on %s %s (incident %s)", request.method, request.path, incident)
        return web.json_response(
            {
                "error": {
                    "code": "INTERNAL",
                    "reason": "",
                    "message": f"internal error (incident {incident})",
                    "field_violations": [],
                }
            },
            status=500,
        )


def create_http_app(app: App, *, outer: Iterable[Any] = (), middlewares: Iterable[Any] = ()) -> web.Application:
    """The aiohttp application: the `outer` middlewares (telemetry: they see every answer),
    then the error mapping (so refusals by the security middlewares get the same JSON shape),
    then `middlewares`, then the routes."""
    http_app = web.Application(
        middlewares=[*outer, error_middleware, *middlewares], client_max_size=app.settings.max_message_bytes
    )
    add_lineage_routes(http_app, app)
    return http_app
