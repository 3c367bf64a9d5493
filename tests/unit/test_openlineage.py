"""OpenLineage RunEvent parsing and mapping (lineage.openlineage), without I/O."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domicile.catalog.regions import RegionRegistry
from domicile.errors import DomicileError, ErrorCode
from domicile.lineage.openlineage import (
    EventType,
    dataset_id,
    parse_event_time,
    parse_run_event,
    region_for_namespace,
)

REGIONS = RegionRegistry.builtin()
SCHEMAS = Path(__file__).resolve().parents[2] / "lineage" / "schemas"


def event(**overrides) -> dict:
    """A COMPLETE RunEvent shaped like the openlineage-python client's JSON."""
    document = {
        "eventTime": "2026-11-30T10:00:00.123456+00:00",
        "eventType": "COMPLETE",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "0193a7c1-8b1e-7c3a-9d51-1f2e3d4c5b6a", "facets": {}},
        "job": {"namespace": "airflow-eu", "name": "daily.customer_rollup", "facets": {}},
        "inputs": [{"namespace": "s3://bank-eu", "name": "customers", "facets": {}, "inputFacets": {}}],
        "outputs": [{"namespace": "s3://bank-eu", "name": "rollup", "facets": {}, "outputFacets": {}}],
    }
    document.update(overrides)
    return document


def violations(document, **kwargs) -> dict[str, str]:
    with pytest.raises(DomicileError) as info:
        parse_run_event(document, regions=REGIONS, **kwargs)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return {v.field: v.description for v in info.value.violations}


def test_complete_event_maps_ids_run_and_edges_sides():
    parsed = parse_run_event(event(), regions=REGIONS)
    assert parsed.event_type is EventType.COMPLETE
    assert parsed.records_lineage
    assert parsed.run.job == "airflow-eu/daily.customer_rollup"
    assert parsed.run.run_id == "0193a7c1-8b1e-7c3a-9d51-1f2e3d4c5b6a"
    assert parsed.run.event_time == datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
    assert parsed.inputs == ("s3://bank-eu/customers",)
    assert parsed.outputs == ("s3://bank-eu/rollup",)
    assert parsed.datasets == ()  # no facets, no namespace map: nothing to merge


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("s3://bank-eu", "customers", "s3://bank-eu/customers"),
        ("postgres://db.eu:5432", "core.public.accounts", "postgres://db.eu:5432/core.public.accounts"),
        ("hdfs://nn:8020", "/warehouse/t", "hdfs://nn:8020/warehouse/t"),
        ("s3://bank-eu/", "customers", "s3://bank-eu/customers"),
    ],
)
def test_dataset_id_joins_namespace_and_name_once(namespace, name, expected):
    assert dataset_id(namespace, name) == expected


@pytest.mark.parametrize("event_type", ["START", "FAIL", "ABORT", "OTHER"])
def test_only_complete_and_running_record_lineage(event_type):
    parsed = parse_run_event(event(eventType=event_type), regions=REGIONS)
    assert not parsed.records_lineage


def test_missing_event_type_records_nothing():
    document = event()
    del document["eventType"]
    assert not parse_run_event(document, regions=REGIONS).records_lineage


def test_running_event_is_its_own_run_so_complete_adds_its_outputs():
    running = parse_run_event(event(eventType="RUNNING"), regions=REGIONS)
    complete = parse_run_event(event(), regions=REGIONS)
    assert running.records_lineage
    assert running.run.run_id == "0193a7c1-8b1e-7c3a-9d51-1f2e3d4c5b6a#RUNNING@2026-11-30T10:00:00.123456+00:00"
    assert complete.run.run_id != running.run.run_id
    # Redelivery of the same RUNNING event maps to the same run (idempotent).
    assert parse_run_event(event(eventType="RUNNING"), regions=REGIONS).run == running.run


def test_classifications_from_tags_facet_and_schema_field_tags():
    document = event()
    document["inputs"][0]["facets"] = {
        "tags": {
            "_producer": "p",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet",
            "tags": [
                {"key": "classification", "value": "pii"},
                {"key": "classification", "value": "pii.contact", "field": "email"},
                {"key": "owner", "value": "team-risk"},
            ],
        },
        "schema": {
            "_producer": "p",
            "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
            "fields": [
                {"name": "iban", "type": "STRING", "tags": [{"key": "classification", "value": "FINANCIAL.ACCOUNT"}]},
                {
                    "name": "address",
                    "type": "STRUCT",
                    "fields": [
                        {"name": "street", "tags": [{"key": "classification", "value": "PII.CONTACT"}]},
                    ],
                },
                {"name": "amount", "type": "DECIMAL"},
            ],
        },
    }
    (facts,) = parse_run_event(document, regions=REGIONS).datasets
    assert facts.dataset_id == "s3://bank-eu/customers"
    assert facts.classifications == {"PII"}
    assert dict(facts.fields) == {
        "address.street": {"PII.CONTACT"},
        "email": {"PII.CONTACT"},
        "iban": {"FINANCIAL.ACCOUNT"},
    }


def test_residency_facets_give_region_origins_labels_and_run_attributes():
    document = event()
    document["outputs"][0]["facets"] = {
        "residency": {
            "_producer": "p",
            "_schemaURL": "https://domicile.dev/spec/facets/1-0-0/ResidencyDatasetFacet.json#/$defs/ResidencyDatasetFacet",
            "region": "aws:eu-central-1",
            "origins": ["DE", "FR"],
            "classifications": ["FINANCIAL.PAYMENT"],
        }
    }
    document["run"]["facets"] = {
        "residency": {"_producer": "p", "_schemaURL": "s", "region": "aws:eu-west-1", "transform": "aggregate"}
    }
    parsed = parse_run_event(document, regions=REGIONS)
    (facts,) = parsed.datasets
    assert facts.locations == {"aws:eu-central-1"}
    assert facts.origins == {"DE", "FR"}
    assert facts.classifications == {"FINANCIAL.PAYMENT"}
    assert (parsed.run.run_region, parsed.run.transform) == ("aws:eu-west-1", "aggregate")


def test_namespace_map_covers_datasets_and_job_without_residency_facets():
    mapping = {"s3://bank-eu-*": "aws:eu-central-1", "airflow-eu": "aws:eu-west-1", "s3://*": "aws:us-east-1"}
    document = event(job={"namespace": "airflow-eu", "name": "j"})
    document["inputs"][0]["namespace"] = "s3://bank-eu-prod"
    document["outputs"][0]["namespace"] = "s3://bank-us"
    parsed = parse_run_event(document, regions=REGIONS, namespace_regions=mapping)
    locations = {f.dataset_id: f.locations for f in parsed.datasets}
    assert locations == {"s3://bank-eu-prod/customers": {"aws:eu-central-1"}, "s3://bank-us/rollup": {"aws:us-east-1"}}
    assert parsed.run.run_region == "aws:eu-west-1"


def test_residency_region_wins_over_namespace_map():
    document = event()
    document["inputs"][0]["facets"] = {"residency": {"region": "gcp:europe-west3"}}
    parsed = parse_run_event(document, regions=REGIONS, namespace_regions={"s3://bank-eu": "aws:eu-central-1"})
    (facts,) = [f for f in parsed.datasets if f.dataset_id == "s3://bank-eu/customers"]
    assert facts.locations == {"gcp:europe-west3"}


def test_region_for_namespace_first_match_wins():
    mapping = {"s3://bank-eu-*": "aws:eu-central-1", "s3://*": "aws:us-east-1"}
    assert region_for_namespace(mapping, "s3://bank-eu-1") == "aws:eu-central-1"
    assert region_for_namespace(mapping, "s3://other") == "aws:us-east-1"
    assert region_for_namespace(mapping, "gs://x", "gs://x/t") == ""


def test_self_pairs_and_duplicates_collapse():
    document = event()
    document["inputs"].append(copy.deepcopy(document["inputs"][0]))
    parsed = parse_run_event(document, regions=REGIONS)
    assert parsed.inputs == ("s3://bank-eu/customers",)


def test_every_problem_is_reported_with_its_path():
    document = event(eventType="DONE", eventTime="yesterday")
    document["run"] = {"runId": 7}
    document["job"] = {"namespace": "", "name": "j"}
    document["inputs"] = [{"namespace": "s3://x"}, "s3://y/z"]
    document["outputs"][0]["facets"] = {
        "residency": {"region": "mars:olympus-1", "origins": ["Germany"], "classifications": ["pii"]},
        "tags": {"tags": [{"key": "classification", "value": "not a label!"}]},
    }
    document["run"]["facets"] = {"residency": {"transform": "drop tables;"}}
    found = violations(document)
    assert set(found) >= {
        "eventType",
        "eventTime",
        "run.runId",
        "job.namespace",
        "inputs[0].name",
        "inputs[1]",
        "outputs[0].facets.residency.region",
        "outputs[0].facets.residency.origins[0]",
        "outputs[0].facets.residency.classifications[0]",
        "outputs[0].facets.tags.tags[0].value",
        "run.facets.residency.transform",
    }
    assert "DONE" in found["eventType"]
    assert "mars:olympus-1" in found["outputs[0].facets.residency.region"]


def test_namespace_map_to_unknown_region_is_reported_against_the_dataset():
    found = violations(event(), namespace_regions={"s3://bank-eu": "aws:nowhere-1"})
    assert "aws:nowhere-1" in found["inputs[0].namespace"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], "event"),
        ("{}", "event"),
        (
            {
                "eventTime": "2026-11-30T10:00:00Z",
                "producer": "p",
                "schemaURL": "s",
                "job": {"namespace": "n", "name": "j"},
            },
            "run",
        ),
    ],
)
def test_not_a_run_event(document, field):
    assert field in violations(document)


def test_wrong_types_of_facets_are_rejected():
    document = event()
    document["outputs"][0]["facets"] = {
        "tags": {"tags": "classification=PII"},
        "schema": {"fields": [{"name": "x", "tags": {}}]},
    }
    found = violations(document)
    assert found["outputs[0].facets.tags.tags"] == "must be an array, not a string"
    assert found["outputs[0].facets.schema.fields[0].tags"] == "must be an array, not an object"


def test_unknown_facets_and_fields_are_ignored():
    document = event(customTopLevel=1)
    document["inputs"][0]["facets"] = {
        "dataSource": {"name": "x", "uri": "s3://bank-eu"},
        "documentation": {"description": 3},
    }
    assert parse_run_event(document, regions=REGIONS).datasets == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, tzinfo=UTC)),
        ("2026-11-30T12:00:00.5+02:00", datetime(2026, 11, 30, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-30T10:00:00.123456789Z", datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-30T10:00:00+0000", datetime(2026, 11, 30, 10, tzinfo=UTC)),
    ],
)
def test_event_times(text, expected):
    assert parse_event_time(text) == expected


@pytest.mark.parametrize("text", ["2026-11-30T10:00:00", "2026-11-30", "30/11/2026 10:00Z", "2026-13-30T10:00:00Z"])
def test_event_times_without_offset_or_invalid_are_refused(text):
    with pytest.raises(ValueError):
        parse_event_time(text)


@pytest.mark.parametrize("name", ["residency-facet.json", "residency-run-facet.json"])
def test_facet_schemas_are_json_schemas_naming_the_facet_fields(name):
    schema = json.loads((SCHEMAS / name).read_text("utf-8"))
    assert schema["$schema"].startswith("https://json-schema.org/")
    definition = next(iter(schema["$defs"].values()))
    properties = definition["allOf"][1]["properties"]
    expected = {"region", "origins", "classifications"} if name == "residency-facet.json" else {"region", "transform"}
    assert set(properties) == expected
