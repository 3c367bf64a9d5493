"""Starting the console's listener beside the gRPC server (`domicile.server.create_server`)."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from domicile.app import App
from domicile.config import Settings, is_loopback, split_host_port
from domicile.console.oidc import OidcSignIn
from domicile.console.sessions import SessionStore
from domicile.console.web import DEFAULT_ASSETS, Console, create_console_app, origin_of
from domicile.errors import failed_precondition
from domicile.http_server import HTTPServer
from domicile.listening import serve_http
from domicile.security import Security
from domicile.security.oidc import IssuerKeys
from domicile.security.scopes import ALL_SCOPES
from domicile.security.tokens import TokenVerifier
from domicile.telemetry.access import access_middleware

log = logging.getLogger(__name__)


async def start_console(app: App, security: Security, servicers: dict[str, Any]) -> tuple[HTTPServer, str, str] | None:
    """Serve the console on `settings.console.listen` (behind the connection limits of the
    `http` settings); returns (server, base URL, one-time sign-in link or ""), or None when
    this server cannot sign anyone in (a warning says why).

    With --dev the console is plain HTTP on a loopback address (a browser cannot present the
    dev client certificate, and as with Jupyter the one-time link is the secret) and the
    server mints a sign-in link for the dev principal with every scope. Otherwise people sign
    in with OpenID Connect at `auth.issuer` (`console.oidc_client_id`), and the console is
    served over TLS with the server's certificate, asking browsers for no client certificate.
    """
    settings = app.settings
    if security.guard is None or security.events is None:
        log.warning("console: not served: it signs people in, and --insecure has no authentication (use --dev)")
        return None
    host, _ = split_host_port(settings.console.listen)
    tls: ssl.SSLContext | None = None
    if security.console_link_verifier is not None:
        if not is_loopback(host):
            log.warning("console: not served: with --dev it listens only on loopback addresses, not %s", host)
            return None
        scheme = "http"
    else:
        if security.issuer_keys is None or not settings.console.oidc_client_id:
            log.warning(
                "console: not served: sign-in needs --dev, or OpenID Connect: auth.issuer with discovery "
                "(no key files) and console.oidc_client_id"
            )
            return None
        tls = _tls_context(settings)
        scheme = "https"
    console = Console(
        app=app,
        servicers=servicers,
        sessions=SessionStore(ttl=settings.console.session_ttl_seconds, idle=settings.console.session_idle_seconds),
        guard=security.guard,
        events=security.events,
        link_verifier=security.console_link_verifier,
        assets=settings.console.assets_dir or DEFAULT_ASSETS,
    )
    server = await serve_http(
        create_console_app(
            console,
            max_body_bytes=settings.max_message_bytes,
            outer=[access_middleware(log_access=settings.access_log)],
        ),
        settings.console.listen,
        settings.http,
        tls,
        "console",
    )
    bound = server.port
    shown_host = f"[{host}]" if ":" in host else host
    url = settings.console.public_url.rstrip("/") or f"{scheme}://{shown_host}:{bound}"
    console.origin = origin_of(url)
    link = ""
    if security.console_link_verifier is not None:
        from domicile.security.dev_credentials import mint_console_link_token

        link = f"{url}/signin?token={mint_console_link_token(settings.data_dir)}"
    else:
        assert security.issuer_keys is not None
        console.oidc = _oidc_sign_in(settings, security.issuer_keys, security.guard.verifier, url)
    log.info("serving the console on %s", url)
    return server, url, link


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """A server context with the configured certificate that asks for no client certificate."""
    tls = settings.tls
    assert tls.cert_file is not None and tls.key_file is not None, "checked when security was built"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise failed_precondition(f"console TLS: {exc}", "SECURITY_NOT_CONFIGURED") from None
    return context


def _oidc_sign_in(settings: Settings, issuer_keys: IssuerKeys, verifier: TokenVerifier, url: str) -> OidcSignIn:
    auth, console = settings.auth, settings.console
    secret = ""
    if console.oidc_client_secret_file is not None:
        try:
            secret = console.oidc_client_secret_file.read_text("utf-8").strip()
        except OSError as exc:
            raise failed_precondition(
                f"console.oidc_client_secret_file {console.oidc_client_secret_file}: {exc.strerror or exc}",
                "SECURITY_NOT_CONFIGURED",
            ) from None
    try:
        context = ssl.create_default_context(cafile=str(auth.ca_file) if auth.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise failed_precondition(f"auth.ca_file {auth.ca_file}: {exc}", "SECURITY_NOT_CONFIGURED") from None
    return OidcSignIn(
        issuer_keys,
        verifier,
        client_id=console.oidc_client_id,
        client_secret=secret,
        redirect_uri=f"{url}/signin/callback",
        post_logout_redirect_uri=f"{url}/signedout",
        scopes=["openid", *(console.oidc_scopes or ALL_SCOPES)],
        ssl_context=context,
        timeout_seconds=auth.idp_timeout_seconds,
    )
