"""Fixtures of the abuse suite: real servers on loopback ports, attacked over real channels.

The store is SQLite: what is attacked here (request parsing, limits, the event loop) sits in
front of the GraphStore, whose backends the contract suite holds to one behaviour.
"""

from __future__ import annotations

import ssl

import grpc
import pytest

from domicile.config import load_settings
from domicile.security.dev_credentials import issue_certificate, write_private_file
from domicile.server import create_server
from tests.e2e.conftest import insecure_settings

# A call that takes longer than this is hung, not slow: no test measures time with it.
HANG = 30.0


@pytest.fixture
async def server(tmp_path):
    running = await create_server(insecure_settings(tmp_path))
    yield running
    await running.stop(0)


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def http_url(server, path: str = "/api/v1/lineage") -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


def dev_settings(tmp_path, **overrides):
    """A `--dev` server (TLS, mutual TLS, JWT with the dev credentials under `tmp_path`)."""
    values = {
        "dev": True,
        "listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "store": f"sqlite:///{tmp_path / 'catalog.db'}",
        "data_dir": tmp_path,
        # Its own port: the default console port may be taken by another server on the machine.
        "console": {"listen": "127.0.0.1:0"},
        **overrides,
    }
    return load_settings(**values)


def client_credentials(paths, cert=None, key=None) -> grpc.ChannelCredentials:
    """mTLS channel credentials: the dev client certificate unless another is given."""
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca_cert.read_bytes(),
        private_key=(key or paths.client_key).read_bytes(),
        certificate_chain=(cert or paths.client_cert).read_bytes(),
    )


def second_client(paths, directory) -> grpc.ChannelCredentials:
    """Credentials of another client, with a certificate of its own from the dev CA."""
    certificate, key = issue_certificate(paths.root.parent, "second-client")
    (directory / "second.pem").write_bytes(certificate)
    write_private_file(directory / "second-key.pem", key)
    return client_credentials(paths, cert=directory / "second.pem", key=directory / "second-key.pem")


def http_ssl(paths, with_certificate: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    if with_certificate:
        context.load_cert_chain(paths.client_cert, paths.client_key)
    return context


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]
