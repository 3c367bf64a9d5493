"""Where datasets are stored against the policy, kept up to date as the catalog changes, and
the residency state of single datasets.

`StoredViolations` holds, per dataset, the locations where the active policy does not allow
storing it, each with the DENY verdict that says why: what ScanViolations reports, available
to reads that must not decide (and log) anything, such as the console's pages. It is kept
lazily: the router tells it which datasets a catalog change may have altered (the answer of
`Engine.apply`) and when the policy changed, and `refresh` has the engine judge only those
again. A verdict depends on the time through exemptions, so a refresh after the next exemption
expiry judges every dataset again.

The engine judges `CHUNK` datasets at a time and `refresh` lets the event loop run in between
(a catalog's worth of lineage paths is not built in one go); a change that arrives meanwhile
only adds its datasets to the ones still to judge.
Nothing judges in the background: reads do. A read with a budget (ListViolations) judges
until the budget is spent and answers with the verdicts made so far and how many datasets are
still to judge (`to_judge`), so the first read after a start answers at once and each read
after it goes on; a read of some datasets (`refresh_of`) judges just those; ScanViolations
judges everything first. A dataset still to judge has no verdict: an old one (under another
policy, or before a change) is dropped when the dataset becomes stale, never shown.

It has one owner (the router, on its event loop).

`residency_of` tells what datasets' states are (stored only where allowed, stored against the
policy, derived, undescribed, unknown) in an engine, the router's or one rebuilt as of a past
time.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from domicile.catalog.stores.common import decode_page_token, encode_page_token
from domicile.errors import invalid_field
from domicile.router.engine import Engine, Standing
from domicile.router.types import Verdict

# Datasets judged between two turns of the event loop: some tens of milliseconds.
CHUNK = 1_000


class LocationViolation(NamedTuple):
    """A copy of a dataset in a location where the policy does not allow storing it."""

    dataset_id: str
    region: str
    verdict: Verdict  # the DENY for storing the dataset in `region`
    inherited_only: bool


class StoredViolations:
    """The violations of the catalog under the active policy; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine  # its policy may change between two chunks
        self._clock = clock
        self._timer = timer  # measures a read's budget
        self._found: dict[str, tuple[LocationViolation, ...]] = {}
        self._stale: set[str] = set()
        self._everything = True  # every dataset must be judged again
        # The first exemption expiry after the verdicts were made: they may change then.
        self._valid_until: datetime | None = None
        self._lock = asyncio.Lock()
        # Sorted (dataset id, region) keys and counts per region, rebuilt on the first read
        # after a change.
        self._keys: list[tuple[str, str]] | None = None
        self._regions: dict[str, int] | None = None

    def invalidate(self, dataset_ids: Iterable[str]) -> None:
        """These datasets may have changed (attributes, locations, kind, or gone)."""
        for dataset_id in dataset_ids:
            self._stale.add(dataset_id)
            if self._found.pop(dataset_id, None) is not None:
                self._keys = self._regions = None

    def invalidate_all(self) -> None:
        """Everything may have changed (another policy)."""
        self._everything = True

    @property
    def to_judge(self) -> int:
        """How many datasets are still to judge: their violations are missing until then; as
        of the last `refresh` (0 after one without a budget)."""
        return len(self._stale)

    async def refresh(self, budget: float | None = None) -> None:
        """Bring the violations up to date with the index under the active policy, now; with a
        `budget` (seconds), stop judging once it is spent, after one chunk at least (the rest
        stays `to_judge`, for the next refresh). Concurrent callers take turns."""
        async with self._lock:
            deadline = None if budget is None else self._timer() + budget
            while True:
                now = self._clock()
                self._start_over_if_due(now)
                if not self._stale:
                    return
                # At least a chunk per refresh: reads in a row get through the catalog.
                self._judge_chunk([self._stale.pop() for _ in range(min(CHUNK, len(self._stale)))], now)
                if deadline is not None and self._timer() >= deadline:
                    return
                await asyncio.sleep(0)

    async def refresh_of(self, dataset_ids: Iterable[str]) -> None:
        """Judge those of `dataset_ids` still to judge: `of` answers for them up to date,
        whatever is left of the rest."""
        async with self._lock:
            now = self._clock()
            self._start_over_if_due(now)
            wanted = [dataset_id for dataset_id in dict.fromkeys(dataset_ids) if dataset_id in self._stale]
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                self._stale.difference_update(chunk)
                self._judge_chunk(chunk, now)
                if start + CHUNK < len(wanted):
                    await asyncio.sleep(0)

    def _start_over_if_due(self, now: datetime) -> None:
        """After another policy, or once an exemption expired: every verdict is void."""
        if self._everything or (self._valid_until is not None and now >= self._valid_until):
            self._everything = False
            self._valid_until = None
            self._stale = set(self._engine.stored_datasets())
            self._found.clear()
            self._keys = self._regions = None

    def _judge_chunk(self, dataset_ids: list[str], now: datetime) -> None:
        policy = self._engine.policy
        self._judge(dataset_ids, now)
        expiry = policy.next_expiry(now)
        if expiry is not None and (self._valid_until is None or expiry < self._valid_until):
            self._valid_until = expiry
        self._keys = self._regions = None

    def _judge(self, dataset_ids: Iterable[str], now: datetime) -> None:
        by_dataset: dict[str, list[LocationViolation]] = {}
        for dataset_id, region, verdict in self._engine.violations_of(dataset_ids, now):
            by_dataset.setdefault(dataset_id, []).append(
                LocationViolation(dataset_id, region, verdict, verdict.inherited_only)
            )
        for dataset_id, violations in by_dataset.items():
            self._found[dataset_id] = tuple(violations)

    def of(self, dataset_id: str) -> tuple[LocationViolation, ...]:
        """The dataset's violations, in location order (empty when none); as of the last `refresh`."""
        return self._found.get(dataset_id, ())

    def __len__(self) -> int:
        """How many (dataset, location) violations there are; as of the last `refresh`."""
        return len(self._sorted_keys())

    def page(self, after: tuple[str, str] | None, size: int, region: str = "") -> list[LocationViolation]:
        """Up to `size` violations after the key (dataset id, region) `after`, ordered by
        dataset id then region (a dataset's locations are sorted), only those in `region` when
        given; as of the last `refresh`."""
        keys = self._sorted_keys()
        page: list[LocationViolation] = []
        for index in range(0 if after is None else bisect.bisect_right(keys, after), len(keys)):
            dataset_id, key_region = keys[index]
            if region and key_region != region:
                continue
            page.append(next(v for v in self._found[dataset_id] if v.region == key_region))
            if len(page) == size:
                break
        return page

    def count(self, region: str = "") -> int:
        """How many violations there are (in `region`, when given); as of the last `refresh`."""
        return self.by_region().get(region, 0) if region else len(self)

    def by_region(self) -> Mapping[str, int]:
        """Violations per region; as of the last `refresh`."""
        if self._regions is None:
            regions: dict[str, int] = {}
            for violations in self._found.values():
                for violation in violations:
                    regions[violation.region] = regions.get(violation.region, 0) + 1
            self._regions = regions
        return self._regions

    def _sorted_keys(self) -> list[tuple[str, str]]:
        if self._keys is None:
            self._keys = sorted((v.dataset_id, v.region) for vs in self._found.values() for v in vs)
        return self._keys


class ViolationPage(NamedTuple):
    """A page of violations, with the totals of the whole set."""

    violations: list[LocationViolation]
    next_page_token: str  # empty on the last page
    total: int  # violations in the region asked for (all regions when none)
    by_region: Mapping[str, int]
    policy_version: str
    catalog_revision: int
    # Datasets not judged yet: the page and the totals hold the verdicts made so far, complete
    # when this is 0.
    datasets_to_judge: int = 0


def violation_page(
    violations: StoredViolations, region: str, size: int, token: str, policy_version: str, catalog_revision: int
) -> ViolationPage:
    """The page of `violations` that `token` continues (the first for ""); INVALID_ARGUMENT
    for a token that is not one of this listing's (or was issued for another region)."""
    after, _ = decode_page_token(token, "violations", None, region)
    key: tuple[str, str] | None = None
    if after is not None:
        dataset_id, separator, key_region = after.rpartition("\n")
        if not separator:
            raise invalid_field("page_token", "malformed page token")
        key = (dataset_id, key_region)
    page = violations.page(key, size + 1, region)
    next_token = ""
    if len(page) > size:
        page = page[:size]
        # Ids and regions never contain a line break (they are checked for control characters).
        next_token = encode_page_token("violations", f"{page[-1].dataset_id}\n{page[-1].region}", None, region)
    return ViolationPage(
        page,
        next_token,
        violations.count(region),
        violations.by_region(),
        policy_version,
        catalog_revision,
        violations.to_judge,
    )


class ResidencyState(enum.Enum):
    """Where a dataset stands against the policy."""

    ALLOWED = "allowed"  # described; stored only where the policy allows it (or nowhere)
    VIOLATION = "violation"  # described; stored somewhere the policy forbids
    DERIVED = "derived"  # known only as the output of described lineage: judged by what it inherits
    # Nothing is known of its content: a lineage root nobody described, a deleted dataset, a
    # placeholder derived from such data.
    UNDESCRIBED = "undescribed"
    UNKNOWN = "unknown"  # not in the catalog


class DatasetResidency(NamedTuple):
    dataset_id: str
    state: ResidencyState
    locations: tuple[str, ...]
    violating_regions: tuple[str, ...]  # the locations where storing it is not allowed


class ResidencyStates(NamedTuple):
    states: tuple[DatasetResidency, ...]
    policy_version: str
    catalog_revision: int  # 0 for states as of a past time


_STATE_OF_STANDING = {
    Standing.DERIVED: ResidencyState.DERIVED,
    Standing.UNDESCRIBED: ResidencyState.UNDESCRIBED,
    Standing.UNKNOWN: ResidencyState.UNKNOWN,
}


def residency_of(
    engine: Engine, dataset_ids: Sequence[str], violating_regions: Callable[[str], tuple[str, ...]]
) -> tuple[DatasetResidency, ...]:
    """The residency state of each of `dataset_ids` in `engine`, in order;
    `violating_regions(id)` answers for a described dataset where it is stored against the
    policy."""
    found = []
    for dataset_id, (standing, locations) in zip(dataset_ids, engine.standings(dataset_ids), strict=True):
        if standing is not Standing.DESCRIBED:
            found.append(DatasetResidency(dataset_id, _STATE_OF_STANDING[standing], (), ()))
            continue
        violating = violating_regions(dataset_id) if locations else ()
        state = ResidencyState.VIOLATION if violating else ResidencyState.ALLOWED
        found.append(DatasetResidency(dataset_id, state, locations, violating))
    return tuple(found)
