"""Engine builds side by side in one process: the engine batch call, A/B call by call.

    .venv/bin/python bench/engine_ab.py NAME=PATH [NAME=PATH ...] [--datasets 20000] [--rounds 10]
                                        [--counts] [--texts]

Each PATH is a built engine extension (`router/_engine.cpython-*.so` of a worktree, or a
`cargo build --release -p domicile-engine-py` output); each is loaded as its own module, and
each gets an engine of its own on bench/router_bench.py's catalog and policy (--datasets
datasets, seed 7). Then the benchmark's 100,000 questions in requests of 10,000 (region sets
shared; with --texts reason texts too, which builds from before that field refuse), each
request put to every engine in turn (the order alternating), `batch_decide_wire` and the
decisions' log entries rendered, as router_bench's "engine batch call + log entries" does;
with --counts also `DecidedBatch.counts()`, as the servicer reads them (builds that count in
the call hand back what they counted). Warmed by one pass; then --rounds passes, each call
timed in the thread's CPU time and in wall time per decision: the medians and quartiles per
build. On a shared machine the runs of one build spread by more than builds differ; calls
interleaved in one process meet the same neighbours, so the ratios hold where the absolute
figures do not. The builds must share the binding's calls used here (`Engine(policy)`,
`load`, `batch_decide_wire` -- ids from a `LogLane`, or from before, a prefix and a first
counter -- and `log_entries`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.machinery
import importlib.util
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from router_bench import POLICY, App, LogOptions, Operation, Router, questions, synthetic_catalog

from domicile.config import load_settings
from domicile.v1 import residency_pb2

PER_CALL = 10_000


def load_build(path: str) -> ModuleType:
    """The extension at `path` as a module of its own (its init function names it `_engine`)."""
    loader = importlib.machinery.ExtensionFileLoader("_engine", path)
    spec = importlib.util.spec_from_file_location("_engine", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="engine-ab-"))
    try:
        store_uri, store, ids, _ = await synthetic_catalog(workdir, args.datasets, 7)
        settings = load_settings(store=store_uri, data_dir=workdir, policy=POLICY, insecure=True, http_listen="")
        router = await Router.start(App(settings=settings, store=store))
        policy = router.policy
        await router.close()
        snapshot = await store.residency_snapshot()
        await store.close()
        asked = questions(ids, 100_000, 7)
        operations = {
            Operation.STORE: residency_pb2.OPERATION_STORE,
            Operation.PROCESS: residency_pb2.OPERATION_PROCESS,
        }
        shape: dict[str, Any] = {"shared_region_sets": True, **({"shared_reason_texts": True} if args.texts else {})}
        requests = [
            residency_pb2.BatchDecideRequest(
                requests=[
                    residency_pb2.DecideRequest(dataset_id=d, operation=operations[op], region=r)
                    for d, op, r in asked[start : start + PER_CALL]
                ],
                **shape,
            ).SerializeToString()
            for start in range(0, len(asked), PER_CALL)
        ]
        engines = {}
        lanes: dict[int, Any] = {}  # by id(engine): each build's own lane of decision ids
        for build in args.builds:
            name, path = build.split("=", 1)
            module = load_build(path)
            engine = module.Engine(policy.document)
            engine.load(snapshot.datasets, snapshot.placeholders, snapshot.edges)
            engines[name] = engine
            lanes[id(engine)] = module.LogLane("bench", LogOptions().line_decisions, PER_CALL, lambda: None)
        del snapshot
        now = int(time.time() * 1e6)
        per_entry = LogOptions().line_decisions

        def call(engine: Any, n: int, request: bytes) -> int:
            try:  # the ids from a lane
                _, decided = engine.batch_decide_wire(request, now, None, 1, lanes[id(engine)], PER_CALL)
            except TypeError:  # a build from before: the ids' prefix and first counter
                _, decided = engine.batch_decide_wire(request, now, None, 1, "bench", 1 + n * PER_CALL, PER_CALL)
            decided.log_entries(0, len(decided), "batch_decide", "bench", policy.content_hash, [], per_entry)
            if args.counts:
                decided.counts()
            return len(decided)

        for engine in engines.values():  # warm: every verdict memoised once
            for n, request in enumerate(requests):
                call(engine, n, request)
        gc.collect()
        gc.freeze()
        cpu: dict[str, list[float]] = {name: [] for name in engines}
        wall: dict[str, list[float]] = {name: [] for name in engines}
        for round_ in range(args.rounds):
            for n, request in enumerate(requests):
                order = list(engines.items())
                for name, engine in order if (round_ + n) % 2 == 0 else reversed(order):
                    cpu_start, start = time.thread_time(), time.perf_counter()
                    decided = call(engine, n, request)
                    cpu[name].append((time.thread_time() - cpu_start) / decided * 1e6)
                    wall[name].append((time.perf_counter() - start) / decided * 1e6)
        calls = len(requests) * args.rounds
        print(f"load average {os.getloadavg()[0]:.1f}; per decision over {calls} calls of {PER_CALL:,} each:")
        for name in engines:
            print(f"  {name:<12} thread CPU {quartiles(cpu[name])}   wall {quartiles(wall[name])}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def quartiles(values: list[float]) -> str:
    """The median (first-third quartiles), in microseconds."""
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"{median:.3f} us ({q1:.3f}-{q3:.3f})"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs="+", metavar="NAME=PATH", help="a name and a built engine extension")
    parser.add_argument("--datasets", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--counts", action="store_true", help="read DecidedBatch.counts() too, as the servicer does")
    parser.add_argument("--texts", action="store_true", help="ask for shared reason texts too")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
