"""Local development credentials: a private CA, server and client certificates and a JWT
signing key under DATA_DIR/dev, and the client side that uses them.

Layout (private keys 0600, the directory 0700):

    dev/ca.pem  ca-key.pem          dev CA (ECDSA P-256, 10 years)
    dev/server.pem  server-key.pem  CN=localhost, SAN localhost, 127.0.0.1, ::1 (1 year)
    dev/client.pem  client-key.pem  CN=domicile-dev-client, clientAuth (1 year)
    dev/jwt-key.pem                 ES256 signing key
    dev/jwt-public.pem  jwks.json   its public key, as PEM and as a JWKS (with its kid)

The directory is built under a temporary name and renamed into place, so a concurrent reader
never sees half a set and two concurrent creators do not mix their files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from domicile.private_files import make_private_directory
from domicile.security.scopes import ALL_SCOPES
from domicile.security.tokens import mint_token

DEV_ISSUER = "domicile-dev"
DEV_AUDIENCE = "domicile"
DEV_ALGORITHM = "ES256"
DEV_SUBJECT = "dev"
# The audience of the console's one-time sign-in links: such a token is refused by the API.
CONSOLE_LINK_AUDIENCE = "domicile-console-sign-in"
CONSOLE_LINK_TTL_SECONDS = 24 * 3600
DEV_CLIENT_NAME = "domicile-dev-client"
# Tokens minted implicitly by client commands live just long enough for one command.
CLIENT_TOKEN_TTL_SECONDS = 300


@dataclass(frozen=True)
class DevPaths:
    """Where each dev credential lives under DATA_DIR/dev."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.root / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.root / "client-key.pem"

    @property
    def jwt_key(self) -> Path:
        return self.root / "jwt-key.pem"

    @property
    def jwt_public_key(self) -> Path:
        return self.root / "jwt-public.pem"

    @property
    def jwks(self) -> Path:
        return self.root / "jwks.json"

    def exists(self) -> bool:
        return self.jwks.is_file()

    @property
    def client_side(self) -> tuple[Path, ...]:
        """What a client needs: the CA to trust, its certificate and key, and the token
        signing key (with its public key, which names it)."""
        return (self.ca_cert, self.client_cert, self.client_key, self.jwt_key, self.jwt_public_key)


def has_client_credentials(paths: DevPaths) -> bool:
    """Whether `paths` holds the client side of a set of dev credentials."""
    return all(path.is_file() for path in paths.client_side)


def dev_paths(data_dir: Path) -> DevPaths:
    return DevPaths(Path(data_dir) / "dev")


def ensure_dev_credentials(data_dir: Path, *, force: bool = False) -> tuple[DevPaths, bool]:
    """Create the dev credentials under DATA_DIR/dev unless they exist (or `force`, which
    replaces them). Returns (paths, created)."""
    paths = dev_paths(data_dir)
    if paths.exists() and not force:
        return paths, False
    make_private_directory(paths.root.parent)
    staging = Path(tempfile.mkdtemp(prefix=".dev-", dir=paths.root.parent))  # created 0700
    try:
        _write_credentials(DevPaths(staging))
        if force and paths.root.exists():
            shutil.rmtree(paths.root)
        try:
            os.rename(staging, paths.root)
        except OSError:
            if not paths.exists():
                raise
            # Another process created the set first; use theirs.
            return paths, False
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return paths, True


def install_client_credentials(source: DevPaths, target_dir: Path) -> DevPaths:
    """Copy the client side of the dev credentials in `source` to TARGET_DIR/dev (replacing
    what is there, private keys 0600, the directory 0700), so clients anywhere find them.
    FileNotFoundError when `source` lacks one of them."""
    target = dev_paths(target_dir)
    target.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dev-", dir=target.root.parent))  # created 0700
    try:
        staged = DevPaths(staging)
        for origin, copy in zip(source.client_side, staged.client_side, strict=True):
            write_private_file(copy, origin.read_bytes())
        if target.root.exists():
            shutil.rmtree(target.root)
        os.rename(staging, target.root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Domicile development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    key,
    issuer: x509.Name,
    issuer_key,
    *,
    days: int,
    ca: bool,
    usage: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _leaf(common_name: str, key, ca: x509.Certificate, ca_key, *, server: bool) -> x509.Certificate:
    if server:
        usage = [ExtendedKeyUsageOID.SERVER_AUTH]
        sans = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    else:
        usage, sans = [ExtendedKeyUsageOID.CLIENT_AUTH], [x509.DNSName(common_name)]
    return _certificate(_name(common_name), key, ca.subject, ca_key, days=365, ca=False, usage=usage, sans=sans)


def issue_certificate(data_dir: Path, common_name: str, *, server: bool = False) -> tuple[bytes, bytes]:
    """A new (certificate PEM, private key PEM) signed by the dev CA: a client certificate
    for `common_name`, or with `server` a server certificate for localhost/127.0.0.1/::1 (to
    rotate the dev server certificate). The caller stores the key privately."""
    paths = dev_paths(data_dir)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    ca_key = load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    key = _new_key()
    certificate = _leaf(common_name, key, ca, ca_key, server=server)
    return certificate.public_bytes(Encoding.PEM), key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only (0600), replacing it atomically."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(staging, path)


def _write_credentials(paths: DevPaths) -> None:
    ca_key, server_key, client_key, jwt_key = _new_key(), _new_key(), _new_key(), _new_key()
    ca_name = _name("Domicile dev CA")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, days=3650, ca=True, usage=[], sans=[])
    server = _leaf("localhost", server_key, ca, ca_key, server=True)
    client = _leaf(DEV_CLIENT_NAME, client_key, ca, ca_key, server=False)
    for key, path in (
        (ca_key, paths.ca_key),
        (server_key, paths.server_key),
        (client_key, paths.client_key),
        (jwt_key, paths.jwt_key),
    ):
        write_private_file(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    paths.ca_cert.write_bytes(ca.public_bytes(Encoding.PEM))
    # The server presents its chain without the root; clients trust ca.pem.
    paths.server_cert.write_bytes(server.public_bytes(Encoding.PEM))
    paths.client_cert.write_bytes(client.public_bytes(Encoding.PEM))
    public_pem = jwt_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    paths.jwt_public_key.write_bytes(public_pem)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(jwt_key.public_key()))
    jwk.update({"kid": _key_id(public_pem), "use": "sig", "alg": DEV_ALGORITHM})
    paths.jwks.write_bytes((json.dumps({"keys": [jwk]}, indent=2) + "\n").encode("ascii"))


def _key_id(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem).hexdigest()[:16]


def mint_dev_token(
    data_dir: Path,
    *,
    scopes: list[str] | tuple[str, ...] = ALL_SCOPES,
    ttl_seconds: float = CLIENT_TOKEN_TTL_SECONDS,
    subject: str = DEV_SUBJECT,
    actors: tuple[str, ...] = (),
    bind_client_certificate: bool = False,
) -> str:
    """A token signed with the dev key that a `--dev` server accepts. FileNotFoundError when
    the dev credentials do not exist."""
    paths = dev_paths(data_dir)
    key = load_pem_private_key(paths.jwt_key.read_bytes(), password=None)
    certificate_der = None
    if bind_client_certificate:
        certificate_der = x509.load_pem_x509_certificate(paths.client_cert.read_bytes()).public_bytes(Encoding.DER)
    return mint_token(
        key,
        algorithm=DEV_ALGORITHM,
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        subject=subject,
        scopes=scopes,
        ttl_seconds=ttl_seconds,
        kid=_key_id(paths.jwt_public_key.read_bytes()),
        certificate_der=certificate_der,
        actors=actors,
    )


def mint_console_link_token(
    data_dir: Path, *, scopes: list[str] | tuple[str, ...] = ALL_SCOPES, ttl_seconds: float = CONSOLE_LINK_TTL_SECONDS
) -> str:
    """The token of a one-time console sign-in link for the dev principal with `scopes`,
    signed with the dev key for the console's own audience (the gRPC API refuses it).
    FileNotFoundError when the dev credentials do not exist."""
    paths = dev_paths(data_dir)
    key = load_pem_private_key(paths.jwt_key.read_bytes(), password=None)
    return mint_token(
        key,
        algorithm=DEV_ALGORITHM,
        issuer=DEV_ISSUER,
        audience=CONSOLE_LINK_AUDIENCE,
        subject=DEV_SUBJECT,
        scopes=scopes,
        ttl_seconds=ttl_seconds,
        kid=_key_id(paths.jwt_public_key.read_bytes()),
        token_id=secrets.token_urlsafe(16),
    )
