"""The in-process BatchDecide servicer's CPU per decision, thread by thread.

    python bench/servicer_threads.py [--passes 2] [--in-flight 1] [--datasets 20000] [--durable]

bench/router_bench.py's "BatchDecide servicer" phase alone (the same catalog, policy, questions
and requests of 10,000; the non-durable log unless --durable), warmed by one pass, then
--passes passes of the requests three times over, each timed until logged. For each pass: the
decisions per second (wall and per CPU-second of the process) and the CPU time per decision of
each kind of thread, read from /proc/self/task/*/schedstat around the pass: the event loop,
the batch threads (engine calls; the log entries they render), the decision log's writer, and
the rest. On a shared machine the wall-clock rate follows the load; where the CPU
goes per decision moves much less, so it shows which thread limits the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from router_bench import (
    POLICY,
    App,
    Router,
    batch_request,
    questions,
    servicer_calls,
    synthetic_catalog,
    until_fresh,
)

from domicile.config import load_settings
from domicile.router.service import ResidencyServicer

_KINDS = (("decision-log-writer", "writer"), ("batch-decide", "batch threads"))


def cpu_by_thread() -> dict[str, int]:
    """CPU nanoseconds so far of this process's live threads, by kind."""
    out: dict[str, int] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as stat:
                ns = int(stat.read().split()[0])
        except OSError:
            continue
        kind = "event loop" if thread is threading.main_thread() else "other"
        for prefix, name in _KINDS:
            if thread.name.startswith(prefix):
                kind = name
        out[kind] = out.get(kind, 0) + ns
    return out


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="servicer-threads-"))
    try:
        store_uri, store, ids, _ = await synthetic_catalog(workdir, args.datasets, 7)
        settings = load_settings(
            store=store_uri,
            data_dir=workdir,
            policy=POLICY,
            insecure=True,
            http_listen="",
            router={"staleness_bound_seconds": 60, "durable_decision_log": args.durable},
            max_message_bytes=64 * 2**20,
        )
        app = App(settings=settings, store=store)
        router = app.router = await Router.start(app)
        try:
            await until_fresh(router)
            qs = questions(ids, 100_000, 7)
            gc.collect()
            gc.freeze()
            requests = [batch_request(qs[i : i + 10_000]) for i in range(0, len(qs), 10_000)]
            servicer = ResidencyServicer(app)
            await servicer_calls(servicer, requests, args.in_flight)
            await router.flush_decision_log()
            decided = 3 * len(qs)
            for number in range(1, args.passes + 1):
                before, start, cpu_start = cpu_by_thread(), time.perf_counter(), time.process_time()
                await servicer_calls(servicer, requests * 3, args.in_flight)
                await router.flush_decision_log()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                after = cpu_by_thread()
                per = ", ".join(f"{kind} {(after[kind] - before.get(kind, 0)) / decided:.0f}" for kind in sorted(after))
                print(
                    f"pass {number}, {args.in_flight} in flight: {decided / elapsed:,.0f} decisions/s, "
                    f"{decided / cpu:,.0f} per CPU-second; ns per decision: {per} "
                    f"(load average {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
        finally:
            await router.close()
            await store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--datasets", type=int, default=20_000)
    parser.add_argument("--durable", action="store_true")
    asyncio.run(main(parser.parse_args()))
