"""Recording lineage: request validation, the edges of a run, and merging what pipelines
report about datasets into the catalog without losing what the catalog already knows.

Shared by the gRPC LineageService (`lineage.service`) and OpenLineage ingestion
(`lineage.ingest`); no transport code here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from domicile.catalog.dataset_ids import check_dataset_id
from domicile.catalog.model import Dataset, EdgeKey, Field
from domicile.catalog.validation import check_id, check_text
from domicile.errors import FieldErrors

MAX_DATASETS_PER_SIDE = 1000
# inputs × outputs of one run; a bigger fan is almost certainly a producer bug, and one
# store transaction must stay small enough to commit promptly.
MAX_EDGES_PER_RUN = 100_000
MAX_JOB = 2048
MAX_RUN_ID = 512
MAX_TRANSFORM = 128
TRANSFORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def check_job(errors: FieldErrors, path: str, value: str) -> None:
    """Job names: non-empty, at most 2048 characters, no control characters."""
    check_text(errors, path, value, MAX_JOB)


def check_run_id(errors: FieldErrors, path: str, value: str) -> None:
    """Run ids: non-empty, at most 512 characters, no control characters."""
    check_text(errors, path, value, MAX_RUN_ID)


def check_transform(errors: FieldErrors, path: str, value: str) -> None:
    """Transform kinds (`anonymize`, `aggregate`, ...): empty, or a token of letters, digits
    and `_ . : -`, as the policy's declassifiers name them."""
    if not value:
        return
    if len(value) > MAX_TRANSFORM:
        errors.add(path, f"must be at most {MAX_TRANSFORM} characters")
    elif not TRANSFORM.match(value):
        errors.add(path, f"{value!r} is not a transform name: letters, digits and _ . : - (e.g. anonymize)")


def check_dataset_ids(errors: FieldErrors, path: str, values: Sequence[str], *, to_write: bool) -> list[str]:
    """A list of at most 1000 dataset ids, as they are to be used: for lineage to record
    (`to_write`), each following the naming rules, in normal form
    (`catalog.dataset_ids.check_dataset_id`); for lineage to end, as looked up
    (`catalog.validation.check_id`, which takes ids stored before the rules too)."""
    if len(values) > MAX_DATASETS_PER_SIDE:
        errors.add(path, f"at most {MAX_DATASETS_PER_SIDE} datasets")
        return list(values)
    check = check_dataset_id if to_write else check_id
    return [check(errors, f"{path}[{index}]", value) for index, value in enumerate(values)]


def edges_for(job: str, inputs: Iterable[str], outputs: Iterable[str]) -> list[EdgeKey]:
    """`output DERIVED_FROM input` for every input × output pair, duplicates removed, in
    a deterministic order. A dataset paired with itself (an in-place update) is not an
    edge: lineage relates two datasets, and a self-loop would add nothing to either."""
    unique_inputs = list(dict.fromkeys(inputs))
    unique_outputs = list(dict.fromkeys(outputs))
    return [EdgeKey(input=i, output=o, job=job) for o in unique_outputs for i in unique_inputs if i != o]


def edge_count(inputs: Iterable[str], outputs: Iterable[str]) -> int:
    """How many edges `edges_for` makes of these inputs and outputs."""
    unique_inputs, unique_outputs = set(inputs), set(outputs)
    return len(unique_inputs) * len(unique_outputs) - len(unique_inputs & unique_outputs)


def check_edge_count(errors: FieldErrors, path: str, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    if len(set(inputs)) * len(set(outputs)) > MAX_EDGES_PER_RUN:
        errors.add(path, f"inputs × outputs must be at most {MAX_EDGES_PER_RUN} edges per run")


def merge_reported(
    current: Dataset | None,
    dataset_id: str,
    *,
    name: str = "",
    classifications: Iterable[str] = (),
    origins: Iterable[str] = (),
    locations: Iterable[str] = (),
    field_labels: dict[str, Iterable[str]] | None = None,
) -> Dataset:
    """The dataset after adding what a pipeline reported to what the catalog holds.

    Only ever adds: labels, origins and locations are unions; reported column labels are
    added to existing columns (new columns are appended); name, owner, description, tags
    and protection set through CatalogService are kept (a reported `name` is used only for
    a dataset the catalog knew as a placeholder or not at all). A placeholder that gets
    attributes becomes a real dataset: the pipeline has now described it.
    """
    field_labels = field_labels or {}
    if current is None:
        return Dataset.create(
            dataset_id,
            name=name,
            classifications=classifications,
            origins=origins,
            locations=locations,
            fields=[Field(n, tuple(labels)) for n, labels in sorted(field_labels.items())],
        )
    pending = {n: set(labels) for n, labels in field_labels.items()}
    fields = [Field(f.name, tuple(set(f.classifications) | pending.pop(f.name, set()))) for f in current.fields]
    fields.extend(Field(n, tuple(labels)) for n, labels in sorted(pending.items()))
    merged = replace(
        current,
        name=current.name or (name if current.placeholder else ""),
        classifications=tuple(set(current.classifications) | set(classifications)),
        origins=tuple(set(current.origins) | set(origins)),
        locations=tuple(set(current.locations) | set(locations)),
        fields=tuple(fields),
        placeholder=False,
    )
    return merged.normalized()
