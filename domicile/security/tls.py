"""Server TLS for gRPC and HTTP, with certificates reloaded from disk when they change.

`CertificateReloader` owns the certificate files. At most once per `interval` (checked when a
new connection arrives) it stats them; when they changed it loads and validates the new set
(the key must match the certificate) and only then swaps it in, so a half-finished rotation
(certificate copied, key not yet) keeps serving the previous pair and is retried once the
files change again. Each reload, successful or not, is a `cert_reload` security event.

gRPC asks for new material through `grpc.dynamic_ssl_server_credentials`' fetcher, which it
calls before each new handshake; HTTP swaps the `SSLContext` of the new connection in the
server name callback, which OpenSSL runs for every ClientHello. Established connections keep
the certificate they were opened with.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from domicile.security import events as ev
from domicile.security.events import SecurityEventLog

log = logging.getLogger(__name__)


class TLSConfigError(Exception):
    """Certificate files missing, unreadable or inconsistent; the message names the file and
    never includes key material."""


@dataclass(frozen=True)
class CertificateFiles:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())


@dataclass(frozen=True)
class CertificateMaterial:
    """A validated server certificate chain, its key and the client CA bundle (PEM bytes)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    digest: str  # of all three, to tell a real change from a touched file
    subject: str
    not_after: str
    serial: str


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"{what} {path}: {exc.strerror}") from None


def load_material(files: CertificateFiles) -> CertificateMaterial:
    """Read and validate the files; TLSConfigError when a file is unreadable, not PEM, or the
    key does not belong to the certificate."""
    chain = _read(files.cert_file, "TLS certificate")
    key_pem = _read(files.key_file, "TLS key")
    ca = _read(files.client_ca_file, "client CA") if files.client_ca_file else None
    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise TLSConfigError(f"TLS certificate {files.cert_file}: no PEM certificate") from None
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        # Deliberately without the exception text: it could quote key material.
        raise TLSConfigError(f"TLS key {files.key_file}: not an unencrypted PEM private key") from None
    leaf = certificates[0]
    spki = PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(Encoding.DER, spki) != key.public_key().public_bytes(Encoding.DER, spki):
        raise TLSConfigError(f"TLS key {files.key_file} does not match certificate {files.cert_file}")
    if ca is not None:
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError:
            raise TLSConfigError(f"client CA {files.client_ca_file}: no PEM certificate") from None
    digest = hashlib.sha256(b"\0".join((chain, key_pem, ca or b""))).hexdigest()
    return CertificateMaterial(
        cert_chain=chain,
        private_key=key_pem,
        client_ca=ca,
        digest=digest,
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc.isoformat(),
        serial=format(leaf.serial_number, "x"),
    )


def file_signature(paths: tuple[Path, ...]) -> tuple:
    """(inode, size, mtime) of each path (None when missing): changes whenever a file is
    rewritten or replaced by rename."""
    signature: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            signature.append(None)
        else:
            signature.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(signature)


class CertificateReloader:
    """Current certificate material plus change detection (see the module docstring).

    Thread-safe: gRPC calls `grpc_fetcher` from its own threads.
    """

    def __init__(
        self,
        files: CertificateFiles,
        *,
        interval_seconds: float,
        events: SecurityEventLog,
        http_client_cert_required: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = files
        self.interval = interval_seconds
        self.events = events
        self.http_client_cert_required = http_client_cert_required
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = file_signature(files.paths())
        self.material = load_material(files)
        self._http_context = self._make_http_context(self.material)
        self._last_check = clock()
        self._grpc_generation = 0  # bumped on every swap; compared per fetcher
        self._grpc_seen = 0

    @property
    def mutual(self) -> bool:
        return self.files.client_ca_file is not None

    def check(self) -> bool:
        """Reload when the files changed since the last look (rate-limited to one look per
        interval). True when new material was swapped in by this call."""
        with self._lock:
            now = self._clock()
            if now - self._last_check < self.interval:
                return False
            self._last_check = now
            signature = file_signature(self.files.paths())
            if signature == self._signature:
                return False
            self._signature = signature
            try:
                material = load_material(self.files)
                if material.digest == self.material.digest:
                    return False
                http_context = self._make_http_context(material)
            except (TLSConfigError, ssl.SSLError, OSError) as exc:
                self.events.record(
                    ev.CERT_RELOAD,
                    outcome="error",
                    reason="INVALID_CERTIFICATE_FILES",
                    error=_safe_message(exc),
                    kept_serial=self.material.serial,
                )
                log.warning(
                    "certificate reload failed, still serving serial %s: %s", self.material.serial, _safe_message(exc)
                )
                return False
            self.material = material
            self._http_context = http_context
            self._grpc_generation += 1
            self.events.record(
                ev.CERT_RELOAD,
                outcome="ok",
                subject=material.subject,
                serial=material.serial,
                not_after=material.not_after,
                cert_file=str(self.files.cert_file),
            )
            log.info("reloaded server certificate %s (serial %s)", material.subject, material.serial)
            return True

    # gRPC -----------------------------------------------------------------------------------

    def _grpc_configuration(self, material: CertificateMaterial):
        return grpc.ssl_server_certificate_configuration(
            [(material.private_key, material.cert_chain)], root_certificates=material.client_ca
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose certificate follows the files; client certificates
        signed by the client CA are required when one is configured."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(self.material),
            self._grpc_fetch,
            require_client_authentication=self.mutual,
        )

    def _grpc_fetch(self):
        self.check()
        with self._lock:
            if self._grpc_seen == self._grpc_generation:
                return None
            self._grpc_seen = self._grpc_generation
            return self._grpc_configuration(self.material)

    # HTTP -----------------------------------------------------------------------------------

    def _make_http_context(self, material: CertificateMaterial) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # The ssl module loads certificate chains only from files; the pair was validated above
        # and a concurrent rewrite is caught by the next check.
        context.load_cert_chain(self.files.cert_file, self.files.key_file)
        if material.client_ca is not None:
            # Text outside the PEM blocks (bundle comments) may be anything; only the blocks count.
            context.load_verify_locations(cadata=material.client_ca.decode("utf-8", "replace"))
            context.verify_mode = ssl.CERT_REQUIRED if self.http_client_cert_required else ssl.CERT_OPTIONAL
        context.sni_callback = self._on_client_hello
        return context

    def http_ssl_context(self) -> ssl.SSLContext:
        """The context to listen with; new connections are moved to the newest one."""
        return self._http_context

    def _on_client_hello(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        self.check()
        current = self._http_context
        if connection.context is not current:
            connection.context = current


def _safe_message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TLSConfigError) else type(exc).__name__
