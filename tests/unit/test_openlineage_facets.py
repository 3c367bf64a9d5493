"""`domicile.openlineage`: the residency facets as classes of the official OpenLineage client,
serialised as the client sends them and read back as the endpoint reads them."""

from __future__ import annotations

import json

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from domicile.catalog.regions import RegionRegistry
from domicile.lineage.openlineage import parse_run_event
from domicile.openlineage import (
    DATASET_FACET_SCHEMA,
    RESIDENCY,
    RUN_FACET_SCHEMA,
    ResidencyDatasetFacet,
    ResidencyRunFacet,
)


def test_facets_serialise_as_the_schemas_describe_and_the_endpoint_reads_them():
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-30T10:00:00Z",
        run=Run(
            runId="0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b",
            facets={RESIDENCY: ResidencyRunFacet(region="aws:eu-central-1", transform="anonymize")},
        ),
        job=Job(namespace="airflow-eu", name="anonymize_customers"),
        producer="https://github.com/example/bank-pipelines",
        inputs=[
            InputDataset(
                "s3://bank-eu-lake",
                "customers",
                facets={
                    RESIDENCY: ResidencyDatasetFacet(
                        region="aws:eu-central-1", origins=("DE", "FR"), classifications=["PII.CONTACT"]
                    )
                },
            )
        ],
        outputs=[OutputDataset("s3://bank-eu-lake", "customers-anonymized")],
    )
    document = json.loads(Serde.to_json(event))
    dataset_facet = document["inputs"][0]["facets"][RESIDENCY]
    assert dataset_facet["_schemaURL"] == DATASET_FACET_SCHEMA and dataset_facet["origins"] == ["DE", "FR"]
    assert document["run"]["facets"][RESIDENCY]["_schemaURL"] == RUN_FACET_SCHEMA
    parsed = parse_run_event(document, regions=RegionRegistry.builtin(), namespace_regions={})
    assert parsed.run.run_region == "aws:eu-central-1" and parsed.run.transform == "anonymize"
    [customers] = [d for d in parsed.datasets if d.dataset_id == "s3://bank-eu-lake/customers"]
    assert customers.origins == {"DE", "FR"} and customers.classifications == {"PII.CONTACT"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ResidencyDatasetFacet(region="eu-central-1"), "not a region id"),
        (lambda: ResidencyDatasetFacet(origins=["Germany"]), "not ISO 3166-1 alpha-2 country codes"),
        (lambda: ResidencyDatasetFacet(classifications=["pii"]), "not labels"),
        (lambda: ResidencyRunFacet(transform="anonymise everything"), "not a transform name"),
    ],
)
def test_facets_refuse_what_the_server_would(build, message):
    with pytest.raises(ValueError, match=message):
        build()
