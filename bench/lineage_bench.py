"""Lineage benchmark: bulk ingest and depth-10 traversals on a synthetic lineage DAG.

    python bench/lineage_bench.py --backend sqlite [--datasets 1000000]
    tools/neo4j/neo4j.sh up --port 7700 --data /tmp/bench-neo4j   # an empty server
    python bench/lineage_bench.py --backend neo4j --store bolt://127.0.0.1:7700

Shape of the graph (deterministic for a given --seed): `--layers` layers of equal width
(default 20 layers of 50,000 for 1,000,000 datasets), like stages of layered pipelines
(raw → clean → conformed → marts ...). Each dataset of layer k > 0 is derived from 1-5
datasets of layer k-1 (mean 3.35 drawn, a little less after duplicates collapse): the one at
its own position and others near it (pipelines mostly read their own domain: fan-in and
fan-out are local), with probability 5% also from a random dataset of any
earlier layer (a cross-domain join), and with probability 3% from one of the shared
reference datasets of layer 0 (currency rates, calendars: together they feed ~3% of all
datasets, a heavy fan-out). That is ≈ 3.0 edges per dataset: ~3,000,000 edges for 1M.

Ingest goes through the store's `record_lineage`, one call per job run: a job covers
`--job-width` consecutive datasets of a layer (default 1000, ≈ 3,100 edges per call); every
dataset is first created as a placeholder by that call. Queries are the GraphStore's
`traverse` with max_depth=10 and the default limits (10,000 nodes, 5 s): upstream from
random datasets of layers ≥ 10 and downstream from random datasets of layers ≤ L-11, so
that depth 10 exists in each direction; with `--grpc` the same queries are also sent as
GetLineage over a loopback gRPC channel. It prints ingest rate, latency percentiles and the
answer sizes (and how many answers a limit truncated). Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from domicile.catalog.model import Direction, EdgeKey, Run
from domicile.catalog.store import GraphStore
from domicile.catalog.stores import open_store

IN_DEGREE = ((1, 0.10), (2, 0.15), (3, 0.25), (4, 0.25), (5, 0.25))
LOCALITY = 8  # inputs come from positions within ±LOCALITY in the previous layer
CROSS_DOMAIN_P = 0.05
HUB_P = 0.03


@dataclass(frozen=True)
class Shape:
    datasets: int
    layers: int
    job_width: int
    seed: int

    @property
    def width(self) -> int:
        return self.datasets // self.layers

    @property
    def hubs(self) -> int:
        return max(10, self.datasets // 10_000)

    def dataset(self, layer: int, position: int) -> str:
        return f"s3://bench-stage{layer:02d}/domain{position // 1000:04d}/table{position:07d}"


def job_batches(shape: Shape) -> Iterator[tuple[str, list[EdgeKey]]]:
    """(job, edges) per job run, layer by layer, so every input exists before it is read
    (as a placeholder at least) — the order pipelines run in."""
    degrees, weights = zip(*IN_DEGREE, strict=True)
    width = shape.width
    for layer in range(1, shape.layers):
        rng = random.Random(shape.seed * 1_000_003 + layer)
        for first in range(0, width, shape.job_width):
            job = f"bench/stage{layer:02d}/job{first // shape.job_width:05d}"
            edges: list[EdgeKey] = []
            for position in range(first, min(first + shape.job_width, width)):
                output = shape.dataset(layer, position)
                # The stage's own predecessor table first (so every dataset of the previous
                # layer is read by someone), then more inputs from its neighbourhood.
                inputs = {shape.dataset(layer - 1, position)}
                for _ in range(rng.choices(degrees, weights)[0] - 1):
                    source = (position + rng.randint(-LOCALITY, LOCALITY)) % width
                    inputs.add(shape.dataset(layer - 1, source))
                if rng.random() < CROSS_DOMAIN_P:
                    inputs.add(shape.dataset(rng.randrange(layer), rng.randrange(width)))
                if rng.random() < HUB_P:
                    inputs.add(shape.dataset(0, rng.randrange(shape.hubs)))
                edges.extend(EdgeKey(i, output, job) for i in sorted(inputs))
            yield job, edges


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


async def ingest(store: GraphStore, shape: Shape, progress_every: float) -> tuple[int, float, list[float]]:
    """Record every batch; returns (edges, seconds, per-call seconds)."""
    total = 0
    calls: list[float] = []
    started = last_report = time.perf_counter()
    for job, edges in job_batches(shape):
        before = time.perf_counter()
        result = await store.record_lineage(Run(job=job, run_id="bench-run-1"), edges)
        calls.append(time.perf_counter() - before)
        if result.edges_created != len(edges):
            raise SystemExit(f"{job}: {result.edges_created} of {len(edges)} edges created; is the store empty?")
        total += len(edges)
        now = time.perf_counter()
        if now - last_report >= progress_every:
            print(
                f"  ... {total:,} edges in {now - started:,.0f} s ({total / (now - started):,.0f} edges/s)", flush=True
            )
            last_report = now
    return total, time.perf_counter() - started, calls


Query = Callable[[str, Direction, int], Awaitable[tuple[int, bool, str]]]


def store_query(store: GraphStore) -> Query:
    """A traversal through the GraphStore: (datasets, complete, incomplete_reason)."""

    async def query(start: str, direction: Direction, depth: int) -> tuple[int, bool, str]:
        answer = await store.traverse(start, direction, max_depth=depth)
        return len(answer.nodes), answer.complete, answer.incomplete_reason

    return query


@asynccontextmanager
async def grpc_query(store: GraphStore) -> AsyncIterator[Query]:
    """GetLineage over a real loopback gRPC channel to a LineageService on `store` (the
    service alone: no router index, which a full server would first build from the store)."""
    import grpc

    from domicile.app import App
    from domicile.config import load_settings
    from domicile.grpc_errors import ErrorMappingInterceptor
    from domicile.lineage.convert import DIRECTION_TO_PROTO
    from domicile.lineage.service import LineageServicer
    from domicile.v1 import lineage_pb2, lineage_pb2_grpc

    settings = load_settings(insecure=True, listen="127.0.0.1:0", http_listen="")
    server = grpc.aio.server(
        interceptors=[ErrorMappingInterceptor()], options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    lineage_pb2_grpc.add_LineageServiceServicer_to_server(LineageServicer(App(settings=settings, store=store)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        ) as channel:
            stub = lineage_pb2_grpc.LineageServiceStub(channel)

            async def query(start: str, direction: Direction, depth: int) -> tuple[int, bool, str]:
                answer = await stub.GetLineage(
                    lineage_pb2.GetLineageRequest(
                        dataset_id=start, direction=DIRECTION_TO_PROTO[direction], max_depth=depth
                    )
                )
                return len(answer.nodes), answer.complete, answer.incomplete_reason

            yield query
    finally:
        await server.stop(0)


async def measure(query: Query, shape: Shape, direction: Direction, count: int, depth: int) -> dict:
    """`count` traversals from random starts where `depth` levels exist in `direction`
    (the same starts for a given seed, whichever way `query` reaches the store)."""
    rng = random.Random(shape.seed + (1 if direction is Direction.UPSTREAM else 2))
    layers = range(depth, shape.layers) if direction is Direction.UPSTREAM else range(shape.layers - depth)
    starts = [shape.dataset(rng.choice(layers), rng.randrange(shape.width)) for _ in range(count)]
    for start in starts[: max(1, count // 10)]:  # warm caches and connection pools
        await query(start, direction, depth)
    latencies: list[float] = []
    sizes: list[int] = []
    truncated: dict[str, int] = {}
    for start in starts:
        before = time.perf_counter()
        size, complete, reason = await query(start, direction, depth)
        latencies.append(time.perf_counter() - before)
        sizes.append(size)
        if not complete:
            truncated[reason] = truncated.get(reason, 0) + 1
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "nodes_median": statistics.median(sizes),
        "nodes_p99": percentile([float(s) for s in sizes], 99),
        "truncated": truncated,
    }


async def report_queries(label: str, query: Query, shape: Shape, args: argparse.Namespace) -> None:
    for direction in (Direction.UPSTREAM, Direction.DOWNSTREAM):
        result = await measure(query, shape, direction, args.queries, args.depth)
        truncated = ", ".join(f"{n} by {reason}" for reason, n in sorted(result["truncated"].items())) or "none"
        print(
            f"{label}: {direction.value} depth {args.depth}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
            f"max {result['max_ms']:.1f} ms over {args.queries} queries; nodes per answer median "
            f"{result['nodes_median']:,.0f}, p99 {result['nodes_p99']:,.0f}; truncated: {truncated}",
            flush=True,
        )


def store_options(args: argparse.Namespace) -> dict:
    if args.backend == "sqlite":
        return {}
    options = {}
    if args.neo4j_user or args.neo4j_password:
        options = {"user": args.neo4j_user or "neo4j", "password": args.neo4j_password or ""}
    return options


async def main(args: argparse.Namespace) -> int:
    shape = Shape(args.datasets, args.layers, args.job_width, args.seed)
    if shape.width < 2 * LOCALITY + 1 or shape.layers <= args.depth:
        print(
            f"--datasets {args.datasets} with --layers {args.layers} is too small for depth {args.depth}",
            file=sys.stderr,
        )
        return 2
    workdir = None
    uri = args.store
    if uri is None:
        if args.backend == "neo4j":
            print(
                "--store bolt://HOST:PORT is required for neo4j (start one with tools/neo4j/neo4j.sh up)",
                file=sys.stderr,
            )
            return 2
        workdir = Path(tempfile.mkdtemp(prefix="lineage-bench-", dir=args.tmp_dir))
        uri = f"sqlite:///{workdir / 'catalog.db'}"
    store = await open_store(uri, **store_options(args))
    try:
        print(
            f"backend {args.backend} ({uri}); {shape.datasets:,} datasets in {shape.layers} layers of {shape.width:,}, "
            f"seed {shape.seed}",
            flush=True,
        )
        if args.skip_ingest:
            print("ingest skipped (--skip-ingest): measuring queries on the existing graph")
        else:
            if await store.revision() != 0:
                print(
                    "the store is not empty; use an empty one (or --skip-ingest on a graph built with the same shape)",
                    file=sys.stderr,
                )
                return 2
            edges, seconds, calls = await ingest(store, shape, args.progress_every)
            print(
                f"ingest: {edges:,} edges, {shape.width * shape.layers:,} datasets (placeholders) in {seconds:,.1f} s "
                f"= {edges / seconds:,.0f} edges/s; {len(calls):,} record_lineage calls of ~{edges // len(calls):,} "
                f"edges, call p50 {percentile(calls, 50) * 1000:,.0f} ms, p99 {percentile(calls, 99) * 1000:,.0f} ms",
                flush=True,
            )
        await report_queries("store.traverse", store_query(store), shape, args)
        if args.grpc:
            async with grpc_query(store) as query:
                await report_queries("GetLineage via gRPC", query, shape, args)
        return 0
    finally:
        await store.close()
        if workdir is not None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif workdir is not None:
            print(f"kept the database: {uri}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "neo4j"], default="sqlite")
    parser.add_argument(
        "--store", help="Store URI (default for sqlite: a new file under --tmp-dir; required for neo4j)."
    )
    parser.add_argument("--datasets", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--job-width", type=int, default=1000, help="Datasets per job run (one record_lineage call).")
    parser.add_argument("--queries", type=int, default=500, help="Traversals per direction.")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--grpc",
        action="store_true",
        help="Also time GetLineage over a loopback gRPC channel (serialization included).",
    )
    parser.add_argument("--skip-ingest", action="store_true", help="Only run the queries (on a graph built before).")
    parser.add_argument("--keep", action="store_true", help="Keep the SQLite file made under --tmp-dir.")
    parser.add_argument("--tmp-dir", default=None, help="Where the SQLite file goes (default: the system temp dir).")
    parser.add_argument("--progress-every", type=float, default=30.0, help="Seconds between ingest progress lines.")
    parser.add_argument("--neo4j-user", default=None)
    parser.add_argument("--neo4j-password", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
