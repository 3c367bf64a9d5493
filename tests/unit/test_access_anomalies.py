"""The anomaly rules (`access.anomalies.detect`) on hand-made baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domicile.access.anomalies import detect
from domicile.access.model import (
    AccessCount,
    AccessOperation,
    ActorBaseline,
    AnomalyKind,
    BaselineDimension,
    BaselineEntry,
    day_of,
)
from domicile.config import AnomalySettings

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
SETTINGS = AnomalySettings(baseline_window_days=30, baseline_min_age_days=7, burst_factor=10, burst_min_accesses=100)
LABELS = {"s3://eu/customers": ("PII.CONTACT",), "s3://in/payments": ("FINANCIAL.PAYMENT",), "s3://eu/people": ("PII",)}


def read(dataset, region="aws:eu-west-1", n=1, at=NOW, actor="job", op=AccessOperation.READ):
    return AccessCount(actor, dataset, op, region, n, at, at, day_of(at))


def baseline(*entries, first_seen=NOW - timedelta(days=20), daily=None, actor="job"):
    seen = BaselineEntry(actor, BaselineDimension.SEEN, "", first_seen, NOW - timedelta(days=1))
    made = [BaselineEntry(actor, dim, value, first_seen, last) for dim, value, last in entries]
    return {actor: ActorBaseline(actor, (seen, *made), daily or {})}


def labels_of(dataset_id):
    return LABELS.get(dataset_id, ())


def kinds(anomalies):
    return [(a.kind, a.value, a.dataset_ids) for a in anomalies]


def test_a_new_classification_within_the_window_is_an_anomaly():
    known = baseline(
        (BaselineDimension.CLASSIFICATION, "PII.CONTACT", NOW - timedelta(days=2)),
        (BaselineDimension.REGION, "aws:eu-west-1", NOW - timedelta(days=2)),
    )
    found, entries = detect([read("s3://eu/customers"), read("s3://in/payments")], known, labels_of, SETTINGS, NOW)
    assert kinds(found) == [(AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR, "FINANCIAL.PAYMENT", ("s3://in/payments",))]
    assert found[0].baseline == ("PII.CONTACT",)
    assert found[0].baseline_since == NOW - timedelta(days=20)
    # Its first day starts the baseline: the message must not suggest a touch on it.
    assert found[0].message == "job touched FINANCIAL.PAYMENT data, which it had not in its baseline, from 2026-05-26"
    assert {(e.dimension, e.value) for e in entries} == {
        (BaselineDimension.SEEN, ""),
        (BaselineDimension.CLASSIFICATION, "PII.CONTACT"),
        (BaselineDimension.CLASSIFICATION, "FINANCIAL.PAYMENT"),
        (BaselineDimension.REGION, "aws:eu-west-1"),
    }


def test_an_ancestor_label_covers_its_descendants_and_old_touches_expire():
    known = baseline(
        (BaselineDimension.CLASSIFICATION, "PII", NOW - timedelta(days=2)),
        (BaselineDimension.CLASSIFICATION, "FINANCIAL.PAYMENT", NOW - timedelta(days=45)),  # outside the window
        (BaselineDimension.REGION, "aws:eu-west-1", NOW - timedelta(days=2)),
    )
    found, _ = detect([read("s3://eu/customers"), read("s3://in/payments")], known, labels_of, SETTINGS, NOW)
    assert kinds(found) == [(AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR, "FINANCIAL.PAYMENT", ("s3://in/payments",))]


def test_a_new_region_is_an_anomaly():
    known = baseline((BaselineDimension.REGION, "aws:eu-west-1", NOW - timedelta(days=1)))
    found, _ = detect([read("s3://plain", region="aws:us-east-1")], known, labels_of, SETTINGS, NOW)
    assert kinds(found) == [(AnomalyKind.NEW_REGION_FOR_ACTOR, "aws:us-east-1", ("s3://plain",))]
    assert found[0].message == "job accessed data in aws:us-east-1, where it had not in its baseline, from 2026-05-26"


def test_no_anomaly_before_the_baseline_has_its_minimum_age_nor_for_a_new_actor():
    young = baseline(first_seen=NOW - timedelta(days=3))
    found, entries = detect([read("s3://in/payments", region="aws:us-east-1")], young, labels_of, SETTINGS, NOW)
    assert found == []
    assert entries  # the accesses still build the baseline
    assert detect([read("s3://in/payments")], {}, labels_of, SETTINGS, NOW)[0] == []


def test_questions_to_the_router_are_not_accesses():
    known = baseline()
    intent = read("s3://in/payments", region="aws:us-east-1", op=AccessOperation.INTENT_STORE)
    assert detect([intent], known, labels_of, SETTINGS, NOW) == ([], [])


def test_a_burst_fires_once_when_the_day_crosses_its_threshold():
    known_regions = (BaselineDimension.REGION, "aws:eu-west-1", NOW)
    history = {day_of(NOW - timedelta(days=d)): 20 for d in range(1, 21)}  # 20 a day: threshold 200
    quiet = baseline(known_regions, daily=history)
    found, _ = detect([read("s3://plain", n=150)], quiet, labels_of, SETTINGS, NOW)
    assert found == []
    crossing = baseline(known_regions, daily={**history, day_of(NOW): 150})
    found, _ = detect([read("s3://plain", n=60)], crossing, labels_of, SETTINGS, NOW)
    assert kinds(found) == [(AnomalyKind.ACCESS_BURST, "210", ("s3://plain",))]
    assert (found[0].baseline_daily_mean, found[0].threshold) == (20.0, 200.0)
    already = baseline(known_regions, daily={**history, day_of(NOW): 210})
    assert detect([read("s3://plain", n=60)], already, labels_of, SETTINGS, NOW)[0] == []


def test_a_burst_needs_the_minimum_count():
    known = baseline((BaselineDimension.REGION, "aws:eu-west-1", NOW), daily={day_of(NOW - timedelta(days=1)): 1})
    assert detect([read("s3://plain", n=99)], known, labels_of, SETTINGS, NOW)[0] == []
    found, _ = detect([read("s3://plain", n=101)], known, labels_of, SETTINGS, NOW)
    assert [a.kind for a in found] == [AnomalyKind.ACCESS_BURST]
