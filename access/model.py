"""The access domain's values: aggregated access counts, raw run records, observed violations
and anomalies. Immutable; times are aware UTC datetimes (see `catalog.model`).

Actors: the principal for API calls (catalog writes, residency questions), the job
(`namespace/name`) for runs, whose sender (`principal`) and OpenLineage `producer` are kept on
the run record beside it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, overload

import orjson

from domicile.catalog.model import from_micros, to_micros
from domicile.router.types import Decision, Operation

DAY = timedelta(days=1)
# The actor of API calls made without authentication (`--insecure`).
UNAUTHENTICATED = "(unauthenticated)"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_of(t: datetime) -> datetime:
    """The start (00:00 UTC) of the UTC day holding `t`: aggregates are kept per such day."""
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, t.day, tzinfo=UTC)


class AccessOperation(enum.Enum):
    """What an actor did to a dataset. Region: where it happened (empty when none applies)."""

    READ = "read"  # a run read it; region = the run's region
    WRITE = "write"  # a run wrote it; region = each location the output was written to
    CATALOG_WRITE = "catalog_write"  # a principal created, changed or deleted its catalog entry
    INTENT_STORE = "intent_store"  # a principal asked the router whether it may store it there
    INTENT_PROCESS = "intent_process"  # ... whether it may process it there

    @property
    def observed(self) -> bool:
        """An access that happened (not a question about one): what anomalies look at."""
        return self in (AccessOperation.READ, AccessOperation.WRITE, AccessOperation.CATALOG_WRITE)


class AccessKey(NamedTuple):
    """One aggregate's identity: an actor's operation on a dataset in a region on a UTC day.
    A named tuple: the recorder makes one per access and keys its aggregates by them."""

    actor: str
    dataset_id: str
    operation: AccessOperation
    region: str
    day: datetime


@dataclass(frozen=True)
class AccessCount:
    """How often `actor` did `operation` on `dataset_id` in `region` on a UTC day (`day`; None
    only while it is being counted), and when first and last: what a flush writes."""

    actor: str
    dataset_id: str
    operation: AccessOperation
    region: str
    count: int
    first_seen: datetime
    last_seen: datetime
    day: datetime | None = None

    @property
    def key(self) -> AccessKey:
        assert self.day is not None
        return AccessKey(self.actor, self.dataset_id, self.operation, self.region, self.day)

    def row(self) -> CountRow:
        """This count in the columns the stores keep (see `CountRow`)."""
        key = self.key
        return (
            key.actor,
            key.dataset_id,
            key.operation.value,
            key.region,
            self.count,
            to_micros(self.first_seen),
            to_micros(self.last_seen),
            to_micros(key.day),
        )


class AccessTotal(NamedTuple):
    """An actor's `operation` on a dataset in a region, summed over the days of a read's range.

    Reads return these by the ten thousand (one per actor of a busy dataset), so they are
    named tuples with times in microseconds since the epoch, as the store keeps them;
    `first_seen` / `last_seen` give them as datetimes."""

    actor: str
    dataset_id: str
    operation: AccessOperation
    region: str
    total: int
    first_seen_us: int
    last_seen_us: int

    @property
    def first_seen(self) -> datetime:
        return from_micros(self.first_seen_us)

    @property
    def last_seen(self) -> datetime:
        return from_micros(self.last_seen_us)


OPERATIONS_BY_VALUE = {op.value: op for op in AccessOperation}


class AccessTotals(Sequence[AccessTotal]):
    """What an access read returns: the totals of one dataset by actor (`by_actor`), or of one
    actor by dataset, packed as the store read them -- `rows`, a JSON array of `[name,
    operation value, region, total, first_seen_us, last_seen_us]` in any order, `name` the
    actor of a dataset's read or the dataset id of an actor's, `subject` the other -- so that a
    busy dataset's ten thousand totals reach the answer's encoder (the engine) without a
    Python object each. As a sequence: the AccessTotal tuples ordered by name, operation value
    and region (decoded when first read)."""

    __slots__ = ("_totals", "by_actor", "rows", "subject")

    def __init__(self, subject: str, by_actor: bool, rows: str) -> None:
        self.subject = subject
        self.by_actor = by_actor
        self.rows = rows
        self._totals: list[AccessTotal] | None = None

    @classmethod
    def of(cls, subject: str, by_actor: bool, totals: Iterable[AccessTotal]) -> AccessTotals:
        """The totals of `subject` (all of it, in any order) packed."""
        rows = [
            (
                t.actor if by_actor else t.dataset_id,
                t.operation.value,
                t.region,
                t.total,
                t.first_seen_us,
                t.last_seen_us,
            )
            for t in totals
        ]
        return cls(subject, by_actor, orjson.dumps(rows).decode())

    def _decoded(self) -> list[AccessTotal]:
        if self._totals is None:
            operations = OPERATIONS_BY_VALUE
            subject = self.subject
            rows = sorted(orjson.loads(self.rows), key=lambda row: (row[0], row[1], row[2]))
            self._totals = [
                AccessTotal(
                    name if self.by_actor else subject,
                    subject if self.by_actor else name,
                    operations[operation],
                    region,
                    total,
                    first,
                    last,
                )
                for name, operation, region, total, first, last in rows
            ]
        return self._totals

    def __len__(self) -> int:
        return len(self._decoded())

    @overload
    def __getitem__(self, index: int) -> AccessTotal: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[AccessTotal]: ...

    def __getitem__(self, index: int | slice) -> AccessTotal | Sequence[AccessTotal]:
        return self._decoded()[index]

    def __repr__(self) -> str:
        return f"AccessTotals({self.subject!r}, {list(self)!r})"


class RunAccess(NamedTuple):
    """One dataset a run read (region: the run's) or wrote (region: one of its locations).
    A named tuple, like `AccessKey`: each ingested run makes and compares a few."""

    dataset_id: str
    operation: AccessOperation
    region: str


@dataclass(frozen=True)
class RunRecord:
    """A run as observed (OpenLineage events or a RecordLineage call), kept for
    `access.run_retention_days`. Several events of one run (job, run_id) merge into one
    record: accesses are a union, `event_time` is the earliest and `last_event_time` the
    latest event time, `record_time` when the run was first seen."""

    job: str
    run_id: str
    producer: str
    principal: str
    run_region: str
    event_time: datetime
    last_event_time: datetime
    record_time: datetime
    accesses: tuple[RunAccess, ...] = ()


class FindingKind(enum.Enum):
    """Why an observed flow was reported."""

    POLICY_DENIED = "POLICY_DENIED"  # the policy in force does not allow it (decision is a DENY)
    UNKNOWN_RUN_REGION = "UNKNOWN_RUN_REGION"  # a run read data but said nowhere where it ran
    UNKNOWN_OUTPUT_LOCATION = "UNKNOWN_OUTPUT_LOCATION"  # a run wrote data with no known location
    NOT_JUDGED = "NOT_JUDGED"  # the router's view was stale: decision is DENY / STALE_CATALOG


@dataclass(frozen=True)
class ObservedViolation:
    """A flow that already happened where the policy forbids it (or that could not be judged).

    `event_time` is when the run reported it happened, `observe_time` when Domicile saw it;
    `late` says the event arrived long after it happened (judged all the same, against the
    policy and catalog at `observe_time`). `decision` (with rule, citation and lineage path in
    its reasons, and its id in the decision log) is None for the UNKNOWN_* kinds."""

    violation_id: str
    kind: FindingKind
    job: str
    run_id: str
    producer: str
    principal: str
    dataset_id: str
    operation: Operation
    region: str
    event_time: datetime
    observe_time: datetime
    late: bool = False
    decision: Decision | None = None
    message: str = ""


class AnomalyKind(enum.Enum):
    NEW_CLASSIFICATION_FOR_ACTOR = "NEW_CLASSIFICATION_FOR_ACTOR"
    NEW_REGION_FOR_ACTOR = "NEW_REGION_FOR_ACTOR"
    ACCESS_BURST = "ACCESS_BURST"


@dataclass(frozen=True)
class Anomaly:
    """A deviation of an actor from its own baseline (see `access.anomalies` for the rules).

    `value` is what was new (a label or region) or the day's access count for a burst;
    `baseline` is the part of the baseline it broke: the labels or regions the actor touched
    within its window, or its mean daily accesses and the threshold."""

    anomaly_id: str
    kind: AnomalyKind
    actor: str
    dataset_ids: tuple[str, ...]
    value: str
    detect_time: datetime
    baseline_since: datetime
    baseline: tuple[str, ...] = ()
    baseline_daily_mean: float = 0.0
    threshold: float = 0.0
    message: str = ""


class BaselineDimension(enum.Enum):
    SEEN = "seen"  # value "": when the actor was first and last seen at all
    CLASSIFICATION = "classification"
    REGION = "region"


@dataclass(frozen=True)
class BaselineEntry:
    """The first and last time an actor touched a classification or a region (or was seen)."""

    actor: str
    dimension: BaselineDimension
    value: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ActorBaseline:
    """What the store knows of an actor for anomaly detection: its baseline entries and its
    observed accesses per UTC day since the asked time."""

    actor: str
    entries: tuple[BaselineEntry, ...] = ()
    daily_counts: dict[datetime, int] = field(default_factory=dict)

    @property
    def first_seen(self) -> datetime | None:
        seen = [e.first_seen for e in self.entries if e.dimension is BaselineDimension.SEEN]
        return min(seen) if seen else None

    def values(self, dimension: BaselineDimension, since: datetime) -> frozenset[str]:
        """The values of `dimension` last touched at or after `since`."""
        return frozenset(e.value for e in self.entries if e.dimension is dimension and e.last_seen >= since)


# An aggregate as a batch may carry it, in the columns the stores keep: (actor, dataset_id,
# operation value, region, count, first_seen_us, last_seen_us, day_us). The intents of
# decisions come this way, counted by the engine (no Python object kept per aggregate).
CountRow = tuple[str, str, str, str, int, int, int, int]


@dataclass(frozen=True)
class AccessBatch:
    """What one flush (at `time`) writes, atomically and at most once (`batch_id`). `counts`
    and `intents` are both aggregates (the store adds them alike); no key is in both."""

    batch_id: str
    time: datetime
    counts: tuple[AccessCount, ...] = ()
    runs: tuple[RunRecord, ...] = ()
    violations: tuple[ObservedViolation, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    baselines: tuple[BaselineEntry, ...] = ()
    intents: Sequence[CountRow] = ()

    def __bool__(self) -> bool:
        return bool(
            self.counts or self.runs or self.violations or self.anomalies or self.baselines or len(self.intents)
        )
