"""The Neo4j store's conversions: version properties, edges, page tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from domicile.catalog.model import Dataset, DatasetFilter, Edge, Field, Protection, to_micros
from domicile.catalog.stores.common import decode_page_token, encode_page_token, filter_fingerprint
from domicile.catalog.stores.neo4j_codec import dataset_from_version, edge_from_properties, version_properties
from domicile.errors import DomicileError, ErrorCode

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stored(dataset: Dataset, **managed) -> dict:
    """The properties a DatasetVersion node holds for `dataset` (as the store writes them)."""
    props = version_properties(dataset)
    props.update(
        revision=managed.get("revision", 3),
        valid_from=to_micros(T0),
        create_time=to_micros(T0),
        updated_by=managed.get("updated_by", "alice"),
    )
    return props


def test_a_version_reads_back_as_the_normalized_dataset_with_store_fields():
    dataset = Dataset(
        id="s3://bank-eu/customers",
        name="customers",
        classifications=("PII", "FINANCIAL", "PII"),
        origins=("FR", "DE"),
        locations=("aws:eu-central-1",),
        tags={"tier": "gold", "area": "crm"},
        fields=(Field("email", ("PII.CONTACT", "PII.CONTACT")), Field("iban", ("FINANCIAL.PAYMENT",))),
        protection=Protection(encrypted_at_rest=True),
    )
    back = dataset_from_version(stored(dataset))
    assert back.same_content(dataset)
    assert back.classifications == ("FINANCIAL", "PII")
    assert [f.name for f in back.fields] == ["email", "iban"]  # field order is kept
    assert (back.revision, back.create_time, back.update_time, back.updated_by) == (3, T0, T0, "alice")


def test_filter_copies_hold_own_and_field_labels():
    props = version_properties(
        Dataset.create("s3://x", classifications=["PII"], fields=[Field("iban", ("FINANCIAL.PAYMENT",))])
    )
    assert props["all_classifications"] == ["FINANCIAL.PAYMENT", "PII"]


def test_equal_content_gives_equal_bodies_whatever_the_input_order():
    a = Dataset.create("s3://x", origins=["DE", "FR"], tags={"a": "1", "b": "2"})
    b = Dataset(id="s3://x", origins=("FR", "DE", "FR"), tags={"b": "2", "a": "1"})
    assert version_properties(a)["body"] == version_properties(b)["body"]
    assert version_properties(a)["body"] != version_properties(Dataset.create("s3://x", origins=["DE"]))["body"]


def test_an_edge_without_end_time_is_current():
    props = {
        "input": "s3://a",
        "output": "s3://b",
        "job": "etl",
        "transform": "",
        "run_id": "r1",
        "record_time": to_micros(T0),
    }
    assert edge_from_properties(props) == Edge("s3://a", "s3://b", "etl", "", "r1", T0, None)


def test_page_tokens_round_trip_and_pin_as_of():
    fingerprint = filter_fingerprint(DatasetFilter(origin="DE"))
    token = encode_page_token("datasets", "s3://m", 123, fingerprint)
    assert decode_page_token(token, "datasets", None, fingerprint) == ("s3://m", 123)
    assert decode_page_token(token, "datasets", 123, fingerprint) == ("s3://m", 123)
    assert decode_page_token("", "datasets", 7, fingerprint) == (None, 7)


def _forged(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"not json").decode(),
        _forged(["a list"]),
        _forged({"k": "datasets", "after": 5, "as_of": None, "f": ""}),
        _forged({"k": "datasets", "after": "x", "as_of": True, "f": ""}),
        _forged({"k": "edges", "after": "x", "as_of": None, "f": ""}),
        _forged({"k": "datasets", "after": "x", "as_of": None}),
    ],
)
def test_malformed_or_foreign_tokens_are_invalid_argument(token):
    with pytest.raises(DomicileError) as caught:
        decode_page_token(token, "datasets", None, "")
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert caught.value.violations[0].field == "page_token"


def test_a_token_used_with_other_filters_or_another_as_of_is_refused():
    token = encode_page_token("datasets", "s3://m", 123, filter_fingerprint(DatasetFilter(origin="DE")))
    with pytest.raises(DomicileError, match="other filters"):
        decode_page_token(token, "datasets", 123, filter_fingerprint(DatasetFilter(origin="FR")))
    with pytest.raises(DomicileError, match="another as_of"):
        decode_page_token(token, "datasets", 456, filter_fingerprint(DatasetFilter(origin="DE")))
