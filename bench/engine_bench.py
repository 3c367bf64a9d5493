"""Residency engine's index at scale: build, memory and single-edge updates.

    .venv/bin/python bench/engine_bench.py [--datasets 1000000] [--edges 3000000] [--adds 2000]
                                           [--decisions 20000]

Builds, in memory, a residency snapshot like a store's (`GraphStore.residency_snapshot`):
--datasets datasets in 20 lineage layers (the first one sources carrying the bank-like label
and origin mixes of bench/router_bench.py, the rest placeholders derived from the layer
before), --edges edges, each into a dataset of layer k from one of layer k-1 near its position
(10% through `aggregate` or `anonymize` jobs granted by examples/policy.yaml). Then, timed:
`Engine.load` from that snapshot (already read, as `Router.start` has it) and the process's RSS
growth over it; then --adds single lineage edges added one `apply` at a time between random
datasets of adjacent layers, p50/p99/max -- over all of them, and over those that changed the
answers of at most 10,000 datasets (what `apply` reports), the target's scope; wall time, and
the thread's CPU time beside it (on a shared machine the wall-clock tail is mostly waiting for
a core). Last, the engine's decisions alone, in CPU time:
--decisions random questions (dataset, operation, one of 4 regions) through the binding's
`decide` (a verdict tuple, no Decision, no log) and through `batch_decide_wire` in batches of
10,000 (parse, decide, encode; no log).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from domicile.catalog.model import Change, ChangeKind, Edge, EdgeRow, ResidencyRow, ResidencySnapshot, to_micros
from domicile.router.engine import Engine, LogLane, compile_policy
from domicile.router.policy import load_policy
from domicile.v1 import residency_pb2

POLICY = Path(__file__).parents[1] / "examples" / "policy.yaml"
LAYERS = 20
NOW = datetime(2026, 12, 1, tzinfo=UTC)
PROFILES = (
    (("PII.CONTACT",), ("DE",), ("aws:eu-central-1",)),
    (("FINANCIAL.PAYMENT.UPI",), ("IN",), ("aws:ap-south-1",)),
    (("PII.CONTACT",), ("CN",), ("aws:cn-north-1",)),
    (("INTERNAL",), ("US",), ()),
    ((), ("US",), ("aws:us-east-1",)),
)
JOBS = (("", "etl/copy"), ("aggregate", "airflow-eu/daily_rollup"), ("anonymize", "airflow-eu/anonymize_x"))


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def snapshot(datasets: int, edges: int, seed: int) -> ResidencySnapshot:
    rng = random.Random(seed)
    per_layer = datasets // LAYERS
    ids = [[f"s3://l{layer:02d}/d{n:07d}" for n in range(per_layer)] for layer in range(LAYERS)]
    rows = []
    for n, dataset_id in enumerate(ids[0]):
        labels, origins, locations = PROFILES[n % len(PROFILES)]
        rows.append(ResidencyRow(dataset_id, frozenset(labels), frozenset(origins), locations))
    placeholders = [dataset_id for layer in ids[1:] for dataset_id in layer]
    edge_rows = set()
    per_dataset = edges / (per_layer * (LAYERS - 1))
    for layer in range(1, LAYERS):
        for n, output in enumerate(ids[layer]):
            count = int(per_dataset) + (rng.random() < per_dataset % 1)
            for _ in range(max(1, count)):
                source = ids[layer - 1][min(per_layer - 1, max(0, n + rng.randint(-50, 50)))]
                transform, job = JOBS[0] if rng.random() < 0.9 else rng.choice(JOBS[1:])
                edge_rows.add(EdgeRow(source, output, job, transform))
    return ResidencySnapshot(0, rows, list(edge_rows), placeholders), ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=3_000_000)
    parser.add_argument("--adds", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    snap, ids = snapshot(args.datasets, args.edges, args.seed)
    print(
        f"snapshot: {len(snap.datasets) + len(snap.placeholders):,} datasets, {len(snap.edges):,} edges "
        f"(generated in {time.perf_counter() - started:.1f}s)",
        flush=True,
    )
    policy = compile_policy(load_policy(POLICY.read_text("utf-8")))
    gc.collect()
    before = rss_bytes()
    started, started_cpu = time.perf_counter(), time.process_time()
    engine = Engine(policy)
    engine.load(snap)
    built, built_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    gc.collect()
    grown = rss_bytes() - before
    count = len(snap.datasets) + len(snap.placeholders)
    print(
        f"  Engine.load from the snapshot read: {built:.2f} s, {built_cpu:.2f} s CPU "
        "(target <= 10 s at 1,000,000 / 3,000,000)"
    )
    print(f"  RSS growth: {grown / 2**20:,.0f} MiB, {grown / count:,.0f} bytes per dataset (target <= 500)")
    rng = random.Random(args.seed + 1)
    timings, small, cpu = [], [], []
    for n in range(args.adds):
        layer = rng.randrange(1, LAYERS)
        source, output = rng.choice(ids[layer - 1]), rng.choice(ids[layer])
        edge = Edge(input=source, output=output, job=f"bench/added-{n}", run_id="bench")
        change = Change(revision=n + 1, kind=ChangeKind.EDGE_ADDED, time=NOW, edge=edge)
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        touched = engine.apply([change])
        elapsed = time.perf_counter_ns() - start
        timings.append(elapsed)
        if len(touched) <= 10_000:
            small.append(elapsed)
            cpu.append(time.thread_time_ns() - start_cpu)
    for label, found in (("all", timings), ("changing <= 10,000", small), ("changing <= 10,000, CPU time", cpu)):
        if not found:
            continue
        found.sort()
        p = lambda q, f=found: f[min(len(f) - 1, int(len(f) * q))] / 1e6  # noqa: E731
        print(
            f"  one edge added, {label} ({len(found):,} apply calls): p50 {p(0.5):.3f} ms, "
            f"p99 {p(0.99):.3f} ms, max {found[-1] / 1e6:.3f} ms, mean {statistics.fmean(found) / 1e6:.3f} ms "
            "(target p99 <= 1 ms)"
        )
    decisions(engine, ids, args.decisions, rng)


def decisions(engine: Engine, ids: list[list[str]], count: int, rng: random.Random) -> None:
    datasets = [dataset_id for layer in ids for dataset_id in layer]
    regions = ("aws:eu-central-1", "aws:us-east-1", "aws:ap-south-1", "aws:eu-west-1")
    questions = [(rng.choice(datasets), rng.randrange(2), rng.choice(regions)) for _ in range(count)]
    core, now = engine._core, to_micros(NOW)  # the binding itself: what the engine costs
    start = time.thread_time_ns()
    for dataset_id, operation, region in questions:
        core.decide(dataset_id, operation, region, now)
    per_call = (time.thread_time_ns() - start) / count / 1000
    print(f"  engine decide through the binding: {per_call:.2f} us CPU per call ({count:,} calls)")
    batch = [residency_pb2.DecideRequest(dataset_id=d, operation=o + 1, region=r) for d, o, r in questions[:10_000]]
    request = residency_pb2.BatchDecideRequest(requests=batch).SerializeToString()
    rounds = max(1, count // len(batch))
    ids = LogLane("bench:", 100, 10_000, lambda: None)
    start = time.thread_time_ns()
    for _ in range(rounds):
        answer, _ = core.batch_decide_wire(request, now, None, 1, ids, 10_000)
    per_decision = (time.thread_time_ns() - start) / (rounds * len(batch))
    print(
        f"  engine batch_decide_wire (parse, decide, encode): {1e9 / per_decision:,.0f} decisions per CPU-second, "
        f"{len(answer) / len(batch):,.0f} answer bytes per decision"
    )


if __name__ == "__main__":
    main()
