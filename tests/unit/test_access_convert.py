"""Access totals as AccessService messages: one message per actor (or dataset), a summary per
total, and the message's sum, first and last seen over its summaries. The engine encodes them;
`expected_patterns` is the plain reference it is held to."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from domicile.access.convert import OPERATION_TO_PROTO_ACCESS, actor_access_to_proto, patterns_wire
from domicile.access.model import AccessOperation, AccessTotal, AccessTotals, RunAccess, RunRecord
from domicile.catalog.model import to_micros
from domicile.v1 import access_pb2

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def total(actor: str, dataset: str, op: AccessOperation, region: str, n: int, first: datetime, last: datetime):
    return AccessTotal(actor, dataset, op, region, n, to_micros(first), to_micros(last))


def patterns_to_proto(totals: list[AccessTotal]) -> access_pb2.GetAccessPatternsResponse:
    """The answer for a dataset's totals, packed as a store packs them (in an order of its own)."""
    return access_pb2.GetAccessPatternsResponse.FromString(
        patterns_wire(AccessTotals.of("s3://d", True, reversed(totals)))
    )


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
    response = actor_access_to_proto(AccessTotals.of("job-a", False, totals), [])
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


def _stamp(us: int):
    from google.protobuf.timestamp_pb2 import Timestamp

    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def expected_patterns(totals: list[AccessTotal]) -> access_pb2.GetAccessPatternsResponse:
    response = access_pb2.GetAccessPatternsResponse()
    for t in totals:
        if not response.actors or response.actors[-1].actor != t.actor:
            response.actors.add(actor=t.actor, first_seen=_stamp(t.first_seen_us), last_seen=_stamp(t.last_seen_us))
        actor = response.actors[-1]
        actor.accesses.add(
            operation=OPERATION_TO_PROTO_ACCESS[t.operation],
            region=t.region,
            count=t.total,
            first_seen=_stamp(t.first_seen_us),
            last_seen=_stamp(t.last_seen_us),
        )
        actor.total_count += t.total
        actor.first_seen.CopyFrom(_stamp(min(t.first_seen_us, actor.first_seen.ToMicroseconds())))
        actor.last_seen.CopyFrom(_stamp(max(t.last_seen_us, actor.last_seen.ToMicroseconds())))
    return response


@pytest.mark.parametrize("seed", range(20))
def test_patterns_match_the_reference_for_any_totals(seed):
    rng = random.Random(seed)
    actors = sorted({rng.choice(["job-a", "ns/jöb-ü", "principal:🙂", "", "x" * 300]) for _ in range(4)})
    totals = {}  # one per (actor, operation, region), as a store has them
    for actor in actors:
        for _ in range(rng.randint(1, 4)):
            first = rng.randint(-(10**15), 10**17)
            op, region = rng.choice(list(AccessOperation)), rng.choice(["", "aws:eu-west-1", "gcp:europe-west3", "é"])
            totals[actor, op.value, region] = AccessTotal(
                actor, "s3://d", op, region, rng.randint(0, 2**40), first, first + rng.randint(0, 10**12)
            )
    in_order = [totals[key] for key in sorted(totals)]
    assert patterns_to_proto(rng.sample(in_order, len(in_order))) == expected_patterns(in_order)


def test_actor_access_runs_follow_the_datasets():
    run = RunRecord(
        "ns/job",
        "r1",
        "producer",
        "alice",
        "aws:eu-west-1",
        T0,
        T0,
        T0,
        (RunAccess("s3://d1", AccessOperation.READ, "aws:eu-west-1"),),
    )
    totals = AccessTotals.of("ns/job", False, [total("ns/job", "s3://d1", AccessOperation.READ, "r1", 2, T0, T0)])
    response = actor_access_to_proto(totals, [run])
    assert [d.dataset_id for d in response.datasets] == ["s3://d1"]
    assert [(r.run_id, [a.dataset_id for a in r.accesses]) for r in response.runs] == [("r1", ["s3://d1"])]


def test_packed_totals_that_are_not_totals_are_refused():
    with pytest.raises(ValueError, match="no number"):
        patterns_wire(AccessTotals("s3://d", True, '[["a", "peek", "r", 1, 0, 0]]'))
    with pytest.raises(ValueError, match="packed totals"):
        patterns_wire(AccessTotals("s3://d", True, '[["a", "read"]]'))


def test_packed_totals_read_back_in_the_contract_order():
    totals = [
        total("job-b", "s3://d", AccessOperation.READ, "r1", 1, T0, T0),
        total("job-a", "s3://d", AccessOperation.WRITE, "r2", 3, T0, T0),
        total("job-a", "s3://d", AccessOperation.READ, "r2", 2, T0, T0),
    ]
    packed = AccessTotals.of("s3://d", True, totals)
    assert list(packed) == [totals[2], totals[1], totals[0]]
    assert (len(packed), packed[0], list(AccessTotals("s3://d", True, "[]"))) == (3, totals[2], [])
