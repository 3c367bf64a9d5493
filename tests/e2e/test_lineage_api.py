"""LineageService over a real gRPC channel, on every store backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from domicile.grpc_errors import details_of
from domicile.timeconv import to_timestamp
from domicile.v1 import catalog_pb2, catalog_pb2_grpc, lineage_pb2, lineage_pb2_grpc
from tests.e2e.conftest import insecure_settings

UP, DOWN, BOTH = lineage_pb2.DIRECTION_UPSTREAM, lineage_pb2.DIRECTION_DOWNSTREAM, lineage_pb2.DIRECTION_BOTH


@pytest.fixture
def stub(channel):
    return lineage_pb2_grpc.LineageServiceStub(channel)


async def record(stub, job, run_id, inputs, outputs, **extra) -> lineage_pb2.RecordLineageResponse:
    return await stub.RecordLineage(
        lineage_pb2.RecordLineageRequest(job=job, run_id=run_id, inputs=inputs, outputs=outputs, **extra)
    )


async def lineage(
    stub, dataset_id, direction=UP, max_depth=0, as_of: datetime | None = None
) -> lineage_pb2.GetLineageResponse:
    request = lineage_pb2.GetLineageRequest(dataset_id=dataset_id, direction=direction, max_depth=max_depth)
    if as_of is not None:
        request.as_of.CopyFrom(to_timestamp(as_of))
    return await stub.GetLineage(request)


def depths(response) -> dict[str, int]:
    return {n.dataset_id: n.depth for n in response.nodes}


def pairs(response) -> set[tuple[str, str]]:
    return {(e.input, e.output) for e in response.edges}


async def expect_error(awaitable, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return info.value


async def test_record_creates_every_pair_labelled_and_placeholders(stub, channel):
    event_time = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    response = await record(
        stub,
        "spark/join",
        "run-1",
        ["s3://eu/a", "s3://eu/b"],
        ["s3://eu/c", "s3://eu/d"],
        transform="aggregate",
        run_region="aws:eu-central-1",
        event_time=to_timestamp(event_time),
    )
    assert response.edges_created == 4
    assert response.catalog_revision > 0

    up = await lineage(stub, "s3://eu/c")
    assert depths(up) == {"s3://eu/c": 0, "s3://eu/a": 1, "s3://eu/b": 1}
    assert up.complete and not up.incomplete_reason
    edge = next(e for e in up.edges if e.input == "s3://eu/a")
    assert (edge.output, edge.job, edge.run_id, edge.transform) == ("s3://eu/c", "spark/join", "run-1", "aggregate")
    assert edge.HasField("record_time") and not edge.HasField("end_time")
    assert all(n.placeholder for n in up.nodes)

    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    placeholder = (await catalog.GetDataset(catalog_pb2.GetDatasetRequest(id="s3://eu/a"))).dataset
    assert placeholder.placeholder

    down = await lineage(stub, "s3://eu/a", DOWN)
    assert depths(down) == {"s3://eu/a": 0, "s3://eu/c": 1, "s3://eu/d": 1}


async def test_recording_the_same_run_again_creates_nothing(stub):
    first = await record(stub, "job", "run-1", ["s3://x/in"], ["s3://x/out"])
    again = await record(stub, "job", "run-1", ["s3://x/in"], ["s3://x/out", "s3://x/other"])
    assert first.edges_created == 1
    assert again.edges_created == 0
    assert again.catalog_revision == first.catalog_revision
    assert pairs(await lineage(stub, "s3://x/in", DOWN)) == {("s3://x/in", "s3://x/out")}


async def test_new_run_keeps_edge_and_changed_transform_replaces_it(stub):
    await record(stub, "job", "run-1", ["s3://x/in"], ["s3://x/out"])
    same = await record(stub, "job", "run-2", ["s3://x/in"], ["s3://x/out"])
    assert same.edges_created == 0
    changed = await record(stub, "job", "run-3", ["s3://x/in"], ["s3://x/out"], transform="anonymize")
    assert changed.edges_created == 1
    (edge,) = (await lineage(stub, "s3://x/out")).edges
    assert (edge.transform, edge.run_id) == ("anonymize", "run-3")


async def test_a_dataset_paired_with_itself_is_not_an_edge(stub):
    response = await record(stub, "merge", "r", ["s3://x/t", "s3://x/src"], ["s3://x/t"])
    assert response.edges_created == 1
    assert pairs(await lineage(stub, "s3://x/t")) == {("s3://x/src", "s3://x/t")}


async def test_as_of_returns_the_graph_as_it_was(stub):
    async def instant() -> datetime:
        await asyncio.sleep(0.02)
        moment = datetime.now(UTC)
        await asyncio.sleep(0.02)
        return moment

    t0 = await instant()
    await record(stub, "ingest", "r1", ["s3://h/raw"], ["s3://h/clean"])
    t1 = await instant()
    await record(stub, "report", "r2", ["s3://h/clean"], ["s3://h/report"])
    t2 = await instant()
    ended = await stub.EndLineage(
        lineage_pb2.EndLineageRequest(job="ingest", inputs=["s3://h/raw"], outputs=["s3://h/clean"])
    )
    assert ended.edges_ended == 1
    t3 = await instant()
    await record(stub, "ingest-v2", "r3", ["s3://h/raw-v2"], ["s3://h/clean"])
    t4 = await instant()

    await expect_error(lineage(stub, "s3://h/report", as_of=t0), grpc.StatusCode.NOT_FOUND)
    await expect_error(lineage(stub, "s3://h/report", as_of=t1), grpc.StatusCode.NOT_FOUND)
    assert depths(await lineage(stub, "s3://h/report", as_of=t2)) == {
        "s3://h/report": 0,
        "s3://h/clean": 1,
        "s3://h/raw": 2,
    }
    assert depths(await lineage(stub, "s3://h/report", as_of=t3)) == {"s3://h/report": 0, "s3://h/clean": 1}
    assert depths(await lineage(stub, "s3://h/report", as_of=t4)) == {
        "s3://h/report": 0,
        "s3://h/clean": 1,
        "s3://h/raw-v2": 2,
    }
    assert depths(await lineage(stub, "s3://h/clean", as_of=t1)) == {"s3://h/clean": 0, "s3://h/raw": 1}
    # Now: the ended edge is gone from the current graph; history keeps it with its end time.
    assert pairs(await lineage(stub, "s3://h/raw", DOWN)) == set()
    (old,) = (await lineage(stub, "s3://h/raw", DOWN, max_depth=1, as_of=t2)).edges
    assert old.HasField("end_time")
    assert t2 < old.end_time.ToDatetime(UTC) < t3


async def test_end_lineage_ignores_edges_that_are_not_current(stub):
    await record(stub, "job", "r", ["s3://e/a"], ["s3://e/b"])
    request = lineage_pb2.EndLineageRequest(job="other-job", inputs=["s3://e/a"], outputs=["s3://e/b", "s3://e/never"])
    response = await stub.EndLineage(request)
    assert response.edges_ended == 0
    assert pairs(await lineage(stub, "s3://e/b")) == {("s3://e/a", "s3://e/b")}


async def test_cycles_terminate_with_shortest_depths(stub):
    await record(stub, "j1", "r1", ["s3://c/a"], ["s3://c/b"])
    await record(stub, "j2", "r2", ["s3://c/b"], ["s3://c/c"])
    await record(stub, "j3", "r3", ["s3://c/c"], ["s3://c/a"])
    await record(stub, "j4", "r4", ["s3://c/a"], ["s3://c/c"])  # shortcut: c is 1 step downstream of a
    down = await lineage(stub, "s3://c/a", DOWN)
    assert depths(down) == {"s3://c/a": 0, "s3://c/b": 1, "s3://c/c": 1}
    assert down.complete
    both = await lineage(stub, "s3://c/b", BOTH)
    assert depths(both) == {"s3://c/b": 0, "s3://c/a": 1, "s3://c/c": 1}


async def test_depth_limit_is_reported_not_silent(stub):
    chain = [f"s3://d/n{i}" for i in range(6)]
    for i in range(5):
        await record(stub, f"step{i}", "r", [chain[i]], [chain[i + 1]])
    cut = await lineage(stub, chain[5], UP, max_depth=2)
    assert depths(cut) == {chain[5]: 0, chain[4]: 1, chain[3]: 2}
    assert (cut.complete, cut.incomplete_reason) == (False, "max_depth")
    whole = await lineage(stub, chain[5], UP, max_depth=5)
    assert len(whole.nodes) == 6 and whole.complete


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
async def test_default_depth_is_ten(stub):
    chain = [f"s3://ten/n{i}" for i in range(13)]
    for i in range(12):
        await record(stub, f"step{i}", "r", [chain[i]], [chain[i + 1]])
    answer = await lineage(stub, chain[12])
    assert max(depths(answer).values()) == 10
    assert answer.incomplete_reason == "max_depth"


async def test_node_limit_is_reported(tmp_path):
    from domicile.server import create_server

    running = await create_server(insecure_settings(tmp_path, lineage={"max_nodes": 5}))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = lineage_pb2_grpc.LineageServiceStub(channel)
            await record(stub, "fan", "r", ["s3://f/source"], [f"s3://f/out{i}" for i in range(20)])
            answer = await lineage(stub, "s3://f/source", DOWN)
            assert (answer.complete, answer.incomplete_reason) == (False, "max_nodes")
            assert len(answer.nodes) == 5
    finally:
        await running.stop(0)


async def test_invalid_requests_name_their_fields(stub):
    error = await expect_error(
        stub.RecordLineage(
            lineage_pb2.RecordLineageRequest(
                job="",
                run_id="r",
                run_region="aws:nowhere",
                inputs=[""],
                outputs=["s3://ok/x"],
                transform="drop table;",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    fields = {f for f, _ in details_of(error)["field_violations"]}
    assert fields == {"job", "run_region", "inputs[0]", "transform"}

    error = await expect_error(lineage(stub, "s3://x", max_depth=51), grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in details_of(error)["field_violations"]] == ["max_depth"]
    await expect_error(lineage(stub, "s3://never/seen"), grpc.StatusCode.NOT_FOUND)

    future = datetime.now(UTC) + timedelta(days=1)
    error = await expect_error(
        stub.EndLineage(
            lineage_pb2.EndLineageRequest(job="j", inputs=["s3://a"], outputs=["s3://b"], end_time=to_timestamp(future))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in details_of(error)["field_violations"]] == ["end_time"]
