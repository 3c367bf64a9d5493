"""Regression tests for the abuse found by attacking a running server: each reproduces one
finding and checks that it is now refused or bounded."""

from __future__ import annotations

import base64
import json

import aiohttp
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from domicile.catalog.model import DatasetFilter
from domicile.catalog.stores.common import filter_fingerprint
from domicile.grpc_errors import details_of
from domicile.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)
from tests.abuse.conftest import HANG, http_url

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
    async with aiohttp.ClientSession() as http:
        async with http.post(http_url(server), data=body, headers={"Content-Type": "application/json"}) as response:
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
