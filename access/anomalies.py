"""The anomaly rules: simple, explainable deviations of an actor from its own baseline.

An actor's baseline is what the store holds about it before the batch being checked: the
classification labels and regions it touched (with when it last did) and its observed
accesses per UTC day. Only observed accesses count (reads and writes by runs, catalog
writes); questions to the router do not. Rules, with `access.anomalies` settings:

- No anomaly at all for an actor first seen less than `baseline_min_age_days` ago: it has
  no baseline yet (its accesses build one).
- NEW_CLASSIFICATION_FOR_ACTOR: it touched a dataset carrying an effective label that it has
  not touched within the last `baseline_window_days` (a label counts as touched when the
  actor touched it or an ancestor of it: PII covers PII.CONTACT).
- NEW_REGION_FOR_ACTOR: it accessed data in a region where it has not within the window.
- ACCESS_BURST: its accesses on a UTC day pass `burst_factor` x its mean daily accesses over
  the window before that day (days since it was first seen, at most the window), and at least
  `burst_min_accesses`; raised once per actor and day, when the day's count crosses it.

Pure functions: `detect` gets the batch's accesses and the baselines, and returns anomalies
and the baseline entries the batch adds.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domicile.access.model import (
    DAY,
    AccessCount,
    ActorBaseline,
    Anomaly,
    AnomalyKind,
    BaselineDimension,
    BaselineEntry,
    day_of,
)
from domicile.catalog.model import label_matches
from domicile.config import AnomalySettings


@dataclass
class _ActorBatch:
    """One actor's observed accesses in a batch."""

    first: datetime
    last: datetime
    datasets: set[str] = field(default_factory=set)
    regions: dict[str, set[str]] = field(default_factory=dict)  # region -> datasets
    daily: dict[datetime, int] = field(default_factory=dict)


def _by_actor(counts: Iterable[AccessCount]) -> dict[str, _ActorBatch]:
    actors: dict[str, _ActorBatch] = {}
    for c in counts:
        if not c.operation.observed:
            continue
        batch = actors.get(c.actor)
        if batch is None:
            batch = actors[c.actor] = _ActorBatch(c.first_seen, c.last_seen)
        batch.first, batch.last = min(batch.first, c.first_seen), max(batch.last, c.last_seen)
        batch.datasets.add(c.dataset_id)
        if c.region:
            batch.regions.setdefault(c.region, set()).add(c.dataset_id)
        day = c.day or day_of(c.first_seen)
        batch.daily[day] = batch.daily.get(day, 0) + c.count
    return actors


def observed_actors(counts: Iterable[AccessCount]) -> list[str]:
    """The actors whose baselines `detect` needs for `counts`."""
    return sorted(_by_actor(counts))


def detect(
    counts: Iterable[AccessCount],
    baselines: Mapping[str, ActorBaseline],
    labels_of: Callable[[str], Iterable[str]],
    settings: AnomalySettings,
    now: datetime,
) -> tuple[list[Anomaly], list[BaselineEntry]]:
    """Anomalies raised by a batch of accesses, and the baseline entries it adds."""
    window = timedelta(days=settings.baseline_window_days)
    min_age = timedelta(days=settings.baseline_min_age_days)
    window_start = now - window
    anomalies: list[Anomaly] = []
    entries: list[BaselineEntry] = []
    for actor, batch in sorted(_by_actor(counts).items()):
        baseline = baselines.get(actor) or ActorBaseline(actor)
        labels: dict[str, set[str]] = {}
        for dataset_id in sorted(batch.datasets):
            for label in labels_of(dataset_id):
                labels.setdefault(label, set()).add(dataset_id)
        entries.append(BaselineEntry(actor, BaselineDimension.SEEN, "", batch.first, batch.last))
        entries += [BaselineEntry(actor, BaselineDimension.CLASSIFICATION, x, batch.first, batch.last) for x in labels]
        entries += [BaselineEntry(actor, BaselineDimension.REGION, x, batch.first, batch.last) for x in batch.regions]
        first_seen = baseline.first_seen
        if first_seen is None or now - first_seen < min_age:
            continue
        since = max(window_start, first_seen)
        known_labels = baseline.values(BaselineDimension.CLASSIFICATION, window_start)
        for label, datasets in sorted(labels.items()):
            if not any(label_matches(known, label) for known in known_labels):
                anomalies.append(
                    _anomaly(
                        AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR,
                        actor,
                        datasets,
                        label,
                        now,
                        since,
                        known_labels,
                        f"{actor} touched {label} data, which it had not in its baseline, from {since:%Y-%m-%d}",
                    )
                )
        known_regions = baseline.values(BaselineDimension.REGION, window_start)
        for region, datasets in sorted(batch.regions.items()):
            if region not in known_regions:
                anomalies.append(
                    _anomaly(
                        AnomalyKind.NEW_REGION_FOR_ACTOR,
                        actor,
                        datasets,
                        region,
                        now,
                        since,
                        known_regions,
                        f"{actor} accessed data in {region}, where it had not in its baseline, from {since:%Y-%m-%d}",
                    )
                )
        anomalies += _bursts(actor, batch, baseline, settings, now, since)
    return anomalies, entries


def _bursts(
    actor: str, batch: _ActorBatch, baseline: ActorBaseline, settings: AnomalySettings, now: datetime, since: datetime
) -> list[Anomaly]:
    found = []
    for day, added in sorted(batch.daily.items()):
        window_days = [d for d in baseline.daily_counts if since - DAY < d < day]
        span = max(1, min(settings.baseline_window_days, math.ceil((day - day_of(since)) / DAY)))
        mean = sum(baseline.daily_counts[d] for d in window_days) / span
        threshold = max(settings.burst_factor * mean, float(settings.burst_min_accesses))
        before = baseline.daily_counts.get(day, 0)
        if before <= threshold < before + added:
            found.append(
                _anomaly(
                    AnomalyKind.ACCESS_BURST,
                    actor,
                    batch.datasets,
                    str(before + added),
                    now,
                    since,
                    (),
                    f"{actor} made {before + added} accesses on {day:%Y-%m-%d}, above {threshold:g} "
                    f"({settings.burst_factor:g} x its mean of {mean:.1f} a day)",
                    mean=mean,
                    threshold=threshold,
                )
            )
    return found


def _anomaly(
    kind: AnomalyKind,
    actor: str,
    datasets: Iterable[str],
    value: str,
    now: datetime,
    since: datetime,
    baseline: Iterable[str],
    message: str,
    *,
    mean: float = 0.0,
    threshold: float = 0.0,
) -> Anomaly:
    return Anomaly(
        anomaly_id=uuid.uuid4().hex,
        kind=kind,
        actor=actor,
        dataset_ids=tuple(sorted(datasets)),
        value=value,
        detect_time=now,
        baseline_since=since,
        baseline=tuple(sorted(baseline)),
        baseline_daily_mean=mean,
        threshold=threshold,
        message=message,
    )
