"""Dev credentials on disk, and certificate / JWT key reloading (fake clock, real files)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import threading

import click
import jwt
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from domicile.cli.client import ClientOptions
from domicile.cli.dev import dev, parse_duration
from domicile.connection import ConnectionSettings
from domicile.security.dev_credentials import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    dev_paths,
    ensure_dev_credentials,
    issue_certificate,
    mint_dev_token,
    write_private_file,
)
from domicile.security.events import SecurityEventLog
from domicile.security.keyfiles import KeyFileReloader
from domicile.security.tls import CertificateFiles, CertificateReloader, TLSConfigError, load_material
from domicile.security.tokens import AuthenticationError, TokenVerifier, load_verification_keys, mint_token


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    ensure_dev_credentials(path)
    return path


def events_in(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_dev_credentials_layout_permissions_and_sans(data_dir):
    paths = dev_paths(data_dir)
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    for private in (paths.ca_key, paths.server_key, paths.client_key, paths.jwt_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    for leaf in (server, x509.load_pem_x509_certificate(paths.client_cert.read_bytes())):
        leaf.verify_directly_issued_by(ca)
    assert ensure_dev_credentials(data_dir) == (paths, False)


def test_dev_token_verifies_with_the_dev_jwks(data_dir):
    verifier = TokenVerifier(
        load_verification_keys(dev_paths(data_dir).jwks, []),
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        algorithms=["ES256"],
        leeway_seconds=0,
    )
    caller = verifier.verify(mint_dev_token(data_dir, scopes=["audit:read"], subject="me", actors=("ci",)))
    assert (caller.subject, caller.actors, caller.scopes) == ("me", ("ci",), {"audit:read"})


def test_cli_init_token_and_cert(tmp_path):
    runner = CliRunner()
    options = ClientOptions(ConnectionSettings(data_dir=tmp_path))
    assert runner.invoke(dev, ["token"], obj=options).exit_code != 0  # nothing to sign with yet
    result = runner.invoke(dev, ["init"], obj=options)
    assert result.exit_code == 0 and "created" in result.output
    assert "already exist" in runner.invoke(dev, ["init"], obj=options).output
    result = runner.invoke(dev, ["token", "--scope", "catalog:read lineage:read", "--ttl", "10m"], obj=options)
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    verifier = TokenVerifier(
        load_verification_keys(dev_paths(tmp_path).jwks, []),
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        algorithms=["ES256"],
        leeway_seconds=0,
    )
    assert verifier.verify(token).scopes == {"catalog:read", "lineage:read"}
    assert runner.invoke(dev, ["token", "--scope", "root"], obj=options).exit_code == 2
    result = runner.invoke(dev, ["cert", "svc-b", "--out", str(tmp_path / "out")], obj=options)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "out" / "svc-b-key.pem").stat().st_mode) == 0o600
    load_material(CertificateFiles(tmp_path / "out" / "svc-b.pem", tmp_path / "out" / "svc-b-key.pem"))


def test_parse_duration():
    assert [parse_duration(t) for t in ("90", "90s", "15m", "8h", "1d")] == [90, 90, 900, 28800, 86400]
    with pytest.raises(click.BadParameter):
        parse_duration("soon")


def rotate(data_dir, target_dir, name="rotated"):
    certificate, key = issue_certificate(data_dir, name, server=True)
    (target_dir / "server.pem").write_bytes(certificate)
    write_private_file(target_dir / "server-key.pem", key)
    return x509.load_pem_x509_certificate(certificate)


@pytest.fixture
def served(data_dir, tmp_path):
    """A copy of the dev server certificate files that tests may rotate."""
    paths = dev_paths(data_dir)
    (tmp_path / "server.pem").write_bytes(paths.server_cert.read_bytes())
    write_private_file(tmp_path / "server-key.pem", paths.server_key.read_bytes())
    return CertificateFiles(tmp_path / "server.pem", tmp_path / "server-key.pem", paths.ca_cert)


def test_certificate_reload_on_change_only_after_interval(data_dir, tmp_path, served):
    clock, log = Clock(), tmp_path / "security.jsonl"
    events = SecurityEventLog(log)
    reloader = CertificateReloader(served, interval_seconds=5, events=events, clock=clock)
    first_serial = reloader.material.serial
    assert reloader._grpc_fetch() is None  # nothing changed: gRPC keeps its configuration
    new = rotate(data_dir, tmp_path)
    assert reloader.check() is False  # within the interval: not even looked at
    clock.now += 5
    assert reloader.check() is True
    assert reloader.material.serial == format(new.serial_number, "x") != first_serial
    assert reloader._grpc_fetch() is not None and reloader._grpc_fetch() is None
    clock.now += 5
    os.utime(served.cert_file)  # touched, same content: no reload event
    assert reloader.check() is False
    events.close()
    (event,) = events_in(log)
    assert event["event"] == "cert_reload" and event["outcome"] == "ok"
    assert event["detail"]["serial"] == reloader.material.serial and "CN=rotated" in event["detail"]["subject"]


def test_half_finished_rotation_keeps_serving_the_old_pair(data_dir, tmp_path, served):
    clock, log = Clock(), tmp_path / "security.jsonl"
    events = SecurityEventLog(log)
    reloader = CertificateReloader(served, interval_seconds=1, events=events, clock=clock)
    old_serial = reloader.material.serial
    certificate, key = issue_certificate(data_dir, "next", server=True)
    served.cert_file.write_bytes(certificate)  # key not copied yet
    clock.now += 1
    assert reloader.check() is False and reloader.material.serial == old_serial
    write_private_file(served.key_file, key)
    clock.now += 1
    assert reloader.check() is True and reloader.material.serial != old_serial
    events.close()
    outcomes = [(e["outcome"], e["reason"]) for e in events_in(log)]
    assert outcomes == [("error", "INVALID_CERTIFICATE_FILES"), ("ok", "")]
    assert "PRIVATE KEY" not in log.read_text()


def test_invalid_files_are_refused_at_start(data_dir, tmp_path):
    paths = dev_paths(data_dir)
    with pytest.raises(TLSConfigError, match="does not match"):
        load_material(CertificateFiles(paths.server_cert, paths.client_key))
    with pytest.raises(TLSConfigError, match=r"missing\.pem"):
        load_material(CertificateFiles(tmp_path / "missing.pem", paths.server_key))


def test_jwt_keys_follow_their_file(tmp_path):
    clock, log = Clock(), tmp_path / "security.jsonl"
    events = SecurityEventLog(log)
    old_key, new_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def write_jwks(key, kid):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())) | {"kid": kid}
        (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))

    write_jwks(old_key, "old")
    verifier = TokenVerifier(
        load_verification_keys(tmp_path / "jwks.json", []),
        issuer="i",
        audience="a",
        algorithms=["ES256"],
        leeway_seconds=0,
    )
    reloader = KeyFileReloader(
        verifier, jwks_file=tmp_path / "jwks.json", public_key_files=(), interval_seconds=1, events=events, clock=clock
    )
    fresh = mint_token(
        new_key, algorithm="ES256", issuer="i", audience="a", subject="s", scopes=[], ttl_seconds=60, kid="new"
    )
    with pytest.raises(AuthenticationError):
        verifier.verify(fresh)
    write_jwks(new_key, "new")
    os.utime(tmp_path / "jwks.json", ns=(1, 1))  # a distinct mtime even on coarse clocks
    clock.now += 1
    assert reloader.check() is True
    assert verifier.verify(fresh).subject == "s"
    (tmp_path / "jwks.json").write_text("{}")
    clock.now += 1
    assert reloader.check() is False and verifier.verify(fresh).subject == "s"
    events.close()
    assert [(e["event"], e["outcome"]) for e in events_in(log)] == [("keys_reload", "ok"), ("keys_reload", "error")]


def test_http_context_follows_a_rotated_client_ca(tmp_path):
    """The listening SSLContext stays the same object (as in aiohttp); each handshake is moved
    to the newest context, so a replaced client CA takes effect for new connections."""
    first, second = ensure_dev_credentials(tmp_path / "a")[0], ensure_dev_credentials(tmp_path / "b")[0]
    client_ca = tmp_path / "clients-ca.pem"
    client_ca.write_bytes(first.ca_cert.read_bytes())
    clock = Clock()
    events = SecurityEventLog(tmp_path / "security.jsonl")
    reloader = CertificateReloader(
        CertificateFiles(first.server_cert, first.server_key, client_ca), interval_seconds=1, events=events, clock=clock
    )
    listening = reloader.http_ssl_context()
    server = socket.create_server(("127.0.0.1", 0))

    def accept_forever():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed by the test
            try:
                listening.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()

    threading.Thread(target=accept_forever, daemon=True).start()

    def handshake(identity) -> bool:
        context = ssl.create_default_context(cafile=str(first.ca_cert))
        context.load_cert_chain(identity.client_cert, identity.client_key)
        try:
            with (
                socket.create_connection(server.getsockname(), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"x")
                tls.recv(1)
            return True
        except (ssl.SSLError, OSError):
            return False

    try:
        assert (handshake(first), handshake(second)) == (True, False)
        client_ca.write_bytes(second.ca_cert.read_bytes())
        clock.now += 1
        assert (handshake(first), handshake(second)) == (False, True)
    finally:
        server.close()
        events.close()
