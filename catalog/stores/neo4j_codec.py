"""Conversions between the domain model and the property maps the Neo4j store keeps, and
the checks and page tokens of its requests.

Neo4j properties hold scalars and homogeneous lists only, so a dataset version keeps its
content as JSON text and copies of the filterable parts as properties. Times are integers, microseconds since the epoch (as in the
history format), which keeps comparisons exact and avoids time-zone conversions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from domicile.catalog.model import Dataset, Edge, from_micros
from domicile.catalog.stores.history_format import dataset_content, dataset_from_content, time_or_none


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


def canonical_json(content: Any) -> str:
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
