"""Argument checks, page tokens and the generic residency snapshot shared by every GraphStore
backend.

Backends must agree on what they reject and on the shape of their page tokens (the contract
suite checks both), so these live in one place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from domicile import external_json
from domicile.catalog.model import (
    MAX_ID_BYTES,
    MAX_TIME_MICROS,
    MIN_TIME_MICROS,
    Dataset,
    DatasetFilter,
    DatasetRevision,
    EdgeKey,
    EdgeRow,
    Page,
    PageRequest,
    ResidencySnapshot,
    RevisionChange,
    Run,
    to_micros,
)
from domicile.errors import FieldErrors, invalid_field

if TYPE_CHECKING:
    from domicile.catalog.store import GraphStore

T = TypeVar("T")


def check_id(dataset_id: str, field_path: str) -> None:
    """INVALID_ARGUMENT on `field_path` unless `dataset_id` is a possible dataset id."""
    if not dataset_id or len(dataset_id.encode()) > MAX_ID_BYTES:
        raise invalid_field(field_path, f"must be a dataset id of 1 to {MAX_ID_BYTES} bytes")


def micros_arg(t: datetime | None, field_path: str) -> int | None:
    """`t` in microseconds (None stays None); a naive datetime is INVALID_ARGUMENT."""
    if t is None:
        return None
    try:
        return to_micros(t)
    except ValueError as exc:
        raise invalid_field(field_path, str(exc)) from exc


def check_lineage(run: Run, edges: Sequence[EdgeKey]) -> tuple[int | None, list[tuple[str, str]]]:
    """Validate `record_lineage` arguments; returns (event time in µs, sorted unique
    (input, output) pairs). Every problem is reported at once as INVALID_ARGUMENT."""
    errors = FieldErrors()
    if not run.job:
        errors.add("run.job", "must not be empty")
    if not run.run_id:
        errors.add("run.run_id", "must not be empty")
    for i, key in enumerate(edges):
        if key.job != run.job:
            errors.add(f"edges[{i}].job", f"must equal the run's job {run.job!r}")
        for side in ("input", "output"):
            value = getattr(key, side)
            if not value or len(value.encode()) > MAX_ID_BYTES:
                errors.add(f"edges[{i}].{side}", f"must be a dataset id of 1 to {MAX_ID_BYTES} bytes")
    errors.raise_if_any("invalid lineage")
    return micros_arg(run.event_time, "run.event_time"), sorted({(k.input, k.output) for k in edges})


def filter_fingerprint(filter: DatasetFilter) -> str:
    """A short hash of a listing's filters, kept in its page tokens."""
    text = json.dumps(
        [filter.classification, filter.origin, filter.region, filter.owner, filter.query, filter.include_placeholders]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_page_token(kind: str, after: str, as_of: int | None, fingerprint: str) -> str:
    """An opaque token for the page after key `after` of a `kind` listing pinned to `as_of`:
    urlsafe base64 of `{"k": kind, "after": ..., "as_of": us|null, "f": fingerprint}`."""
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
        data = external_json.parse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, token_as_of = data["after"], data["as_of"]
        if (
            data["k"] != kind
            or not isinstance(after, str)
            or not (token_as_of is None or (isinstance(token_as_of, int) and not isinstance(token_as_of, bool)))
            or (token_as_of is not None and not MIN_TIME_MICROS <= token_as_of <= MAX_TIME_MICROS)
        ):
            raise ValueError("unexpected token content")
        token_fingerprint = data["f"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise invalid_field("page_token", "malformed page token") from exc
    if token_fingerprint != fingerprint:
        raise invalid_field("page_token", "the page token belongs to a request with other filters")
    if as_of is not None and token_as_of != as_of:
        raise invalid_field("page_token", "the page token belongs to a request with another as_of")
    return after, token_as_of


# Page size of `snapshot_from_pages`.
SNAPSHOT_PAGE_SIZE = 5000


async def snapshot_from_pages(
    store: GraphStore, revived: Callable[[], Awaitable[set[str]]] | None = None
) -> ResidencySnapshot:
    """`GraphStore.residency_snapshot` through the listing methods: the revision first, then
    every page of datasets and of edges (each page a read of its own: a change made meanwhile
    may show, which the revision read first allows). `revived` answers the ids of current
    placeholders that have a deleted version (the listings cannot tell; only a catalog written
    before lineage stopped bringing deleted datasets back has them), which are left out."""
    revision = await store.revision()
    datasets = await _every_item(lambda page: store.list_datasets(DatasetFilter(), page))
    edges = await _every_item(store.list_edges)
    leave_out = await revived() if revived is not None else set()
    return ResidencySnapshot(
        revision,
        [dataset.residency_row() for dataset in datasets if not dataset.placeholder],
        [EdgeRow(e.input, e.output, e.job, e.transform) for e in edges],
        [dataset.id for dataset in datasets if dataset.placeholder and dataset.id not in leave_out],
    )


async def _every_item(list_page: Callable[[PageRequest], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a paged listing, `SNAPSHOT_PAGE_SIZE` at a time."""
    items: list[T] = []
    page = PageRequest(size=SNAPSHOT_PAGE_SIZE)
    while True:
        result = await list_page(page)
        items.extend(result.items)
        if not result.next_token:
            return items
        page = PageRequest(size=SNAPSHOT_PAGE_SIZE, token=result.next_token)


class VersionRow(NamedTuple):
    """One stored version of a dataset, as `revision_page` needs it: the version, and when,
    by which write and by whom it was ended by a delete (`deleted` False: not by a delete)."""

    dataset: Dataset
    valid_from: datetime
    deleted: bool
    end_revision: int | None
    end_time: datetime | None
    deleted_by: str


def revision_page(dataset_id: str, versions: Sequence[VersionRow], page: PageRequest) -> Page[DatasetRevision]:
    """`GraphStore.dataset_revisions` over every version of a dataset, oldest first: the
    backends differ only in how they read the versions."""
    fingerprint = hashlib.sha256(dataset_id.encode("utf-8")).hexdigest()[:12]
    after, _ = decode_page_token(page.token, "revisions", None, fingerprint)
    entries: list[DatasetRevision] = []
    previous_deleted = True
    for row in versions:
        dataset = row.dataset
        change = RevisionChange.CREATED if previous_deleted else RevisionChange.UPDATED
        entries.append(DatasetRevision(dataset.revision, row.valid_from, dataset.updated_by, change, dataset))
        if row.deleted and row.end_revision is not None and row.end_time is not None:
            entries.append(DatasetRevision(row.end_revision, row.end_time, row.deleted_by, RevisionChange.DELETED))
        previous_deleted = row.deleted
    entries.reverse()
    if after is not None:
        try:
            before = int(after)
        except ValueError:
            raise invalid_field("page_token", "malformed page token") from None
        entries = [e for e in entries if e.revision < before]
    items = tuple(entries[: page.size])
    token = (
        encode_page_token("revisions", str(items[-1].revision), None, fingerprint) if len(entries) > page.size else ""
    )
    return Page(items, token)
