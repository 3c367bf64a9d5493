"""The backend-neutral history record format of `GraphStore.export_history` / `import_history`.

Every backend writes and reads exactly this format, so a catalog exported from SQLite imports
into Neo4j and back. A history is a sequence of JSON-able dicts ("records"); `domicile export`
writes one record per line (JSON Lines). Each record has a `"type"`. All times are integers:
microseconds since the Unix epoch, UTC (`domicile.catalog.model.to_micros`). Strings are
stored exactly as written; absent optional values are JSON `null`.

Record types, in the order an export emits them (and `import_history` requires)
------------------------------------------------------------------------------------

1. ``header`` -- exactly one, first::

       {"type": "header", "format": "domicile-history", "version": 1}

2. ``revision`` -- one per catalog revision, ascending, contiguous from 1 (every write bumps
   the revision by exactly one)::

       {"type": "revision", "revision": 7, "time": 1764470000000000,
        "principal": "alice@bank.example", "summary": "upsert s3://bank-eu/customers"}

   `time` is the commit time of that write; revision times never decrease. `summary` is
   free text for humans.

3. ``dataset_version`` -- every version a dataset ever had (placeholders included), sorted by
   (`revision`, `dataset.id`)::

       {"type": "dataset_version", "revision": 7,
        "valid_from": 1764470000000000, "valid_to": null,
        "end_revision": null, "deleted": false,
        "create_time": 1764460000000000, "updated_by": "alice@bank.example",
        "dataset": {DATASET}}

   - `revision`: the write that created this version (`Dataset.revision`); `valid_from` is
     that write's time (`Dataset.update_time`).
   - `valid_to` / `end_revision`: when and by which write the version stopped being true
     (`null`/`null` while it is current). A version is ended either by the next version of
     the same dataset (then `valid_to` equals the next version's `valid_from` and
     `end_revision` its `revision`) or by a delete (`deleted: true`; the dataset has no
     version starting at `end_revision`).
   - `create_time`: `Dataset.create_time` of this version; `updated_by`: `Dataset.updated_by`.
   - A version is visible at instant t when `valid_from <= t < valid_to` (`valid_to` null =
     unbounded). At most one version of a dataset is visible at any instant.

   ``DATASET`` is the dataset's content in normal form (sorted, de-duplicated lists; tags
   sorted by key), exactly the keys below::

       {"id": "s3://bank-eu/customers", "name": "customers", "owner": "crm-team",
        "description": "", "classifications": ["PII.CONTACT"], "origins": ["DE", "FR"],
        "locations": ["aws:eu-central-1"], "tags": {"tier": "gold"},
        "fields": [{"name": "email", "classifications": ["PII.CONTACT"]}],
        "protection": {"encrypted_at_rest": true, "field_level_encrypted": false,
                       "tokenized": false},
        "placeholder": false}

   `fields` keep their given order; `placeholder` is true for datasets that `record_lineage`
   created because a run referenced an unknown id.

4. ``edge`` -- every lineage edge version, sorted by (`revision`, `input`, `output`, `job`)::

       {"type": "edge", "input": "s3://a", "output": "s3://b", "job": "etl.daily",
        "transform": "anonymize", "run_id": "r-42",
        "record_time": 1764470000000000, "end_time": null,
        "revision": 8, "end_revision": null}

   True from `record_time` (the time of write `revision`) until `end_time` (set by
   `end_revision`, which may be earlier than that write's own time when `end_edges` was
   given an explicit `at`). At most one version of an (input, output, job) key is current.

5. ``run`` -- every recorded run, sorted by (`record_time`, `job`, `run_id`)::

       {"type": "run", "job": "etl.daily", "run_id": "r-42", "run_region": "aws:eu-west-1",
        "transform": "anonymize", "event_time": 1764469999000000,
        "record_time": 1764470000000000, "principal": "airflow"}

   `event_time` is the producer's time as given (null when absent); `record_time` is the
   store's time when the run was recorded. Recording a run whose edges all exist already
   changes no edge and bumps no revision, so runs carry no revision.

The change feed (`changes_since`) is not exported: it is a function of the records above.
Revision r's changes are, in this order: DATASET_UPSERTED for each version with
`revision == r` (by dataset id), DATASET_DELETED for each version with `deleted` and
`end_revision == r`, EDGE_ENDED for each edge with `end_revision == r`, EDGE_ADDED for each
edge with `revision == r` (each group by its sort order above).

Importers must reject (INVALID_ARGUMENT) a missing or unknown header, an unknown record
type, or a record missing a field; this module's `decode_*` functions do those checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domicile.catalog.model import Dataset, Edge, Field, Protection, ResidencyRow, Run, from_micros, to_micros
from domicile.errors import invalid_field

FORMAT_NAME = "domicile-history"
FORMAT_VERSION = 1

RECORD_TYPES = ("header", "revision", "dataset_version", "edge", "run")


def header_record() -> dict[str, Any]:
    """The record every export starts with."""
    return {"type": "header", "format": FORMAT_NAME, "version": FORMAT_VERSION}


def check_header(record: Mapping[str, Any]) -> None:
    """Raises INVALID_ARGUMENT unless `record` is a header of a format version we read."""
    if record.get("type") != "header" or record.get("format") != FORMAT_NAME:
        raise invalid_field("records[0]", f"a history must start with a {FORMAT_NAME!r} header record")
    if record.get("version") != FORMAT_VERSION:
        raise invalid_field(
            "records[0].version",
            f"history format version {record.get('version')!r} is not supported (want {FORMAT_VERSION})",
        )


def micros_or_none(t: datetime | None) -> int | None:
    return None if t is None else to_micros(t)


def time_or_none(us: int | None) -> datetime | None:
    return None if us is None else from_micros(us)


def dataset_content(dataset: Dataset) -> dict[str, Any]:
    """The DATASET object of a `dataset_version` record: `dataset`'s content in normal form.

    Store-managed fields (revision, times, updated_by) are not part of it. Two datasets have
    equal content exactly when their encodings are equal, so backends may compare
    encodings to detect no-op upserts.
    """
    d = dataset.normalized()
    return {
        "id": d.id,
        "name": d.name,
        "owner": d.owner,
        "description": d.description,
        "classifications": list(d.classifications),
        "origins": list(d.origins),
        "locations": list(d.locations),
        "tags": dict(d.tags),
        "fields": [{"name": f.name, "classifications": list(f.classifications)} for f in d.fields],
        "protection": {
            "encrypted_at_rest": d.protection.encrypted_at_rest,
            "field_level_encrypted": d.protection.field_level_encrypted,
            "tokenized": d.protection.tokenized,
        },
        "placeholder": d.placeholder,
    }


def residency_row_from_content(content: Mapping[str, Any]) -> ResidencyRow:
    """`dataset_from_content(content).residency_row()` without building the Dataset (a
    fifth of the cost: every dataset is read at router start-up). The content is what
    `dataset_content` wrote, so it is already normalized."""
    labels = frozenset(content.get("classifications", ()))
    fields = content.get("fields")
    if fields:
        labels = labels.union(*(f.get("classifications", ()) for f in fields))
    return ResidencyRow(
        content["id"], labels, frozenset(content.get("origins", ())), tuple(content.get("locations", ()))
    )


def dataset_from_content(
    content: Mapping[str, Any],
    *,
    revision: int,
    create_time: datetime | None,
    update_time: datetime | None,
    updated_by: str,
) -> Dataset:
    """Inverse of `dataset_content`, with the store-managed fields supplied by the caller."""
    protection = content.get("protection") or {}
    return Dataset.create(
        content["id"],
        name=content.get("name", ""),
        owner=content.get("owner", ""),
        description=content.get("description", ""),
        classifications=content.get("classifications", ()),
        origins=content.get("origins", ()),
        locations=content.get("locations", ()),
        tags=content.get("tags") or {},
        fields=[Field(f["name"], tuple(f.get("classifications", ()))) for f in content.get("fields", ())],
        protection=Protection(
            encrypted_at_rest=bool(protection.get("encrypted_at_rest", False)),
            field_level_encrypted=bool(protection.get("field_level_encrypted", False)),
            tokenized=bool(protection.get("tokenized", False)),
        ),
        placeholder=bool(content.get("placeholder", False)),
        revision=revision,
        create_time=create_time,
        update_time=update_time,
        updated_by=updated_by,
    )


def revision_record(revision: int, time_us: int, principal: str, summary: str) -> dict[str, Any]:
    return {"type": "revision", "revision": revision, "time": time_us, "principal": principal, "summary": summary}


def dataset_version_record(
    dataset: Dataset, *, valid_to: datetime | None, end_revision: int | None, deleted: bool
) -> dict[str, Any]:
    """A `dataset_version` record for a stored version (`dataset` as the store returns it)."""
    assert dataset.update_time is not None and dataset.create_time is not None
    return {
        "type": "dataset_version",
        "revision": dataset.revision,
        "valid_from": to_micros(dataset.update_time),
        "valid_to": micros_or_none(valid_to),
        "end_revision": end_revision,
        "deleted": deleted,
        "create_time": to_micros(dataset.create_time),
        "updated_by": dataset.updated_by,
        "dataset": dataset_content(dataset),
    }


def edge_record(edge: Edge, *, revision: int, end_revision: int | None) -> dict[str, Any]:
    assert edge.record_time is not None
    return {
        "type": "edge",
        "input": edge.input,
        "output": edge.output,
        "job": edge.job,
        "transform": edge.transform,
        "run_id": edge.run_id,
        "record_time": to_micros(edge.record_time),
        "end_time": micros_or_none(edge.end_time),
        "revision": revision,
        "end_revision": end_revision,
    }


def run_record(run: Run, *, record_time: datetime, principal: str) -> dict[str, Any]:
    return {
        "type": "run",
        "job": run.job,
        "run_id": run.run_id,
        "run_region": run.run_region,
        "transform": run.transform,
        "event_time": micros_or_none(run.event_time),
        "record_time": to_micros(record_time),
        "principal": principal,
    }


# Required keys and their JSON types per record type; `None` in a tuple allows null.
_SCHEMAS: dict[str, dict[str, tuple[type | None, ...]]] = {
    "revision": {"revision": (int,), "time": (int,), "principal": (str,), "summary": (str,)},
    "dataset_version": {
        "revision": (int,),
        "valid_from": (int,),
        "valid_to": (int, None),
        "end_revision": (int, None),
        "deleted": (bool,),
        "create_time": (int,),
        "updated_by": (str,),
        "dataset": (dict,),
    },
    "edge": {
        "input": (str,),
        "output": (str,),
        "job": (str,),
        "transform": (str,),
        "run_id": (str,),
        "record_time": (int,),
        "end_time": (int, None),
        "revision": (int,),
        "end_revision": (int, None),
    },
    "run": {
        "job": (str,),
        "run_id": (str,),
        "run_region": (str,),
        "transform": (str,),
        "event_time": (int, None),
        "record_time": (int,),
        "principal": (str,),
    },
}

_DATASET_KEYS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "name": (str,),
    "owner": (str,),
    "description": (str,),
    "classifications": (list,),
    "origins": (list,),
    "locations": (list,),
    "tags": (dict,),
    "fields": (list,),
    "protection": (dict,),
    "placeholder": (bool,),
}


def check_record(record: Any, index: int) -> str:
    """Validates a non-header record (number `index` in the stream, 0-based) against the
    format above and returns its type; raises INVALID_ARGUMENT naming `records[index].key`."""
    where = f"records[{index}]"
    if not isinstance(record, Mapping):
        raise invalid_field(where, "a history record must be an object")
    kind = record.get("type")
    if kind not in _SCHEMAS:
        raise invalid_field(f"{where}.type", f"unknown history record type {kind!r}")
    for key, types in _SCHEMAS[kind].items():
        if key not in record:
            raise invalid_field(f"{where}.{key}", f"missing in {kind} record")
        value = record[key]
        if value is None and None in types:
            continue
        # bool is an int subclass: an int field must not accept true/false.
        if not isinstance(value, tuple(t for t in types if t is not None)) or (
            isinstance(value, bool) and bool not in types
        ):
            raise invalid_field(f"{where}.{key}", f"has the wrong type ({type(value).__name__})")
    if kind == "dataset_version":
        content = record["dataset"]
        for key, types in _DATASET_KEYS.items():
            if not isinstance(content.get(key), types):
                raise invalid_field(f"{where}.dataset.{key}", "missing or of the wrong type")
    return kind
