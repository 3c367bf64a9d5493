"""OpenLineage RunEvents → Domicile lineage: parsing, validation and mapping (no I/O).

`parse_run_event` turns one decoded JSON document, exactly as the OpenLineage clients send it
(`POST /api/v1/lineage`, see `lineage.http`), into a `LineageEvent`: the run to record, the
edges to create and the dataset attributes the event reports. It validates the *whole*
event first and raises one INVALID_ARGUMENT error naming every problem (dotted JSON paths
such as `outputs[1].facets.residency.region`), so a malformed event never leads to a
partial write.

Mapping rules (documented for users in docs/lineage.md):

- Dataset id = `namespace/name` (a trailing `/` of the namespace and a leading `/` of the
  name are not doubled: `hdfs://nn:8020` + `/warehouse/t` → `hdfs://nn:8020/warehouse/t`),
  checked and normalised as every dataset id is (`catalog.dataset_ids`: `S3://Bank` + `x`
  is `s3://bank/x`).
  Job id = `namespace/name` of the job, the same way.
- Which events create lineage: only COMPLETE (the run succeeded) and RUNNING (a long-running
  or streaming run reporting what it writes) create edges and update datasets. START (outputs
  are only announced, nothing is written yet), FAIL, ABORT, OTHER and events without
  `eventType` are validated and acknowledged, but change nothing.
- Edges: every output DERIVED_FROM every input, except a dataset paired with itself (an
  in-place update such as `MERGE INTO t ... FROM t` is not lineage between two datasets).
- Run id: the OpenLineage `run.runId` for COMPLETE. A RUNNING event is recorded as its own
  run `"<runId>#RUNNING@<eventTime>"`: runs are idempotent per (job, run id), so if RUNNING
  used the plain runId, the outputs that only the final COMPLETE reports would be dropped.
  Re-sending the same event (same eventTime) still creates nothing new.
- Classifications: `tags` dataset facet entries with key `classification` (value = the
  label, upper-cased: `pii.contact` → `PII.CONTACT`; with `field` set, a label of that
  column); `tags` of `schema` facet fields (same key, nested fields named `parent.child`);
  `classifications` of the `residency` dataset facet (strict: labels as written).
- Origins: `origins` of the `residency` dataset facet (ISO 3166-1 alpha-2 codes).
- Location: `region` of the `residency` dataset facet; else the first
  `lineage.namespace_regions` glob matching the dataset's namespace or its id.
- Run region and transform: `residency` run facet (`region`, `transform`); the run region
  falls back to the first `namespace_regions` glob matching the job namespace.

The custom facets are described by JSON Schemas in `lineage/schemas/`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from domicile.catalog.dataset_ids import check_dataset_id
from domicile.catalog.model import Run
from domicile.catalog.regions import RegionRegistry
from domicile.catalog.validation import LABEL, MAX_LABEL_LENGTH, check_country
from domicile.errors import FieldErrors, invalid_field
from domicile.lineage.recording import (
    MAX_DATASETS_PER_SIDE,
    check_edge_count,
    check_job,
    check_run_id,
    check_transform,
)

RESIDENCY_FACET = "residency"
CLASSIFICATION_TAG_KEY = "classification"
MAX_FACET_ENTRIES = 2000
MAX_NAMESPACE = 1024


class EventType(enum.Enum):
    START = "START"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ABORT = "ABORT"
    FAIL = "FAIL"
    OTHER = "OTHER"

    @property
    def creates_lineage(self) -> bool:
        """Only a successful run or one reporting progress has written its outputs."""
        return self in (EventType.COMPLETE, EventType.RUNNING)

    @property
    def reads_inputs(self) -> bool:
        """A run that started (and then ran, failed or was aborted) has read its inputs."""
        return self is not EventType.OTHER


@dataclass(frozen=True)
class DatasetFacts:
    """What one event reports about a dataset, to be merged into the catalog.

    `name` is the OpenLineage dataset name, used only when the catalog does not know the
    dataset yet or knows it only as a placeholder. `fields` holds only columns that carry
    labels.
    """

    dataset_id: str
    name: str = ""
    classifications: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def describes_anything(self) -> bool:
        return bool(self.classifications or self.origins or self.locations or self.fields)


@dataclass(frozen=True)
class LineageEvent:
    """A validated RunEvent, mapped to the domain.

    `records_lineage` is False for event types that change nothing (see module docstring);
    `run`, `inputs`, `outputs` and `datasets` are filled in either way, for the answer.
    """

    event_type: EventType | None
    run: Run
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    datasets: tuple[DatasetFacts, ...]
    # The OpenLineage runId as sent (`run.run_id` differs for RUNNING events) and producer.
    source_run_id: str = ""
    producer: str = ""

    @property
    def records_lineage(self) -> bool:
        return self.event_type is not None and self.event_type.creates_lineage


def dataset_id(namespace: str, name: str) -> str:
    """The Domicile dataset id of an OpenLineage dataset (`namespace/name`)."""
    return f"{namespace.rstrip('/')}/{name.lstrip('/')}"


def region_for_namespace(namespace_regions: Mapping[str, str], *candidates: str) -> str:
    """The region of the first glob in `namespace_regions` (in order) matching any of
    `candidates` (a namespace, a dataset id); "" when none matches. Case-sensitive."""
    for pattern, region in namespace_regions.items():
        if any(fnmatchcase(candidate, pattern) for candidate in candidates):
            return region
    return ""


def parse_event_time(text: str) -> datetime:
    """An OpenLineage `eventTime` (ISO 8601 with offset or `Z`) as aware UTC.

    Producers on the JVM send up to nanosecond precision; fractions beyond microseconds are
    truncated (Python's datetime stops there). A time without offset is a ValueError: the
    spec requires one, and guessing the zone would misplace the event in history.
    """
    match = re.fullmatch(r"(.+?T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})", text.strip())
    if not match:
        raise ValueError("not an ISO 8601 date-time with a UTC offset, e.g. 2026-11-30T10:00:00.000Z")
    base, fraction, offset = match.groups()
    fraction = (fraction or ".0")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    value = datetime.fromisoformat(f"{base}{fraction}{offset}")
    return value.astimezone(UTC)


class _Reader:
    """Typed access to the decoded JSON, recording a violation (with its path) per problem."""

    def __init__(self, errors: FieldErrors) -> None:
        self.errors = errors

    def obj(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> Mapping[str, Any] | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.errors.add(path, "is required")
            return None
        if not isinstance(value, Mapping):
            self.errors.add(path, f"must be an object, not {_json_type(value)}")
            return None
        return value

    def array(self, parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.add(path, f"must be an array, not {_json_type(value)}")
            return []
        if len(value) > MAX_FACET_ENTRIES:
            self.errors.add(path, f"at most {MAX_FACET_ENTRIES} entries")
            return []
        return value

    def string(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool, limit: int = 1024) -> str:
        value = parent.get(key)
        if value is None:
            if required:
                self.errors.add(path, "is required")
            return ""
        if not isinstance(value, str):
            self.errors.add(path, f"must be a string, not {_json_type(value)}")
            return ""
        if required and not value:
            self.errors.add(path, "must not be empty")
        if len(value) > limit:
            self.errors.add(path, f"must be at most {limit} characters")
            return ""
        return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "an object"


@dataclass
class _FactsBuilder:
    name: str
    classifications: set[str] = field(default_factory=set)
    origins: set[str] = field(default_factory=set)
    locations: set[str] = field(default_factory=set)
    fields: dict[str, set[str]] = field(default_factory=dict)

    def add_field_label(self, field_name: str, label: str) -> None:
        self.fields.setdefault(field_name, set()).add(label)

    def build(self, dataset_id_: str) -> DatasetFacts:
        return DatasetFacts(
            dataset_id=dataset_id_,
            name=self.name,
            classifications=frozenset(self.classifications),
            origins=frozenset(self.origins),
            locations=frozenset(self.locations),
            fields={name: frozenset(labels) for name, labels in sorted(self.fields.items())},
        )


def parse_run_event(
    document: Any,
    *,
    regions: RegionRegistry,
    namespace_regions: Mapping[str, str] | None = None,
) -> LineageEvent:
    """Validate and map one OpenLineage RunEvent (decoded JSON).

    Raises INVALID_ARGUMENT listing every problem found; on success the result holds only
    valid ids, labels, country codes and known regions, so recording it cannot fail on
    input. Unknown facets and fields are ignored, as the OpenLineage spec asks of consumers.
    """
    namespace_regions = namespace_regions or {}
    errors = FieldErrors()
    read = _Reader(errors)
    if not isinstance(document, Mapping):
        raise invalid_field("event", f"must be a JSON object (an OpenLineage RunEvent), not {_json_type(document)}")

    event_type = _event_type(read, document)
    event_time_text = read.string(document, "eventTime", "eventTime", required=True, limit=64)
    event_time = None
    if event_time_text:
        try:
            event_time = parse_event_time(event_time_text)
        except ValueError as exc:
            errors.add("eventTime", f"{event_time_text!r}: {exc}")
    producer = read.string(document, "producer", "producer", required=True)
    read.string(document, "schemaURL", "schemaURL", required=True)

    if "run" in document:
        run = read.obj(document, "run", "run", required=True)
    else:
        run = None
        errors.add(
            "run", "is required: only OpenLineage RunEvents are accepted (DatasetEvents and JobEvents have no run)"
        )
    run_id = read.string(run, "runId", "run.runId", required=True, limit=256) if run is not None else ""
    if run_id:
        check_run_id(errors, "run.runId", run_id)
    run_facets = read.obj(run, "facets", "run.facets", required=False) if run is not None else None

    job = read.obj(document, "job", "job", required=True)
    job_namespace = (
        read.string(job, "namespace", "job.namespace", required=True, limit=MAX_NAMESPACE) if job is not None else ""
    )
    job_name = read.string(job, "name", "job.name", required=True) if job is not None else ""
    job_id = dataset_id(job_namespace, job_name) if job_namespace and job_name else ""
    if job_id:
        check_job(errors, "job", job_id)

    run_region, transform = _residency_run_facet(read, run_facets, regions)
    check_transform(errors, "run.facets.residency.transform", transform)
    if not run_region and job_namespace:
        run_region = _mapped_region(errors, namespace_regions, regions, "job.namespace", job_namespace)

    facts: dict[str, _FactsBuilder] = {}
    inputs = _datasets(read, document, "inputs", regions, namespace_regions, facts)
    outputs = _datasets(read, document, "outputs", regions, namespace_regions, facts)
    check_edge_count(errors, "inputs", inputs, outputs)

    errors.raise_if_any("malformed OpenLineage event")

    store_run_id = run_id
    if event_type is EventType.RUNNING and event_time is not None:
        # At most 256 + 40 characters: within the run id limit (check_run_id).
        store_run_id = f"{run_id}#RUNNING@{event_time.isoformat()}"
    return LineageEvent(
        event_type=event_type,
        run=Run(job=job_id, run_id=store_run_id, run_region=run_region, transform=transform, event_time=event_time),
        inputs=tuple(dict.fromkeys(inputs)),
        outputs=tuple(dict.fromkeys(outputs)),
        datasets=tuple(f for f in (b.build(i) for i, b in facts.items()) if f.describes_anything),
        source_run_id=run_id,
        producer=producer,
    )


def _event_type(read: _Reader, document: Mapping[str, Any]) -> EventType | None:
    text = read.string(document, "eventType", "eventType", required=False, limit=32)
    if not text:
        return None
    try:
        return EventType(text)
    except ValueError:
        allowed = ", ".join(t.value for t in EventType)
        read.errors.add("eventType", f"{text!r} is not one of {allowed}")
        return None


def _residency_run_facet(
    read: _Reader, run_facets: Mapping[str, Any] | None, regions: RegionRegistry
) -> tuple[str, str]:
    if run_facets is None:
        return "", ""
    path = f"run.facets.{RESIDENCY_FACET}"
    facet = read.obj(run_facets, RESIDENCY_FACET, path, required=False)
    if facet is None:
        return "", ""
    region = read.string(facet, "region", f"{path}.region", required=False, limit=128)
    if region and region not in regions:
        read.errors.add(f"{path}.region", f"unknown region {region!r} (see `domicile regions`)")
    transform = read.string(facet, "transform", f"{path}.transform", required=False, limit=128)
    return region, transform


def _mapped_region(
    errors: FieldErrors,
    namespace_regions: Mapping[str, str],
    regions: RegionRegistry,
    path: str,
    *candidates: str,
) -> str:
    region = region_for_namespace(namespace_regions, *candidates)
    if region and region not in regions:
        # A configuration problem, reported against the event so its sender sees why.
        errors.add(path, f"lineage.namespace_regions maps {candidates[0]!r} to unknown region {region!r}")
        return ""
    return region


def _datasets(
    read: _Reader,
    document: Mapping[str, Any],
    side: str,
    regions: RegionRegistry,
    namespace_regions: Mapping[str, str],
    facts: dict[str, _FactsBuilder],
) -> list[str]:
    entries = read.array(document, side, side)
    if len(entries) > MAX_DATASETS_PER_SIDE:
        read.errors.add(side, f"at most {MAX_DATASETS_PER_SIDE} datasets")
        return []
    ids: list[str] = []
    for index, entry in enumerate(entries):
        path = f"{side}[{index}]"
        if not isinstance(entry, Mapping):
            read.errors.add(path, f"must be an object, not {_json_type(entry)}")
            continue
        namespace = read.string(entry, "namespace", f"{path}.namespace", required=True, limit=MAX_NAMESPACE)
        name = read.string(entry, "name", f"{path}.name", required=True, limit=2048)
        if not (namespace and name):
            continue
        before = len(read.errors.violations)
        id_ = check_dataset_id(read.errors, f"{path} (id {namespace}/{name})", dataset_id(namespace, name))
        if len(read.errors.violations) > before:
            continue
        ids.append(id_)
        builder = facts.setdefault(id_, _FactsBuilder(name=name))
        dataset_facets = read.obj(entry, "facets", f"{path}.facets", required=False)
        if dataset_facets is not None:
            _tags_facet(read, dataset_facets, f"{path}.facets.tags", builder)
            _schema_facet(read, dataset_facets, f"{path}.facets.schema", builder)
            _residency_dataset_facet(read, dataset_facets, f"{path}.facets.{RESIDENCY_FACET}", regions, builder)
        if not builder.locations:
            region = _mapped_region(read.errors, namespace_regions, regions, f"{path}.namespace", namespace, id_)
            if region:
                builder.locations.add(region)
    return ids


def _classification_label(read: _Reader, path: str, value: str) -> str:
    """Tags come from generic tooling that often writes labels in lower case; the label
    grammar is upper case, so case is normalized here (and only here)."""
    label = value.strip().upper()
    if len(label) > MAX_LABEL_LENGTH or not LABEL.match(label):
        read.errors.add(path, f"{value!r} is not a classification label: dotted segments such as PII.CONTACT")
        return ""
    return label


def _tag_label(read: _Reader, tag: Mapping[str, Any], tag_path: str) -> str:
    """The classification label a `{key, value}` tag carries; "" for another key or a bad
    value (the problem is noted in `read.errors`)."""
    key = read.string(tag, "key", f"{tag_path}.key", required=True, limit=256)
    value = read.string(tag, "value", f"{tag_path}.value", required=True, limit=256)
    if key.lower() != CLASSIFICATION_TAG_KEY or not value:
        return ""
    return _classification_label(read, f"{tag_path}.value", value)


def _tags_facet(read: _Reader, facets: Mapping[str, Any], path: str, builder: _FactsBuilder) -> None:
    facet = read.obj(facets, "tags", path, required=False)
    if facet is None:
        return
    for index, tag in enumerate(read.array(facet, "tags", f"{path}.tags")):
        tag_path = f"{path}.tags[{index}]"
        if not isinstance(tag, Mapping):
            read.errors.add(tag_path, f"must be an object, not {_json_type(tag)}")
            continue
        label = _tag_label(read, tag, tag_path)
        field_name = read.string(tag, "field", f"{tag_path}.field", required=False, limit=512)
        if not label:
            continue
        if field_name:
            builder.add_field_label(field_name, label)
        else:
            builder.classifications.add(label)


def _schema_facet(read: _Reader, facets: Mapping[str, Any], path: str, builder: _FactsBuilder) -> None:
    facet = read.obj(facets, "schema", path, required=False)
    if facet is not None:
        _schema_fields(read, facet, f"{path}.fields", "", builder, depth=0)


def _schema_fields(
    read: _Reader, parent: Mapping[str, Any], path: str, prefix: str, builder: _FactsBuilder, *, depth: int
) -> None:
    if depth > 32:
        read.errors.add(path, "schema fields nested deeper than 32 levels")
        return
    for index, entry in enumerate(read.array(parent, "fields", path)):
        field_path = f"{path}[{index}]"
        if not isinstance(entry, Mapping):
            read.errors.add(field_path, f"must be an object, not {_json_type(entry)}")
            continue
        name = read.string(entry, "name", f"{field_path}.name", required=True, limit=512)
        if not name:
            continue
        full_name = f"{prefix}{name}"
        for tag_index, tag in enumerate(read.array(entry, "tags", f"{field_path}.tags")):
            tag_path = f"{field_path}.tags[{tag_index}]"
            if not isinstance(tag, Mapping):
                read.errors.add(tag_path, f"must be an object, not {_json_type(tag)}")
                continue
            label = _tag_label(read, tag, tag_path)
            if label:
                builder.add_field_label(full_name, label)
        _schema_fields(read, entry, f"{field_path}.fields", f"{full_name}.", builder, depth=depth + 1)


def _residency_dataset_facet(
    read: _Reader, facets: Mapping[str, Any], path: str, regions: RegionRegistry, builder: _FactsBuilder
) -> None:
    facet = read.obj(facets, RESIDENCY_FACET, path, required=False)
    if facet is None:
        return
    region = read.string(facet, "region", f"{path}.region", required=False, limit=128)
    if region:
        if region in regions:
            builder.locations.add(region)
        else:
            read.errors.add(f"{path}.region", f"unknown region {region!r} (see `domicile regions`)")
    for index, origin in enumerate(read.array(facet, "origins", f"{path}.origins")):
        if not isinstance(origin, str):
            read.errors.add(f"{path}.origins[{index}]", f"must be a string, not {_json_type(origin)}")
            continue
        before = len(read.errors.violations)
        check_country(read.errors, f"{path}.origins[{index}]", origin)
        if len(read.errors.violations) == before:
            builder.origins.add(origin)
    for index, label in enumerate(read.array(facet, "classifications", f"{path}.classifications")):
        label_path = f"{path}.classifications[{index}]"
        if not isinstance(label, str):
            read.errors.add(label_path, f"must be a string, not {_json_type(label)}")
        elif len(label) > MAX_LABEL_LENGTH or not LABEL.match(label):
            read.errors.add(label_path, f"{label!r} is not a label: dotted upper-case segments such as PII.CONTACT")
        else:
            builder.classifications.add(label)
