"""The OpenLineage HTTP endpoint's answers when the store fails (a fake store; the happy
paths run against a real server in tests/e2e/test_openlineage_http.py)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from domicile.app import App
from domicile.config import load_settings
from domicile.errors import store_unavailable
from domicile.http_api import create_http_app

EVENT = {
    "eventType": "COMPLETE",
    "eventTime": "2026-11-30T10:00:00Z",
    "producer": "https://example.com/p",
    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    "run": {"runId": "r-1"},
    "job": {"namespace": "airflow", "name": "j"},
    "inputs": [{"namespace": "s3://a", "name": "in"}],
    "outputs": [{"namespace": "s3://a", "name": "out"}],
}


class FailingStore:
    """Answers the reads ingestion makes; fails the lineage write with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def revision(self) -> int:
        return 0

    async def get_dataset(self, dataset_id, *, as_of=None):
        return None

    async def record_lineage(self, run, edges, *, principal="", access_run=None):
        raise self.error


async def post(store, body) -> tuple[int, dict, dict]:
    app = App(settings=load_settings(insecure=True), store=store)  # type: ignore[arg-type]
    async with TestClient(TestServer(create_http_app(app))) as client:
        response = await client.post(
            "/api/v1/lineage", data=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        return response.status, dict(response.headers), await response.json()


async def test_store_unavailable_is_503_with_retry_after():
    status, headers, body = await post(
        FailingStore(store_unavailable("catalog store unreachable", retry_after=2.5)), EVENT
    )
    assert status == 503
    assert headers["Retry-After"] == "3"
    assert body["error"]["code"] == "UNAVAILABLE" and body["error"]["reason"] == "STORE_UNAVAILABLE"


async def test_unexpected_failure_is_500_without_internals(caplog):
    status, _, body = await post(FailingStore(RuntimeError("secret connection string")), EVENT)
    assert status == 500
    assert body["error"]["code"] == "INTERNAL"
    assert "secret" not in json.dumps(body) and "incident" in body["error"]["message"]
    assert "secret connection string" in caplog.text


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_other_methods_get_405_in_the_same_json_shape(method):
    app = App(settings=load_settings(insecure=True), store=FailingStore(RuntimeError()))  # type: ignore[arg-type]
    async with TestClient(TestServer(create_http_app(app))) as client:
        response = await client.request(method, "/api/v1/lineage")
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
