"""The SDK's own parts: errors decoded from status details, retries (which calls, which
failures, how long), settings from the environment, token providers, and that every RPC has a
method on both clients. Calls go over real channels to a small server of fakes."""

from __future__ import annotations

import ast
import asyncio
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from domicile.client import (
    NO_RETRIES,
    Aborted,
    AsyncClient,
    Client,
    ConnectionConfigError,
    ConnectionSettings,
    Dataset,
    DomicileRpcError,
    FieldViolation,
    InvalidArgument,
    Outcome,
    ResourceExhausted,
    RetryPolicy,
    Unavailable,
)
from domicile.client.calls import SERVICES
from domicile.connection import DevTokenMinter, settings_from_env
from domicile.errors import DomicileError, ErrorCode
from domicile.errors import FieldViolation as ServerViolation
from domicile.grpc_errors import status_for
from domicile.security.dev_credentials import ensure_dev_credentials
from domicile.timeconv import to_timestamp
from domicile.v1 import catalog_pb2, residency_pb2


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_rpc_is_a_method_of_both_clients():
    for service in SERVICES:
        for method in service.methods:
            for client in (Client, AsyncClient):
                assert callable(getattr(client, snake(method.name), None)), f"{client.__name__} lacks {method.name}"
    assert asyncio.iscoroutinefunction(AsyncClient.decide)


class FakeServer:
    """A gRPC server answering Decide and UpsertDataset from a script of failures."""

    def __init__(self) -> None:
        self.failures: list[DomicileError] = []
        self.calls = 0
        self.metadata: list[dict[str, str]] = []

    async def _answer(self, context: grpc.aio.ServicerContext) -> None:
        self.calls += 1
        self.metadata.append(dict(context.invocation_metadata() or ()))
        if self.failures:
            status = status_for(self.failures.pop(0))
            await context.abort(status.code, status.details, status.trailing_metadata)

    async def decide(self, request, context):
        await self._answer(context)
        return residency_pb2.DecideResponse(
            decision=residency_pb2.Decision(
                decision_id="d1",
                outcome=residency_pb2.OUTCOME_ALLOW,
                dataset_id=request.dataset_id,
                operation=request.operation,
                region=request.region,
                decide_time=to_timestamp(datetime.now(UTC)),
            )
        )

    async def upsert(self, request, context):
        await self._answer(context)
        return catalog_pb2.UpsertDatasetResponse(dataset=request.dataset)


@pytest.fixture
async def fake():
    fake = FakeServer()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "domicile.v1.ResidencyService",
                {
                    "Decide": grpc.unary_unary_rpc_method_handler(
                        fake.decide,
                        request_deserializer=residency_pb2.DecideRequest.FromString,
                        response_serializer=residency_pb2.DecideResponse.SerializeToString,
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                "domicile.v1.CatalogService",
                {
                    "UpsertDataset": grpc.unary_unary_rpc_method_handler(
                        fake.upsert,
                        request_deserializer=catalog_pb2.UpsertDatasetRequest.FromString,
                        response_serializer=catalog_pb2.UpsertDatasetResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    await server.stop(0)


FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)


def unavailable() -> DomicileError:
    return DomicileError("store down", ErrorCode.UNAVAILABLE, "STORE_UNAVAILABLE")


async def test_a_safe_call_is_retried_on_unavailable(fake):
    fake.failures = [unavailable(), unavailable()]
    async with AsyncClient(ConnectionSettings(server=fake.address, insecure=True), retry=FAST) as client:
        decision = await client.decide("s3://a/b", "store", "aws:eu-west-1")
    assert decision.outcome is Outcome.ALLOW and fake.calls == 3


async def test_retries_stop_after_max_attempts_with_the_last_error(fake):
    fake.failures = [unavailable() for _ in range(10)]
    async with AsyncClient(ConnectionSettings(server=fake.address, insecure=True), retry=FAST) as client:
        with pytest.raises(Unavailable) as error:
            await client.decide("s3://a/b", "store", "aws:eu-west-1")
    assert fake.calls == 4 and error.value.reason == "STORE_UNAVAILABLE"
    assert error.value.method == "/domicile.v1.ResidencyService/Decide"


async def test_an_unconditional_write_is_not_retried_a_conditional_one_is(fake):
    settings = ConnectionSettings(server=fake.address, insecure=True)
    fake.failures = [unavailable()]
    client = Client(settings, retry=FAST)
    try:
        with pytest.raises(Unavailable):
            await asyncio.to_thread(client.upsert_dataset, Dataset.create("s3://a/b"))
        assert fake.calls == 1
        fake.failures = [unavailable()]
        stored = await asyncio.to_thread(client.upsert_dataset, Dataset.create("s3://a/b"), expected_revision=3)
        assert stored.id == "s3://a/b" and fake.calls == 3
    finally:
        client.close()


async def test_rate_limited_calls_wait_the_retry_info_delay(fake):
    fake.failures = [DomicileError("slow down", ErrorCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", retry_after=0.3)]
    async with AsyncClient(ConnectionSettings(server=fake.address, insecure=True), retry=FAST) as client:
        started = time.monotonic()
        await client.decide("s3://a/b", "store", "aws:eu-west-1")
    assert fake.calls == 2 and time.monotonic() - started >= 0.3


async def test_no_retry_is_started_that_would_pass_the_deadline(fake):
    fake.failures = [DomicileError("slow down", ErrorCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", retry_after=30)]
    async with AsyncClient(ConnectionSettings(server=fake.address, insecure=True, timeout=2)) as client:
        with pytest.raises(ResourceExhausted) as error:
            await client.decide("s3://a/b", "store", "aws:eu-west-1")
    assert fake.calls == 1 and error.value.retry_after == 30


async def test_errors_carry_field_violations_reason_and_metadata(fake):
    fake.failures = [
        DomicileError("bad", ErrorCode.INVALID_ARGUMENT, violations=[ServerViolation("region", "unknown region")]),
        DomicileError("stale", ErrorCode.ABORTED, "REVISION_CONFLICT", metadata={"expected": "1", "actual": "2"}),
    ]
    async with AsyncClient(ConnectionSettings(server=fake.address, insecure=True), retry=NO_RETRIES) as client:
        with pytest.raises(InvalidArgument) as invalid:
            await client.decide("s3://a/b", "store", "x")
        with pytest.raises(Aborted) as aborted:
            await client.upsert_dataset(Dataset.create("s3://a/b"), expected_revision=1)
    assert invalid.value.field_violations == (FieldViolation("region", "unknown region"),)
    assert "region: unknown region" in str(invalid.value)
    assert (aborted.value.reason, dict(aborted.value.metadata)) == (
        "REVISION_CONFLICT",
        {"expected": "1", "actual": "2"},
    )
    assert isinstance(aborted.value, DomicileRpcError)


async def test_an_unreachable_server_is_unavailable_within_the_deadline():
    async with AsyncClient(ConnectionSettings(server="127.0.0.1:9", insecure=True, timeout=3), retry=FAST) as client:
        with pytest.raises(Unavailable):
            await client.decide("s3://a/b", "store", "aws:eu-west-1")


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(max_attempts=10, initial_backoff=0.1, max_backoff=1.0, multiplier=2)
    error = Unavailable("down")
    rng = random.Random(0)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for attempt, ceiling in enumerate(ceilings, 1):
        delays = [policy.delay(error, attempt, 100, rng) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays) and max(delays) > ceiling / 2
    assert policy.delay(error, 10, 100) is None
    assert policy.delay(InvalidArgument("bad"), 1, 100) is None
    assert policy.delay(ResourceExhausted("too big"), 1, 100) is None  # no RetryInfo: not a rate limit
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_settings_from_env():
    settings = settings_from_env(
        {
            "DOMICILE_SERVER": "domicile.bank.example:443",
            "DOMICILE_CA_CERT": "/etc/ca.pem",
            "DOMICILE_CLIENT_CERT": "/etc/c.pem",
            "DOMICILE_CLIENT_KEY": "/etc/k.pem",
            "DOMICILE_TOKEN": "t",
            "DOMICILE_TIMEOUT": "2.5",
            "DOMICILE_DEV": "no",
        }
    )
    assert settings == ConnectionSettings(
        server="domicile.bank.example:443",
        ca_cert=Path("/etc/ca.pem"),
        client_cert=Path("/etc/c.pem"),
        client_key=Path("/etc/k.pem"),
        token="t",
        timeout=2.5,
    )
    assert settings_from_env({}) == ConnectionSettings()
    assert settings_from_env({"DOMICILE_INSECURE": "1"}).insecure
    with pytest.raises(ConnectionConfigError, match="DOMICILE_TIMEOUT"):
        settings_from_env({"DOMICILE_TIMEOUT": "soon"})
    with pytest.raises(ConnectionConfigError, match="DOMICILE_INSECURE"):
        settings_from_env({"DOMICILE_INSECURE": "maybe"})


def test_from_env_with_overrides(tmp_path):
    client = Client.from_env({"DOMICILE_INSECURE": "true", "DOMICILE_SERVER": "h:1"}, timeout=4)
    try:
        assert (client.settings.server, client.settings.insecure, client.settings.timeout) == ("h:1", True, 4)
        assert client.credentials.token_provider is None  # never a token in plaintext
    finally:
        client.close()


def test_dev_tokens_are_minted_anew_before_they_expire(tmp_path, monkeypatch):
    ensure_dev_credentials(tmp_path)
    minter = DevTokenMinter(tmp_path, ttl_seconds=100)
    first = minter()
    assert minter() == first  # cached
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 81)  # past 80% of its lifetime
    assert minter() != first


async def test_a_token_provider_is_asked_before_every_call(tmp_path):
    # Tokens go only over TLS: a TLS server with the dev credentials, whose calls the fake answers.
    paths, _ = ensure_dev_credentials(tmp_path)
    fake = FakeServer()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "domicile.v1.ResidencyService",
                {
                    "Decide": grpc.unary_unary_rpc_method_handler(
                        fake.decide,
                        request_deserializer=residency_pb2.DecideRequest.FromString,
                        response_serializer=residency_pb2.DecideResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    credentials = grpc.ssl_server_credentials([(paths.server_key.read_bytes(), paths.server_cert.read_bytes())])
    port = server.add_secure_port("localhost:0", credentials)
    await server.start()
    issued = iter(["token-1", "token-2"])
    try:
        settings = ConnectionSettings(server=f"localhost:{port}", ca_cert=paths.ca_cert)
        async with AsyncClient(settings, token_provider=lambda: next(issued)) as client:
            await client.decide("s3://a/b", "store", "aws:eu-west-1")
            await client.decide("s3://a/b", "store", "aws:eu-west-1")
    finally:
        await server.stop(0)
    assert [m["authorization"] for m in fake.metadata] == ["Bearer token-1", "Bearer token-2"]


def test_the_command_line_has_no_grpc_code_of_its_own():
    """The CLI calls the server only through the SDK (one client, not two)."""
    cli = Path(__file__).parents[2] / "domicile" / "cli"
    offenders = []
    for module in sorted(cli.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if isinstance(node, ast.ImportFrom) and node.module == "domicile.v1":
                names += [f"domicile.v1.{alias.name}" for alias in node.names]
            offenders += [
                f"{module.name}: {name}"
                for name in names
                if name.split(".")[0] in ("grpc", "grpc_health", "grpc_status", "grpc_reflection")
                or name.endswith("_grpc")
            ]
    assert offenders == []
