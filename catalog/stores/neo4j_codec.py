"""Conversions between the domain model and the property maps the Neo4j store keeps, and
the checks and page tokens of its requests.

Neo4j properties hold scalars and homogeneous lists only, so a dataset version keeps its
content as JSON text and copies of the filterable parts as properties. Times are integers, microseconds since the epoch (as in the
history format), which keeps comparisons exact and avoids time-zone conversions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from domicile.catalog.model import MAX_ID_BYTES, Dataset, DatasetFilter, Edge, from_micros
from domicile.catalog.stores.history_format import dataset_content, dataset_from_content, time_or_none
from domicile.errors import invalid_field


def check_id(dataset_id: str, field_path: str) -> None:
    """INVALID_ARGUMENT on `field_path` unless `dataset_id` is a possible dataset id."""
    if not dataset_id or len(dataset_id.encode()) > MAX_ID_BYTES:
        raise invalid_field(field_path, f"must be a dataset id of 1 to {MAX_ID_BYTES} bytes")


def version_properties(dataset: Dataset) -> dict[str, Any]:
    """The content properties of a `DatasetVersion` node for `dataset`.

    `body` is the history-format content as canonical JSON (so equal content gives equal
    text, and export/import copy it verbatim); the other properties are copies that Cypher
    filters on: `all_classifications` holds own plus field labels.
    """
    content = dataset_content(dataset)
    return {
        "id": content["id"],
        "name": content["name"],
        "owner": content["owner"],
        "description": content["description"],
        "origins": content["origins"],
        "locations": content["locations"],
        "all_classifications": sorted(dataset.all_classifications),
        "placeholder": content["placeholder"],
        "body": canonical_json(content),
    }


def canonical_json(content: Mapping[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dataset_from_version(props: Mapping[str, Any]) -> Dataset:
    """The `Dataset` a `DatasetVersion` node stands for, store-managed fields included."""
    return dataset_from_content(
        json.loads(props["body"]),
        revision=props["revision"],
        create_time=from_micros(props["create_time"]),
        update_time=from_micros(props["valid_from"]),
        updated_by=props["updated_by"],
    )


def edge_from_properties(props: Mapping[str, Any]) -> Edge:
    """The `Edge` a DERIVED_FROM relationship stands for."""
    return Edge(
        input=props["input"],
        output=props["output"],
        job=props["job"],
        transform=props["transform"],
        run_id=props["run_id"],
        record_time=from_micros(props["record_time"]),
        end_time=time_or_none(props.get("end_time")),
    )


def filter_fingerprint(filter: DatasetFilter) -> str:
    """A short hash of a listing's filters, kept in its page tokens."""
    text = json.dumps([filter.classification, filter.origin, filter.region, filter.owner, filter.query, filter.include_placeholders])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_page_token(kind: str, after: str, as_of: int | None, fingerprint: str) -> str:
    """An opaque token for the page after key `after` of a `kind` listing pinned to `as_of`.

    The same shape as the SQLite backend's tokens: urlsafe base64 of
    `{"k": kind, "after": ..., "as_of": us|null, "f": fingerprint}`.
    """
    raw = json.dumps({"k": kind, "after": after, "as_of": as_of, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, kind: str, as_of: int | None, fingerprint: str) -> tuple[str | None, int | None]:
    """(last key returned, as_of) of `token`; (None, as_of) for the first page ("").

    The token's `as_of` wins when the request gives none, so later pages read the same
    instant as the first. INVALID_ARGUMENT (field "page_token") for a token that is not
    ours, or that belongs to another listing, other filters or another `as_of`.
    """
    if not token:
        return None, as_of
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, token_as_of = data["after"], data["as_of"]
        if (
            data["k"] != kind
            or not isinstance(after, str)
            or not (token_as_of is None or (isinstance(token_as_of, int) and not isinstance(token_as_of, bool)))
        ):
            raise ValueError("unexpected token content")
        token_fingerprint = data["f"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_field("page_token", "malformed page token") from exc
    if token_fingerprint != fingerprint:
        raise invalid_field("page_token", "the page token belongs to a request with other filters")
    if as_of is not None and token_as_of != as_of:
        raise invalid_field("page_token", "the page token belongs to a request with another as_of")
    return after, token_as_of
