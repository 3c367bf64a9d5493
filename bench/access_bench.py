"""Access benchmark: what recording access costs, and GetAccessPatterns on a busy dataset.

    python bench/access_bench.py [--events 2000] [--rounds 3] [--actors 10000]

Everything runs against real servers (`create_server`, SQLite, loopback, --insecure) in this
process, so client and server share its CPU; figures are compared between runs that differ
only in `access.enabled`, alternating rounds so that machine noise hits both alike. Beside
each rate, the process's CPU time per event (or per 1,000 decisions), every thread included:
on a shared machine the rates move with the neighbours' load, the CPU per unit of work much
less, so the cost is given from both:

1. OpenLineage ingest: `--events` COMPLETE RunEvents (3 inputs, 1 output, classification and
   residency facets; `--violation-share` of them (default 2%) run in aws:us-east-1 on EU
   personal data, so they are observed violations, each written before its answer) POSTed
   over HTTP one at a time, as a pipeline's client sends them (`--clients` clients at once:
   several pipelines).
2. RecordLineage: the same runs as unary gRPC calls (with the CPU per run of each thread:
   the event loop, the SQLite writer and readers, the decision log's writer, ...).
3. BatchDecide over gRPC (1,000 questions per call, logged): the router path the decision
   log's intent counting adds to.
4. GetAccessPatterns on a dataset that `--actors` actors read (each on 1-3 days), p50/p99
   of 200 calls over gRPC, after the records are flushed.
5. With `--router-datasets N`: the router's BatchDecide path as bench/router_bench.py runs it
   (its synthetic catalog of N datasets, `domicile serve` in its own process, 2 calls of 1,000
   random questions in flight, compact answers). Three servers run at once -- access records
   off (A), on, off (B), each with its own copy of the catalog -- and this process drives them
   in turn, one window of `--router-window-seconds` each, for `--router-windows` cycles (the
   order rotating, so that each takes each place in a cycle equally often), all of it
   `--router-sets` times with the servers started afresh. Per window: the driven server's
   decisions per second and every server's CPU time (/proc/PID/task/*/schedstat). A cycle's
   cost is its on window's throughput against the mean of its two off windows (they met the
   same seconds of the neighbours' load); off B against off A is the control: what two
   servers of the same setting differ by. Reported: the median cost over the cycles with a
   bootstrap 90% interval and quartiles, the same for the control and for the server CPU per
   decision in the windows, and every window pooled, with each server's CPU counted whatever
   window it fell in. The median of the windows drops the few a server's periodic work (the
   intents' write every `access.intent_flush_seconds`) lands in, so the figure held against
   the target is the cost in all: `1 - (1 - windows) * (1 - periodic)`, with `periodic` the
   share of a core the on server used, beyond the mean of the off servers, while another
   server was driven -- what that work takes from a server driven all the time, whose
   throughput its one core bounds -- and its 90% interval from the same resampled cycles.
   `--router-pin`: the servers on CPU 1 only, the client on CPU 0.

Prints one line per figure and a JSON summary (`{"figures": {...}}`) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import grpc

from domicile.access.model import AccessBatch, AccessCount, AccessOperation, day_of
from domicile.config import load_settings
from domicile.server import create_server
from domicile.v1 import (
    access_pb2,
    access_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"
SOURCES = 200  # described input datasets (EU customer data) the runs read


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def start(workdir: Path, *, access: bool):
    settings = load_settings(
        insecure=True,
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        store=f"sqlite:///{workdir / 'catalog.db'}",
        data_dir=workdir,
        policy=POLICY,
        access={"enabled": access},
        rate_limit={"enabled": False},
    )
    return await create_server(settings)


async def describe_sources(channel: grpc.aio.Channel) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    for i in range(SOURCES):
        await catalog.UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(
                dataset=catalog_pb2.Dataset(
                    id=f"s3://bank-eu-lake/src{i:04d}",
                    classifications=["PII.CONTACT"],
                    origins=["DE"],
                    locations=["aws:eu-central-1"],
                )
            )
        )


def run_event(i: int, rng: random.Random, violation_share: float) -> dict:
    region = "aws:us-east-1" if rng.random() < violation_share else "aws:eu-west-1"
    inputs = [f"src{rng.randrange(SOURCES):04d}" for _ in range(3)]
    return {
        "eventType": "COMPLETE",
        "eventTime": datetime.now(UTC).isoformat(),
        "producer": "https://github.com/example/bench",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4()), "facets": {"residency": {"region": region}}},
        "job": {"namespace": "airflow-eu", "name": f"job{i % 50:03d}"},
        "inputs": [{"namespace": "s3://bank-eu-lake", "name": name} for name in inputs],
        "outputs": [
            {
                "namespace": "s3://bank-eu-lake",
                "name": f"out{i:06d}",
                "facets": {
                    "residency": {"region": region},
                    "tags": {"tags": [{"key": "classification", "value": "PII.CONTACT"}]},
                },
            }
        ],
    }


async def ingest_http(running, events: list[dict], clients: int = 1) -> float:
    url = f"http://127.0.0.1:{running.http_port}/api/v1/lineage"
    async with aiohttp.ClientSession() as session:

        async def client(share: list[dict]) -> None:
            for event in share:
                async with session.post(url, json=event) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

        began = time.perf_counter()
        await asyncio.gather(*(client(events[i::clients]) for i in range(clients)))
        return len(events) / (time.perf_counter() - began)


async def ingest_grpc(channel: grpc.aio.Channel, events: list[dict], clients: int = 1) -> float:
    lineage = lineage_pb2_grpc.LineageServiceStub(channel)

    async def client(share: list[dict]) -> None:
        for event in share:
            region = event["run"]["facets"]["residency"]["region"]
            await lineage.RecordLineage(
                lineage_pb2.RecordLineageRequest(
                    job=f"grpc/{event['job']['name']}",
                    run_id=event["run"]["runId"],
                    run_region=region,
                    inputs=[f"s3://bank-eu-lake/{d['name']}" for d in event["inputs"]],
                    outputs=[f"s3://bank-eu-lake/{d['name']}" for d in event["outputs"]],
                )
            )

    began = time.perf_counter()
    await asyncio.gather(*(client(events[i::clients]) for i in range(clients)))
    return len(events) / (time.perf_counter() - began)


async def batch_decide(channel: grpc.aio.Channel, calls: int) -> float:
    residency = residency_pb2_grpc.ResidencyServiceStub(channel)
    requests = [
        residency_pb2.DecideRequest(
            dataset_id=f"s3://bank-eu-lake/src{i % SOURCES:04d}",
            operation=residency_pb2.OPERATION_STORE,
            region="aws:eu-west-1",
        )
        for i in range(1000)
    ]
    request = residency_pb2.BatchDecideRequest(requests=requests)
    await residency.BatchDecide(request)
    began = time.perf_counter()
    for _ in range(calls):
        await residency.BatchDecide(request)
    return calls * 1000 / (time.perf_counter() - began)


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's threads, summed by name ("event loop" for the main
    thread; a pool's threads under the pool's name)."""
    names = {thread.native_id: re.sub(r"(_\d+|:.*| \(.*\))$", "", thread.name) for thread in threading.enumerate()}
    names[os.getpid()] = "event loop"
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        name = names.get(int(tid), "other")
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


async def timed(phase) -> tuple[float, float]:
    """(rate, CPU seconds) of one phase: `phase()` returns its rate."""
    cpu = time.process_time()
    rate = await phase()
    return rate, time.process_time() - cpu


async def one_round(
    workdir: Path, *, access: bool, events: int, seed: int, decide_calls: int, violation_share: float, clients: int
) -> dict[str, float]:
    running = await start(workdir, access=access)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            await describe_sources(channel)
            rng = random.Random(seed)
            batch = [run_event(i, rng, violation_share) for i in range(events)]
            await ingest_http(running, batch[:50])  # warm up
            http_rate, http_cpu = await timed(lambda: ingest_http(running, batch[50:], clients))
            threads = thread_cpu()
            grpc_rate, grpc_cpu = await timed(lambda: ingest_grpc(channel, batch, clients))
            by_thread = {name: (cpu - threads.get(name, 0.0)) * 1000 / len(batch) for name, cpu in thread_cpu().items()}
            print(
                f"  RecordLineage CPU per run by thread, access {'on' if access else 'off'}: "
                + ", ".join(f"{name} {ms:.3f} ms" for name, ms in sorted(by_thread.items(), key=lambda i: -i[1]) if ms)
                + f" (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            decide_rate, decide_cpu = await timed(lambda: batch_decide(channel, decide_calls))
            # What the periodic flush does for these records, charged to them.
            flush_cpu = time.process_time()
            if running.app.access is not None:
                await running.app.access.flush()
            flush_cpu = time.process_time() - flush_cpu
    finally:
        await running.stop(0)
    events_done = len(batch) - 50
    return {
        "http": http_rate,
        "grpc": grpc_rate,
        "decide": decide_rate,
        "http_cpu_ms": (http_cpu + flush_cpu / 2) * 1000 / events_done,
        "grpc_cpu_ms": (grpc_cpu + flush_cpu / 2) * 1000 / len(batch),
        "decide_cpu_ms": decide_cpu * 1000 / decide_calls,
    }


async def patterns(workdir: Path, actors: int, calls: int) -> tuple[float, float]:
    running = await start(workdir, access=True)
    try:
        store = running.app.store.access
        dataset = "s3://bank-eu-lake/popular"
        rng = random.Random(7)
        now = datetime.now(UTC)
        counts = []
        for a in range(actors):
            for days in rng.sample(range(30), rng.randint(1, 3)):
                at = now - timedelta(days=days)
                counts.append(
                    AccessCount(
                        f"airflow-{a % 40}/job{a:05d}",
                        dataset,
                        AccessOperation.READ,
                        "aws:eu-west-1",
                        3,
                        at,
                        at,
                        day_of(at),
                    )
                )
        for start_index in range(0, len(counts), 5000):
            await store.write_batch(AccessBatch(uuid.uuid4().hex, now, tuple(counts[start_index : start_index + 5000])))
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{running.port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        ) as channel:
            stub = access_pb2_grpc.AccessServiceStub(channel)
            request = access_pb2.GetAccessPatternsRequest(dataset_id=dataset)
            answer = await stub.GetAccessPatterns(request)
            assert len(answer.actors) == actors, len(answer.actors)
            latencies = []
            cpu = time.process_time()
            for _ in range(calls):
                began = time.perf_counter()
                await stub.GetAccessPatterns(request)
                latencies.append(time.perf_counter() - began)
            cpu = time.process_time() - cpu
    finally:
        await running.stop(0)
    return percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000, cpu * 1000 / calls


def task_cpu_ns(pid: int) -> int:
    """CPU time of process `pid`'s threads so far in ns (/proc/PID/task/*/schedstat: finer than
    the clock ticks of /proc/PID/stat, which a window of a few seconds needs)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:  # ended meanwhile
            continue
    return total


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


async def router_window(stub, batches, seconds: float, in_flight: int) -> tuple[int, float]:
    """`in_flight` BatchDecide calls at a time for `seconds`: (decisions answered, elapsed)."""
    done = 0
    start = time.perf_counter()

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() - start < seconds:
            batch = batches[done % len(batches)]
            done += 1
            response = await stub.BatchDecide(batch)
            assert len(response.decisions) == len(batch.requests)

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return done * 1000, time.perf_counter() - start


ROUTER_SERVERS = ("off A", "on", "off B")  # two access-off servers: the control (A against B)


async def router_set(workdir: Path, catalog: Path, ids: list[str], args: argparse.Namespace, set_number: int):
    """One set of phase 5: the three servers started afresh, driven in turn for
    `--router-windows` cycles. Per window: the server driven, its decisions per second and the
    CPU time every server used meanwhile."""
    import router_bench

    questions = [(d, op.value, r) for d, op, r in router_bench.questions(ids, 50_000, 8 + set_number)]
    ops = {"store": residency_pb2.OPERATION_STORE, "process": residency_pb2.OPERATION_PROCESS}
    requests = [residency_pb2.DecideRequest(dataset_id=d, operation=ops[op], region=r) for d, op, r in questions]
    batches = [
        # Compact answers, as the client library asks for them.
        residency_pb2.BatchDecideRequest(
            requests=requests[i : i + 1000], shared_region_sets=True, shared_reason_texts=True
        )
        for i in range(0, len(requests), 1000)
    ]
    warm = workdir / "warm.json"
    warm.write_text(json.dumps([(d, "store", router_bench.REGIONS[0]) for d in ids]))
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for index, name in enumerate(ROUTER_SERVERS):
            home = workdir / f"set{set_number}-server{index}"
            home.mkdir()
            # Each server its own copy of the catalog: nothing shared but the machine.
            with (
                contextlib.closing(sqlite3.connect(catalog)) as source,
                contextlib.closing(sqlite3.connect(home / "catalog.db")) as copy,
            ):
                source.backup(copy)
            config = home / "access.yaml"
            config.write_text(f"access:\n  enabled: {str(name == 'on').lower()}\n")
            argv = router_bench.serve_argv(f"sqlite:///{home / 'catalog.db'}", home / "data", "--config", str(config))
            if args.router_pin:  # the servers on the second CPU, the client on the first
                argv = ["taskset", "-c", "1", *argv]
            server = await stack.enter_async_context(router_bench.server_process("domicile serve", argv, home / "log"))
            await router_bench.run_client(server.port, "warm", warm, 1000, 0, 1)
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
            stub = residency_pb2_grpc.ResidencyServiceStub(channel)
            for batch in batches[:2]:  # the connection and the server's first answers
                await stub.BatchDecide(batch)
            servers.append((server.proc.pid, stub))
        windows = []
        for cycle in range(args.router_windows):
            # Each server in each position of the cycle equally often: a neighbour's burst or
            # the on server's periodic intent write falls on all three alike.
            order = [(cycle + k) % len(servers) for k in range(len(servers))]
            for index in order:
                stub = servers[index][1]
                before = [task_cpu_ns(p) for p, _ in servers]
                decisions, elapsed = await router_window(stub, batches, args.router_window_seconds, 2)
                after = [task_cpu_ns(p) for p, _ in servers]
                windows.append(
                    {
                        "cycle": cycle,
                        "server": index,
                        "decisions": decisions,
                        "rate": decisions / elapsed,
                        "cpu_ns": [b - a for a, b in zip(before, after, strict=True)],
                        "load": os.getloadavg()[0],
                    }
                )
    return windows


def bootstrap_median(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 90% interval for the median of `values` (cycles resampled with replacement)."""
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(rounds * 0.05)], medians[int(rounds * 0.95)]


def idle_cpu(cycle: dict[int, dict]) -> list[tuple[int, float]]:
    """Per server: the CPU time (ns) it used in a cycle's windows where another was driven,
    and those windows' seconds."""
    return [
        (
            sum(w["cpu_ns"][i] for j, w in cycle.items() if j != i),
            sum(w["decisions"] / w["rate"] for j, w in cycle.items() if j != i),
        )
        for i in range(len(ROUTER_SERVERS))
    ]


def periodic_share(cycles: list[list[tuple[int, float]]]) -> float:
    """The share of a core the on server used beyond the mean of the off servers while another
    server was driven, over `cycles` (see `idle_cpu`)."""
    share = [sum(c[i][0] for c in cycles) / 1e9 / sum(c[i][1] for c in cycles) for i in range(len(ROUTER_SERVERS))]
    return share[1] - (share[0] + share[2]) / 2


def total_cost(costs: list[float], cycles: list[list[tuple[int, float]]]) -> float:
    """The cost in all, %: the windows' median cost with the periodic work taken from a server
    driven all the time."""
    return (1 - (1 - statistics.median(costs) / 100) * (1 - periodic_share(cycles))) * 100


def bootstrap_total(costs: list[float], cycles: list[list[tuple[int, float]]], rounds: int = 2000):
    """A 90% interval for `total_cost`, cycles resampled with replacement (cost and periodic
    work together)."""
    rng = random.Random(1)
    totals = []
    for _ in range(rounds):
        picked = rng.choices(range(len(costs)), k=len(costs))
        totals.append(total_cost([costs[i] for i in picked], [cycles[i] for i in picked]))
    totals.sort()
    return totals[int(rounds * 0.05)], totals[int(rounds * 0.95)]


def describe(values: list[float]) -> str:
    q1, median, q3 = quartiles(values)
    low, high = bootstrap_median(values)
    return f"{median:.1f}% (90% interval of the median {low:.1f}..{high:.1f}; quartiles {q1:.1f}..{q3:.1f})"


async def main_router(args: argparse.Namespace) -> None:
    import router_bench

    off_a, on, off_b = range(3)
    found: dict[str, list[float]] = {"cost": [], "control": [], "cpu cost": [], "cpu control": []}
    idle: list[list[tuple[int, float]]] = []  # per cycle, per server: CPU ns and seconds while another was driven
    totals = {"decisions": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "cpu": [0, 0, 0], "idle cpu": [0, 0, 0]}
    if args.router_pin:
        os.sched_setaffinity(0, {0})  # this process (the client), and so its warm-up clients
    with tempfile.TemporaryDirectory(prefix="access-router-bench-") as tmp:
        workdir = Path(tmp)
        _, store, ids, _ = await router_bench.synthetic_catalog(workdir, args.router_datasets, 7)
        await store.close()
        for set_number in range(args.router_sets):
            windows = await router_set(workdir, workdir / "catalog.db", ids, args, set_number)
            by_cycle: dict[int, dict[int, dict]] = {}
            for window in windows:
                by_cycle.setdefault(window["cycle"], {})[window["server"]] = window
            this_set: dict[str, list[float]] = {name: [] for name in found}
            for cycle in by_cycle.values():
                idle.append(idle_cpu(cycle))
                rates = [cycle[i]["rate"] for i in range(3)]
                cpu = [cycle[i]["cpu_ns"][i] / cycle[i]["decisions"] / 1000 for i in range(3)]
                # The cycle's cost: its on window against the mean of its two off windows, which
                # met the same seconds; the control: off B against off A, as alike as servers get.
                this_set["cost"].append((1 - 2 * rates[on] / (rates[off_a] + rates[off_b])) * 100)
                this_set["control"].append((1 - rates[off_b] / rates[off_a]) * 100)
                this_set["cpu cost"].append((1 - (cpu[off_a] + cpu[off_b]) / 2 / cpu[on]) * 100)
                this_set["cpu control"].append((1 - cpu[off_a] / cpu[off_b]) * 100)
            for window in windows:
                i = window["server"]
                totals["decisions"][i] += window["decisions"]
                totals["seconds"][i] += window["decisions"] / window["rate"]
                for j, ns in enumerate(window["cpu_ns"]):
                    totals["cpu"][j] += ns
                    if j != i:  # what a server did while another was driven
                        totals["idle cpu"][j] += ns
            for name in found:
                found[name] += this_set[name]
            set_idle = idle[-len(by_cycle) :]
            loads = [w["load"] for w in windows]
            for i, name in enumerate(ROUTER_SERVERS):
                rates = [w["rate"] for w in windows if w["server"] == i]
                q1, median, q3 = quartiles(rates)
                print(
                    f"set {set_number + 1} access {name}: {median:,.0f} decisions/s per window "
                    f"(quartiles {q1:,.0f}-{q3:,.0f}, range {min(rates):,.0f}-{max(rates):,.0f})",
                    flush=True,
                )
            print(
                f"set {set_number + 1}, {len(by_cycle)} cycles (load {min(loads):.1f}-{max(loads):.1f}): "
                f"cost by throughput {describe(this_set['cost'])}, control {describe(this_set['control'])}; "
                f"by CPU per decision {describe(this_set['cpu cost'])}, control {describe(this_set['cpu control'])}; "
                f"periodic work {periodic_share(set_idle) * 100:.2f}% of a core, "
                f"cost in all {total_cost(this_set['cost'], set_idle):.1f}%",
                flush=True,
            )
    rates = [totals["decisions"][i] / totals["seconds"][i] for i in range(3)]
    cpu_us = [totals["cpu"][i] / totals["decisions"][i] / 1000 for i in range(3)]
    idle_us = [totals["idle cpu"][i] / totals["decisions"][i] / 1000 for i in range(3)]
    pooled = (1 - 2 * rates[on] / (rates[off_a] + rates[off_b])) * 100
    pooled_cpu = (1 - (cpu_us[off_a] + cpu_us[off_b]) / 2 / cpu_us[on]) * 100
    print(
        f"all {len(found['cost'])} cycles: cost by throughput {describe(found['cost'])}; "
        f"control (off B against off A) {describe(found['control'])}",
        flush=True,
    )
    print(
        f"  by CPU per decision in the windows {describe(found['cpu cost'])}; control {describe(found['cpu control'])}",
        flush=True,
    )
    print(
        "  every window together: "
        + ", ".join(f"{name} {rates[i]:,.0f} decisions/s" for i, name in enumerate(ROUTER_SERVERS))
        + f" (cost {pooled:.1f}%); server CPU per decision, whatever window it fell in, "
        + ", ".join(f"{name} {cpu_us[i]:.3f} µs ({idle_us[i]:.3f} while idle)" for i, name in enumerate(ROUTER_SERVERS))
        + f" (cost {pooled_cpu:.1f}%)",
        flush=True,
    )
    periodic = periodic_share(idle) * 100
    total = total_cost(found["cost"], idle)
    total_low, total_high = bootstrap_total(found["cost"], idle)
    print(
        f"  periodic work: the on server used {periodic:.2f}% of a core more than the off servers while another "
        f"was driven; cost in all (windows and periodic work) {total:.1f}% "
        f"(90% interval {total_low:.1f}..{total_high:.1f})",
        flush=True,
    )
    low, high = bootstrap_median(found["cost"])
    summary = {
        "BatchDecide over gRPC (router catalog), cost in all (windows and periodic work) %": total,
        "BatchDecide over gRPC (router catalog), cost in all, 90% interval low %": total_low,
        "BatchDecide over gRPC (router catalog), cost in all, 90% interval high %": total_high,
        "BatchDecide over gRPC (router catalog), periodic work, share of a core beyond the off servers' %": periodic,
        "BatchDecide over gRPC (router catalog), cost from throughput, median of cycles %": statistics.median(
            found["cost"]
        ),
        "BatchDecide over gRPC (router catalog), cost from throughput, 90% interval low %": low,
        "BatchDecide over gRPC (router catalog), cost from throughput, 90% interval high %": high,
        "BatchDecide over gRPC (router catalog), control off B against off A, median %": statistics.median(
            found["control"]
        ),
        "BatchDecide over gRPC (router catalog), cost from CPU per decision, median of cycles %": statistics.median(
            found["cpu cost"]
        ),
        "BatchDecide over gRPC (router catalog), cost from all windows' throughput %": pooled,
        "BatchDecide over gRPC (router catalog), cost from all the servers' CPU %": pooled_cpu,
    }
    print(json.dumps({"figures": summary}, indent=1))


async def main(args: argparse.Namespace) -> None:
    if args.router_datasets:
        await main_router(args)
        return
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="access-bench-") as tmp:
        for round_number in range(args.rounds):
            for access in (False, True) if round_number % 2 == 0 else (True, False):
                workdir = Path(tmp) / f"r{round_number}-{'on' if access else 'off'}"
                workdir.mkdir()
                figures = await one_round(
                    workdir,
                    access=access,
                    events=args.events,
                    seed=round_number,
                    decide_calls=args.decide_calls,
                    violation_share=args.violation_share,
                    clients=args.clients,
                )
                results[access].append(figures)
                print(
                    f"round {round_number + 1} access {'on ' if access else 'off'}: "
                    + ", ".join(f"{k} {v:,.0f}/s" for k, v in figures.items() if not k.endswith("_ms"))
                    + ", CPU "
                    + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k.endswith("_ms")),
                    flush=True,
                )
        workdir = Path(tmp) / "patterns"
        workdir.mkdir()
        p50, p99, cpu_ms = await patterns(workdir, args.actors, args.pattern_calls)
    summary: dict[str, float] = {}
    names = {
        "http": "OpenLineage HTTP ingest (events/s)",
        "grpc": "RecordLineage over gRPC (calls/s)",
        "decide": "BatchDecide over gRPC (decisions/s)",
    }
    for key, name in names.items():
        off = statistics.median(r[key] for r in results[False])
        on = statistics.median(r[key] for r in results[True])
        cpu_off = statistics.median(r[f"{key}_cpu_ms"] for r in results[False])
        cpu_on = statistics.median(r[f"{key}_cpu_ms"] for r in results[True])
        summary[f"{name}, access off"] = off
        summary[f"{name}, access on"] = on
        summary[f"{name}, cost %"] = (1 - on / off) * 100
        summary[f"{name}, CPU ms per unit, access off"] = cpu_off
        summary[f"{name}, CPU ms per unit, access on"] = cpu_on
        summary[f"{name}, cost from CPU %"] = (1 - cpu_off / cpu_on) * 100
        print(
            f"{name}: off {off:,.0f}, on {on:,.0f} -> cost {(1 - on / off) * 100:.1f}%; CPU per unit "
            f"{cpu_off:.3f} -> {cpu_on:.3f} ms -> cost {(1 - cpu_off / cpu_on) * 100:.1f}% (medians of {args.rounds})"
        )
    summary[f"GetAccessPatterns p50 ms ({args.actors:,} actors)"] = p50
    summary[f"GetAccessPatterns p99 ms ({args.actors:,} actors)"] = p99
    summary[f"GetAccessPatterns CPU ms per call, client included ({args.actors:,} actors)"] = cpu_ms
    print(
        f"GetAccessPatterns, {args.actors:,} actors: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"CPU {cpu_ms:.1f} ms per call with the client's parsing ({args.pattern_calls} calls)"
    )
    print(json.dumps({"figures": summary}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="Runs per ingest phase.")
    parser.add_argument(
        "--violation-share", type=float, default=0.02, help="Share of runs that are observed violations."
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="Clients sending the ingest phases' runs at the same time."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per setting (median reported).")
    parser.add_argument("--decide-calls", type=int, default=200, help="BatchDecide calls of 1,000 per round.")
    parser.add_argument("--actors", type=int, default=10_000, help="Actors of the GetAccessPatterns dataset.")
    parser.add_argument("--pattern-calls", type=int, default=200, help="GetAccessPatterns calls timed.")
    parser.add_argument(
        "--router-datasets",
        type=int,
        default=0,
        help="Instead of phases 1-4: phase 5 on a router_bench catalog of this many datasets.",
    )
    parser.add_argument("--router-window-seconds", type=float, default=1.0, help="Length of each phase 5 window.")
    parser.add_argument(
        "--router-windows", type=int, default=30, help="Phase 5 cycles (one window per server) per set."
    )
    parser.add_argument("--router-pin", action="store_true", help="Phase 5 servers on CPU 1 only, its client on CPU 0.")
    parser.add_argument("--router-sets", type=int, default=6, help="Phase 5 sets (the three servers started afresh).")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
