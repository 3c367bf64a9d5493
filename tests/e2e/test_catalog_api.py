"""CatalogService over a real gRPC channel, on every store backend."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from domicile.grpc_errors import details_of
from domicile.v1 import catalog_pb2, catalog_pb2_grpc

EU = "s3://bank-eu/customers"


def dataset(id=EU, **fields) -> catalog_pb2.Dataset:
    base = {
        "name": "customers",
        "owner": "retail@bank.example",
        "classifications": ["PII.CONTACT"],
        "origins": ["DE"],
        "locations": ["aws:eu-central-1"],
    }
    base.update(fields)
    return catalog_pb2.Dataset(id=id, **base)


@pytest.fixture
def stub(channel):
    return catalog_pb2_grpc.CatalogServiceStub(channel)


async def upsert(stub, message, expected_revision=0) -> catalog_pb2.Dataset:
    response = await stub.UpsertDataset(
        catalog_pb2.UpsertDatasetRequest(dataset=message, expected_revision=expected_revision)
    )
    return response.dataset


async def expect_error(awaitable, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return info.value


async def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "domicile.v1.CatalogService", "domicile.v1.ResidencyService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = set()
    async for response in responses:
        names |= {s.name for s in response.list_services_response.service}
    assert {
        "domicile.v1.CatalogService",
        "domicile.v1.LineageService",
        "domicile.v1.ResidencyService",
        "domicile.v1.PolicyService",
        "grpc.health.v1.Health",
    } <= names


async def test_upsert_get_round_trip_normalizes_and_sets_revision(stub):
    stored = await upsert(
        stub,
        dataset(
            classifications=["PII.CONTACT", "PII.CONTACT", "FINANCIAL"],
            origins=["FR", "DE"],
            tags={"domain": "retail"},
            fields=[catalog_pb2.Field(name="email", classifications=["PII.CONTACT"])],
        ),
    )
    assert stored.revision > 0
    assert list(stored.classifications) == ["FINANCIAL", "PII.CONTACT"]
    assert list(stored.origins) == ["DE", "FR"]
    assert stored.HasField("create_time") and stored.HasField("update_time")
    got = (await stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU))).dataset
    assert got == stored
    assert dict(got.tags) == {"domain": "retail"} and got.fields[0].name == "email"


async def test_get_unknown_is_not_found(stub):
    error = await expect_error(
        stub.GetDataset(catalog_pb2.GetDatasetRequest(id="s3://nope/x")), grpc.StatusCode.NOT_FOUND
    )
    assert "s3://nope/x" in error.details()


async def test_revision_conflict_is_aborted_with_details(stub):
    first = await upsert(stub, dataset())
    second = await upsert(stub, dataset(name="renamed"), expected_revision=first.revision)
    assert second.revision > first.revision
    error = await expect_error(
        upsert(stub, dataset(name="stale"), expected_revision=first.revision), grpc.StatusCode.ABORTED
    )
    details = details_of(error)
    assert details["reason"] == "REVISION_CONFLICT"
    assert details["metadata"]["actual_revision"] == str(second.revision)
    assert (await stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU))).dataset.name == "renamed"


async def test_concurrent_conflicting_upserts_exactly_one_wins(stub):
    first = await upsert(stub, dataset())
    results = await asyncio.gather(
        *(upsert(stub, dataset(name=f"writer-{i}"), expected_revision=first.revision) for i in range(6)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, catalog_pb2.Dataset)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 5
    assert all(e.code() == grpc.StatusCode.ABORTED for e in losers)
    assert (await stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU))).dataset.name == winners[0].name


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (dataset(id=""), "dataset.id"),
        (dataset(id="x" * 2049), "dataset.id"),
        (dataset(origins=["de"]), "dataset.origins[0]"),
        (dataset(origins=["DE", "XX"]), "dataset.origins[1]"),
        (dataset(classifications=["pii"]), "dataset.classifications[0]"),
        (dataset(classifications=["PII..X"]), "dataset.classifications[0]"),
        (dataset(locations=["aws:mars-north-1"]), "dataset.locations[0]"),
        (dataset(fields=[catalog_pb2.Field(name="a"), catalog_pb2.Field(name="a")]), "dataset.fields[1].name"),
    ],
)
async def test_invalid_datasets_are_rejected_with_field_violations(stub, message, field):
    error = await expect_error(upsert(stub, message), grpc.StatusCode.INVALID_ARGUMENT)
    assert field in [f for f, _ in details_of(error)["field_violations"]]


async def test_huge_bad_values_still_get_invalid_argument(stub):
    # Error messages quote bad values; a 10 KB one must not overflow the status trailer.
    for message in (
        dataset(tags={"k" * 10_000: "v"}),
        dataset(origins=["Q" * 10_000]),
        dataset(classifications=["x" * 10_000]),
    ):
        error = await expect_error(upsert(stub, message), grpc.StatusCode.INVALID_ARGUMENT)
        assert details_of(error)["field_violations"]


async def test_several_violations_reported_at_once(stub):
    error = await expect_error(
        upsert(stub, dataset(origins=["de"], locations=["nowhere"])), grpc.StatusCode.INVALID_ARGUMENT
    )
    fields = [f for f, _ in details_of(error)["field_violations"]]
    assert "dataset.origins[0]" in fields and "dataset.locations[0]" in fields


async def test_missing_dataset_and_negative_revision(stub):
    error = await expect_error(stub.UpsertDataset(catalog_pb2.UpsertDatasetRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    assert details_of(error)["field_violations"][0][0] == "dataset"
    error = await expect_error(upsert(stub, dataset(), expected_revision=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert details_of(error)["field_violations"][0][0] == "expected_revision"


async def test_as_of_reads_history(stub):
    v1 = await upsert(stub, dataset(name="v1"))
    await asyncio.sleep(0.01)
    v2 = await upsert(stub, dataset(name="v2", locations=["aws:eu-west-1"]))
    at_v1 = (await stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU, as_of=v1.update_time))).dataset
    at_v2 = (await stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU, as_of=v2.update_time))).dataset
    assert (at_v1.name, list(at_v1.locations)) == ("v1", ["aws:eu-central-1"])
    assert (at_v2.name, list(at_v2.locations)) == ("v2", ["aws:eu-west-1"])
    before = Timestamp()
    before.FromMicroseconds(v1.create_time.ToMicroseconds() - 1)
    await expect_error(stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU, as_of=before)), grpc.StatusCode.NOT_FOUND)


async def test_soft_delete_keeps_history(stub):
    stored = await upsert(stub, dataset())
    await stub.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=EU))
    await expect_error(stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU)), grpc.StatusCode.NOT_FOUND)
    old = (await stub.GetDataset(catalog_pb2.GetDatasetRequest(id=EU, as_of=stored.update_time))).dataset
    assert old.name == stored.name
    assert not (await stub.ListDatasets(catalog_pb2.ListDatasetsRequest())).datasets
    await expect_error(stub.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=EU)), grpc.StatusCode.NOT_FOUND)
    again = await upsert(stub, dataset(name="back"))
    assert again.name == "back"


async def test_list_filters(stub):
    await upsert(
        stub,
        dataset(
            id="s3://a/eu", classifications=["PII.CONTACT"], origins=["DE"], locations=["aws:eu-central-1"], owner="x"
        ),
    )
    await upsert(
        stub,
        dataset(
            id="s3://a/in",
            classifications=["FINANCIAL.PAYMENT"],
            origins=["IN"],
            locations=["aws:ap-south-1"],
            owner="y",
            description="Card payments",
        ),
    )
    await upsert(
        stub,
        dataset(
            id="s3://a/field",
            classifications=[],
            origins=[],
            locations=[],
            owner="x",
            fields=[catalog_pb2.Field(name="mail", classifications=["PII.CONTACT.EMAIL"])],
        ),
    )
    await upsert(stub, dataset(id="s3://a/piix", classifications=["PIIX"], origins=[], locations=[], owner="z"))

    async def ids(**filters):
        response = await stub.ListDatasets(catalog_pb2.ListDatasetsRequest(**filters))
        return [d.id for d in response.datasets]

    assert await ids(classification="PII") == ["s3://a/eu", "s3://a/field"]
    assert await ids(classification="PII.CONTACT.EMAIL") == ["s3://a/field"]
    assert await ids(origin="IN") == ["s3://a/in"]
    assert await ids(region="aws:eu-central-1") == ["s3://a/eu"]
    assert await ids(owner="x") == ["s3://a/eu", "s3://a/field"]
    assert await ids(query="card") == ["s3://a/in"]
    assert await ids(owner="x", classification="PII", origin="DE") == ["s3://a/eu"]


async def test_pagination_is_stable_across_inserts(stub):
    originals = [f"s3://p/{i:02d}" for i in range(0, 20, 2)]
    for id in originals:
        await upsert(stub, dataset(id=id))
    seen: list[str] = []
    token = ""
    inserted = 0
    while True:
        response = await stub.ListDatasets(catalog_pb2.ListDatasetsRequest(page_size=3, page_token=token))
        seen += [d.id for d in response.datasets]
        # Insert between pages: before and after the cursor.
        await upsert(stub, dataset(id=f"s3://p/{inserted * 2 + 1:02d}"))
        await upsert(stub, dataset(id=f"s3://p/00-{inserted}"))
        inserted += 1
        token = response.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)), "a dataset was returned twice"
    assert set(originals) <= set(seen), "a dataset that existed throughout was skipped"


async def test_bad_page_size_and_token(stub):
    error = await expect_error(
        stub.ListDatasets(catalog_pb2.ListDatasetsRequest(page_size=5000)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert details_of(error)["field_violations"][0][0] == "page_size"
    error = await expect_error(
        stub.ListDatasets(catalog_pb2.ListDatasetsRequest(page_token="not-a-token")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert details_of(error)["field_violations"][0][0] == "page_token"


async def test_list_regions(stub):
    regions = {r.id: r for r in (await stub.ListRegions(catalog_pb2.ListRegionsRequest())).regions}
    assert regions["aws:eu-central-1"].country == "DE"
    assert regions["aws:eu-central-1"].provider == "aws" and regions["aws:eu-central-1"].name == "eu-central-1"
    assert regions["azure:centralindia"].country == "IN"
    assert len(regions) > 100


async def test_oversize_message_is_rejected(server, stub):
    big = dataset(description="x" * (server.app.settings.max_message_bytes + 1))
    await expect_error(upsert(stub, big), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # The server is still fine afterwards.
    assert (await upsert(stub, dataset())).revision > 0


async def test_unknown_fields_are_ignored(channel):
    message = dataset().SerializeToString() + bytes([0xF8, 0x7F, 0x01])  # field 2047, varint 1: unknown
    request = catalog_pb2.UpsertDatasetRequest()
    request.dataset.MergeFromString(message)
    upsert_raw = channel.unary_unary(
        "/domicile.v1.CatalogService/UpsertDataset",
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=catalog_pb2.UpsertDatasetResponse.FromString,
    )
    response = await upsert_raw(request)
    assert response.dataset.id == EU
    # Unknown fields are not stored: the dataset read back re-serializes without them.
    got = await catalog_pb2_grpc.CatalogServiceStub(channel).GetDataset(catalog_pb2.GetDatasetRequest(id=EU))
    assert b"\xf8\x7f" not in got.dataset.SerializeToString()


async def test_garbage_bytes_do_not_hurt_the_server(server, stub):
    for junk in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 8):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(junk)
        await writer.drain()
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(1024), timeout=2)
        writer.close()
    assert (await upsert(stub, dataset())).id == EU


async def test_reflection_v1_is_served_beside_v1alpha(channel):
    """Tools that speak only grpc.reflection.v1 list and describe the services too; the
    messages here are built from the v1 descriptor the server serves (v1alpha renamed)."""
    pool = descriptor_pool.Default()
    request_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    asked = [
        request_class(list_services=""),
        request_class(file_containing_symbol="domicile.v1.ResidencyService"),
        request_class(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    ]
    answers = [answer async for answer in info(iter(asked))]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {
        "domicile.v1.CatalogService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in answers[1].file_descriptor_response.file_descriptor_proto
    ]
    assert "domicile/v1/residency.proto" in [f.name for f in files]
    [v1] = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in answers[2].file_descriptor_response.file_descriptor_proto
    ]
    assert (
        v1.package == "grpc.reflection.v1"
        and v1.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    )
