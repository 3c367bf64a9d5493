"""Access totals as AccessService messages: one message per actor (or dataset), a summary per
total, and the message's sum, first and last seen over its summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domicile.access.convert import actor_access_to_proto, patterns_to_proto
from domicile.access.model import AccessOperation, AccessTotal
from domicile.catalog.model import to_micros
from domicile.v1 import access_pb2

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def total(actor: str, dataset: str, op: AccessOperation, region: str, n: int, first: datetime, last: datetime):
    return AccessTotal(actor, dataset, op, region, n, to_micros(first), to_micros(last))


def test_patterns_one_actor_access_per_actor_with_its_summaries_summed():
    totals = [
        total("job-a", "s3://d", AccessOperation.READ, "r1", 2, T0 + timedelta(hours=1), T0 + timedelta(days=2)),
        total("job-a", "s3://d", AccessOperation.WRITE, "r2", 3, T0, T0 + timedelta(days=1)),
        total("job-b", "s3://d", AccessOperation.READ, "r1", 1, T0, T0),
    ]
    response = patterns_to_proto(totals)
    a, b = response.actors
    assert (a.actor, a.total_count, a.first_seen.ToDatetime(UTC), a.last_seen.ToDatetime(UTC)) == (
        "job-a",
        5,
        T0,
        T0 + timedelta(days=2),
    )
    assert [(s.operation, s.region, s.count, s.first_seen.ToDatetime(UTC)) for s in a.accesses] == [
        (access_pb2.ACCESS_OPERATION_READ, "r1", 2, T0 + timedelta(hours=1)),
        (access_pb2.ACCESS_OPERATION_WRITE, "r2", 3, T0),
    ]
    assert (b.actor, b.total_count, b.first_seen.ToDatetime(UTC), b.last_seen.ToDatetime(UTC)) == ("job-b", 1, T0, T0)
    assert [(s.count, s.last_seen.ToDatetime(UTC)) for s in b.accesses] == [(1, T0)]


def test_actor_access_one_dataset_access_per_dataset():
    totals = [
        total("job-a", "s3://d1", AccessOperation.READ, "r1", 2, T0, T0),
        total("job-a", "s3://d2", AccessOperation.READ, "r1", 1, T0, T0 + timedelta(days=1)),
        total("job-a", "s3://d2", AccessOperation.WRITE, "r1", 4, T0 - timedelta(days=1), T0),
    ]
    response = actor_access_to_proto(totals, [])
    assert [(d.dataset_id, d.total_count, len(d.accesses)) for d in response.datasets] == [
        ("s3://d1", 2, 1),
        ("s3://d2", 5, 2),
    ]
    d2 = response.datasets[1]
    assert (d2.first_seen.ToDatetime(UTC), d2.last_seen.ToDatetime(UTC)) == (
        T0 - timedelta(days=1),
        T0 + timedelta(days=1),
    )


def test_no_totals_no_messages():
    assert len(patterns_to_proto([]).actors) == 0
