"""Request validation for catalog values; every problem becomes a field violation.

Validators collect all violations of a request into one INVALID_ARGUMENT error (see
`domicile.errors.FieldErrors`), with dotted field paths such as `dataset.fields[2].name`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import replace

from domicile.catalog.dataset_ids import check_dataset_id, lookup_form
from domicile.catalog.model import MAX_ID_BYTES, Dataset
from domicile.catalog.regions import RegionRegistry, is_country, suggest_country
from domicile.errors import FieldErrors
from domicile.suggest import did_you_mean

LABEL = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")
MAX_LABEL_LENGTH = 128
MAX_LABELS = 64
MAX_NAME = 512
MAX_OWNER = 256
MAX_DESCRIPTION = 8192
MAX_TAGS = 64
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 1024
MAX_FIELDS = 2000
MAX_LOCATIONS = 256
MAX_QUERY = 256
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def quoted(value: str, limit: int = 64) -> str:
    """`value` for an error message: repr'd and cut to `limit` characters, so a huge bad
    value cannot blow up the error (gRPC caps status details and trailers)."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


def check_text(errors: FieldErrors, path: str, value: str, limit: int) -> None:
    """Names such as jobs and run ids: non-empty, at most `limit` characters, no control
    characters."""
    if not value:
        errors.add(path, "must not be empty")
    elif len(value) > limit:
        errors.add(path, f"must be at most {limit} characters")
    elif has_control_characters(value):
        errors.add(path, "must not contain control characters")


def check_id(errors: FieldErrors, path: str, value: str) -> str:
    """A dataset id to look up (a read): non-empty, at most 2048 UTF-8 bytes, no control
    characters or edge spaces. Returns the id to look it up under (`dataset_ids.lookup_form`:
    its normal form, or as written when it breaks the naming rules, as ids stored by earlier
    releases may). Ids to write are checked by `dataset_ids.check_dataset_id`."""
    if not value:
        errors.add(path, "must not be empty")
        return value
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        errors.add(path, f"must be at most {MAX_ID_BYTES} bytes")
    if value != value.strip():
        errors.add(path, "must not start or end with whitespace")
    if has_control_characters(value):
        errors.add(path, "must not contain control characters")
    return lookup_form(value)


def check_label(errors: FieldErrors, path: str, value: str) -> None:
    if len(value) > MAX_LABEL_LENGTH:
        errors.add(path, f"must be at most {MAX_LABEL_LENGTH} characters")
    elif not LABEL.match(value):
        errors.add(path, f"{quoted(value)} is not a label: dotted upper-case segments such as PII.CONTACT")


def check_labels(errors: FieldErrors, path: str, values: Iterable[str]) -> None:
    values = list(values)
    if len(values) > MAX_LABELS:
        errors.add(path, f"at most {MAX_LABELS} labels")
    for i, value in enumerate(values):
        check_label(errors, f"{path}[{i}]", value)


# "Did you mean" is a similarity search per bad value: it is offered for the first problems of
# a request only, so a request with 10,000 bad values costs about what one with a few does.
_SUGGESTED_PROBLEMS = 8


def check_country(errors: FieldErrors, path: str, value: str) -> None:
    if not is_country(value):
        hint = did_you_mean(suggest_country(value)) if len(errors.violations) < _SUGGESTED_PROBLEMS else ""
        errors.add(path, f"{quoted(value)} is not an ISO 3166-1 alpha-2 country code (upper case, e.g. DE){hint}")


def check_region(errors: FieldErrors, path: str, value: str, registry: RegionRegistry) -> None:
    if not value:
        errors.add(path, "must not be empty")
    elif value not in registry:
        hint = did_you_mean(registry.suggest(value)) if len(errors.violations) < _SUGGESTED_PROBLEMS else ""
        errors.add(path, f"unknown region {quoted(value)}{hint} (see `domicile regions`)")


def check_length(errors: FieldErrors, path: str, value: str, limit: int) -> None:
    if len(value) > limit:
        errors.add(path, f"must be at most {limit} characters")


def validate_dataset(dataset: Dataset, registry: RegionRegistry, *, path: str = "dataset") -> Dataset:
    """`dataset` with its id in normal form (see `catalog.dataset_ids`); raises
    INVALID_ARGUMENT listing every problem of it."""
    errors = FieldErrors()
    dataset_id = check_dataset_id(errors, f"{path}.id", dataset.id)
    check_length(errors, f"{path}.name", dataset.name, MAX_NAME)
    check_length(errors, f"{path}.owner", dataset.owner, MAX_OWNER)
    check_length(errors, f"{path}.description", dataset.description, MAX_DESCRIPTION)
    check_labels(errors, f"{path}.classifications", dataset.classifications)
    for i, origin in enumerate(dataset.origins):
        check_country(errors, f"{path}.origins[{i}]", origin)
    if len(dataset.locations) > MAX_LOCATIONS:
        errors.add(f"{path}.locations", f"at most {MAX_LOCATIONS} locations")
    for i, location in enumerate(dataset.locations):
        check_region(errors, f"{path}.locations[{i}]", location, registry)
    if len(dataset.tags) > MAX_TAGS:
        errors.add(f"{path}.tags", f"at most {MAX_TAGS} tags")
    for key, value in dataset.tags.items():
        if not key:
            errors.add(f"{path}.tags", "tag keys must not be empty")
        check_length(errors, f"{path}.tags[{quoted(key)}]", key, MAX_TAG_KEY)
        check_length(errors, f"{path}.tags[{quoted(key)}]", value, MAX_TAG_VALUE)
    if len(dataset.fields) > MAX_FIELDS:
        errors.add(f"{path}.fields", f"at most {MAX_FIELDS} fields")
    seen: set[str] = set()
    for i, field in enumerate(dataset.fields):
        if not field.name:
            errors.add(f"{path}.fields[{i}].name", "must not be empty")
        elif field.name in seen:
            errors.add(f"{path}.fields[{i}].name", f"duplicate field name {quoted(field.name)}")
        seen.add(field.name)
        check_length(errors, f"{path}.fields[{i}].name", field.name, MAX_NAME)
        check_labels(errors, f"{path}.fields[{i}].classifications", field.classifications)
    errors.raise_if_any(f"invalid {path}")
    return dataset if dataset_id == dataset.id else replace(dataset, id=dataset_id)


def validate_page_size(errors: FieldErrors, value: int, path: str = "page_size") -> int:
    """0 → the default; 1..MAX_PAGE_SIZE as given; anything else is a violation."""
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        errors.add(path, f"must be between 1 and {MAX_PAGE_SIZE} (0 = default {DEFAULT_PAGE_SIZE})")
        return DEFAULT_PAGE_SIZE
    return value


def check_revision(errors: FieldErrors, path: str, value: int) -> None:
    if value < 0:
        errors.add(path, "must not be negative (0 = unchecked)")
