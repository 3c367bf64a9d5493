"""Regression tests for the abuse found by attacking a running server: each reproduces one
finding and checks that it is now refused or bounded."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sqlite3
import stat
import threading
import time

import aiohttp
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf.timestamp_pb2 import Timestamp

from domicile.catalog.model import DatasetFilter
from domicile.catalog.stores.common import filter_fingerprint
from domicile.grpc_errors import details_of
from domicile.router import policy_admin
from domicile.router.policy import MAX_MESSAGE
from domicile.security.dev_credentials import DEV_AUDIENCE, DEV_ISSUER, dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)
from tests.abuse.conftest import (
    HANG,
    bearer,
    client_credentials,
    dev_settings,
    http_ssl,
    http_url,
    second_client,
)
from tests.e2e.conftest import insecure_settings
from tests.e2e.residency_harness import EXAMPLE_POLICY
from tests.unit.test_policy import KEY_BOMB

# ---- policy documents: bounded, and compiled off the event loop ------------------------------


def _decide(channel):
    return residency_pb2_grpc.ResidencyServiceStub(channel).Decide(
        residency_pb2.DecideRequest(
            dataset_id="s3://a/x", operation=residency_pb2.OPERATION_STORE, region="aws:eu-west-1"
        ),
        timeout=HANG,
    )


async def test_a_key_alias_bomb_is_refused_with_a_short_error(channel, server):
    """375 bytes with an alias bomb as a mapping key held the event loop for 14 s (a concurrent
    Decide waited as long) and grew the server by a gigabyte, through PolicyImpact and SetPolicy."""
    policies = policy_pb2_grpc.PolicyServiceStub(channel)
    impact = policies.PolicyImpact(policy_pb2.PolicyImpactRequest(policy_yaml=KEY_BOMB), timeout=HANG)
    set_policy = policies.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=KEY_BOMB), timeout=HANG)
    decisions = [_decide(channel) for _ in range(20)]
    answers = await asyncio.gather(impact, set_policy, *decisions)
    for answer in answers[:2]:
        assert [e.message for e in answer.errors] == ["a key must be a string, not a list"]
        assert all(len(e.message) <= MAX_MESSAGE for e in answer.errors)
    assert not answers[1].applied
    assert {d.decision.reasons[0].code for d in answers[2:]} == {"UNKNOWN_DATASET"}


async def test_decisions_are_answered_while_a_policy_compiles(channel, monkeypatch):
    """A document is compiled on a thread of its own: the event loop keeps answering."""
    compiling, release = threading.Event(), threading.Event()
    compile_policy = policy_admin.compile_policy

    def held_compile(loaded):
        compiling.set()
        # On the event loop this wait would hold every call for HANG seconds, then fail.
        assert release.wait(HANG), "the event loop was blocked by the compilation"
        return compile_policy(loaded)

    monkeypatch.setattr(policy_admin, "compile_policy", held_compile)
    policies = policy_pb2_grpc.PolicyServiceStub(channel)
    impact = asyncio.ensure_future(
        policies.PolicyImpact(policy_pb2.PolicyImpactRequest(policy_yaml=EXAMPLE_POLICY.read_text()), timeout=HANG)
    )
    assert await asyncio.to_thread(compiling.wait, HANG)
    await _decide(channel)
    release.set()
    assert not (await impact).errors


# ---- one big lineage write stalls no one ----------------------------------------------------


def _openlineage_event(inputs: int, outputs: int) -> dict:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-05T10:00:00Z",
        "producer": "https://example.com/abuse",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
        "run": {"runId": "01937c5e-8f7a-7bbb-8d2b-6a5d3c9f0a11"},
        "job": {"namespace": "etl", "name": "wide"},
        "inputs": [{"namespace": "s3://in", "name": f"d{i}"} for i in range(inputs)],
        "outputs": [{"namespace": "s3://out", "name": f"o{o}"} for o in range(outputs)],
    }


async def test_one_big_openlineage_event_makes_no_decision_stale(tmp_path):
    """1,000 inputs x 100 outputs (55 KB) took 14 s on the event loop; meanwhile 67 of 93
    concurrent Decides came back DENY / STALE_CATALOG. The staleness bound here is one only a
    hang reaches: what is checked is that the writer itself fails no decision closed, however
    long a slow machine takes to apply it."""
    running = await create_server(insecure_settings(tmp_path, router={"staleness_bound_seconds": 600}))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            ingested = asyncio.Event()
            reasons: list[str] = []

            async def decide_until_ingested() -> None:
                while not ingested.is_set():
                    reasons.extend(r.code for r in (await _decide(channel)).decision.reasons)
                    await asyncio.sleep(0.01)

            deciders = [asyncio.create_task(decide_until_ingested()) for _ in range(4)]
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    http_url(running),
                    json=_openlineage_event(1000, 100),
                    timeout=aiohttp.ClientTimeout(total=10 * HANG),
                ) as response,
            ):
                assert response.status == 200, await response.text()
                written = (await response.json())["catalog_revision"]
            ingested.set()
            await asyncio.gather(*deciders)
            assert reasons and set(reasons) == {"UNKNOWN_DATASET"}
            # Read-your-writes: the write was acknowledged once the router had applied it.
            assert (await _decide(channel)).decision.catalog_revision >= written
            assert running.app.router.catalog_revision >= written
    finally:
        await running.stop(0)


# ---- out-of-range values are INVALID_ARGUMENT with the field named, never INTERNAL --------

OUT_OF_RANGE_TIMESTAMPS = [
    pytest.param(Timestamp(seconds=253_402_300_800), id="year-10000"),
    pytest.param(Timestamp(seconds=-62_135_596_801), id="year-0"),
    pytest.param(Timestamp(seconds=0, nanos=1_000_000_000), id="nanos-1e9"),
    pytest.param(Timestamp(seconds=0, nanos=-1), id="nanos-negative"),
]


def _timestamp_calls(channel, ts: Timestamp):
    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    lineage = lineage_pb2_grpc.LineageServiceStub(channel)
    return [
        ("as_of", catalog.GetDataset(catalog_pb2.GetDatasetRequest(id="s3://a/x", as_of=ts), timeout=HANG)),
        ("as_of", catalog.ListDatasets(catalog_pb2.ListDatasetsRequest(as_of=ts), timeout=HANG)),
        ("as_of", lineage.GetLineage(lineage_pb2.GetLineageRequest(dataset_id="s3://a/x", as_of=ts), timeout=HANG)),
        (
            "event_time",
            lineage.RecordLineage(
                lineage_pb2.RecordLineageRequest(
                    job="j", run_id="r", inputs=["s3://a/x"], outputs=["s3://a/y"], event_time=ts
                ),
                timeout=HANG,
            ),
        ),
        (
            "end_time",
            lineage.EndLineage(
                lineage_pb2.EndLineageRequest(job="j", inputs=["s3://a/x"], outputs=["s3://a/y"], end_time=ts),
                timeout=HANG,
            ),
        ),
    ]


@pytest.mark.parametrize("ts", OUT_OF_RANGE_TIMESTAMPS)
async def test_out_of_range_timestamps_are_field_violations(channel, server, ts):
    for field, call in _timestamp_calls(channel, ts):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert field in [f for f, _ in details_of(info.value)["field_violations"]]
    assert await server.app.store.revision() == 0  # nothing was written


def _token(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


# The fingerprint of a listing without filters: these tokens are ours in every other respect.
UNFILTERED = filter_fingerprint(DatasetFilter())


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            _token(json.dumps({"k": "datasets", "after": "a", "as_of": 2**70, "f": UNFILTERED}).encode()),
            id="as_of-2**70",
        ),
        pytest.param(_token(b"[" * 1500 + b"]" * 1500), id="nested-1500"),
        pytest.param(
            _token(b'{"k": "datasets", "after": "a", "as_of": NaN, "f": "%s"}' % UNFILTERED.encode()), id="nan"
        ),
    ],
)
async def test_hostile_page_tokens_are_field_violations(channel, token):
    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await catalog.ListDatasets(catalog_pb2.ListDatasetsRequest(page_token=token), timeout=HANG)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details_of(info.value)["field_violations"]] == ["page_token"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000"),
        pytest.param(b'{"eventType": "COMPLETE", "eventTime": NaN}', id="nan"),
        pytest.param(b'{"eventType": "COMPLETE", "inputs": [{"namespace": "s3://a", "name": 1e400}]}', id="inf"),
        pytest.param(b'{"eventType": "COMPLETE", "producer": "\\ud800"}', id="lone-surrogate"),
    ],
)
async def test_hostile_openlineage_bodies_are_400(server, body):
    async with (
        aiohttp.ClientSession() as http,
        http.post(http_url(server), data=body, headers={"Content-Type": "application/json"}) as response,
    ):
        assert response.status == 400, await response.text()
        error = (await response.json())["error"]
    assert [v["field"] for v in error["field_violations"]] == ["event"]


async def test_an_error_naming_thousands_of_fields_still_reaches_the_client(channel):
    """A refusal listing every bad field of a 10,000-request batch outgrew the trailers a
    gRPC client accepts (8 KiB): the client saw RESOURCE_EXHAUSTED and no details."""
    residency = residency_pb2_grpc.ResidencyServiceStub(channel)
    bad = residency_pb2.DecideRequest(dataset_id="", region="nowhere:é" * 20)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=[bad] * 10_000), timeout=HANG)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = details_of(info.value)
    assert details["field_violations"][0][0] == "requests[0].dataset_id"
    shown = len(details["field_violations"])
    assert int(details["metadata"]["omitted_violations"]) == 30_000 - shown


# ---- authentication-failure throttling locks out nobody with a valid token ---------------


async def _list_regions(port, creds, metadata):
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        return await catalog_pb2_grpc.CatalogServiceStub(channel).ListRegions(
            catalog_pb2.ListRegionsRequest(), metadata=metadata, timeout=HANG
        )


async def test_bad_tokens_from_one_client_do_not_lock_out_valid_tokens(tmp_path):
    """After 52 bad tokens from 127.0.0.1 a valid token on another connection was refused
    TOO_MANY_AUTH_FAILURES: anyone behind the same NAT or sidecar could lock everyone out."""
    running = await create_server(dev_settings(tmp_path))
    try:
        paths = dev_paths(tmp_path)
        attacker = client_credentials(paths)
        refusals = set()
        for _ in range(80):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _list_regions(running.port, attacker, bearer("not-a-token"))
            refusals.add(details_of(info.value)["reason"])
        assert refusals == {"MALFORMED_TOKEN", "TOO_MANY_AUTH_FAILURES"}  # the attacker is throttled
        valid = bearer(mint_dev_token(tmp_path, scopes=["catalog:read"]))
        # Another client (its own certificate), and the attacker's own certificate with a valid token.
        assert (await _list_regions(running.port, second_client(paths, tmp_path), valid)).regions
        assert (await _list_regions(running.port, attacker, valid)).regions
    finally:
        await running.stop(0)


async def test_bad_tokens_over_http_without_certificates_do_not_lock_out_the_address(tmp_path):
    running = await create_server(dev_settings(tmp_path, tls={"http_client_cert_required": False}))
    try:
        paths = dev_paths(tmp_path)
        url = f"https://localhost:{running.http_port}/api/v1/lineage"
        valid = {"Authorization": f"Bearer {mint_dev_token(tmp_path, scopes=['lineage:write'])}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=http_ssl(paths, False))) as http:
            statuses = set()
            for _ in range(80):
                async with http.post(url, json={}, headers={"Authorization": "Bearer garbage"}) as response:
                    statuses.add(response.status)
            assert statuses == {401, 429}
            async with http.post(url, json={}, headers=valid) as response:
                assert response.status == 400  # admitted, then the empty event is refused
    finally:
        await running.stop(0)


# ---- limits that disagreed -----------------------------------------------------------------


async def test_a_token_expiring_in_1e300_seconds_is_refused(tmp_path):
    running = await create_server(dev_settings(tmp_path))
    try:
        paths = dev_paths(tmp_path)
        key = load_pem_private_key(paths.jwt_key.read_bytes(), password=None)
        now = int(time.time())
        claims = {"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "forever", "scope": "catalog:read", "iat": now}
        for exp, reason in ((1e300, "MALFORMED_TOKEN"), (now + 30 * 86400, "TOKEN_LIFETIME_EXCEEDED")):
            token = jwt.encode({**claims, "exp": exp}, key, algorithm="ES256")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _list_regions(running.port, client_credentials(paths), bearer(token))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert details_of(info.value)["reason"] == reason
    finally:
        await running.stop(0)


# ---- files: private at creation, warned about when looser, the WAL folded in at shutdown ---


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_files_are_private_and_the_wal_is_checkpointed_at_shutdown(tmp_path, caplog):
    """The catalog was created 0644 in a 0755 data directory, and a clean shutdown left the
    write-ahead log beside it."""
    data_dir = tmp_path / "data"
    previous_umask = os.umask(0o022)
    try:
        running = await create_server(dev_settings(data_dir, policy=EXAMPLE_POLICY))
    finally:
        os.umask(previous_umask)
    catalog = data_dir / "catalog.db"
    try:
        paths = dev_paths(data_dir)
        async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", client_credentials(paths)) as channel:
            catalog_stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            token = bearer(mint_dev_token(data_dir))
            await catalog_stub.UpsertDataset(
                catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id="s3://a/x", name="x")), metadata=token
            )
            await residency_pb2_grpc.ResidencyServiceStub(channel).Decide(
                residency_pb2.DecideRequest(dataset_id="s3://a/x", operation=1, region="aws:eu-west-1"),
                metadata=token,
            )
        await running.app.router.flush_decision_log()
        assert _mode(data_dir) == 0o700
        for name in ("catalog.db", "catalog.db-wal", "decisions.jsonl", "policies.jsonl", "security.jsonl"):
            assert _mode(data_dir / name) == 0o600, name
        assert (data_dir / "catalog.db-wal").stat().st_size > 0
    finally:
        await running.stop(0)
    wal = data_dir / "catalog.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # What was written is in the database file itself now.
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM nodes").fetchone() == (1,)

    os.chmod(data_dir, 0o755)
    os.chmod(catalog, 0o644)
    caplog.set_level(logging.WARNING, logger="domicile.private_files")
    restarted = await create_server(dev_settings(data_dir))
    await restarted.stop(0)
    warned = {r.getMessage().split(" is accessible")[0] for r in caplog.records if "accessible" in r.getMessage()}
    assert warned == {str(data_dir), str(catalog)}


# ---- slow HTTP clients are timed out; half-sent requests are capped -----------------------


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (b"" for a silent close)."""
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
    return received


async def test_tls_connections_trickling_a_request_head_are_closed(tmp_path):
    """50 TLS connections that sent part of a request head stayed open for 300 s and more
    (gRPC closes such connections within 60 s)."""
    running = await create_server(dev_settings(tmp_path))
    try:
        context = http_ssl(dev_paths(tmp_path))
        streams = [
            await asyncio.open_connection("127.0.0.1", running.http_port, ssl=context, server_hostname="localhost")
            for _ in range(50)
        ]
        for _, writer in streams:
            writer.write(b"POST /api/v1/lineage HTTP/1.1\r\nHost: localhost\r\nContent-Type: app")
            await writer.drain()
        # Closed by the header timeout (10 s by default); only a hang would reach HANG.
        async with asyncio.timeout(HANG):
            await asyncio.gather(*(_closed_by_server(reader) for reader, _ in streams), return_exceptions=True)
        for _, writer in streams:
            writer.close()
        assert running.http.limits.waiting == 0
    finally:
        await running.stop(0)
