"""Security over real TLS channels: a `--dev` server (mTLS + JWT) started with create_server."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time

import aiohttp
import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from domicile.config import load_settings
from domicile.grpc_errors import details_of
from domicile.router.types import Operation
from domicile.security import scopes
from domicile.security.dev_credentials import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    dev_paths,
    ensure_dev_credentials,
    issue_certificate,
    mint_dev_token,
    write_private_file,
)
from domicile.server import create_server
from domicile.v1 import catalog_pb2, catalog_pb2_grpc

LIST_REGIONS = catalog_pb2.ListRegionsRequest()


def dev_settings(tmp_path, **overrides):
    values = {
        "dev": True,
        "listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "store": f"sqlite:///{tmp_path / 'catalog.db'}",
        "data_dir": tmp_path,
        "tls": {"reload_interval_seconds": 0.05},
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
async def server(tmp_path):
    running = await create_server(dev_settings(tmp_path))
    yield running
    await running.stop(0)


@pytest.fixture
def paths(server):
    return dev_paths(server.app.settings.data_dir)


def credentials(paths, cert=None, key=None):
    """mTLS channel credentials: the dev client certificate unless another is given."""
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca_cert.read_bytes(),
        private_key=(key or paths.client_key).read_bytes(),
        certificate_chain=(cert or paths.client_cert).read_bytes(),
    )


def security_events(server) -> list[dict]:
    return [json.loads(line) for line in server.app.settings.security_log_path.read_text().splitlines()]


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def list_regions(server, paths, metadata=(), creds=None):
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", creds or credentials(paths)) as channel:
        return await catalog_pb2_grpc.CatalogServiceStub(channel).ListRegions(
            LIST_REGIONS, metadata=metadata, timeout=10
        )


async def refused(awaitable, code) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return info.value


def dev_claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": "svc-a",
        "iat": now,
        "exp": now + 300,
        "scope": "catalog:read",
    }
    claims.update(overrides)
    return claims


def sign(paths, claims, key=None, algorithm="ES256") -> str:
    key = key or load_pem_private_key(paths.jwt_key.read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm=algorithm)


async def test_scope_decides_between_denied_and_ok(server, paths):
    await refused(list_regions(server, paths), grpc.StatusCode.UNAUTHENTICATED)
    reader_of_lineage = mint_dev_token(paths.root.parent, scopes=["lineage:read"], subject="svc-l")
    error = await refused(list_regions(server, paths, bearer(reader_of_lineage)), grpc.StatusCode.PERMISSION_DENIED)
    assert details_of(error)["reason"] == "MISSING_SCOPE"
    response = await list_regions(server, paths, bearer(mint_dev_token(paths.root.parent, scopes=["catalog:read"])))
    assert any(r.id == "aws:eu-central-1" for r in response.regions)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "TOKEN_EXPIRED"),
        ("wrong_audience", "WRONG_AUDIENCE"),
        ("wrong_issuer", "WRONG_ISSUER"),
        ("bad_signature", "BAD_SIGNATURE"),
        ("alg_none", "ALGORITHM_NOT_ALLOWED"),
    ],
)
async def test_invalid_tokens_are_unauthenticated(server, paths, case, reason):
    if case == "expired":
        token = sign(paths, dev_claims(exp=int(time.time()) - 600))
    elif case == "wrong_audience":
        token = sign(paths, dev_claims(aud="another-service"))
    elif case == "wrong_issuer":
        token = sign(paths, dev_claims(iss="https://evil.example"))
    elif case == "bad_signature":
        token = sign(paths, dev_claims(), key=ec.generate_private_key(ec.SECP256R1()))
    else:
        token = jwt.encode(dev_claims(), None, algorithm="none")
    error = await refused(list_regions(server, paths, bearer(token)), grpc.StatusCode.UNAUTHENTICATED)
    details = details_of(error)
    assert details["reason"] == reason
    (event,) = [e for e in security_events(server) if e["trace_id"] == details["metadata"]["trace_id"]]
    assert (event["event"], event["reason"], event["outcome"]) == ("auth_failure", reason, "denied")
    assert event["method"] == "/domicile.v1.CatalogService/ListRegions" and event["peer"].startswith("ipv4:127.0.0.1:")
    assert token not in server.app.settings.security_log_path.read_text()


async def test_client_without_certificate_or_from_another_ca_cannot_connect(server, paths, tmp_path_factory):
    token = bearer(mint_dev_token(paths.root.parent))
    no_cert = grpc.ssl_channel_credentials(root_certificates=paths.ca_cert.read_bytes())
    await refused(list_regions(server, paths, token, creds=no_cert), grpc.StatusCode.UNAVAILABLE)
    other = dev_paths(ensure_dev_credentials(tmp_path_factory.mktemp("other-ca"))[0].root.parent)
    foreign = grpc.ssl_channel_credentials(
        root_certificates=paths.ca_cert.read_bytes(),
        private_key=other.client_key.read_bytes(),
        certificate_chain=other.client_cert.read_bytes(),
    )
    await refused(list_regions(server, paths, token, creds=foreign), grpc.StatusCode.UNAVAILABLE)


async def test_certificate_bound_token_only_over_its_certificate(server, paths, tmp_path):
    data_dir = paths.root.parent
    bound = bearer(mint_dev_token(data_dir, scopes=["catalog:read"], bind_client_certificate=True))
    assert (await list_regions(server, paths, bound)).regions
    certificate, key = issue_certificate(data_dir, "svc-b")
    (tmp_path / "b.pem").write_bytes(certificate)
    write_private_file(tmp_path / "b-key.pem", key)
    other_client = credentials(paths, cert=tmp_path / "b.pem", key=tmp_path / "b-key.pem")
    # The other certificate is from the trusted CA: unbound tokens work over it, the bound one not.
    assert (await list_regions(server, paths, bearer(mint_dev_token(data_dir)), creds=other_client)).regions
    error = await refused(list_regions(server, paths, bound, creds=other_client), grpc.StatusCode.UNAUTHENTICATED)
    assert details_of(error)["reason"] == "CERTIFICATE_MISMATCH"


async def served_certificate(port: int, paths) -> x509.Certificate:
    """The certificate a new TLS connection to `port` is shown (client certificate presented).
    Runs in a thread: the HTTP server answers on this test's event loop."""
    return await asyncio.to_thread(_handshake, port, paths)


def _handshake(port: int, paths) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    context.load_cert_chain(paths.client_cert, paths.client_key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    # An IP address: no SNI is sent, the case where the server name callback must still run.
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


async def test_rotated_server_certificate_is_served_without_restart(server, paths):
    before = await served_certificate(server.port, paths)
    assert (await served_certificate(server.http_port, paths)).serial_number == before.serial_number
    token = bearer(mint_dev_token(paths.root.parent))
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials(paths)) as established:
        stub = catalog_pb2_grpc.CatalogServiceStub(established)
        await stub.ListRegions(LIST_REGIONS, metadata=token)
        certificate, key = issue_certificate(paths.root.parent, "localhost", server=True)
        paths.server_cert.write_bytes(certificate)
        write_private_file(paths.server_key, key)
        await asyncio.sleep(0.1)  # > tls.reload_interval_seconds
        rotated = x509.load_pem_x509_certificate(certificate).serial_number
        assert (await served_certificate(server.port, paths)).serial_number == rotated
        assert (await served_certificate(server.http_port, paths)).serial_number == rotated
        # New channels work with the new certificate, the established one keeps working.
        assert (await list_regions(server, paths, token)).regions
        assert (await stub.ListRegions(LIST_REGIONS, metadata=token)).regions
    reloads = [e for e in security_events(server) if e["event"] == "cert_reload"]
    assert [(e["outcome"], e["detail"]["serial"]) for e in reloads] == [("ok", format(rotated, "x"))]


async def test_rate_limit_answers_resource_exhausted_with_retry_info(tmp_path):
    running = await create_server(dev_settings(tmp_path, rate_limit={"requests_per_second": 0.5, "burst": 2}))
    try:
        paths = dev_paths(tmp_path)
        token = bearer(mint_dev_token(tmp_path, subject="busy"))
        for _ in range(2):
            await list_regions(running, paths, token)
        error = await refused(list_regions(running, paths, token), grpc.StatusCode.RESOURCE_EXHAUSTED)
        details = details_of(error)
        assert details["reason"] == "RATE_LIMITED" and 0 < details["retry_after"] <= 2
        assert (await list_regions(running, paths, bearer(mint_dev_token(tmp_path, subject="calm")))).regions
        (event,) = [e for e in security_events(running) if e["event"] == "rate_limited"]
        assert event["principal"] == "busy" and event["method"] == "/domicile.v1.CatalogService/ListRegions"
    finally:
        await running.stop(0)


async def test_writes_record_the_principal_and_delegation_chain(server, paths):
    token = mint_dev_token(paths.root.parent, scopes=["catalog:write"], subject="alice", actors=("airflow",))
    dataset = catalog_pb2.Dataset(
        id="s3://bank-eu/customers",
        name="customers",
        owner="retail@bank.example",
        classifications=["PII.CONTACT"],
        origins=["DE"],
        locations=["aws:eu-central-1"],
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials(paths)) as channel:
        await catalog_pb2_grpc.CatalogServiceStub(channel).UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(dataset=dataset), metadata=bearer(token)
        )
    (change,) = await server.app.store.changes_since(0)
    assert change.principal == "alice (via airflow)"


async def test_unmapped_method_is_refused_at_run_time(server, paths, monkeypatch):
    monkeypatch.delitem(scopes.METHOD_SCOPES, "/domicile.v1.CatalogService/ListRegions")
    error = await refused(
        list_regions(server, paths, bearer(mint_dev_token(paths.root.parent))), grpc.StatusCode.PERMISSION_DENIED
    )
    assert details_of(error)["reason"] == "UNMAPPED_METHOD"


async def test_health_is_open_only_when_configured(server, paths, tmp_path_factory):
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials(paths)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await refused(health.Check(health_pb2.HealthCheckRequest()), grpc.StatusCode.UNAUTHENTICATED)
        # Closed health needs a valid token but no particular scope.
        no_scopes = bearer(mint_dev_token(paths.root.parent, scopes=[]))
        assert (
            await health.Check(health_pb2.HealthCheckRequest(), metadata=no_scopes)
        ).status == health_pb2.HealthCheckResponse.SERVING
        # The streaming shapes are guarded too: Watch (context.write style), reflection (generator).
        watch = health.Watch(health_pb2.HealthCheckRequest(), metadata=no_scopes)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in reflect.ServerReflectionInfo(iter([listing])):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        names = set()
        async for response in reflect.ServerReflectionInfo(iter([listing]), metadata=no_scopes):
            names |= {service.name for service in response.list_services_response.service}
        assert "domicile.v1.CatalogService" in names
    data_dir = tmp_path_factory.mktemp("open-health")
    running = await create_server(dev_settings(data_dir, auth={"open_health": True}))
    try:
        open_paths = dev_paths(data_dir)
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", credentials(open_paths)) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert response.status == health_pb2.HealthCheckResponse.SERVING
            # Only health: the services still need tokens.
            await refused(
                catalog_pb2_grpc.CatalogServiceStub(channel).ListRegions(LIST_REGIONS), grpc.StatusCode.UNAUTHENTICATED
            )
    finally:
        await running.stop(0)


def http_ssl(paths, with_certificate=True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    if with_certificate:
        context.load_cert_chain(paths.client_cert, paths.client_key)
    return context


async def test_http_endpoint_over_mtls_with_bearer_tokens(server, paths):
    base = f"https://localhost:{server.http_port}"
    data_dir = paths.root.parent
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=http_ssl(paths))) as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.post(f"{base}/api/v1/lineage", json={}) as response:
            assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
            error = (await response.json())["error"]
            assert error["reason"] == "MISSING_TOKEN" and len(error["metadata"]["trace_id"]) == 32
        reader = {"Authorization": f"Bearer {mint_dev_token(data_dir, scopes=['lineage:read'])}"}
        async with session.post(f"{base}/api/v1/lineage", json={}, headers=reader) as response:
            assert response.status == 403
            assert (await response.json())["error"]["reason"] == "MISSING_SCOPE"
        writer = {"Authorization": f"Bearer {mint_dev_token(data_dir, scopes=['lineage:write'], subject='ol')}"}
        async with session.post(f"{base}/api/v1/lineage", json={}, headers=writer) as response:
            assert response.status not in (401, 403)
    events = [e for e in security_events(server) if e["method"] == "POST /api/v1/lineage"]
    assert [(e["event"], e["reason"]) for e in events] == [
        ("auth_failure", "MISSING_TOKEN"),
        ("authz_denied", "MISSING_SCOPE"),
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=http_ssl(paths, False))) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{base}/healthz") as response:
                await response.read()


async def test_http_client_certificate_can_be_made_optional_for_http_only(tmp_path):
    running = await create_server(dev_settings(tmp_path, tls={"http_client_cert_required": False}))
    try:
        paths = dev_paths(tmp_path)
        base = f"https://localhost:{running.http_port}"
        writer = {"Authorization": f"Bearer {mint_dev_token(tmp_path, scopes=['lineage:write'])}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=http_ssl(paths, False))) as session:
            async with session.post(f"{base}/api/v1/lineage", json={}) as response:
                assert response.status == 401
            async with session.post(f"{base}/api/v1/lineage", json={}, headers=writer) as response:
                assert response.status not in (401, 403)
            async with session.get(f"{base}/no/such/path") as response:
                assert response.status == 401  # anonymous callers learn nothing about routes
            async with session.get(f"{base}/no/such/path", headers=writer) as response:
                assert response.status == 404
        # gRPC still requires the client certificate.
        no_cert = grpc.ssl_channel_credentials(root_certificates=paths.ca_cert.read_bytes())
        await refused(
            list_regions(running, paths, bearer(mint_dev_token(tmp_path)), creds=no_cert), grpc.StatusCode.UNAVAILABLE
        )
    finally:
        await running.stop(0)


async def test_openlineage_client_authenticates_with_api_key_and_client_certificate(server, paths):
    import requests
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    def emit(api_key: str) -> int:
        transport = HttpTransport(
            HttpConfig.from_dict(
                {
                    "url": f"https://localhost:{server.http_port}",
                    "auth": {"type": "api_key", "apiKey": api_key},
                    "sslContext": {
                        "caCertPath": str(paths.ca_cert),
                        "clientCertPath": str(paths.client_cert),
                        "clientKeyPath": str(paths.client_key),
                    },
                    "retry": {"total": 0},
                }
            )
        )
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-11-30T04:00:00Z",
            run=Run(runId="01935a4e-0000-7000-8000-000000000001"),
            job=Job(namespace="airflow", name="nightly"),
            producer="https://example.com/tests",
        )
        try:
            return transport.emit(event).status_code
        except requests.HTTPError as exc:  # any non-2xx answer
            return exc.response.status_code

    assert await asyncio.to_thread(emit, "not-a-token") == 401
    # The job's namespace "airflow" is the token subject's own (lineage writes are owned).
    pipeline = mint_dev_token(paths.root.parent, scopes=["lineage:write"], subject="airflow")
    status = await asyncio.to_thread(emit, pipeline)
    assert status not in (401, 403), status
    failures = [e for e in security_events(server) if e["method"] == "POST /api/v1/lineage"]
    assert [e["reason"] for e in failures] == ["MALFORMED_TOKEN"]


async def test_policy_changes_are_security_events_with_the_principal(server, paths):
    from pathlib import Path

    from domicile.v1 import policy_pb2, policy_pb2_grpc

    text = (Path(__file__).resolve().parents[2] / "examples" / "policy.yaml").read_text("utf-8")
    text = text.replace('version: "2026.12.1"', 'version: "2026.12.9"')
    token = mint_dev_token(paths.root.parent, scopes=["policy:admin"], subject="dpo", actors=("change-bot",))
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials(paths)) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        dry = await stub.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=text, dry_run=True), metadata=bearer(token))
        assert not dry.applied
        assert not [e for e in security_events(server) if e["event"] == "policy_change"], "a dry run changes nothing"
        applied = await stub.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=text), metadata=bearer(token))
        assert applied.applied
    (event,) = [e for e in security_events(server) if e["event"] == "policy_change"]
    assert event["principal"] == "dpo (via change-bot)" and event["detail"]["version"] == "2026.12.9"
    assert event["method"] == "/domicile.v1.PolicyService/SetPolicy" and event["outcome"] == "ok"


async def test_below_the_disk_space_floor_decisions_are_refused_as_a_security_event(tmp_path):
    from domicile.v1 import residency_pb2, residency_pb2_grpc

    running = await create_server(dev_settings(tmp_path, audit={"min_free_bytes": 2**62}))
    try:
        paths = dev_paths(tmp_path)
        token = sign(paths, dev_claims(scope="residency:decide"))
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", credentials(paths)) as channel:
            request = residency_pb2.DecideRequest(
                dataset_id="s3://a", operation=residency_pb2.OPERATION_STORE, region="aws:eu-central-1"
            )
            error = await refused(
                residency_pb2_grpc.ResidencyServiceStub(channel).Decide(request, metadata=bearer(token), timeout=10),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            assert details_of(error)["reason"] == "DISK_SPACE_LOW" and details_of(error)["retry_after"]
    finally:
        await running.stop(0)
    (event,) = [e for e in security_events(running) if e["event"] == "disk_space_low"]
    assert event["outcome"] == "refused" and event["detail"]["floor_bytes"] == 2**62


async def test_checkpoints_of_the_decision_log_are_security_events(server, paths):
    from domicile.router.decision_log import Series, TrustedKeys, read_anchors, verify_series
    from domicile.router.decision_log.assembly import DEV_CHECKPOINT_KEY
    from domicile.router.decision_log.checkpoints import load_public_key

    server.app.router.decide("s3://a", Operation.STORE, "aws:eu-central-1")
    await server.app.router.close()  # signs a last checkpoint
    anchors = read_anchors(server.app.settings.security_log_path)
    assert anchors and anchors[-1].replica == server.app.router._log.replica
    keys = TrustedKeys([load_public_key(server.app.settings.data_dir / DEV_CHECKPOINT_KEY)])
    report = verify_series(Series(server.app.settings.decision_log_path).files(), keys, anchors)
    assert report.ok and report.anchors_checked == len(anchors)
