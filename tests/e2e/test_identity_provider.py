"""Token keys from a real OpenID Connect provider (oidc-provider over HTTPS): discovery, the
JWKS cache, key rotation without a restart, and IdP outages."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import jwt
import pytest

from domicile.config import load_settings
from domicile.grpc_errors import details_of
from domicile.router.decision_log.checkpoints import ensure_key
from domicile.security.dev_credentials import ensure_dev_credentials
from domicile.server import create_server
from domicile.telemetry.metrics import IDP_KEY_FETCHES
from domicile.v1 import catalog_pb2, catalog_pb2_grpc
from tests.oidc_provider import AUDIENCE, OidcProvider, SigningKey

pytestmark = pytest.mark.slow


@pytest.fixture
def tls(tmp_path):
    """A test CA with a server certificate for 127.0.0.1 (used by the IdP and by Domicile) and
    a client certificate."""
    paths, _ = ensure_dev_credentials(tmp_path / "pki")
    return paths


@pytest.fixture
def idp(tmp_path, tls):
    provider = OidcProvider(tmp_path / "idp", tls)
    yield provider
    provider.stop()


def server_settings(tmp_path, tls, issuer, **auth):
    return load_settings(
        listen="127.0.0.1:0",
        http_listen="",
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        data_dir=tmp_path / "data",
        tls={"cert_file": tls.server_cert, "key_file": tls.server_key, "client_ca_file": tls.ca_cert},
        # Outside --dev a server signs its decision log's checkpoints with a key it is given.
        audit={"checkpoint_key_file": ensure_key(tmp_path / "keys" / "checkpoint.pem")},
        auth={
            "issuer": issuer,
            "audience": AUDIENCE,
            "ca_file": tls.ca_cert,
            "algorithms": ["ES256"],
            "jwks_min_refresh_seconds": 0.2,
            **auth,
        },
    )


async def list_regions(server, tls, token):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_cert.read_bytes(),
        private_key=tls.client_key.read_bytes(),
        certificate_chain=tls.client_cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
        return await catalog_pb2_grpc.CatalogServiceStub(channel).ListRegions(
            catalog_pb2.ListRegionsRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=20
        )


async def refused_reason(server, tls, token) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await list_regions(server, tls, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    return details_of(info.value)["reason"]


def successful_fetches() -> float:
    (family,) = IDP_KEY_FETCHES.collect()
    return sum(sample.value for sample in family.samples if sample.labels == {"outcome": "ok"})


def key_events(server) -> list[dict]:
    lines = server.app.settings.security_log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "keys_reload"]


async def test_rotation_at_the_idp_is_picked_up_without_a_restart(tmp_path, tls, idp):
    key_a, key_b = SigningKey.generate("key-a"), SigningKey.generate("key-b")
    idp.start([key_a])
    token_a = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
    server = await create_server(server_settings(tmp_path, tls, idp.issuer))
    try:
        metadata = server.security.issuer_keys.metadata
        assert metadata.issuer == idp.issuer and metadata.jwks_uri == f"{idp.issuer}/jwks"
        assert metadata.token_endpoint == f"{idp.issuer}/token"
        assert await list_regions(server, tls, token_a)
        # The IdP rotates to key B, keeping A published. Its JWKS may be cached for an hour,
        # yet B's first token is accepted at once: its unknown kid makes the server refetch.
        idp.stop()
        idp.start([key_b, key_a])
        token_b = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
        assert jwt.get_unverified_header(token_b)["kid"] == "key-b"
        fetches = successful_fetches()
        # Ten callers at once with the new key: all admitted, after one fetch between them.
        assert all(await asyncio.gather(*(list_regions(server, tls, token_b) for _ in range(10))))
        assert successful_fetches() == fetches + 1
        assert await list_regions(server, tls, token_a)
        assert [e["detail"]["kids"] for e in key_events(server)] == [["key-a"], ["key-b", "key-a"]]
    finally:
        await server.stop(0)


async def test_an_idp_outage_does_not_lock_out_valid_tokens(tmp_path, tls, idp):
    key_a, key_b = SigningKey.generate("key-a"), SigningKey.generate("key-b")
    idp.start([key_a])
    token_a = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
    unused_a = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
    server = await create_server(server_settings(tmp_path, tls, idp.issuer))
    try:
        assert await list_regions(server, tls, token_a)
        # The IdP goes down: tokens it signed keep working, including ones never seen before.
        idp.stop()
        assert await list_regions(server, tls, token_a)
        assert await list_regions(server, tls, unused_a)
        # A token naming a key nobody published is refused, after one failed refetch (the
        # first since the start-up fetch, past jwks_min_refresh_seconds).
        await asyncio.sleep(0.3)
        forged = SigningKey.generate("key-x").sign(
            {
                "iss": idp.issuer,
                "aud": AUDIENCE,
                "sub": "mallory",
                "exp": int(time.time()) + 60,
                "scope": "catalog:read",
            }
        )
        assert await refused_reason(server, tls, forged) == "UNKNOWN_KEY"
        assert await list_regions(server, tls, unused_a)
        # Back with a new key: picked up (by the retries or by the new kid).
        idp.start([key_b, key_a])
        token_b = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
        await asyncio.sleep(0.3)  # past jwks_min_refresh_seconds since the forgery's refetch
        assert await list_regions(server, tls, token_b)
        events = key_events(server)
        assert [e["outcome"] for e in events] == ["ok", "error", "ok"], events
        assert events[1]["reason"] == "IDP_UNREACHABLE"
        assert not any("eyJ" in line for line in server.app.settings.security_log_path.read_text().splitlines())
    finally:
        await server.stop(0)

    # Restarted while the IdP is down, the server starts with the last good keys it kept.
    idp.stop()
    server = await create_server(server_settings(tmp_path, tls, idp.issuer))
    try:
        assert await list_regions(server, tls, token_b)
        assert server.security.issuer_keys.metadata.jwks_uri == f"{idp.issuer}/jwks"
    finally:
        await server.stop(0)


async def test_key_set_follows_cache_control(tmp_path, tls):
    """With `Cache-Control: max-age=1` on the JWKS, a key the IdP stops publishing is dropped
    without any token asking for it, and its tokens are refused from then on."""
    idp = OidcProvider(tmp_path / "idp", tls, jwks_max_age=1)
    key_a, key_b = SigningKey.generate("key-a"), SigningKey.generate("key-b")
    idp.start([key_a])
    try:
        token_a = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
        server = await create_server(server_settings(tmp_path, tls, idp.issuer))
        try:
            assert await list_regions(server, tls, token_a)
            idp.stop()
            idp.start([key_b])  # key A withdrawn (say, compromised)
            deadline = time.monotonic() + 30
            while {k.kid for k in server.security.issuer_keys.keys} != {"key-b"}:
                assert time.monotonic() < deadline, "the key set was not refreshed after its max-age"
                await asyncio.sleep(0.2)
            assert await refused_reason(server, tls, token_a) == "UNKNOWN_KEY"
        finally:
            await server.stop(0)
    finally:
        idp.stop()


async def test_issuer_must_match_discovery(tmp_path, tls, idp):
    """A discovery document for another issuer is not trusted: no keys, every token refused."""
    idp.start([SigningKey.generate("key-a")])
    token = await asyncio.to_thread(idp.token, "svc-reader", "catalog:read")
    server = await create_server(server_settings(tmp_path, tls, idp.issuer + "/"))
    try:
        assert server.security.issuer_keys.keys == ()
        assert await refused_reason(server, tls, token) == "UNKNOWN_KEY"
        assert key_events(server)[0]["reason"] == "ISSUER_MISMATCH"
    finally:
        await server.stop(0)
