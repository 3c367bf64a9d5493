"""How a client reaches a Domicile server: address, transport security and credentials.

Shared by the command line and any other client; nothing here knows about click. A client
describes what it was given in `ConnectionSettings` and calls `resolve_credentials`, which
finds the credentials and says where it found them, or raises `ConnectionConfigError` with a
message that names every place it looked.

Development credentials (`domicile dev init`, `domicile serve --dev`) are found in the `dev/`
directory of the first of these that applies:

1. `--data-dir` (or `DOMICILE_DATA_DIR`): that directory only;
2. `DOMICILE_HOME`: that directory only;
3. otherwise the first of `$XDG_CONFIG_HOME/domicile` (default `~/.config/domicile`, where
   `domicile dev init --install-client` copies the client side) and `./.domicile` (the
   server's default data directory, when the client runs where the server does) that holds
   them.

Explicit files (`--ca-cert`, `--cert`/`--key`, `--token`) replace the development credentials;
a token provider (a callable the SDK's caller passes) replaces any token. Development tokens are
short-lived and minted anew before they expire, so a long-lived client keeps working.
`settings_from_env` reads the same `DOMICILE_*` variables as the command line's options.
`diagnose_failure` turns the cryptic transport errors of a failed call (TLS handshake,
plaintext against TLS and the reverse) into one line naming the likely cause.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from domicile.security.dev_credentials import (
    CLIENT_TOKEN_TTL_SECONDS,
    DevPaths,
    dev_paths,
    has_client_credentials,
    mint_dev_token,
)

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 30.0
HOME_ENV = "DOMICILE_HOME"
DATA_DIR_ENV = "DOMICILE_DATA_DIR"
DEFAULT_DATA_DIR = Path(".domicile")

# The environment variables of a client's settings (the command line's options read the same).
SERVER_ENV = "DOMICILE_SERVER"
INSECURE_ENV = "DOMICILE_INSECURE"
DEV_ENV = "DOMICILE_DEV"
CA_CERT_ENV = "DOMICILE_CA_CERT"
CLIENT_CERT_ENV = "DOMICILE_CLIENT_CERT"
CLIENT_KEY_ENV = "DOMICILE_CLIENT_KEY"
TOKEN_ENV = "DOMICILE_TOKEN"
TIMEOUT_ENV = "DOMICILE_TIMEOUT"
# A development token is minted anew when less than this part of its lifetime is left.
_DEV_TOKEN_REFRESH_FRACTION = 0.2

TokenProvider = Callable[[], str]
"""Returns the bearer token to send with the next call (called before every call, from a
gRPC thread: cache the token and refresh it before it expires)."""
# A probe of the server's transport (TLS or not) gives up after this long.
_PROBE_TIMEOUT_SECONDS = 3.0


class ConnectionConfigError(ValueError):
    """The connection cannot be set up as asked (missing or unreadable credentials)."""


@dataclass(frozen=True)
class ConnectionSettings:
    """What a client was told about its connection (flags, environment, defaults).

    `data_dir` is an explicitly chosen data directory (None: search, see the module
    docstring); `dev` demands development credentials (an error when none are found)."""

    server: str = DEFAULT_SERVER
    insecure: bool = False
    dev: bool = False
    data_dir: Path | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def explicit_files(self) -> bool:
        return any(value is not None for value in (self.ca_cert, self.client_cert, self.client_key))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def settings_from_env(environ: Mapping[str, str] = os.environ) -> ConnectionSettings:
    """The settings the `DOMICILE_*` environment variables describe (unset: the defaults):
    DOMICILE_SERVER, DOMICILE_INSECURE, DOMICILE_DEV, DOMICILE_DATA_DIR, DOMICILE_CA_CERT,
    DOMICILE_CLIENT_CERT, DOMICILE_CLIENT_KEY, DOMICILE_TOKEN, DOMICILE_TIMEOUT (seconds).
    DOMICILE_HOME is read when credentials are resolved. Raises ConnectionConfigError naming
    a variable whose value is not valid."""

    def flag(name: str) -> bool:
        value = environ.get(name, "").strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConnectionConfigError(f"{name}={environ[name]!r}: expected true or false (1/0, yes/no, on/off)")

    def path(name: str) -> Path | None:
        return Path(environ[name]) if environ.get(name) else None

    timeout = DEFAULT_TIMEOUT_SECONDS
    if environ.get(TIMEOUT_ENV):
        try:
            timeout = float(environ[TIMEOUT_ENV])
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise ConnectionConfigError(
                f"{TIMEOUT_ENV}={environ[TIMEOUT_ENV]!r}: expected a positive number of seconds"
            )
    return ConnectionSettings(
        server=environ.get(SERVER_ENV) or DEFAULT_SERVER,
        insecure=flag(INSECURE_ENV),
        dev=flag(DEV_ENV),
        data_dir=path(DATA_DIR_ENV),
        ca_cert=path(CA_CERT_ENV),
        client_cert=path(CLIENT_CERT_ENV),
        client_key=path(CLIENT_KEY_ENV),
        token=environ.get(TOKEN_ENV) or None,
        timeout=timeout,
    )


@dataclass(frozen=True)
class CredentialHome:
    """A directory that may hold development credentials, and why it is searched."""

    path: Path
    origin: str  # "--data-dir", "DOMICILE_HOME", "XDG config directory", "current directory"

    @property
    def dev(self) -> DevPaths:
        return dev_paths(self.path)

    def describe(self) -> str:
        return f"{self.dev.root} ({self.origin})"


@dataclass(frozen=True)
class ResolvedCredentials:
    """Channel credentials (None: plaintext), where the bearer token comes from (None: no
    token), and what they came from."""

    channel_credentials: grpc.ChannelCredentials | None
    token_provider: TokenProvider | None
    ca_file: Path | None  # the CA the server certificate is checked against; None: system roots
    source: str  # for messages: "dev credentials in ...", "--ca-cert ...", "plaintext", ...
    searched: tuple[CredentialHome, ...] = ()

    @property
    def tls(self) -> bool:
        return self.channel_credentials is not None


def user_config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_CONFIG_HOME/domicile`, or `~/.config/domicile` (XDG Base Directory spec: a
    relative XDG_CONFIG_HOME is invalid and ignored)."""
    base = environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path(environ.get("HOME") or Path.home()) / ".config"
    return root / "domicile"


def credential_homes(data_dir: Path | None, environ: Mapping[str, str] = os.environ) -> tuple[CredentialHome, ...]:
    """The directories searched for development credentials, in order."""
    if data_dir is not None:
        return (CredentialHome(Path(data_dir), "--data-dir"),)
    if environ.get(HOME_ENV):
        return (CredentialHome(Path(environ[HOME_ENV]), HOME_ENV),)
    return (
        CredentialHome(user_config_dir(environ), "XDG config directory"),
        CredentialHome(DEFAULT_DATA_DIR, "current directory"),
    )


def server_data_dir(data_dir: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The data directory of a server on this machine (its decision log, its dev
    credentials): `data_dir`, else DOMICILE_HOME, else `./.domicile` (the server's default)."""
    if data_dir is not None:
        return Path(data_dir)
    if environ.get(HOME_ENV):
        return Path(environ[HOME_ENV])
    return DEFAULT_DATA_DIR


def find_dev_credentials(data_dir: Path | None, environ: Mapping[str, str] = os.environ) -> CredentialHome | None:
    """The first home holding a complete set of client-side development credentials."""
    for home in credential_homes(data_dir, environ):
        if has_client_credentials(home.dev):
            return home
    return None


def resolve_credentials(
    settings: ConnectionSettings,
    environ: Mapping[str, str] = os.environ,
    *,
    token_provider: TokenProvider | None = None,
) -> ResolvedCredentials:
    """The credentials to connect with; `token_provider`, when given, replaces any token.
    Raises ConnectionConfigError naming the problem. Tokens are never sent in plaintext:
    with `insecure` no token is used."""
    if settings.insecure:
        if settings.dev or settings.explicit_files:
            raise ConnectionConfigError("--insecure (plaintext) excludes --dev, --ca-cert, --cert and --key")
        return ResolvedCredentials(None, None, None, "plaintext (--insecure)")
    if token_provider is None and settings.token:
        token_provider = _static_token(settings.token)
    homes = credential_homes(settings.data_dir, environ)
    if not settings.explicit_files:
        home = find_dev_credentials(settings.data_dir, environ)
        if home is not None:
            return _dev_credentials(home, token_provider, homes)
        if settings.dev:
            raise ConnectionConfigError(
                "no development credentials in "
                + ", ".join(h.describe() for h in homes)
                + "; point DOMICILE_HOME (or --data-dir) at the data directory of the `--dev` server, or run "
                "`domicile --data-dir SERVER_DATA_DIR dev init --install-client` once to install its client "
                "credentials for every directory"
            )
    if (settings.client_cert is None) != (settings.client_key is None):
        raise ConnectionConfigError("--cert and --key must be given together")
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=settings.ca_cert.read_bytes() if settings.ca_cert else None,
            private_key=settings.client_key.read_bytes() if settings.client_key else None,
            certificate_chain=settings.client_cert.read_bytes() if settings.client_cert else None,
        )
    except OSError as exc:
        raise ConnectionConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    source = f"--ca-cert {settings.ca_cert}" if settings.ca_cert else "the system's CA certificates"
    return ResolvedCredentials(credentials, token_provider, settings.ca_cert, source, homes)


def _static_token(token: str) -> TokenProvider:
    return lambda: token


class DevTokenMinter:
    """A token provider minting development tokens with the dev signing key in `data_dir`,
    anew when the last one is close to expiry (thread-safe: gRPC calls it from its threads)."""

    def __init__(self, data_dir: Path, ttl_seconds: float = CLIENT_TOKEN_TTL_SECONDS) -> None:
        self._data_dir = data_dir
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            now = time.monotonic()
            if now >= self._refresh_at:
                self._token = mint_dev_token(self._data_dir, ttl_seconds=self._ttl)
                self._refresh_at = now + self._ttl * (1 - _DEV_TOKEN_REFRESH_FRACTION)
            return self._token


def _dev_credentials(
    home: CredentialHome, token_provider: TokenProvider | None, homes: tuple[CredentialHome, ...]
) -> ResolvedCredentials:
    paths = home.dev
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=paths.ca_cert.read_bytes(),
            private_key=paths.client_key.read_bytes(),
            certificate_chain=paths.client_cert.read_bytes(),
        )
        if token_provider is None:
            token_provider = DevTokenMinter(home.path)
            token_provider()  # an unreadable signing key is reported now, not at the first call
    except OSError as exc:
        raise ConnectionConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return ResolvedCredentials(
        credentials, token_provider, paths.ca_cert, f"dev credentials in {home.describe()}", homes
    )


class _BearerToken(grpc.AuthMetadataPlugin):
    """Sends `authorization: Bearer <token>` with every call, asking the provider each time."""

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            token = self._provider()
        except Exception as exc:  # reported to the caller as the call's UNAUTHENTICATED error
            callback((), exc)
            return
        callback((("authorization", f"Bearer {token}"),), None)


def channel_credentials(resolved: ResolvedCredentials) -> grpc.ChannelCredentials | None:
    """The credentials of a secure channel (TLS, and the bearer token on every call), or None
    for plaintext."""
    if resolved.channel_credentials is None:
        return None
    if resolved.token_provider is None:
        return resolved.channel_credentials
    return grpc.composite_channel_credentials(
        resolved.channel_credentials, grpc.metadata_call_credentials(_BearerToken(resolved.token_provider))
    )


def diagnose_failure(settings: ConnectionSettings, resolved: ResolvedCredentials, details: str) -> str | None:
    """One line naming the likely cause of an UNAVAILABLE call whose transport failed, or
    None when the failure is not about the transport (the server said it is unavailable)."""
    lowered = details.lower()
    address = settings.server
    if resolved.tls and ("wrong_version_number" in lowered or "wrong version number" in lowered):
        return _plaintext_server(address)
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return _untrusted_certificate(address, resolved)
    if resolved.tls and "handshake" in lowered:
        if _speaks_tls(address) is False:
            return _plaintext_server(address)
        return (
            f"the TLS handshake with {address} failed ({_first_line(details)}); the server may require a client "
            f"certificate or use another CA than {_ca_text(resolved)}"
        )
    if not resolved.tls and _speaks_tls(address):
        return (
            f"{address} speaks TLS but this client connected in plaintext (--insecure): drop --insecure to use "
            "TLS with the development or given credentials"
        )
    return None


def _plaintext_server(address: str) -> str:
    return f"{address} speaks plaintext (a server started with --insecure?) but this client used TLS: add --insecure"


def _untrusted_certificate(address: str, resolved: ResolvedCredentials) -> str:
    if resolved.ca_file is None:
        searched = ", ".join(h.describe() for h in resolved.searched) or "none"
        return (
            f"the certificate of {address} is not signed by any of the system's CA certificates, and no "
            f"development credentials were found (looked in: {searched}); if the server runs with --dev, set "
            "DOMICILE_HOME to its data directory or install its client credentials with `domicile --data-dir "
            "SERVER_DATA_DIR dev init --install-client`; else pass its CA with --ca-cert"
        )
    return (
        f"the certificate of {address} is not signed by the CA in {resolved.ca_file} (from {resolved.source}); "
        "likely cause: the server uses other credentials (another data directory, or dev credentials recreated "
        "since these were installed): point DOMICILE_HOME or --data-dir at the server's data directory, or "
        "reinstall them with `domicile --data-dir SERVER_DATA_DIR dev init --install-client`"
    )


def _ca_text(resolved: ResolvedCredentials) -> str:
    return str(resolved.ca_file) if resolved.ca_file else "the system's CA certificates"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no details"


def _speaks_tls(address: str) -> bool | None:
    """Whether the server at `address` answers a TLS ClientHello with TLS: True, False, or
    None when it cannot be reached or told. Only used to explain a failure."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=host or None),
        ):
            return True
    except ssl.SSLError as exc:
        # A TLS alert (e.g. a client certificate is required) comes from a TLS server; a
        # record that is not TLS at all comes from a plaintext one.
        return "alert" in str(exc).lower()
    except (OSError, ValueError):
        return None
