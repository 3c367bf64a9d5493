"""The Neo4j store without a server: connection settings and failure translation.

Behaviour against a real server is covered by tests/contract (every backend) and
tests/e2e/test_neo4j_outage.py.
"""

from __future__ import annotations

import time

import neo4j
import pytest
from neo4j import exceptions as neo4j_errors

from domicile.catalog.model import Dataset, utcnow
from domicile.catalog.stores.neo4j import Neo4jGraphStore, _driver_settings
from domicile.errors import DomicileError, ErrorCode
from tests.neo4j_plugin import free_port


class FailingSession:
    """A driver session whose every transaction fails with `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def __aenter__(self) -> FailingSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def execute_read(self, fn, *args, **kwargs):
        raise self.error

    async def execute_write(self, fn, *args, **kwargs):
        raise self.error


class FailingDriver:
    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.closed = False

    def session(self, **config) -> FailingSession:
        return FailingSession(self.error)

    async def close(self) -> None:
        self.closed = True


def store_failing_with(error: BaseException) -> Neo4jGraphStore:
    return Neo4jGraphStore(FailingDriver(error), uri="bolt://db.test:7687", database=None, clock=utcnow)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        neo4j_errors.ServiceUnavailable("connection refused"),
        neo4j_errors.SessionExpired("connection lost"),
        neo4j_errors.IncompleteCommit("connection lost during commit"),
        neo4j_errors.ConnectionAcquisitionTimeoutError("pool exhausted"),
        neo4j_errors.TransientError("deadlock detected, retries exhausted"),
        ConnectionResetError("reset by peer"),
    ],
)
async def test_unreachable_or_busy_server_is_unavailable_with_a_retry_hint(error):
    store = store_failing_with(error)
    for call in (lambda: store.get_dataset("s3://a"), lambda: store.upsert_dataset(Dataset.create("s3://a"))):
        with pytest.raises(DomicileError) as caught:
            await call()
        assert caught.value.code is ErrorCode.UNAVAILABLE
        assert caught.value.reason == "STORE_UNAVAILABLE"
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        assert "bolt://db.test:7687" in caught.value.message


async def test_refused_credentials_are_a_failed_precondition():
    with pytest.raises(DomicileError) as caught:
        await store_failing_with(neo4j_errors.AuthError("bad password")).revision()
    assert (caught.value.code, caught.value.reason) == (ErrorCode.FAILED_PRECONDITION, "STORE_AUTH_FAILED")


async def test_other_server_errors_are_internal_not_empty_answers():
    with pytest.raises(DomicileError) as caught:
        await store_failing_with(neo4j_errors.DatabaseError("disk full")).get_dataset("s3://a")
    assert caught.value.code is ErrorCode.INTERNAL


async def test_domain_errors_raised_inside_a_transaction_pass_unchanged():
    original = DomicileError("dataset 's3://a' not found", ErrorCode.NOT_FOUND, "NOT_FOUND")
    with pytest.raises(DomicileError) as caught:
        await store_failing_with(original).delete_dataset("s3://a")
    assert caught.value is original


async def test_a_closed_store_refuses_calls_and_closes_once():
    store = store_failing_with(neo4j_errors.ServiceUnavailable("unused"))
    await store.close()
    await store.close()
    with pytest.raises(DomicileError) as caught:
        await store.get_dataset("s3://a")
    assert (caught.value.code, caught.value.reason) == (ErrorCode.FAILED_PRECONDITION, "STORE_CLOSED")


async def test_opening_a_store_where_no_server_listens_is_unavailable_within_seconds():
    began = time.monotonic()
    with pytest.raises(DomicileError) as caught:
        await Neo4jGraphStore.open(f"bolt://127.0.0.1:{free_port()}")
    assert caught.value.code is ErrorCode.UNAVAILABLE
    assert time.monotonic() - began < 10


def test_plain_uris_go_to_the_driver_unchanged():
    assert _driver_settings("bolt://db:7687", None) == ("bolt://db:7687", {})
    assert _driver_settings("neo4j+s://cluster.example:7687", None) == ("neo4j+s://cluster.example:7687", {})


def test_a_trusted_ca_turns_on_tls_verified_against_it(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    uri, config = _driver_settings("neo4j+s://cluster.example:7687", str(ca))
    assert uri == "neo4j://cluster.example:7687"
    assert config["encrypted"] is True
    assert isinstance(config["trusted_certificates"], neo4j.TrustCustomCAs)


@pytest.mark.parametrize(
    ("uri", "ca"),
    [("sqlite:///x.db", None), ("bolt://", None), ("http://db:7474", None), ("bolt+ssc://db:7687", __file__)],
)
def test_unusable_uris_are_invalid_store_settings(uri, ca):
    with pytest.raises(DomicileError) as caught:
        _driver_settings(uri, ca)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert caught.value.violations[0].field == "store"


def test_a_missing_ca_file_is_named():
    with pytest.raises(DomicileError) as caught:
        _driver_settings("bolt://db:7687", "/nonexistent/ca.pem")
    assert caught.value.violations[0].field == "trusted_ca"
