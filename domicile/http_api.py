"""The HTTP side of the server (aiohttp): OpenLineage ingestion and a liveness probe.

Routes are contributed by the domain packages; this module only assembles them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from domicile.app import App


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_http_app(app: App, *, middlewares: Iterable[Any] = ()) -> web.Application:
    http_app = web.Application(middlewares=list(middlewares), client_max_size=app.settings.max_message_bytes)
    http_app["domicile"] = app
    http_app.router.add_get("/healthz", _healthz)
    return http_app
