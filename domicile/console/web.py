"""The console's aiohttp application (see the package docstring and docs/console.md).

Every response carries a strict Content-Security-Policy (scripts, styles, images and
connections only from the console itself: no inline code, no eval) and headers against
framing, sniffing and referrer leaks. Requests under `/api/` need a session; every POST needs
the session's CSRF token in `X-CSRF-Token` and, when the browser sends one, an `Origin` equal
to the console's own. Sign-in is by one-time link with --dev, else by OpenID Connect
(`domicile.console.oidc`). Sign-in failures are security events.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from domicile.app import App
from domicile.console.api import ROUTE_BY_PATH, ROUTES, Route, parse_body, parse_query, to_json
from domicile.console.oidc import PENDING_SECONDS, OidcSignIn
from domicile.console.sessions import Session, SessionStore, UsedLinks
from domicile.errors import DomicileError, ErrorCode
from domicile.http_api import error_middleware, error_response
from domicile.security import events as ev
from domicile.security.context import Caller, current_caller, current_trace_id
from domicile.security.events import SecurityEventLog
from domicile.security.guard import Guard, trace_id_from
from domicile.security.http import PRINCIPAL_KEY
from domicile.security.scopes import ALL_SCOPES, METHOD_SCOPES
from domicile.security.tokens import AuthenticationError, TokenVerifier

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-domicile-session"
# The state of an OpenID Connect sign-in under way. SameSite=Lax, unlike the session's: the
# identity provider's redirect back is a cross-site navigation, which Strict cookies miss.
SIGN_IN_COOKIE = "__Host-domicile-signin"
CSRF_HEADER = "X-CSRF-Token"
PACKAGE_DIR = Path(__file__).parent
DEFAULT_ASSETS = PACKAGE_DIR / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: browsers then send `Origin: null` with same-origin form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class Console:
    """What the console's handlers share."""

    app: App
    # gRPC service full name -> the servicer that serves it (the same objects gRPC calls).
    servicers: dict[str, Any]
    sessions: SessionStore
    guard: Guard
    events: SecurityEventLog
    # Verifies one-time sign-in links (--dev); None when there are none.
    link_verifier: TokenVerifier | None
    assets: Path
    # OpenID Connect sign-in (production); None with --dev.
    oidc: OidcSignIn | None = None
    # The origin browsers use, e.g. "http://127.0.0.1:8081"; set once the listener is bound.
    origin: str = ""
    secure_transport: bool = False
    used_links: UsedLinks = field(default_factory=UsedLinks)


CONSOLE: web.AppKey[Console] = web.AppKey("domicile_console", Console)
SESSION: web.RequestKey[Session | None] = web.RequestKey("domicile_session", Session)


# ---- middlewares ---------------------------------------------------------------------------


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        response.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def session_check(request: web.Request, handler) -> web.StreamResponse:
    console = request.app[CONSOLE]
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request, console):
        raise _refused(ErrorCode.PERMISSION_DENIED, "CROSS_ORIGIN", "cross-origin requests are refused")
    if request.path == "/signin":
        return await handler(request)  # authenticated by its one-time link instead
    session = console.sessions.get(request.cookies.get(SESSION_COOKIE))
    if request.path.startswith("/api/") or request.method == "POST":
        if session is None:
            raise _refused(ErrorCode.UNAUTHENTICATED, "NO_SESSION", "sign in to the console first")
        if request.method == "POST" and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
            _record(console, ev.AUTHZ_DENIED, request, reason="CSRF_TOKEN_MISMATCH", principal=session.caller.principal)
            raise _refused(ErrorCode.PERMISSION_DENIED, "CSRF_TOKEN_MISMATCH", f"missing or wrong {CSRF_HEADER} header")
    request[SESSION] = session
    return await handler(request)


def _signed_in(request: web.Request) -> Session:
    session = request[SESSION]
    assert session is not None, "session_check lets only signed-in requests reach this handler"
    return session


def _same_origin(request: web.Request, console: Console) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == console.origin


def _refused(code: ErrorCode, reason: str, message: str) -> DomicileError:
    return DomicileError(message, code, reason)


def _record(console: Console, event: str, request: web.Request, *, reason: str, principal: str = "") -> None:
    console.events.record(
        event,
        outcome="denied",
        principal=principal,
        method=f"console {request.method} {request.path}",
        peer=request.remote or "",
        trace_id=trace_id_from(request.headers.get("traceparent")),
        reason=reason,
    )


# ---- sign-in and sign-out ---------------------------------------------------------------------


async def sign_in_page(request: web.Request) -> web.Response:
    """GET /signin: with a link's `token`, a form that signs in with it (a GET never signs in,
    so link scanners and prefetchers cannot spend the link); without, how to sign in."""
    console = request.app[CONSOLE]
    token = request.query.get("token", "")
    if console.oidc is not None and not token:
        return _page("Sign in", _oidc_sign_in_form(console.oidc))
    if not token:
        return _page("Sign in", _HOW_TO_SIGN_IN)
    try:
        caller, _ = _check_link(console, token)
    except AuthenticationError as exc:
        _record(console, ev.AUTH_FAILURE, request, reason=exc.reason)
        return _page("Sign-in link refused", f"<p>{html.escape(str(exc))}</p>{_HOW_TO_SIGN_IN}", status=401)
    scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in sorted(caller.scopes))
    form = (
        f"<p>Sign in as <strong>{html.escape(caller.principal)}</strong> with the scopes</p><ul>{scopes}</ul>"
        '<form method="post" action="/signin">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sign in", form)


async def sign_in(request: web.Request) -> web.Response:
    """POST /signin (form field `token`): redeem a one-time link and start a session."""
    console = request.app[CONSOLE]
    form = await request.post()
    token = form.get("token")
    try:
        if not isinstance(token, str) or not token:
            raise AuthenticationError("MISSING_LINK", "no sign-in link was given")
        caller, expires = _check_link(console, token)
        if not console.used_links.redeem(token, expires):
            raise AuthenticationError("LINK_ALREADY_USED", "this sign-in link was already used")
    except AuthenticationError as exc:
        _record(console, ev.AUTH_FAILURE, request, reason=exc.reason)
        return _page("Sign-in refused", f"<p>{html.escape(str(exc))}</p>{_HOW_TO_SIGN_IN}", status=401)
    session = console.sessions.create(caller)
    log.info("console: %s signed in", caller.principal)
    redirect = web.HTTPSeeOther("/")
    _set_session_cookie(redirect, session, console)
    raise redirect


async def oidc_start(request: web.Request) -> web.Response:
    """GET /signin/start: send the browser to the identity provider (OpenID Connect)."""
    console = request.app[CONSOLE]
    if console.oidc is None:
        raise web.HTTPNotFound(text="this server signs in with one-time links", content_type="text/plain")
    try:
        url, state = console.oidc.begin()
    except AuthenticationError as exc:
        _record(console, ev.AUTH_FAILURE, request, reason=exc.reason)
        return _page("Sign-in unavailable", f"<p>{html.escape(str(exc))}</p>", status=503)
    redirect = web.HTTPFound(url)
    redirect.headers["Cache-Control"] = "no-store"
    redirect.set_cookie(
        SIGN_IN_COOKIE,
        state,
        max_age=int(PENDING_SECONDS),
        path="/",
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    raise redirect


async def oidc_callback(request: web.Request) -> web.Response:
    """GET /signin/callback: the identity provider's answer; a session on success."""
    console = request.app[CONSOLE]
    if console.oidc is None:
        raise web.HTTPNotFound(text="this server signs in with one-time links", content_type="text/plain")
    query = request.query
    try:
        signed_in = await console.oidc.finish(
            state=query.get("state", ""),
            code=query.get("code", ""),
            browser_state=request.cookies.get(SIGN_IN_COOKIE),
            issuer=query.get("iss", ""),
            error=query.get("error", ""),
            error_description=query.get("error_description", ""),
        )
    except AuthenticationError as exc:
        _record(console, ev.AUTH_FAILURE, request, reason=exc.reason)
        body = f"<p>{html.escape(str(exc))}</p>{_oidc_sign_in_form(console.oidc)}"
        response = _page("Sign-in refused", body, status=401)
        response.del_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
        return response
    session = console.sessions.create(signed_in.caller, id_token=signed_in.id_token)
    log.info("console: %s signed in through %s", signed_in.caller.principal, console.oidc.issuer)
    redirect = web.HTTPSeeOther("/")
    redirect.del_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    _set_session_cookie(redirect, session, console)
    raise redirect


def _oidc_sign_in_form(oidc: OidcSignIn) -> str:
    return (
        f"<p>Sign in with your account at <code>{html.escape(oidc.issuer)}</code>.</p>"
        '<p><a class="button" href="/signin/start">Sign in</a></p>'
    )


def _check_link(console: Console, token: str) -> tuple[Caller, float]:
    if console.link_verifier is None:
        raise AuthenticationError("LINKS_DISABLED", "this server does not accept sign-in links")
    caller, expires = console.link_verifier.verify_uncached(token)
    return Caller(caller.subject, caller.actors, caller.scopes & frozenset(ALL_SCOPES)), expires


def _set_session_cookie(response: web.StreamResponse, session: Session, console: Console) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=int(console.sessions.ttl),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


async def sign_out(request: web.Request) -> web.Response:
    """POST /signout: end the session (CSRF-checked like every POST). After an OpenID Connect
    sign-in the answer's `end_session_url`, when the IdP has one, is where the browser goes
    next so that the IdP ends its session too (`OidcSignIn.end_session_url`)."""
    console = request.app[CONSOLE]
    session = _signed_in(request)
    console.sessions.end(session.id)
    log.info("console: %s signed out", session.caller.principal)
    answer: dict[str, Any] = {"signed_out": True}
    if console.oidc is not None and (url := console.oidc.end_session_url(session.id_token)):
        answer["end_session_url"] = url
    response = web.json_response(answer, headers={"Cache-Control": "no-store"})
    response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


async def signed_out_page(request: web.Request) -> web.Response:
    """GET /signedout: where the identity provider sends the browser back after ending its
    session (the console's `post_logout_redirect_uri`)."""
    oidc = request.app[CONSOLE].oidc
    at = f" and of <code>{html.escape(oidc.issuer)}</code>" if oidc is not None else ""
    return _page("Signed out", f"<p>You are signed out of the console{at}.</p>" + _SIGN_IN_AGAIN)


async def session_info(request: web.Request) -> web.Response:
    """GET /api/v1/session: who is signed in, with which scopes, and the CSRF token."""
    console = request.app[CONSOLE]
    session = _signed_in(request)
    return web.json_response(
        {
            "principal": session.caller.principal,
            "scopes": sorted(session.caller.scopes),
            "csrf_token": session.csrf_token,
            "expires_in_seconds": int(session.expires - time.monotonic()),
            "idle_timeout_seconds": int(console.sessions.idle),
        },
        headers={"Cache-Control": "no-store"},
    )


# ---- the JSON API ---------------------------------------------------------------------------


class _Context:
    """What servicers ask of their gRPC context, for a call from the console."""

    def __init__(self, request: web.Request) -> None:
        self._peer = request.remote or ""

    def peer(self) -> str:
        return self._peer


async def call_rpc(request: web.Request) -> web.Response:
    """Answer an API route with its RPC, as the signed-in principal."""
    console = request.app[CONSOLE]
    route: Route = ROUTE_BY_PATH[(request.method, request.path)]
    session = _signed_in(request)
    request[PRINCIPAL_KEY] = session.caller.principal
    trace_id = trace_id_from(request.headers.get("traceparent"))
    console.guard.authorize(
        session.caller,
        method=route.rpc,
        required=METHOD_SCOPES.get(route.rpc),
        peer=request.remote or "",
        trace_id=trace_id,
    )
    message = parse_query(route, request.query) if route.method == "GET" else parse_body(route, await request.read())
    caller_token = current_caller.set(session.caller)
    trace_token = current_trace_id.set(trace_id)
    try:
        response = await getattr(console.servicers[route.service], route.name)(message, _Context(request))
    finally:
        current_trace_id.reset(trace_token)
        current_caller.reset(caller_token)
    return to_json(route, response)


# ---- the single-page app ----------------------------------------------------------------------


async def app_shell(request: web.Request) -> web.StreamResponse:
    """Any other GET: the single-page app's index.html (it routes in the browser), or a page
    saying how to build it when this installation has no built assets."""
    if request.path.startswith("/api/"):
        raise web.HTTPNotFound(text="no such API route", content_type="text/plain")
    index = request.app[CONSOLE].assets / "index.html"
    if not index.is_file():
        return _page("Console not built", _NOT_BUILT, status=503)
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


async def page_css(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PACKAGE_DIR / "page.css", headers={"Cache-Control": "no-cache"})


_SIGN_IN_AGAIN = '<p><a class="button" href="/signin">Sign in again</a></p>'
_HOW_TO_SIGN_IN = (
    "<p>With <code>domicile serve --dev</code>, open the one-time sign-in link the server printed "
    "when it started, or make a new one (optionally with fewer scopes):</p>"
    "<pre>domicile dev console-link --scope catalog:read --scope audit:read</pre>"
)
_NOT_BUILT = (
    "<p>This server was installed without the console's built assets.</p>"
    "<p>Build them from a source checkout with <code>make console</code> (it runs "
    "<code>npm ci</code> and <code>npm run build</code> in <code>console-web/</code>; "
    "<code>make run</code> does it too), then reload this page.</p>"
)


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)} · Domicile</title><link rel="stylesheet" href="/page.css"></head>'
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return web.Response(text=text, content_type="text/html", status=status, headers={"Cache-Control": "no-store"})


# ---- assembly -------------------------------------------------------------------------------


def create_console_app(console: Console, *, max_body_bytes: int, outer: Iterable[Any] = ()) -> web.Application:
    """The aiohttp application of the console; `outer` middlewares (telemetry) see every answer."""
    http_app = web.Application(
        middlewares=[*outer, security_headers, error_middleware, session_check], client_max_size=max_body_bytes
    )
    http_app[CONSOLE] = console
    http_app.router.add_get("/signin", sign_in_page)
    http_app.router.add_post("/signin", sign_in)
    http_app.router.add_get("/signin/start", oidc_start)
    http_app.router.add_get("/signin/callback", oidc_callback)
    http_app.router.add_post("/signout", sign_out)
    http_app.router.add_get("/signedout", signed_out_page)
    http_app.router.add_get("/page.css", page_css)
    http_app.router.add_get("/api/v1/session", session_info)
    for route in ROUTES:
        http_app.router.add_route(route.method, route.path, call_rpc)
    if (console.assets / "assets").is_dir():
        http_app.router.add_static("/assets", console.assets / "assets", append_version=False)
    http_app.router.add_get("/{tail:.*}", app_shell)
    return http_app


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


__all__ = ["Console", "create_console_app", "error_response", "origin_of"]
