"""Moving the dataset ids inside stored access records (`catalog.dataset_ids.plan_record_renames`),
shared by the schema migrations of every backend: run accesses, observed violations and
anomalies are JSON documents (`access.codec`) that name datasets.

Each `renamed_*` returns the document with `renames` applied, or None when it names none of
them (nothing to write). An observed violation's embedded decision is left as the decision
log recorded it: the log is never rewritten, and its search finds both forms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import orjson

from domicile.access import codec


def renamed_accesses(accesses: str, renames: Mapping[str, str]) -> str | None:
    """A run's accesses (`[dataset, operation, region]` triples): moved and deduplicated."""
    triples = orjson.loads(accesses)
    if not any(dataset in renames for dataset, _, _ in triples):
        return None
    moved = {(renames.get(dataset, dataset), operation, region) for dataset, operation, region in triples}
    return json.dumps([list(triple) for triple in sorted(moved)])


def renamed_violation(body: str, renames: Mapping[str, str]) -> str | None:
    document = orjson.loads(body)
    if document["dataset_id"] not in renames:
        return None
    document["dataset_id"] = renames[document["dataset_id"]]
    return codec.encode(document)


def renamed_anomaly(body: str, renames: Mapping[str, str]) -> str | None:
    document = orjson.loads(body)
    if not any(dataset in renames for dataset in document["dataset_ids"]):
        return None
    document["dataset_ids"] = sorted({renames.get(dataset, dataset) for dataset in document["dataset_ids"]})
    return codec.encode(document)
