"""The catalog's domain model: immutable values shared by the store, lineage and router.

Times are timezone-aware UTC `datetime`s with microsecond precision. Collections are tuples
(sorted and de-duplicated by `Dataset.create`) so values compare and hash predictably.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:
    from domicile.access.model import RunAccess

MAX_ID_BYTES = 2048


def utcnow() -> datetime:
    return datetime.now(UTC)


# The instants Domicile handles (those of a protobuf Timestamp and of Python's datetime),
# 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z, in microseconds since the epoch.
MIN_TIME_MICROS = -62_135_596_800_000_000
MAX_TIME_MICROS = 253_402_300_799_999_999


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(t: datetime) -> int:
    """Microseconds since the Unix epoch (the stores' time representation)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: Domicile times must be timezone-aware")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def label_matches(rule_label: str, label: str) -> bool:
    """True when `label` is `rule_label` or one of its descendants (`PII` matches `PII.CONTACT`)."""
    return label == rule_label or label.startswith(rule_label + ".")


DEFAULT_JOB_NAMESPACE = "default"


def job_namespace(job: str) -> str:
    """The namespace of a job id `namespace/name`: up to the first `/`; a job without one is in
    namespace `default`."""
    namespace, slash, _ = job.partition("/")
    return namespace if slash else DEFAULT_JOB_NAMESPACE


def qualified_job(job: str) -> str:
    """A job id as `namespace/name` (`nightly` is `default/nightly`): what a policy's
    declassifier `jobs` patterns match."""
    return job if "/" in job else f"{DEFAULT_JOB_NAMESPACE}/{job}"


@dataclass(frozen=True)
class Field:
    """A column of a dataset with its own classification labels."""

    name: str
    classifications: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protection:
    encrypted_at_rest: bool = False
    field_level_encrypted: bool = False
    tokenized: bool = False


@dataclass(frozen=True)
class Dataset:
    """A dataset as the catalog knows it.

    `classifications` are the dataset's own labels as written; `all_classifications` adds its
    fields' labels (a dataset's own labels are the union of both). `revision`,
    `create_time`, `update_time`, `updated_by` are set by the store on write; values passed
    in are ignored.
    """

    id: str
    name: str = ""
    owner: str = ""
    description: str = ""
    classifications: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    fields: tuple[Field, ...] = ()
    protection: Protection = Protection()
    revision: int = 0
    create_time: datetime | None = None
    update_time: datetime | None = None
    placeholder: bool = False
    updated_by: str = ""

    @staticmethod
    def create(
        id: str,
        *,
        name: str = "",
        owner: str = "",
        description: str = "",
        classifications: Iterable[str] = (),
        origins: Iterable[str] = (),
        locations: Iterable[str] = (),
        tags: Mapping[str, str] | None = None,
        fields: Iterable[Field] = (),
        protection: Protection | None = None,
        placeholder: bool = False,
        revision: int = 0,
        create_time: datetime | None = None,
        update_time: datetime | None = None,
        updated_by: str = "",
    ) -> Dataset:
        """Builds a normalized dataset: label/origin/location sets sorted and de-duplicated.
        The store-managed fields are for stores building what they read (in one construction:
        a listing builds thousands)."""
        return Dataset(
            id=id,
            name=name,
            owner=owner,
            description=description,
            classifications=tuple(sorted(set(classifications))),
            origins=tuple(sorted(set(origins))),
            locations=tuple(sorted(set(locations))),
            tags=MappingProxyType(dict(sorted((tags or {}).items()))),
            fields=tuple(Field(f.name, tuple(sorted(set(f.classifications)))) for f in fields),
            protection=protection or Protection(),
            placeholder=placeholder,
            revision=revision,
            create_time=create_time,
            update_time=update_time,
            updated_by=updated_by,
        )

    def normalized(self) -> Dataset:
        """The same content in normal form (see `create`), store-managed fields kept."""
        base = Dataset.create(
            self.id,
            name=self.name,
            owner=self.owner,
            description=self.description,
            classifications=self.classifications,
            origins=self.origins,
            locations=self.locations,
            tags=self.tags,
            fields=self.fields,
            protection=self.protection,
            placeholder=self.placeholder,
        )
        return replace(
            base,
            revision=self.revision,
            create_time=self.create_time,
            update_time=self.update_time,
            updated_by=self.updated_by,
        )

    @property
    def all_classifications(self) -> frozenset[str]:
        """Own labels plus every field's labels."""
        labels = set(self.classifications)
        for f in self.fields:
            labels.update(f.classifications)
        return frozenset(labels)

    def residency_row(self) -> ResidencyRow:
        """What residency decisions read of this dataset (see `ResidencyRow`)."""
        labels = self.all_classifications if self.fields else frozenset(self.classifications)
        return ResidencyRow(self.id, labels, frozenset(self.origins), tuple(self.locations))

    def same_content(self, other: Dataset) -> bool:
        """True when the user-visible content is equal (store-managed fields ignored)."""
        strip: dict[str, Any] = {"revision": 0, "create_time": None, "update_time": None, "updated_by": ""}
        a, b = replace(self.normalized(), **strip), replace(other.normalized(), **strip)
        return a == b

    def __hash__(self) -> int:
        # tags is a mapping (unhashable); id + revision identify a stored version.
        return hash((self.id, self.revision))


class Direction(enum.Enum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"


@dataclass(frozen=True)
class Run:
    """One execution of a job, kept for audit."""

    job: str
    run_id: str
    run_region: str = ""
    transform: str = ""
    event_time: datetime | None = None


@dataclass(frozen=True)
class EdgeKey:
    """Identity of a lineage edge: `output` DERIVED_FROM `input` by `job`.

    A later run of the same job over the same datasets does not create a new edge; a run
    with a different transform ends the old edge and starts a new one (history keeps both).
    """

    input: str
    output: str
    job: str


@dataclass(frozen=True)
class Edge:
    """A lineage edge as it is (or was) true from `record_time` until `end_time` (None = still)."""

    input: str
    output: str
    job: str
    transform: str = ""
    run_id: str = ""
    record_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def key(self) -> EdgeKey:
        return EdgeKey(self.input, self.output, self.job)


class ResidencyRow(NamedTuple):
    """What the residency router reads of a described (not placeholder) current dataset:
    `classifications` are its own labels including its fields' (`Dataset.all_classifications`)."""

    id: str
    classifications: frozenset[str]
    origins: frozenset[str]
    locations: tuple[str, ...]


class EdgeRow(NamedTuple):
    """What the residency router reads of a current lineage edge."""

    input: str
    output: str
    job: str
    transform: str


@dataclass(frozen=True)
class ResidencySnapshot:
    """Everything the residency router's index is built from (`GraphStore.residency_snapshot`):
    every described current dataset, every current edge and the ids of the current
    placeholders that were never deleted, as of catalog `revision` or later (a change after
    `revision` may already show: the router replays the change feed from `revision` on, in
    order, which ends in the same index whatever the snapshot already held)."""

    revision: int
    datasets: Sequence[ResidencyRow]
    edges: Sequence[EdgeRow]
    placeholders: Sequence[str]


@dataclass(frozen=True)
class LineageResult:
    """What a lineage write did. `run_accesses`: what the access records held for the run
    `record_lineage` was asked about (`access_run`), read in the same transaction; None when
    it was not asked."""

    edges_created: int
    revision: int
    run_accesses: frozenset[RunAccess] | None = None


@dataclass(frozen=True)
class TraversalLimits:
    """Bounds on a traversal; exceeding one sets `Traversal.complete = False`."""

    max_nodes: int = 10_000
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class LineageNode:
    dataset_id: str
    depth: int
    placeholder: bool = False


@dataclass(frozen=True)
class Traversal:
    """Result of `GraphStore.traverse`.

    `nodes` includes the start dataset at depth 0; depth is the shortest distance. `edges`
    are those between returned nodes that the traversal walked. `complete` is False with
    `incomplete_reason` in {"max_depth", "max_nodes", "timeout"} when a limit cut the answer
    (for "max_depth": at least one node at max_depth has further neighbours).
    """

    nodes: tuple[LineageNode, ...]
    edges: tuple[Edge, ...]
    complete: bool = True
    incomplete_reason: str = ""


@dataclass(frozen=True)
class DatasetFilter:
    """ListDatasets filters; every set filter must hold (AND)."""

    classification: str = ""  # label or ancestor label (hierarchical match, own + field labels)
    origin: str = ""
    region: str = ""
    owner: str = ""
    query: str = ""  # case-insensitive substring of id, name or description
    include_placeholders: bool = True


@dataclass(frozen=True)
class PageRequest:
    """`token` is opaque to callers (produced by the store); `size` is already validated."""

    size: int = 100
    token: str = ""


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_token: str = ""


class RevisionChange(enum.Enum):
    """What one revision did to a dataset."""

    CREATED = "created"  # the first version, or the first after a delete
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True)
class DatasetRevision:
    """One entry of a dataset's revision history: the write `revision` at `time` by
    `principal`, and the dataset as it left it (None for a delete)."""

    revision: int
    time: datetime
    principal: str
    change: RevisionChange
    dataset: Dataset | None = None


class ChangeKind(enum.Enum):
    DATASET_UPSERTED = "dataset_upserted"
    DATASET_DELETED = "dataset_deleted"
    EDGE_ADDED = "edge_added"
    EDGE_ENDED = "edge_ended"


@dataclass(frozen=True)
class Change:
    """One entry of the change feed, in revision order.

    DATASET_UPSERTED carries the new `dataset`; DATASET_DELETED carries `dataset_id`;
    EDGE_ADDED / EDGE_ENDED carry the `edge` (ended edges with their `end_time`).
    Several changes may share one revision (one write = one revision).
    """

    revision: int
    kind: ChangeKind
    time: datetime
    principal: str = ""
    dataset_id: str = ""
    dataset: Dataset | None = None
    edge: Edge | None = None
