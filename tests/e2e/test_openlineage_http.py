"""OpenLineage ingestion over HTTP: the real openlineage-python client (HttpTransport)
against the running server, and raw requests for what a client would never send."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import aiohttp
import grpc
import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    schema_dataset,
    tags_dataset,
)
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from domicile.config import load_settings
from domicile.openlineage import RESIDENCY, ResidencyDatasetFacet, ResidencyRunFacet
from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import catalog_pb2, catalog_pb2_grpc, lineage_pb2, lineage_pb2_grpc
from tests.e2e.conftest import insecure_settings

# Ingestion is store-independent code over the GraphStore contract; SQLite is enough here.
sqlite_only = pytest.mark.parametrize("server", ["sqlite"], indirect=True)

PRODUCER = "https://github.com/example/bank-pipelines"


def ol_client(server, *, compression: HttpCompression | None = None) -> OpenLineageClient:
    """The client as a pipeline would configure it (an API key is sent as a bearer token;
    the insecure test server does not check it). Retries off so a refusal surfaces at once."""
    config = HttpConfig(
        url=f"http://127.0.0.1:{server.http_port}",
        endpoint="api/v1/lineage",
        auth=ApiKeyTokenProvider({"api_key": "pipeline-token"}),
        compression=compression,
        retry={"total": 0},
    )
    return OpenLineageClient(transport=HttpTransport(config))


async def emit(client: OpenLineageClient, event: RunEvent) -> None:
    # The client is synchronous and the server runs on this event loop: emit from a thread.
    await asyncio.to_thread(client.emit, event)


def run_event(
    state=RunState.COMPLETE,
    *,
    run_id=None,
    inputs=(),
    outputs=(),
    run_facets=None,
    job="daily.customer_rollup",
    event_time: str | None = None,
) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=event_time or datetime.now(UTC).isoformat(),
        run=Run(runId=run_id or str(uuid.uuid4()), facets=run_facets or {}),
        job=Job(namespace="airflow-eu", name=job),
        producer=PRODUCER,
        inputs=list(inputs),
        outputs=list(outputs),
    )


@pytest.fixture
def catalog(channel):
    return catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture
def lineage(channel):
    return lineage_pb2_grpc.LineageServiceStub(channel)


async def get(catalog, dataset_id) -> catalog_pb2.Dataset:
    return (await catalog.GetDataset(catalog_pb2.GetDatasetRequest(id=dataset_id))).dataset


async def revision_of(server) -> int:
    return await server.app.store.revision()


@sqlite_only
async def test_openlineage_client_event_records_lineage_and_dataset_attributes(server, catalog, lineage):
    customers = InputDataset(
        "s3://bank-eu",
        "customers",
        facets={
            "tags": tags_dataset.TagsDatasetFacet(
                tags=[
                    tags_dataset.TagsDatasetFacetFields(key="classification", value="pii"),
                    tags_dataset.TagsDatasetFacetFields(key="classification", value="PII.CONTACT", field="email"),
                ]
            ),
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(name="email", type="STRING"),
                    schema_dataset.SchemaDatasetFacetFields(name="country", type="STRING"),
                ]
            ),
            RESIDENCY: ResidencyDatasetFacet(region="aws:eu-central-1", origins=["DE", "FR"]),
        },
    )
    payments = InputDataset(
        "s3://bank-in",
        "card-payments",
        facets={
            RESIDENCY: ResidencyDatasetFacet(
                region="aws:ap-south-1", origins=["IN"], classifications=["FINANCIAL.PAYMENT"]
            ),
        },
    )
    rollup = OutputDataset("s3://bank-eu", "rollup")
    event = run_event(
        inputs=[customers, payments],
        outputs=[rollup],
        run_facets={RESIDENCY: ResidencyRunFacet(region="aws:eu-west-1", transform="aggregate")},
    )
    await emit(ol_client(server), event)

    stored = await get(catalog, "s3://bank-eu/customers")
    assert (list(stored.classifications), list(stored.origins), list(stored.locations)) == (
        ["PII"],
        ["DE", "FR"],
        ["aws:eu-central-1"],
    )
    assert [(f.name, list(f.classifications)) for f in stored.fields] == [("email", ["PII.CONTACT"])]
    assert not stored.placeholder
    payments_stored = await get(catalog, "s3://bank-in/card-payments")
    assert list(payments_stored.classifications) == ["FINANCIAL.PAYMENT"] and list(payments_stored.origins) == ["IN"]
    assert (await get(catalog, "s3://bank-eu/rollup")).placeholder  # no facets: a placeholder

    answer = await lineage.GetLineage(lineage_pb2.GetLineageRequest(dataset_id="s3://bank-eu/rollup"))
    edges = {(e.input, e.output, e.job, e.transform, e.run_id) for e in answer.edges}
    job, run_id = "airflow-eu/daily.customer_rollup", str(event.run.runId)
    assert edges == {
        ("s3://bank-eu/customers", "s3://bank-eu/rollup", job, "aggregate", run_id),
        ("s3://bank-in/card-payments", "s3://bank-eu/rollup", job, "aggregate", run_id),
    }


@sqlite_only
async def test_gzip_compressed_events_are_accepted(server, lineage):
    await emit(
        ol_client(server, compression=HttpCompression.GZIP),
        run_event(inputs=[InputDataset("s3://z", "in")], outputs=[OutputDataset("s3://z", "out")]),
    )
    answer = await lineage.GetLineage(lineage_pb2.GetLineageRequest(dataset_id="s3://z/out"))
    assert {n.dataset_id for n in answer.nodes} == {"s3://z/out", "s3://z/in"}


@sqlite_only
async def test_event_facets_add_to_what_the_catalog_holds(server, catalog):
    original = catalog_pb2.Dataset(
        id="s3://bank-eu/customers",
        name="Customers",
        owner="retail@bank.example",
        description="master data",
        classifications=["PII.IDENTITY"],
        origins=["AT"],
        locations=["aws:eu-west-1"],
        tags={"domain": "retail"},
        fields=[catalog_pb2.Field(name="email", classifications=["PII.CONTACT"])],
    )
    await catalog.UpsertDataset(catalog_pb2.UpsertDatasetRequest(dataset=original))
    dataset = InputDataset(
        "s3://bank-eu",
        "customers",
        facets={
            "tags": tags_dataset.TagsDatasetFacet(
                tags=[
                    tags_dataset.TagsDatasetFacetFields(key="classification", value="FINANCIAL.ACCOUNT", field="iban"),
                    tags_dataset.TagsDatasetFacetFields(key="classification", value="PII.BIOMETRIC", field="email"),
                ]
            ),
            RESIDENCY: ResidencyDatasetFacet(region="aws:eu-central-1", origins=["DE"]),
        },
    )
    await emit(ol_client(server), run_event(inputs=[dataset], outputs=[OutputDataset("s3://bank-eu", "out")]))

    merged = await get(catalog, "s3://bank-eu/customers")
    assert (merged.name, merged.owner, merged.description, dict(merged.tags)) == (
        "Customers",
        "retail@bank.example",
        "master data",
        {"domain": "retail"},
    )
    assert list(merged.classifications) == ["PII.IDENTITY"]
    assert list(merged.origins) == ["AT", "DE"]
    assert list(merged.locations) == ["aws:eu-central-1", "aws:eu-west-1"]
    assert {f.name: list(f.classifications) for f in merged.fields} == {
        "email": ["PII.BIOMETRIC", "PII.CONTACT"],
        "iban": ["FINANCIAL.ACCOUNT"],
    }


@sqlite_only
async def test_redelivered_event_changes_nothing(server):
    event = run_event(
        inputs=[InputDataset("s3://r", "in", facets={RESIDENCY: ResidencyDatasetFacet(region="aws:eu-west-1")})],
        outputs=[OutputDataset("s3://r", "out")],
    )
    client = ol_client(server)
    await emit(client, event)
    revision = await revision_of(server)
    await emit(client, event)
    assert await revision_of(server) == revision


@sqlite_only
async def test_only_complete_and_running_events_record_lineage(server, lineage):
    client = ol_client(server)
    run_id = str(uuid.uuid4())
    inputs = [InputDataset("s3://s", "in")]
    for state in (RunState.START, RunState.FAIL, RunState.ABORT, RunState.OTHER):
        await emit(client, run_event(state, run_id=run_id, inputs=inputs, outputs=[OutputDataset("s3://s", "failed")]))
    assert await revision_of(server) == 0

    await emit(
        client,
        run_event(
            RunState.RUNNING,
            run_id=run_id,
            inputs=inputs,
            outputs=[OutputDataset("s3://s", "early")],
            event_time="2026-11-30T10:00:00Z",
        ),
    )
    await emit(
        client,
        run_event(
            RunState.COMPLETE,
            run_id=run_id,
            inputs=inputs,
            outputs=[OutputDataset("s3://s", "early"), OutputDataset("s3://s", "late")],
        ),
    )
    answer = await lineage.GetLineage(
        lineage_pb2.GetLineageRequest(dataset_id="s3://s/in", direction=lineage_pb2.DIRECTION_DOWNSTREAM)
    )
    assert {n.dataset_id for n in answer.nodes} == {"s3://s/in", "s3://s/early", "s3://s/late"}


async def post(server, body: bytes | str, content_type: str = "application/json") -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{server.http_port}/api/v1/lineage", data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        return response.status, await response.json()


@sqlite_only
async def test_malformed_event_is_refused_with_400_and_changes_nothing(server, catalog):
    await catalog.UpsertDataset(
        catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id="s3://m/in", owner="o"))
    )
    revision = await revision_of(server)
    before = await get(catalog, "s3://m/in")

    good_dataset = {
        "namespace": "s3://m",
        "name": "in",
        "facets": {"residency": {"region": "aws:eu-west-1", "origins": ["DE"]}},
    }
    bad_output = {"namespace": "s3://m", "name": "out", "facets": {"residency": {"region": "aws:no-such-region"}}}
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-30T10:00:00Z",
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "airflow-eu", "name": "j"},
        "inputs": [good_dataset],
        "outputs": [bad_output],
    }
    status, body = await post(server, json.dumps(event))
    assert status == 400
    assert body["error"]["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in body["error"]["field_violations"]] == ["outputs[0].facets.residency.region"]
    assert "aws:no-such-region" in body["error"]["message"]

    assert await revision_of(server) == revision
    assert await get(catalog, "s3://m/in") == before
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await get(catalog, "s3://m/out")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@sqlite_only
async def test_dataset_ids_follow_the_naming_rules_in_normal_form(server, catalog):
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-30T10:00:00Z",
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "airflow-eu", "name": "copy"},
        "inputs": [{"namespace": "S3://Bank-EU-Lake", "name": "Customers%7e"}],
        "outputs": [{"namespace": "s3://bank-eu-lake", "name": "events "}],
    }
    status, body = await post(server, json.dumps(event))
    assert status == 400
    assert [(v["field"], "whitespace" in v["description"]) for v in body["error"]["field_violations"]] == [
        ("outputs[0] (id s3://bank-eu-lake/events )", True)
    ], body
    event["outputs"] = [{"namespace": "s3://bank-eu-lake", "name": "copy"}]
    status, body = await post(server, json.dumps(event))
    assert status == 200, body
    assert (await get(catalog, "s3://bank-eu-lake/Customers~")).placeholder
    assert (await get(catalog, "S3://BANK-EU-LAKE/Customers%7E")).id == "s3://bank-eu-lake/Customers~"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b"{not json", "application/json", 400, "event"),
        (b"[1, 2]", "application/json", 400, "event"),
        (b"\xff\xfe", "application/json", 400, "event"),
        (b"<event/>", "application/xml", 415, None),
    ],
)
@sqlite_only
async def test_bodies_that_are_not_events(server, body, content_type, status, field):
    got, answer = await post(server, body, content_type)
    assert got == status
    if field:
        assert [v["field"] for v in answer["error"]["field_violations"]] == [field]


@sqlite_only
async def test_the_client_shows_why_an_event_was_refused(server):
    """The client reports a refusal as `400 Client Error: <reason phrase> for url`: the reason
    phrase names the field and the problem."""
    event = run_event(
        inputs=[InputDataset("s3://x", "in", facets={RESIDENCY: ResidencyDatasetFacet(origins=["DE"])})],
        outputs=[OutputDataset("s3://x", "out "), OutputDataset("s3://x", "fine")],
    )
    with pytest.raises(requests.HTTPError) as info:
        await emit(ol_client(server), event)
    shown = str(info.value)
    assert shown.startswith("400 Client Error: malformed OpenLineage event (outputs[0] (id s3://x/out ): ")
    assert "must not contain whitespace (write a space as %20)" in shown and shown.endswith("/api/v1/lineage")
    body = info.value.response.json()  # the JSON body holds the same, structured
    assert body["error"]["field_violations"][0]["field"] == "outputs[0] (id s3://x/out )"


async def test_namespace_map_sets_locations(tmp_path):
    settings = insecure_settings(
        tmp_path, lineage={"namespace_regions": {"s3://bank-eu-*": "aws:eu-central-1", "airflow-eu": "aws:eu-west-1"}}
    )
    running = await create_server(settings)
    try:
        await emit(
            ol_client(running),
            run_event(
                inputs=[InputDataset("s3://bank-eu-lake", "customers")],
                outputs=[OutputDataset("s3://bank-us-lake", "copy")],
            ),
        )
        mapped = await running.app.store.get_dataset("s3://bank-eu-lake/customers")
        assert mapped.locations == ("aws:eu-central-1",) and not mapped.placeholder
        unmapped = await running.app.store.get_dataset("s3://bank-us-lake/copy")
        assert unmapped.placeholder and unmapped.locations == ()
    finally:
        await running.stop(0)


async def test_secured_endpoint_records_the_token_subject_as_principal(tmp_path):
    """Over TLS with a JWT (`--dev`), as a pipeline would send: the subject of the API-key
    token is the principal of the writes."""
    settings = load_settings(
        dev=True,
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        data_dir=tmp_path,
    )
    running = await create_server(settings)
    try:
        paths = dev_paths(tmp_path)
        token = mint_dev_token(tmp_path, scopes=["lineage:write"], subject="airflow-eu")
        transport = HttpTransport(
            HttpConfig.from_dict(
                {
                    "url": f"https://localhost:{running.http_port}",
                    "auth": {"type": "api_key", "apiKey": token},
                    "sslContext": {
                        "caCertPath": str(paths.ca_cert),
                        "clientCertPath": str(paths.client_cert),
                        "clientKeyPath": str(paths.client_key),
                    },
                    "retry": {"total": 0},
                }
            )
        )
        event = run_event(
            inputs=[InputDataset("s3://p", "in", facets={RESIDENCY: ResidencyDatasetFacet(region="aws:eu-west-1")})],
            outputs=[OutputDataset("s3://p", "out")],
        )
        await emit(OpenLineageClient(transport=transport), event)
        assert (await running.app.store.get_dataset("s3://p/in")).updated_by == "airflow-eu"
        assert (await running.app.store.get_dataset("s3://p/out")).updated_by == "airflow-eu"
    finally:
        await running.stop(0)
