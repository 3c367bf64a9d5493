"""Builds `Security` from settings (see `domicile.security.build_security`)."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from domicile.config import Settings
from domicile.errors import failed_precondition
from domicile.security import Security
from domicile.security.budgets import Budgets
from domicile.security.dev_credentials import (
    CONSOLE_LINK_AUDIENCE,
    DEV_ALGORITHM,
    DEV_AUDIENCE,
    DEV_ISSUER,
    ensure_dev_credentials,
)
from domicile.security.events import SecurityEventLog
from domicile.security.guard import Guard, KeySource
from domicile.security.http import anonymous_middleware, security_middleware
from domicile.security.interceptor import AnonymousInterceptor, AuthInterceptor
from domicile.security.keyfiles import KeyFileReloader
from domicile.security.oidc import IssuerKeys, check_issuer_url
from domicile.security.ratelimit import RateLimiter
from domicile.security.scopes import open_methods
from domicile.security.tls import CertificateFiles, CertificateReloader, TLSConfigError
from domicile.security.tokens import KeyLoadError, TokenVerifier, load_verification_keys

log = logging.getLogger(__name__)

# The identity provider's last good discovery document and key set, under data_dir: a server
# restarted while the IdP is down starts with them.
IDP_KEYS_CACHE = "idp-keys.json"


@dataclass(frozen=True)
class _Trust:
    """Where certificates and token keys come from, and which tokens to accept."""

    files: CertificateFiles
    jwks_file: Path | None
    public_key_files: tuple[Path, ...]
    issuer: str
    audience: str
    algorithms: tuple[str, ...]

    @property
    def discovery(self) -> bool:
        """No key files: the keys come from the issuer (OpenID Connect discovery)."""
        return self.jwks_file is None and not self.public_key_files


def _trust(settings: Settings) -> _Trust:
    if settings.dev:
        paths, created = ensure_dev_credentials(settings.data_dir)
        if created:
            log.info("created development credentials in %s", paths.root)
        return _Trust(
            files=CertificateFiles(paths.server_cert, paths.server_key, paths.ca_cert),
            jwks_file=paths.jwks,
            public_key_files=(),
            issuer=DEV_ISSUER,
            audience=DEV_AUDIENCE,
            algorithms=(DEV_ALGORITHM,),
        )
    tls, auth = settings.tls, settings.auth
    if tls.cert_file is None or tls.key_file is None:
        raise failed_precondition(
            "TLS is not configured: set tls.cert_file and tls.key_file (--tls-cert/--tls-key), "
            "use --dev for local development credentials, or --insecure for plaintext on loopback",
            "SECURITY_NOT_CONFIGURED",
        )
    if not auth.issuer or not auth.audience:
        raise failed_precondition(
            "JWT authentication needs auth.issuer and auth.audience (--jwt-issuer/--jwt-audience)",
            "SECURITY_NOT_CONFIGURED",
        )
    return _Trust(
        files=CertificateFiles(tls.cert_file, tls.key_file, tls.client_ca_file),
        jwks_file=auth.jwks_file,
        public_key_files=tuple(auth.public_key_files),
        issuer=auth.issuer,
        audience=auth.audience,
        algorithms=tuple(auth.algorithms),
    )


def assemble(settings: Settings) -> Security:
    """The `Security` that `build_security` documents."""
    if settings.insecure:
        log.warning(
            "serving WITHOUT TLS or authentication (--insecure) on %s; use only for local development",
            settings.listen,
        )
        budgets = Budgets.from_settings(settings.rate_limit)
        if budgets is None:
            return Security()
        return Security(
            interceptors=[AnonymousInterceptor(budgets)],
            http_middlewares=[anonymous_middleware(budgets)],
            budgets=budgets,
        )
    trust = _trust(settings)
    events = SecurityEventLog(settings.security_log_path)
    issuer_keys: IssuerKeys | None = None
    try:
        interval = settings.tls.reload_interval_seconds
        certificates = CertificateReloader(
            trust.files,
            interval_seconds=interval,
            events=events,
            http_client_cert_required=settings.tls.http_client_cert_required,
        )
        if trust.discovery:
            issuer_keys = _issuer_keys(settings, trust.issuer, events)
        verifier = TokenVerifier(
            [] if trust.discovery else load_verification_keys(trust.jwks_file, trust.public_key_files),
            issuer=trust.issuer,
            audience=trust.audience,
            algorithms=trust.algorithms,
            leeway_seconds=settings.auth.leeway_seconds,
            scope_claims=settings.auth.scope_claims,
            max_lifetime_seconds=settings.auth.max_token_lifetime.total_seconds(),
        )
    except (TLSConfigError, KeyLoadError, ssl.SSLError) as exc:
        events.close()
        raise failed_precondition(str(exc), "SECURITY_NOT_CONFIGURED") from None
    key_source: KeySource
    if issuer_keys is not None:
        issuer_keys.subscribe(verifier.replace_keys)
        key_source = issuer_keys
    else:
        key_source = KeyFileReloader(
            verifier,
            jwks_file=trust.jwks_file,
            public_key_files=trust.public_key_files,
            interval_seconds=interval,
            events=events,
        )
    limits = settings.rate_limit
    budgets = Budgets.from_settings(limits, events)
    failure_limiter = (
        RateLimiter(limits.auth_failures_per_second, limits.auth_failure_burst) if limits.enabled else None
    )
    guard = Guard(verifier, events, budgets, key_source, failure_limiter)
    opened = open_methods(health=settings.auth.open_health, reflection=settings.auth.open_reflection)
    if not certificates.mutual:
        log.warning("TLS without client certificates (no tls.client_ca_file): callers are identified by token only")
    console_link_verifier = None
    if settings.dev:
        console_link_verifier = TokenVerifier(
            load_verification_keys(trust.jwks_file, ()),
            issuer=DEV_ISSUER,
            audience=CONSOLE_LINK_AUDIENCE,
            algorithms=(DEV_ALGORITHM,),
            leeway_seconds=settings.auth.leeway_seconds,
        )
    return Security(
        interceptors=[AuthInterceptor(guard, opened)],
        server_credentials=certificates.grpc_credentials(),
        http_ssl_context=certificates.http_ssl_context(),
        http_middlewares=[security_middleware(guard)],
        events=events,
        certificates=certificates,
        guard=guard,
        console_link_verifier=console_link_verifier,
        issuer_keys=issuer_keys,
        budgets=budgets,
    )


def _issuer_keys(settings: Settings, issuer: str, events: SecurityEventLog) -> IssuerKeys:
    """The identity provider named by `auth.issuer` as the source of token keys."""
    auth = settings.auth
    try:
        check_issuer_url(issuer)
    except ValueError as exc:
        raise TLSConfigError(
            f"auth.issuer: {exc}; or give the keys as files (auth.jwks_file / auth.public_key_files)"
        ) from None
    try:
        context = ssl.create_default_context(cafile=str(auth.ca_file) if auth.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"auth.ca_file {auth.ca_file}: {getattr(exc, 'strerror', None) or exc}") from None
    return IssuerKeys(
        issuer,
        ssl_context=context,
        refresh_seconds=auth.jwks_refresh_seconds,
        min_refresh_seconds=auth.jwks_min_refresh_seconds,
        timeout_seconds=auth.idp_timeout_seconds,
        cache_file=settings.data_dir / IDP_KEYS_CACHE,
        events=events,
    )
