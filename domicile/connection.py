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

Explicit files (`--ca-cert`, `--cert`/`--key`, `--token`) replace the development credentials.
`diagnose_failure` turns the cryptic transport errors of a failed call (TLS handshake,
plaintext against TLS and the reverse) into one line naming the likely cause.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from domicile.security.dev_credentials import DevPaths, dev_paths, has_client_credentials, mint_dev_token

DEFAULT_SERVER = "127.0.0.1:50051"
HOME_ENV = "DOMICILE_HOME"
DATA_DIR_ENV = "DOMICILE_DATA_DIR"
DEFAULT_DATA_DIR = Path(".domicile")
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
    timeout: float = 30.0

    @property
    def explicit_files(self) -> bool:
        return any(value is not None for value in (self.ca_cert, self.client_cert, self.client_key))


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
    """Channel credentials (None: plaintext), the bearer token, and what they came from."""

    channel_credentials: grpc.ChannelCredentials | None
    token: str | None
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


def resolve_credentials(settings: ConnectionSettings, environ: Mapping[str, str] = os.environ) -> ResolvedCredentials:
    """The credentials to connect with. Raises ConnectionConfigError naming the problem."""
    if settings.insecure:
        if settings.dev or settings.explicit_files:
            raise ConnectionConfigError("--insecure (plaintext) excludes --dev, --ca-cert, --cert and --key")
        return ResolvedCredentials(None, None, None, "plaintext (--insecure)")
    homes = credential_homes(settings.data_dir, environ)
    if not settings.explicit_files:
        home = find_dev_credentials(settings.data_dir, environ)
        if home is not None:
            return _dev_credentials(home, settings.token, homes)
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
    return ResolvedCredentials(credentials, settings.token, settings.ca_cert, source, homes)


def _dev_credentials(home: CredentialHome, token: str | None, homes: tuple[CredentialHome, ...]) -> ResolvedCredentials:
    paths = home.dev
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=paths.ca_cert.read_bytes(),
            private_key=paths.client_key.read_bytes(),
            certificate_chain=paths.client_cert.read_bytes(),
        )
        token = token or mint_dev_token(home.path)
    except OSError as exc:
        raise ConnectionConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return ResolvedCredentials(credentials, token, paths.ca_cert, f"dev credentials in {home.describe()}", homes)


def open_channel(settings: ConnectionSettings, resolved: ResolvedCredentials) -> grpc.Channel:
    """A blocking channel to `settings.server` with `resolved` credentials."""
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if resolved.channel_credentials is None:
        return grpc.insecure_channel(settings.server, options=options)
    credentials = resolved.channel_credentials
    if resolved.token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(resolved.token)
        )
    return grpc.secure_channel(settings.server, credentials, options=options)


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
