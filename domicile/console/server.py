"""Starting the console's listener beside the gRPC server (`domicile.server.create_server`)."""

from __future__ import annotations

import logging
from typing import Any

from domicile.app import App
from domicile.config import is_loopback, split_host_port
from domicile.console.sessions import SessionStore
from domicile.console.web import DEFAULT_ASSETS, Console, create_console_app, origin_of
from domicile.http_server import HTTPServer, serve
from domicile.security import Security
from domicile.telemetry.access import access_middleware

log = logging.getLogger(__name__)


async def start_console(app: App, security: Security, servicers: dict[str, Any]) -> tuple[HTTPServer, str, str] | None:
    """Serve the console on `settings.console.listen` (behind the connection limits of the
    `http` settings); returns (server, base URL, one-time sign-in link), or None when this
    server cannot sign anyone in (a warning says why).

    With --dev the console is plain HTTP on a loopback address (a browser cannot present the
    dev client certificate, and as with Jupyter the one-time link is the secret) and the
    server mints a sign-in link for the dev principal with every scope.
    """
    settings = app.settings
    if security.guard is None or security.events is None:
        log.warning("console: not served: it signs people in, and --insecure has no authentication (use --dev)")
        return None
    if security.console_link_verifier is None:
        log.warning("console: not served: sign-in needs --dev (OpenID Connect sign-in is not available yet)")
        return None
    host, _ = split_host_port(settings.console.listen)
    if not is_loopback(host):
        log.warning("console: not served: with --dev it listens only on loopback addresses, not %s", host)
        return None
    console = Console(
        app=app,
        servicers=servicers,
        sessions=SessionStore(ttl=settings.console.session_ttl_seconds, idle=settings.console.session_idle_seconds),
        guard=security.guard,
        events=security.events,
        link_verifier=security.console_link_verifier,
        assets=settings.console.assets_dir or DEFAULT_ASSETS,
    )
    server = await serve(
        create_console_app(
            console,
            max_body_bytes=settings.max_message_bytes,
            outer=[access_middleware(log_access=settings.access_log)],
        ),
        settings.console.listen,
        settings.http,
        None,
        "the console",
    )
    bound = server.port
    shown_host = f"[{host}]" if ":" in host else host
    url = settings.console.public_url.rstrip("/") or f"http://{shown_host}:{bound}"
    console.origin = origin_of(url)
    from domicile.security.dev_credentials import mint_console_link_token

    link = f"{url}/signin?token={mint_console_link_token(settings.data_dir)}"
    log.info("serving the console on %s", url)
    return server, url, link
