"""Conversions between the domain model and the property maps the Neo4j store keeps.

Neo4j properties hold scalars and homogeneous lists only, so a dataset version keeps its
content as JSON text and copies of the filterable parts as properties. Times are integers, microseconds since the epoch (as in the
history format), which keeps comparisons exact and avoids time-zone conversions.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domicile.catalog.model import Dataset, Edge, from_micros, to_micros
from domicile.catalog.stores.history_format import dataset_content, dataset_from_content, time_or_none
from domicile.errors import invalid_field


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
        end_time=time_or_none(props["end_time"]),
    )


def encode_page_token(last_key: list[str], as_of: datetime | None) -> str:
    """An opaque token for the page after `last_key`, pinned to `as_of`."""
    body = {"after": last_key, "as_of": None if as_of is None else to_micros(as_of)}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, key_length: int, as_of: datetime | None) -> tuple[list[str] | None, datetime | None]:
    """(last key, as_of) of a token from `encode_page_token`; (None, as_of) for "".

    The token's `as_of` wins when the request gives none, so later pages of a listing read
    the same instant as the first; a request naming a different instant is INVALID_ARGUMENT,
    as is a token that is not ours.
    """
    if not token:
        return None, as_of
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        after = body["after"]
        token_as_of = body["as_of"]
        if (
            not isinstance(after, list)
            or len(after) != key_length
            or not all(isinstance(part, str) for part in after)
            or not (token_as_of is None or (isinstance(token_as_of, int) and not isinstance(token_as_of, bool)))
        ):
            raise ValueError("unexpected token content")
        pinned = None if token_as_of is None else from_micros(token_as_of)
    except (ValueError, KeyError, TypeError, UnicodeEncodeError, binascii.Error, OverflowError) as exc:
        raise invalid_field("page_token", "malformed page token") from exc
    if as_of is not None and (pinned is None or to_micros(as_of) != token_as_of):
        raise invalid_field("page_token", "the page token belongs to a listing at another as_of")
    return after, pinned
