"""Residency router benchmark: start-up, in-process and gRPC decision latency and throughput.

    .venv/bin/python bench/router_bench.py [--datasets 100000] [--rate 1000] [--seconds 10]
                                           [--opa .tools/bin/opa] [--loadgen .tools/bin/loadgen]
                                           [--cedar .tools/cedar-target/release/domicile-cedar-bench]
                                           [--ghz .tools/bin/ghz]

What it does, in one run (deterministic catalog for a given --seed):

1. Writes a synthetic catalog into a fresh SQLite store through `import_history`: --datasets
   datasets in 11 lineage levels (30% sources at level 0, the rest spread evenly over levels
   1-10, so lineage is up to 10 deep). Sources carry the label/origin mixes of a bank (EU
   personal data, Indian payment data, Chinese personal data, key material, internal,
   unclassified) and a location that mostly fits them; each derived dataset reads 1-3 inputs,
   one from the level just below, through a plain (80%), `aggregate` (10%) or `anonymize`
   (10%) job (the declassifying ones granted their transform). Policy: examples/policy.yaml.
2. Router start-up: `Router.start` (the store's residency snapshot + the engine's index) --
   wall time and RSS growth; then the index alone built again from the snapshot already read
   (time and RSS growth per dataset), and one lineage edge added to it, many times (p50/p99).
3. In-process `Router.decide` latency (p50/p99, each call timed), for 100,000 questions asked
   twice: first touch (most datasets' attribute views get built and cached) and warm (the
   steady state, compared with the target); `Router.batch_decide` throughput, sustained (the
   questions three times over, timed until the decision log has written the last decision,
   every `Decision` of the answers read);
   the BatchDecide servicer in process (parsing the serialized request, validation, wire encoding,
   no network; compact answers), timed alike, with one call in flight and with two (a server's
   concurrent calls: the router decides large batches on its batch threads). Decision logging is on, as in a server, in its
   non-durable mode (`router.durable_decision_log: false`: the answer does not wait for the
   fsync), so these figures are the router's and the log writer's CPU cost. Then the engine's
   batch call alone, as the servicer makes it (request bytes in; answer bytes and decisions
   out; their log entries rendered, not written), on one thread and on two: the router's
   batch path without Python objects or the log's file. `Router.batch_decide` (a Python
   question tuple in, a `Decision` out per question) is the in-process API's figure.
   Then the same router restarted with the durable log (the default: an answer waits until its
   line is fsynced, concurrent answers share an fsync): `Router.decide` one call at a time
   (latency: about one fsync), with --concurrency callers (throughput and latency under group
   commit), `Router.batch_decide` sustained, and the BatchDecide servicer with 2 and with 4
   calls in flight (the requests three times over; each answer waits for its line's fsync
   while the other calls are decided).
4. `domicile serve` on loopback (its own process, same catalog and policy), warmed by one
   decision per dataset, and a client in another process: unary Decide at a fixed --rate for
   --seconds (open loop: requests are sent on schedule, not after the previous answer), then
   maximum unary throughput with --concurrency callers, then BatchDecide of 1,000 over the
   wire with compact answers (`shared_region_sets`, `shared_reason_texts`, as the client library asks), one call in
   flight and two, and two with answers that list every decision's allowed regions (the
   client parses every answer); the server's CPU time per call or decision beside them (from
   /proc; for BatchDecide, and the client's own, read around the timed calls only). All of it
   twice: against a server with the
   durable log (the default, figures under their plain names), then one with
   `router.durable_decision_log: false` (the same names with " [non-durable log]").
   With --loadgen (bench/loadgen, `tools/install-loadgen.sh`) and/or --ghz
   (`tools/install-ghz.sh`): the fixed-rate phase again, driven by a Go client (each latency
   measured from its own send; loadgen also from the due time). Then each fixed-rate client
   again against a grpcio server in its own process answering every Decide with a canned
   response -- the floor of the gRPC stack on this machine, for the ratio.
   With --unary-only (and --loadgen) only the fixed-rate phase runs, driven by loadgen, in
   --rounds rounds of: the durable server, the non-durable one, the canned-answer floor; with
   --base-python (another worktree's interpreter) each Domicile server also runs under it,
   alternating with this one's, for an A/B in the same minutes; medians at the end.
   --batch-only does the same for BatchDecide of 1,000 with 2 calls in flight (compact
   answers): the durable server, then the non-durable one, in --rounds rounds.
5. With --opa: Open Policy Agent (`tools/install-opa.sh` installs it) serving an equivalent
   Rego policy on loopback, driven by the same client at the same rate with the same
   questions (effective attributes sent as input, since OPA holds no lineage), and `opa
   bench` for its in-process evaluation time.
6. With --cedar: Cedar (the `cedar-policy` crate, in the Rust harness bench/cedar) evaluating
   the example policy translated to Cedar on the same kind of questions (effective attributes
   as the request's context), each evaluation timed alone in process.

It prints every figure and its ratio to the target. Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domicile.app import App
from domicile.catalog import model
from domicile.catalog.store import GraphStore
from domicile.catalog.stores import history_format as hf
from domicile.catalog.stores import open_store
from domicile.config import load_settings
from domicile.grpc_errors import ErrorMappingInterceptor
from domicile.router.decision_log.format import ZERO_HASH, decisions_line
from domicile.router.decision_log.writer import LogOptions
from domicile.router.engine import Engine, LogLane
from domicile.router.runtime import Router
from domicile.router.service import ResidencyServicer
from domicile.router.types import Operation, Outcome, ReasonCode
from domicile.v1 import residency_pb2, residency_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "examples" / "policy.yaml"
# Declassifying jobs are named as the example policy grants them their transforms.
GRANTED_JOBS = {"aggregate": "airflow-eu/daily_rollup", "anonymize": "airflow-eu/anonymize_{}"}
REGIONS = (
    "aws:eu-central-1",
    "aws:us-east-1",
    "aws:ap-south-1",
    "gcp:europe-west6",
    "azure:westeurope",
    "aws:cn-north-1",
    "onprem:fra-dc1",
    "onprem:msk-dc1",
)
TARGETS = {
    "in_process_p50_us": 1.0,  # at most
    "batch_decisions_per_s": 1_000_000.0,  # at least, logged
    "grpc_batch_decisions_per_s": 250_000.0,  # at least, over gRPC to `domicile serve`, durable log
    "unary_p99_ms": 2.0,  # at most, at 1,000 req/s (and within 0.5 ms of the canned floor's p99)
    "start_seconds": 5.0,  # at most, 100k datasets
    "index_build_seconds": 10.0,  # at most, 1,000,000 datasets and 3,000,000 edges
    "index_bytes_per_dataset": 500.0,  # at most, RSS growth
    "edge_added_p99_ms": 1.0,  # at most
}
# (weight, labels, origins, fitting locations)
SOURCE_PROFILES = (
    (35, ("PII.CONTACT",), ("DE", "FR", "NL"), ("aws:eu-central-1", "azure:westeurope")),
    (20, ("FINANCIAL.PAYMENT.UPI",), ("IN",), ("aws:ap-south-1", "onprem:mum-dc1")),
    (5, ("PII.CONTACT",), ("CN",), ("aws:cn-north-1",)),
    (1, ("SECRET.KEY_MATERIAL",), (), ("onprem:fra-dc1",)),
    (10, ("INTERNAL",), ("US",), ()),
    (29, (), ("US",), ("aws:us-east-1", "gcp:us-central1")),
)
TRANSFORMS = (("", 80), ("aggregate", 10), ("anonymize", 10))
LEVELS = 11

# The policy's decision rule in Rego, over the policy's rules (with their
# allow/deny region sets, see `opa_data`; appended to the module as constants) and the
# dataset's effective labels and origins as input. Exemptions are left out: the example policy's only exemption covers a dataset the
# synthetic catalog does not have. OPA answers a boolean; Domicile's answer also carries the
# allowed set, the reasons with lineage paths, and a logged decision id.
REGO = """\
package residency

import rego.v1

# Indexes into `rules` of the rules that apply (sets of numbers, not of rule objects: the
# rules hold large region sets that would otherwise be hashed and compared).
applicable contains i if {
	some i, rule in rules
	label_match(rule)
	origin_match(rule)
}

label_match(rule) if count(rule.labels) == 0

label_match(rule) if {
	some want in rule.labels
	some have in input.labels
	label_covers(want, have)
}

label_covers(want, have) if want == have

label_covers(want, have) if startswith(have, concat("", [want, "."]))

origin_match(rule) if rule.origins == "*"

origin_match(rule) if {
	some origin in input.origins
	rule.origins[origin]
}

restricting contains i if {
	some i in applicable
	rules[i][input.operation].allow != "none"
}

inside_allow(i) if rules[i][input.operation].allow == "*"

inside_allow(i) if rules[i][input.operation].allow[input.region]

excluded_by contains rules[i].id if {
	some i in restricting
	not inside_allow(i)
}

denied_by contains rules[i].id if {
	some i in applicable
	rules[i][input.operation].deny[input.region]
}

default_verb := defaults.classified if count(input.labels) > 0

default_verb := defaults.unclassified if count(input.labels) == 0

base_allows if {
	count(restricting) > 0
	count(excluded_by) == 0
}

base_allows if {
	count(restricting) == 0
	default_verb == "allow"
}

default allow := false

allow if {
	base_allows
	count(denied_by) == 0
}
"""


# ---- catalog ---------------------------------------------------------------------------------


def dataset_id(level: int, index: int) -> str:
    return f"s3://bench-l{level:02d}/dataset-{index:06d}"


def generate(count: int, seed: int) -> tuple[list[model.Dataset], list[tuple[str, str, str, str]]]:
    """Datasets and edges (input, output, job, transform) of the synthetic catalog."""
    rng = random.Random(seed)
    sources = int(count * 0.3)
    per_level = (count - sources) // (LEVELS - 1)
    sizes = [sources] + [per_level] * (LEVELS - 2) + [count - sources - per_level * (LEVELS - 2)]
    levels: list[list[str]] = []
    datasets: list[model.Dataset] = []
    edges: list[tuple[str, str, str, str]] = []
    weights = [p[0] for p in SOURCE_PROFILES]
    next_index = 0
    for level, size in enumerate(sizes):
        ids = []
        for _ in range(size):
            ds_id = dataset_id(level, next_index)
            next_index += 1
            ids.append(ds_id)
            if level == 0:
                _, labels, origins, fitting = rng.choices(SOURCE_PROFILES, weights)[0]
                # A few copies where they should not be: ScanViolations has work.
                locations = (rng.choice(fitting),) if fitting and rng.random() > 0.02 else (rng.choice(REGIONS),)
                origins = (rng.choice(origins),) if origins else ()
                datasets.append(
                    model.Dataset.create(ds_id, classifications=labels, origins=origins, locations=locations)
                )
            else:
                own = ("INTERNAL",) if rng.random() < 0.1 else ()
                datasets.append(model.Dataset.create(ds_id, classifications=own, locations=(rng.choice(REGIONS[:5]),)))
                transform = rng.choices([t for t, _ in TRANSFORMS], [w for _, w in TRANSFORMS])[0]
                inputs = {rng.choice(levels[level - 1])}
                for _ in range(rng.randint(0, 2)):
                    inputs.add(rng.choice(levels[rng.randrange(level)]))
                job = GRANTED_JOBS.get(transform, "job-{}").format(ds_id)
                for input_id in sorted(inputs):
                    edges.append((input_id, ds_id, job, transform))
        levels.append(ids)
    return datasets, edges


async def history_records(datasets: list[model.Dataset], edges) -> AsyncIterator[dict]:
    """The catalog as an import: revision 1 creates every dataset, revision 2 every edge."""
    t1 = model.to_micros(model.utcnow())
    t2 = t1 + 1
    yield hf.header_record()
    yield hf.revision_record(1, t1, "bench", "datasets")
    yield hf.revision_record(2, t2, "bench", "lineage")
    for d in sorted(datasets, key=lambda d: d.id):
        yield {
            "type": "dataset_version",
            "revision": 1,
            "valid_from": t1,
            "valid_to": None,
            "end_revision": None,
            "deleted": False,
            "create_time": t1,
            "updated_by": "bench",
            "dataset": hf.dataset_content(d),
        }
    for input_id, output, job, transform in sorted(edges):
        yield {
            "type": "edge",
            "input": input_id,
            "output": output,
            "job": job,
            "transform": transform,
            "run_id": "r1",
            "record_time": t2,
            "end_time": None,
            "revision": 2,
            "end_revision": None,
        }
    for job, transform in sorted({(job, transform) for _, _, job, transform in edges}):
        yield {
            "type": "run",
            "job": job,
            "run_id": "r1",
            "run_region": "",
            "transform": transform,
            "event_time": None,
            "record_time": t2,
            "principal": "bench",
        }


async def synthetic_catalog(workdir: Path, count: int, seed: int) -> tuple[str, GraphStore, list[str], int]:
    """`generate(count, seed)` imported into a fresh SQLite store in `workdir`: (the store's URI,
    the store, still open, the datasets' ids, the number of lineage edges)."""
    datasets, edges = generate(count, seed)
    store_uri = f"sqlite:///{workdir / 'catalog.db'}"
    store = await open_store(store_uri)
    try:
        await store.import_history(history_records(datasets, edges))
    except BaseException:
        await store.close()
        raise
    return store_uri, store, [d.id for d in datasets], len(edges)


# ---- measuring -----------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_probe() -> float:
    """Milliseconds for a fixed pure-Python workload (dict, str and int operations), the best
    of three. On a shared machine the same code runs faster or slower from hour to hour; the
    probe, printed at the start and the end of a run, says how fast this run's machine was."""
    best = float("inf")
    collecting = gc.isenabled()
    gc.disable()  # the collector's work depends on this process's heap, not on the machine
    try:
        for _ in range(3):
            start = time.perf_counter()
            table: dict[str, int] = {}
            for i in range(200_000):
                key = f"k{i % 5000}"
                table[key] = table.get(key, 0) + i
            best = min(best, time.perf_counter() - start)
    finally:
        if collecting:
            gc.enable()
    return best * 1000


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def questions(ids: list[str], n: int, seed: int) -> list[tuple[str, Operation, str]]:
    rng = random.Random(seed)
    ops = (Operation.STORE, Operation.PROCESS)
    return [(rng.choice(ids), rng.choice(ops), rng.choice(REGIONS)) for _ in range(n)]


class Report:
    def __init__(self) -> None:
        self.figures: dict[str, float] = {}

    def line(self, name: str, value: float, unit: str, target_key: str = "", at_most: bool = True) -> None:
        self.figures[name] = value
        text = f"  {name:<44} {value:>14,.2f} {unit}"
        if target_key:
            target = TARGETS[target_key]
            ratio = value / target
            ok = ratio <= 1 if at_most else ratio >= 1
            text += f"   target {'<=' if at_most else '>='} {target:,.0f}: {ratio:.2f}x of target {'OK' if ok else 'MISSED'}"
        print(text, flush=True)


def is_stale(decision) -> bool:
    return bool(decision.reasons) and decision.reasons[0].code is ReasonCode.STALE_CATALOG


def check_not_refused(result: dict) -> None:
    """A server refuses with RESOURCE_EXHAUSTED for several reasons (a principal's budget,
    load shedding, the decision log's disk-space floor); its default settings must let the
    whole benchmark through. A refusal is reported with the server's own words."""
    refused = result["errors"].get(str(grpc.StatusCode.RESOURCE_EXHAUSTED), 0)
    if refused:
        why = "; ".join(f"{n} x {text}" for text, n in result["error_details"].items())
        raise SystemExit(f"{refused} calls were refused RESOURCE_EXHAUSTED: {why}")


def check_fresh(stale: int) -> None:
    """Figures made of fail-closed answers would flatter the router: refuse them."""
    if stale:
        raise SystemExit(f"{stale} decisions were STALE_CATALOG: the machine is too loaded for this benchmark")


async def time_decides(router: Router, qs, *, durable: bool = False) -> tuple[list[int], list[int], int]:
    """Sorted wall and thread-CPU nanoseconds per `Router.decide` (and, with the `durable` log,
    the `Router.logged` an answer waits for), and the STALE answers."""
    timings, cpu_timings = [], []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    decide, logged = router.decide, router.logged
    stale = 0
    for i, (d, op, r) in enumerate(qs):
        # The thread-CPU clock is a system call (~0.6 us here, against ~0.07 us for the
        # wall clock): it brackets the wall-clock readings instead of sitting inside them.
        cpu_start = cpu_clock()
        start = clock()
        decision = decide(d, op, r)
        if durable:
            await logged()
        end = clock()
        cpu_timings.append(cpu_clock() - cpu_start)
        timings.append(end - start)
        stale += is_stale(decision)
        if i % 1000 == 0:
            # A server yields between requests; so does this loop, so that the router's
            # catalog poll runs (without it the view goes stale and answers fail closed).
            await asyncio.sleep(0)
    timings.sort()
    cpu_timings.sort()
    return timings, cpu_timings, stale


async def until_fresh(router: Router) -> None:
    """Yields until the router's view is confirmed: a phase that held the event loop for long (the
    index memory phase on a loaded machine) leaves the catalog poll late, and the first answers
    of the next phase would fail closed."""
    for _ in range(2400):  # at most 120 s
        if not router.status().stale_reason:
            return
        await asyncio.sleep(0.05)


async def bench_in_process(app: App, ids: list[str], report: Report, seed: int) -> None:
    print("in-process", flush=True)
    router = app.router
    await until_fresh(router)
    qs = questions(ids, 100_000, seed)
    # The harness's 100,000 question tuples would otherwise sit in the collector's generations
    # for the whole phase and be walked by every full collection the decisions' allocations
    # trigger -- a cost of this benchmark's own data that no server has.
    gc.collect()
    gc.freeze()
    # Pass 1 ("first touch") meets most datasets for the first time; pass 2 asks the same
    # questions again: the steady state of a running router.
    # Each call is timed in wall time and in the thread's CPU time (on a shared machine the
    # latter shows what the code costs when other processes preempt it).
    for label, target in (("first touch", ""), ("warm", "in_process_p50_us")):
        timings, cpu_timings, stale = await time_decides(router, qs)
        check_fresh(stale)
        report.line(f"Router.decide p50 ({label})", percentile(timings, 0.50) / 1000, "us", target)
        report.line(f"Router.decide p99 ({label})", percentile(timings, 0.99) / 1000, "us")
        report.line(f"Router.decide mean ({label})", statistics.fmean(timings) / 1000, "us")
        # Informational: it includes one thread-CPU clock system call (~0.6 us) and two wall-clock reads.
        report.line(f"Router.decide p50 thread CPU ({label})", percentile(cpu_timings, 0.50) / 1000, "us")
    # What a decision costs the process, sustained: the CPU time of every thread (the log
    # writer's rendering, writing and hashing too) over the warm questions, until the log has
    # written the last of them -- the figure that holds on a machine shared with other work.
    await router.flush_decision_log()
    decide, cpu_start = router.decide, time.process_time()
    for i, (d, op, r) in enumerate(qs):
        decide(d, op, r)
        if i % 1000 == 0:
            await asyncio.sleep(0)  # (as in time_decides: the catalog poll runs)
    await router.flush_decision_log()
    report.line(
        "Router.decide CPU per decision (all threads, until logged)",
        (time.process_time() - cpu_start) / len(qs) * 1e6,
        "us",
    )
    stale = 0

    batches = [qs[i : i + 10_000] for i in range(0, len(qs), 10_000)]
    # A sustained rate: the questions three times over (300,000 decisions), timed until the
    # decision log has written the last of them -- the log's queue would otherwise carry up
    # to 20,000 decisions of unpaid work past the clock. The answer's `Decision`s are made
    # when read: each is read (`list`) within the time, as a caller would; the staleness check
    # of each answer is not timed. The call alone is timed beside it.
    await router.flush_decision_log()
    elapsed = cpu = called = 0.0
    for batch in batches * 3:
        start, cpu_start = time.perf_counter(), time.process_time()
        answer = await router.batch_decide(batch)
        called += time.perf_counter() - start
        decisions = list(answer)
        elapsed, cpu = elapsed + time.perf_counter() - start, cpu + time.process_time() - cpu_start
        stale += sum(map(is_stale, decisions))
        await asyncio.sleep(0)
    start, cpu_start = time.perf_counter(), time.process_time()
    await router.flush_decision_log()
    flushed = time.perf_counter() - start
    elapsed, cpu = elapsed + flushed, cpu + time.process_time() - cpu_start
    check_fresh(stale)
    report.line(
        "Router.batch_decide (10,000 per call, logged, every Decision read)",
        3 * len(qs) / elapsed,
        "decisions/s",
        "batch_decisions_per_s",
        False,
    )
    report.line("  per CPU-second (all threads)", 3 * len(qs) / cpu, "decisions/s")
    report.line("  the calls alone, logged (Decisions not read)", 3 * len(qs) / (called + flushed), "decisions/s")

    servicer = ResidencyServicer(app)
    requests = [batch_request(batch) for batch in batches]
    # The requests three times over, with one call in flight and then two (as a server takes
    # concurrent calls: the router decides large batches off its event loop), timed until the
    # log has written the last decision; the answers are checked after the clock stops.
    for in_flight in (1, 2):
        await router.flush_decision_log()
        start, cpu_start = time.perf_counter(), time.process_time()
        answers = await servicer_calls(servicer, requests * 3, in_flight)
        await router.flush_decision_log()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        check_fresh(stale + sum(map(stale_answers, answers)))
        report.line(
            f"BatchDecide servicer (parsing, validation, wire encoding, logged), {in_flight} in flight",
            3 * len(qs) / elapsed,
            "decisions/s",
            "batch_decisions_per_s",
            False,
        )
        report.line("  per CPU-second (all threads)", 3 * len(qs) / cpu, "decisions/s")
    report.line("BatchDecide answer size per decision (compact)", sum(map(len, answers)) / (3 * len(qs)), "bytes")
    await bench_engine_batch(app, requests, report)
    # Nor should this phase's garbage be collected during the next one.
    gc.collect()


def batch_request(questions) -> bytes:
    """A serialized BatchDecideRequest, as gRPC hands it to the servicer (add_residency_service),
    asking for compact answers, as the client library asks."""
    ops = {Operation.STORE: residency_pb2.OPERATION_STORE, Operation.PROCESS: residency_pb2.OPERATION_PROCESS}
    return residency_pb2.BatchDecideRequest(
        requests=[residency_pb2.DecideRequest(dataset_id=d, operation=ops[op], region=r) for d, op, r in questions],
        shared_region_sets=True,
        shared_reason_texts=True,
    ).SerializeToString()


def stale_answers(answer: bytes) -> int:
    """The fail-closed (STALE_CATALOG) decisions of a serialized BatchDecideResponse."""
    response = residency_pb2.BatchDecideResponse.FromString(answer)
    return sum(1 for d in response.decisions if d.reasons and d.reasons[0].code == "STALE_CATALOG")


async def servicer_calls(servicer: ResidencyServicer, requests: list[bytes], in_flight: int) -> list[bytes]:
    """The serialized answers of `servicer.BatchDecide` to `requests`, `in_flight` calls at a time."""
    answers: list[bytes] = [b""] * len(requests)
    pending = iter(enumerate(requests))

    async def caller() -> None:
        for n, request in pending:
            answers[n] = await servicer.BatchDecide(request, None)

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return answers


async def bench_engine_batch(app: App, requests: list[bytes], report: Report) -> None:
    """The engine's batch call alone, as the servicer makes it, in an engine of its own on the
    same catalog: a serialized request in (`requests`, compact answers asked for), the
    serialized answer and the decisions out (the call counts them for the metrics), and their
    decision-log entries rendered (the log writer's share of the engine's work; writing the
    file is not counted). Warmed by one pass, then the requests three times over on one
    thread, and again split over two (the engine lets go of the interpreter lock)."""
    policy = app.router.policy
    engine = Engine(policy)
    engine.load(await app.store.residency_snapshot())
    line_decisions = LogOptions().line_decisions
    ids = LogLane("bench", line_decisions, 10_000, lambda: None)

    def call(numbered: tuple[int, bytes]) -> int:
        _, request = numbered
        _, decisions = engine.batch_decide_wire(request, model.utcnow(), None, 1, ids, 10_000, "bench")
        decisions.log_entries(None, "batch_decide", policy.content_hash, line_decisions)
        return len(decisions)

    numbered = list(enumerate(requests))
    decided = sum(map(call, numbered))  # warm: every verdict memoised once
    # The log writer's share that grows with an entry's size: its line hashed and copied once
    # (`decisions_line`), per decision, with the entries' size.
    entry_bytes = 0
    seal_cpu = 0.0
    for _, request in numbered:
        _, decisions = engine.batch_decide_wire(request, model.utcnow(), None, 1, ids, 10_000, "bench")
        for data, _ in decisions.log_entries(None, "batch_decide", policy.content_hash, line_decisions):
            entry_bytes += len(data)
            cpu_start = time.process_time()
            decisions_line(1, ZERO_HASH, [data])
            seal_cpu += time.process_time() - cpu_start
    report.line("decision-log entry per decision (BatchDecide's)", entry_bytes / decided, "bytes")
    report.line("  its line hashed and copied, CPU per decision", seal_cpu / decided * 1e6, "us")
    for threads in (1, 2):
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            start, cpu_start = time.perf_counter(), time.process_time()
            decided = sum(pool.map(call, numbered * 3))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        label = "1 thread" if threads == 1 else f"{threads} threads"
        report.line(
            f"engine batch call + log entries (10,000 per call, compact answers, {label})",
            decided / elapsed,
            "decisions/s",
            "batch_decisions_per_s" if threads == 1 else "",
            False,
        )
        report.line("  per CPU-second (all threads)", decided / cpu, "decisions/s")


async def bench_in_process_durable(app: App, ids: list[str], report: Report, args) -> None:
    """The durable log's cost: every answer waits for its line's fsync; concurrent answers share one."""
    print("in-process, durable decision log (the default)", flush=True)
    router = app.router
    await until_fresh(router)
    qs = questions(ids, 100_000, args.seed)
    for start in range(0, len(ids), 10_000):  # every dataset's view built, as in a warm server
        await router.batch_decide([(d, Operation.STORE, REGIONS[0]) for d in ids[start : start + 10_000]])
    one_by_one = qs[: max(200, min(2_000, int(args.seconds * 200)))]
    timings, _, stale = await time_decides(router, one_by_one, durable=True)
    check_fresh(stale)
    report.line("Router.decide p50, durable log, 1 caller", percentile(timings, 0.50) / 1e6, "ms")
    report.line("Router.decide p99, durable log, 1 caller", percentile(timings, 0.99) / 1e6, "ms")
    concurrent = qs[: max(2_000, min(50_000, int(args.seconds * 5_000)))]
    latencies: list[float] = []
    pending = iter(concurrent)

    async def caller() -> None:
        for d, op, r in pending:
            start = time.perf_counter()
            decision = router.decide(d, op, r)
            await router.logged()
            latencies.append(time.perf_counter() - start)
            if is_stale(decision):
                raise SystemExit("a STALE_CATALOG answer: the machine is too loaded for this benchmark")

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    report.line(f"Router.decide, durable log, {args.concurrency} callers", len(concurrent) / elapsed, "decisions/s")
    report.line(
        "  p50 / p99 per call", latencies[len(latencies) // 2] * 1e3, f"ms / {percentile(latencies, 0.99) * 1e3:.2f} ms"
    )
    batches = [qs[i : i + 10_000] for i in range(0, len(qs), 10_000)]
    start = time.perf_counter()
    stale = 0
    for batch in batches:
        stale += sum(map(is_stale, await router.batch_decide(batch)))
    check_fresh(stale)
    report.line(
        "Router.batch_decide (10,000 per call, durable log)", len(qs) / (time.perf_counter() - start), "decisions/s"
    )
    # The servicer as a server runs it by default: each answer waits for its line's fsync while
    # the other calls in flight are decided. An fsync is a wait, not work: with two calls in
    # flight a core idles while its call waits; with four, another call is decided meanwhile.
    servicer = ResidencyServicer(app)
    requests = [batch_request(batch) for batch in batches]
    for in_flight in (2, 4):
        start, cpu_start = time.perf_counter(), time.process_time()
        answers = await servicer_calls(servicer, requests * 3, in_flight)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        check_fresh(sum(map(stale_answers, answers)))
        report.line(f"BatchDecide servicer, durable log, {in_flight} in flight", 3 * len(qs) / elapsed, "decisions/s")
        report.line("  per CPU-second (all threads)", 3 * len(qs) / cpu, "decisions/s")


async def run_json(what: str, *argv: str) -> dict:
    """Run a client process to its end and return the JSON it prints; RuntimeError with the
    tail of its stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return json.loads(out)


async def run_client(
    port: int, mode: str, questions_file: Path, rate: int, seconds: float, concurrency: int, *extra: str
) -> dict:
    return await run_json(
        f"client {mode}",
        sys.executable,
        __file__,
        "--client",
        mode,
        "--port",
        str(port),
        "--questions",
        str(questions_file),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
        *extra,
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (/proc/PID/stat, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """A server under test in its own process: its port, and the CPU time it has used."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all threads)."""
        return process_cpu_seconds(self.proc.pid)


def serve_argv(store: str, data_dir: Path, *options: str) -> list[str]:
    """`domicile serve` on loopback, plaintext, a free port, no HTTP listener, with the example
    policy, `store` and `data_dir` (and `options`): how every benchmark runs a server. `-P`: the
    interpreter's own build is imported, not the working directory's `domicile` (with
    --base-python the other build would run this worktree's code outside `router/`)."""
    return [
        sys.executable,
        "-P",
        "-c",
        "from domicile.cli.main import main; main()",
        "serve",
        "--insecure",
        *options,
        "--store",
        store,
        "--policy",
        str(POLICY),
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "",
        "--data-dir",
        str(data_dir),
    ]


@contextlib.asynccontextmanager
async def server_process(what: str, argv: list[str], log_path: Path) -> AsyncIterator[ServerProcess]:
    """Start a server that prints `(port N)` on its stdout once it serves; SIGTERM it at the end.
    Its stderr (logging) goes to `log_path`, whose tail a failure to start reports."""
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=log_file)
        try:
            port = None
            while port is None:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=300)
                if not line:
                    code = await proc.wait()
                    tail = log_path.read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"{what} exited ({code}) before serving:\n{tail}")
                match = re.search(rb"\(port (\d+)\)", line)
                port = int(match.group(1)) if match else None
            yield ServerProcess(proc, port)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()


async def bench_grpc(app: App, ids: list[str], report: Report, args, workdir: Path) -> None:
    """The product as deployed: `domicile serve` in its own process (the same SQLite catalog
    and policy, its own decision log), every client in another. A server process holds only
    the router's objects: hosted in this one, it would also carry the benchmark's (the catalog
    generated, the in-process phases' data) through every garbage collection, and share its
    interpreter lock with whatever this process does."""
    print("gRPC on loopback (`domicile serve` and each client in a separate process)", flush=True)
    argv = serve_argv(app.settings.store, workdir / "server")
    started = time.perf_counter()
    async with server_process("domicile serve", argv, workdir / "server.log") as server:
        report.line("`domicile serve` ready (process start, imports, Router.start)", time.perf_counter() - started, "s")
        await bench_grpc_phases(server, ids, report, args, workdir, "")
    print("gRPC on loopback, `router.durable_decision_log: false`", flush=True)
    config = workdir / "non-durable.yaml"
    config.write_text("router:\n  durable_decision_log: false\n")
    async with server_process("domicile serve", [*argv, "--config", str(config)], workdir / "server-2.log") as server:
        await bench_grpc_phases(server, ids, report, args, workdir, " [non-durable log]")
    await bench_grpc_floor(app, ids, report, args, workdir)


def client_files(ids: list[str], args, workdir: Path) -> tuple[Path, Path]:
    """The questions the gRPC clients read: the warm-up's (every dataset once) and the measured
    phases' (50,000 random ones)."""
    warm_file = workdir / "warm-questions.json"
    warm_file.write_text(json.dumps([(d, Operation.STORE.value, REGIONS[0]) for d in ids]))
    questions_file = workdir / "questions.json"
    questions_file.write_text(json.dumps([(d, op.value, r) for d, op, r in questions(ids, 50_000, args.seed + 1)]))
    return warm_file, questions_file


async def warm_up(server: ServerProcess, warm_file: Path, args) -> None:
    """Warm `server` as one that has been running a while: every dataset decided once (its
    attribute view built, then frozen by the router's next catalog poll), as the in-process
    "warm" figures are."""
    await run_client(server.port, "warm", warm_file, args.rate, 0, 1)
    await asyncio.sleep(1.0)


async def batch_client(
    server: ServerProcess, questions_file: Path, args, seconds: float, in_flight: int, shape: str
) -> dict:
    """BatchDecide of 1,000 against `server` for `seconds`, `in_flight` calls at a time, answers
    of `shape` (compact|full); its figures, with the server's CPU time."""
    batch = await run_client(
        server.port,
        "batch",
        questions_file,
        args.rate,
        seconds,
        in_flight,
        "--answer-shape",
        shape,
        "--server-pid",
        str(server.proc.pid),
    )
    check_fresh(batch["stale"])
    return batch


async def bench_rounds(app: App, ids: list[str], report: Report, args, workdir: Path) -> None:
    """`--unary-only` / `--batch-only`: one gRPC phase alone, in --rounds interleaved rounds:
    the unary fixed-rate phase driven by loadgen, or BatchDecide of 1,000 with 2 calls in flight
    (compact answers). Each round runs `domicile serve` with the durable log (the default), then
    with `router.durable_decision_log: false`, then (unary only) the canned-answer floor, each
    server warmed as `bench_grpc_phases` warms it. With --base-python (another worktree's
    interpreter, e.g. its `.venv/bin/python`) each Domicile server runs again under it, the two
    alternating in turn, for an A/B in the same minutes. Medians over the rounds at the end."""
    config = workdir / "non-durable.yaml"
    config.write_text("router:\n  durable_decision_log: false\n")
    builds = [("this", sys.executable)] + ([("base", args.base_python)] if args.base_python else [])
    warm_file, questions_file = client_files(ids, args, workdir)

    async def measure(server: ServerProcess, name: str) -> dict:
        if args.unary_only:
            return await bench_loadgen(Path(args.loadgen), server, ids, report, args, workdir, name)
        batch = await batch_client(server, questions_file, args, args.seconds, 2, "compact")
        print(f"  {name}: {batch['throughput']:,.0f} decisions/s, server CPU {batch['server_cpu_us']:.2f} us each")
        return batch

    floor_argv = (await canned_server_argv(app, ids, args, workdir))[1] if args.unary_only else None
    results: dict[str, list[dict]] = {}
    for round_number in range(args.rounds):
        order = builds if round_number % 2 == 0 else builds[::-1]
        for mode, options in (("durable", ()), ("non-durable", ("--config", str(config)))):
            for build, python in order:
                name = f"{build} {mode}"
                data_dir = workdir / f"server-{build}-{mode}-{round_number}"
                argv = [python, *serve_argv(app.settings.store, data_dir, *options)[1:]]
                print(f"round {round_number + 1}: {name}, load average {os.getloadavg()[0]:.2f}", flush=True)
                async with server_process("domicile serve", argv, workdir / f"{name}.log") as server:
                    await warm_up(server, warm_file, args)
                    result = await measure(server, name)
                results.setdefault(name, []).append(result)
                shutil.rmtree(data_dir, ignore_errors=True)
        if floor_argv:
            print(f"round {round_number + 1}: floor, load average {os.getloadavg()[0]:.2f}", flush=True)
            async with server_process("the canned-answer server", floor_argv, workdir / "floor-server.log") as server:
                results.setdefault("floor", []).append(await measure(server, "floor"))
    if not args.unary_only:
        print(f"medians over {args.rounds} rounds (BatchDecide of 1,000, 2 in flight, {args.seconds:g} s):", flush=True)
        for name, runs in results.items():
            each = ", ".join(f"{r['throughput']:,.0f}" for r in runs)
            report.line(
                f"{name}: BatchDecide over gRPC (each round: {each})",
                statistics.median(r["throughput"] for r in runs),
                "decisions/s",
            )
            report.line(f"  {name}: server CPU per decision", statistics.median(r["server_cpu_us"] for r in runs), "us")
        return
    print(f"medians over {args.rounds} rounds (loadgen, {args.rate:,} req/s for {args.seconds:g} s):", flush=True)
    floor_p99 = statistics.median(r["p99_ms"] for r in results["floor"])
    for name, runs in results.items():
        p99 = statistics.median(r["p99_ms"] for r in runs)
        each = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
        report.line(f"{name}: p99 (each round: {each})", p99, "ms")
        report.line(f"  {name}: p50", statistics.median(r["p50_ms"] for r in runs), "ms")
        report.line(f"  {name}: server CPU per call", statistics.median(r["server_cpu_us"] for r in runs), "us")
        report.line(f"  {name}: p99 - floor's p99", p99 - floor_p99, "ms")


async def bench_grpc_phases(
    server: ServerProcess, ids: list[str], report: Report, args, workdir: Path, mode: str
) -> None:
    """The gRPC phases against `server`; `mode` ends each figure's name."""
    port = server.port
    warm_file, questions_file = client_files(ids, args, workdir)
    await warm_up(server, warm_file, args)

    fixed = await run_client(port, "fixed", questions_file, args.rate, args.seconds, args.concurrency)
    report.line(f"unary Decide p50 at {fixed['rate']:,} req/s{mode}", fixed["p50_ms"], "ms")
    report.line(f"unary Decide p99 at {fixed['rate']:,} req/s{mode}", fixed["p99_ms"], "ms", "unary_p99_ms")
    report.line("  achieved rate", fixed["achieved_rate"], "req/s")
    if fixed["errors"]:
        print(f"  failed calls: {fixed['errors']}", flush=True)
    check_not_refused(fixed)
    if args.loadgen:
        await bench_loadgen(Path(args.loadgen), server, ids, report, args, workdir, f"loadgen{mode}")
    if args.ghz:
        await bench_ghz(Path(args.ghz), port, ids, report, args, workdir, f"ghz{mode}")
    peak = await run_client(port, "max", questions_file, args.rate, min(args.seconds, 5), args.concurrency)
    report.line(f"unary Decide max throughput ({args.concurrency} callers){mode}", peak["throughput"], "req/s")
    report.line("  p50 at max throughput", peak["p50_ms"], "ms")
    for in_flight, shape in ((1, "compact"), (2, "compact"), (2, "full")):
        batch = await batch_client(server, questions_file, args, min(args.seconds, 5), in_flight, shape)
        answer = "compact answers" if shape == "compact" else "answers listing allowed regions per decision"
        report.line(
            f"BatchDecide over gRPC (1,000 per call, {in_flight} in flight, {answer}){mode}",
            batch["throughput"],
            "decisions/s",
            "grpc_batch_decisions_per_s" if (in_flight, shape, mode) == (2, "compact", "") else "",
            False,
        )
        report.line("  server CPU per decision", batch["server_cpu_us"], "us")
        report.line("  client CPU per decision (sending, parsing the answers)", batch["client_cpu_us"], "us")


class CannedResidency(residency_pb2_grpc.ResidencyServiceServicer):
    """Answers every Decide with the same prebuilt response: the cost of the gRPC stack alone."""

    def __init__(self, response: residency_pb2.DecideResponse) -> None:
        self._response = response

    async def Decide(self, request, context):
        return self._response


async def serve_canned(answer_file: str) -> None:
    """The floor server's process (internal `--serve-canned FILE`): the same grpcio server and
    interceptor as `domicile serve`, answering every Decide with the DecideResponse in FILE."""
    canned = residency_pb2.DecideResponse.FromString(Path(answer_file).read_bytes())
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
    residency_pb2_grpc.add_ResidencyServiceServicer_to_server(CannedResidency(canned), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"canned Decide server (port {port})", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


async def canned_server_argv(
    app: App, ids: list[str], args, workdir: Path
) -> tuple[residency_pb2.DecideResponse, list[str]]:
    """The canned answer (a DENY with its reasons, as the router in this process answers one of
    the benchmark's questions) and the command serving it (`serve_canned`)."""
    ops = {Operation.STORE: residency_pb2.OPERATION_STORE, Operation.PROCESS: residency_pb2.OPERATION_PROCESS}
    servicer = ResidencyServicer(app)
    canned = None
    for d, op, r in questions(ids, 1000, args.seed + 3):
        request = residency_pb2.DecideRequest(dataset_id=d, operation=ops[op], region=r)
        answer = residency_pb2.DecideResponse.FromString(await servicer.Decide(request, None))
        if answer.decision.outcome == residency_pb2.OUTCOME_DENY and answer.decision.reasons:
            canned = answer
            break
    assert canned is not None, "no DENY with reasons among 1,000 questions"
    answer_file = workdir / "canned-answer.bin"
    answer_file.write_bytes(canned.SerializeToString())
    return canned, [sys.executable, __file__, "--serve-canned", str(answer_file)]


async def bench_grpc_floor(app: App, ids: list[str], report: Report, args, workdir: Path) -> None:
    """The fixed-rate phase against a server in its own process that does everything but
    decide -- same grpcio server, interceptor and event loop, a canned answer of a typical
    size (a DENY with its reasons and allowed regions): the floor under the unary latency
    on this machine, measured in the same run."""
    print("gRPC floor: the same server with a canned Decide answer", flush=True)
    canned, argv = await canned_server_argv(app, ids, args, workdir)
    async with server_process("the canned-answer server", argv, workdir / "floor-server.log") as server:
        report.line("  canned answer size", canned.ByteSize(), "bytes")
        cpu = server.cpu_seconds()
        fixed = await run_client(
            server.port, "fixed", workdir / "questions.json", args.rate, args.seconds, args.concurrency
        )
        report.line(f"floor (Python client): unary Decide p99 at {fixed['rate']:,} req/s", fixed["p99_ms"], "ms")
        calls = 2000 + fixed["rate"] * args.seconds  # (with the client's warm-up)
        report.line("  floor (Python client): server CPU per call", (server.cpu_seconds() - cpu) / calls * 1e6, "us")
        if args.loadgen:
            await bench_loadgen(Path(args.loadgen), server, ids, report, args, workdir, "floor (loadgen)")
        if args.ghz:
            await bench_ghz(Path(args.ghz), server.port, ids, report, args, workdir, "floor (ghz)")
    ratio = (
        report.figures[f"unary Decide p99 at {args.rate:,} req/s"]
        / report.figures[f"floor (Python client): unary Decide p99 at {args.rate:,} req/s"]
    )
    report.figures["python_client_p99_vs_floor"] = ratio
    print(f"  Python client: Domicile p99 / floor p99 = {ratio:.2f}x", flush=True)
    for client in ("loadgen", "ghz"):
        if getattr(args, client):
            ratio = (
                report.figures[f"{client}: unary Decide p99 at {args.rate:,} req/s"]
                / report.figures[f"floor ({client}): unary Decide p99 at {args.rate:,} req/s"]
            )
            report.figures[f"{client}_p99_vs_floor"] = ratio
            print(f"  {client}: Domicile p99 / floor p99 = {ratio:.2f}x", flush=True)


async def bench_loadgen(
    loadgen: Path, server: ServerProcess, ids: list[str], report: Report, args, workdir: Path, label: str
) -> dict:
    """The fixed-rate phase driven by bench/loadgen (Go, `tools/install-loadgen.sh`): open loop,
    prebuilt request bytes, one thread of Go code. On two shared cores the client's own CPU is
    part of every latency; this client spends ~0.3 ms of CPU per call where ghz spends ~0.5 ms
    and the Python client more, so its figures are the closest to the server's own. Latency
    from each call's send (as ghz measures), and its p99 from the due time beside it."""
    ops = {Operation.STORE: residency_pb2.OPERATION_STORE, Operation.PROCESS: residency_pb2.OPERATION_PROCESS}
    data = workdir / "loadgen-requests.bin"
    with data.open("wb") as out:
        for d, op, r in questions(ids, 20_000, args.seed + 2):
            message = residency_pb2.DecideRequest(dataset_id=d, operation=ops[op], region=r).SerializeToString()
            out.write(len(message).to_bytes(4, "big") + message)
    cpu = server.cpu_seconds()
    result = await run_json(
        "loadgen",
        str(loadgen),
        "-target",
        f"127.0.0.1:{server.port}",
        "-requests",
        str(data),
        "-rate",
        str(args.rate),
        "-duration",
        f"{args.seconds:g}s",
        "-warmup",
        "2s",
    )
    calls = result["count"] + 2 * args.rate  # and the warm-up's
    report.line(f"{label}: unary Decide p50 at {args.rate:,} req/s", result["p50_ms"], "ms")
    report.line(f"{label}: unary Decide p99 at {args.rate:,} req/s", result["p99_ms"], "ms", "unary_p99_ms")
    report.line(f"  {label}: p99.9 / slowest", result["p999_ms"], f"ms / {result['max_ms']:.2f} ms")
    report.line(f"  {label}: p99 from the due time (adds the client's lateness)", result["due_p99_ms"], "ms")
    report.line(f"  {label}: achieved rate", result["achieved_rate"], "req/s")
    report.line(
        f"  {label}: client's send lateness p99 / max",
        result["send_late_p99_ms"],
        f"ms / {result['send_late_max_ms']:.2f} ms",
    )
    report.line(f"  {label}: client CPU per call", result["client_cpu_us_per_call"], "us")
    result["server_cpu_us"] = (server.cpu_seconds() - cpu) / calls * 1e6
    report.line(f"  {label}: server CPU per call", result["server_cpu_us"], "us")
    if result["errors"]:
        print(f"  {label}: failed calls: {result['errors']}", flush=True)
    return result


async def bench_ghz(ghz: Path, port: int, ids: list[str], report: Report, args, workdir: Path, label: str) -> None:
    """The fixed-rate phase again, driven by ghz (a Go load generator) instead of the Python
    client: requests leave on a steady schedule (`--async`: without waiting for answers) and
    each latency is measured from its own send, with far less client CPU on the shared cores
    and no asyncio timer slop (the Python client's sleeps wake up to 1 ms late, which its
    latencies, measured from the schedule, include)."""
    names = {Operation.STORE: "OPERATION_STORE", Operation.PROCESS: "OPERATION_PROCESS"}
    data = workdir / "ghz-requests.json"
    data.write_text(
        json.dumps(
            [
                {"dataset_id": d, "operation": names[op], "region": r}
                for d, op, r in questions(ids, 20_000, args.seed + 2)
            ]
        )
    )
    warmup = 2 * args.rate  # two seconds' worth, not counted
    result = await run_json(
        "ghz",
        str(ghz),
        "--insecure",
        "--proto",
        str(ROOT / "protos" / "domicile" / "v1" / "residency.proto"),
        "--import-paths",
        str(ROOT / "protos"),
        "--call",
        "domicile.v1.ResidencyService.Decide",
        "--data-file",
        str(data),
        "--rps",
        str(args.rate),
        "--async",
        "--concurrency",
        "16",
        "--connections",
        "1",
        "--duration",
        f"{args.seconds + 2:g}s",
        "--duration-stop",
        "wait",  # let the last calls finish
        "--skipFirst",
        str(warmup),
        "--format",
        "json",
        f"127.0.0.1:{port}",
    )
    percentiles = {item["percentage"]: item["latency"] / 1e6 for item in result["latencyDistribution"]}
    report.line(f"{label}: unary Decide p50 at {args.rate:,} req/s", percentiles[50], "ms")
    report.line(f"{label}: unary Decide p99 at {args.rate:,} req/s", percentiles[99], "ms", "unary_p99_ms")
    report.line(f"  {label}: slowest", result["slowest"] / 1e6, "ms")
    report.line(f"  {label}: answers counted", result["count"], "")
    failed = {code: n for code, n in result.get("statusCodeDistribution", {}).items() if code != "OK"}
    if failed:
        print(f"  {label}: failed calls: {failed}", flush=True)


async def bench_opa(opa: Path, ids: list[str], router: Router, report: Report, args, workdir: Path) -> None:
    """OPA with an equivalent Rego policy, fed the router's effective attributes as input."""
    print(
        f"Open Policy Agent ({subprocess.run([opa, 'version'], capture_output=True, text=True, check=True).stdout.splitlines()[0]})",
        flush=True,
    )
    # The policy's rules become constants of the Rego module (compiled with it), as a policy
    # author would write them; OPA's `data` would be converted from JSON on every query.
    rego = workdir / "residency.rego"
    data = opa_data(router)
    rego.write_text(REGO + f"\nrules := {json.dumps(data['rules'])}\n\ndefaults := {json.dumps(data['defaults'])}\n")
    qs = questions(ids, 50_000, args.seed + 1)
    inputs = [opa_input(router, d, op, r) for d, op, r in qs]
    inputs_file = workdir / "opa-inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    sample = workdir / "opa-input.json"
    sample.write_text(json.dumps(inputs[0]))
    bench = subprocess.run(
        [opa, "bench", "--format", "json", "-d", str(rego), "-i", str(sample), "data.residency.allow"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(bench.stdout)
    median_us = result["Extra"]["histogram_timer_rego_query_eval_ns_median"] / 1000
    report.line("opa bench: query eval median (one input)", median_us, "us")
    report.line("opa bench: time per op incl. harness", result["T"] / result["N"] / 1000, "us")
    report.figures["opa_vs_router_in_process"] = median_us / report.figures["Router.decide p50 (warm)"]
    print(
        f"  OPA eval median / Router.decide p50 (warm) = {report.figures['opa_vs_router_in_process']:.1f}x", flush=True
    )
    opa_port = free_port()
    server = subprocess.Popen(
        [opa, "run", "--server", "--addr", f"127.0.0.1:{opa_port}", "--log-level", "error", str(rego)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        agreed, compared = await compare_with_opa(opa_port, router, qs[:500], inputs[:500])
        report.line("OPA agrees with Domicile (outcomes)", agreed, f"of {compared}")
        fixed = await run_client(opa_port, "opa-fixed", inputs_file, args.rate, args.seconds, args.concurrency)
        report.line(f"OPA REST p50 at {fixed['rate']:,} req/s", fixed["p50_ms"], "ms")
        report.line(f"OPA REST p99 at {fixed['rate']:,} req/s", fixed["p99_ms"], "ms")
        ours = report.figures.get(f"unary Decide p99 at {args.rate:,} req/s")
        if ours:
            print(f"  OPA REST p99 / Domicile gRPC p99 = {fixed['p99_ms'] / ours:.2f}x", flush=True)
    finally:
        server.terminate()
        server.wait()


async def compare_with_opa(port: int, router: Router, qs, inputs) -> tuple[int, int]:
    """How many of these questions OPA answers with Domicile's outcome (a check that the Rego
    policy is equivalent, so the timing comparison is fair)."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/data/residency/allow"
    agreed = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # OPA needs a moment to listen
            try:
                async with session.post(url, json={"input": inputs[0]}) as response:
                    await response.read()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        for (d, op, r), opa_input_ in zip(qs, inputs, strict=True):
            async with session.post(url, json={"input": opa_input_}) as response:
                opa_allows = (await response.json())["result"]
            decision = router.decide(d, op, r)
            agreed += opa_allows == (decision.outcome is Outcome.ALLOW)
    return agreed, len(qs)


def opa_data(router: Router) -> dict:
    """The example policy's rules as data for residency.rego: countries per allow/deny token."""
    policy = router.policy
    document = policy.loaded.document
    from domicile.router.locations import LocationResolver

    resolver = LocationResolver(policy.registry, document.groups)

    # Sets as objects {member: true}, so that Rego looks members up instead of scanning.
    def region_set(tokens) -> dict[str, bool] | str:
        if tokens is None:
            return "none"
        if "*" in tokens:
            return "*"
        return dict.fromkeys(sorted(resolver.regions(tokens)), True)

    rules = []
    for rule in document.rules:
        origins = resolver.origin_countries(rule.match.origins).countries if rule.match.origins else None
        entry = {
            "id": rule.id,
            "labels": list(rule.match.classifications),
            "origins": "*" if origins is None else dict.fromkeys(sorted(origins), True),
        }
        for op in ("store", "process"):
            permission = getattr(rule, op)
            entry[op] = {
                "allow": region_set(permission.allow if permission else None),
                "deny": region_set(permission.deny) if permission and permission.deny else {},
            }
        rules.append(entry)
    return {
        "rules": rules,
        "defaults": {"classified": document.defaults.classified, "unclassified": document.defaults.unclassified},
    }


async def bench_cedar(cedar: Path, ids: list[str], router: Router, report: Report, args, workdir: Path) -> None:
    """Cedar (the `cedar-policy` crate, in bench/cedar) evaluating the example policy
    translated to Cedar (`cedar_policy`), on the same kind of questions with the effective
    attributes as the request's context (Cedar holds no lineage either)."""
    policy, entities = cedar_policy(router)
    qs = questions(ids, 20_000, args.seed + 2)
    cases = [opa_input(router, d, op, r) for d, op, r in qs]
    for case in cases:  # Cedar has no label hierarchy: each label comes with its ancestors
        case["labels"] = sorted(
            {".".join(label.split(".")[: n + 1]) for label in case["labels"] for n in range(label.count(".") + 1)}
        )
    source = workdir / "cedar-input.json"
    source.write_text(
        json.dumps({"policy": policy, "entities": entities, "questions": cases, "rounds": 5, "report": 2000})
    )
    result = json.loads(subprocess.run([cedar, str(source)], capture_output=True, text=True, check=True).stdout)
    print(f"Cedar (cedar-policy {result['cedar_version']}, in-process Rust harness)", flush=True)
    report.line("Cedar is_authorized p50 (one question)", result["p50_us"], "us")
    report.line("Cedar is_authorized p99", result["p99_us"], "us")
    report.line("Cedar evaluations per second (one thread)", result["per_second_single_thread"], "decisions/s")
    same = 0
    for allowed, (d, op, r) in zip(result["outcomes"], qs, strict=False):
        same += allowed == (router.decide(d, op, r).outcome is Outcome.ALLOW)
    report.line("Cedar agrees with Domicile (outcomes)", same, f"of {len(result['outcomes'])}")


def cedar_policy(router: Router) -> tuple[str, list[dict]]:
    """The example policy in Cedar, and the region entities: each region is `in` the sets of
    regions the rules allow or deny it (`RegionSet::"<rule>/<operation>/<allow|deny>"`).
    Exemptions are left out, as for OPA. Semantics kept: a question is permitted when some
    applicable rule has an allow list for the operation (or the dataset carries no label and
    the default allows unclassified data), and forbidden when an applicable rule's allow list
    leaves the region out or its deny list holds it."""
    data = opa_data(router)
    members: dict[str, set[str]] = {}
    statements = []
    for rule in data["rules"]:
        conditions = []
        if rule["labels"]:
            conditions.append(f"context.labels.containsAny({json.dumps(rule['labels'])})")
        if rule["origins"] != "*":
            conditions.append(f"context.origins.containsAny({json.dumps(sorted(rule['origins']))})")
        match = " && ".join(conditions) or "true"
        for op in ("store", "process"):
            action = f'action == Action::"{op}"'
            allow, deny = rule[op]["allow"], rule[op]["deny"]
            if allow != "none":
                statements.append(f"permit(principal, {action}, resource) when {{ {match} }};")
                if allow != "*":
                    group = f"{rule['id']}/{op}/allow"
                    for region in allow:
                        members.setdefault(region, set()).add(group)
                    statements.append(
                        f'forbid(principal, {action}, resource) when {{ {match} && !(resource in RegionSet::"{group}") }};'
                    )
            if deny:
                group = f"{rule['id']}/{op}/deny"
                for region in deny:
                    members.setdefault(region, set()).add(group)
                statements.append(
                    f'forbid(principal, {action}, resource) when {{ {match} && resource in RegionSet::"{group}" }};'
                )
    if data["defaults"]["unclassified"] == "allow":
        statements.append("permit(principal, action, resource) when { context.labels.isEmpty() };")
    if data["defaults"]["classified"] == "allow":
        statements.append("permit(principal, action, resource) when { !context.labels.isEmpty() };")
    groups = sorted({g for gs in members.values() for g in gs})
    entities = [{"uid": {"type": "RegionSet", "id": g}, "attrs": {}, "parents": []} for g in groups]
    entities += [
        {
            "uid": {"type": "Region", "id": region.id},
            "attrs": {},
            "parents": [{"type": "RegionSet", "id": g} for g in sorted(members.get(region.id, ()))],
        }
        for region in router.policy.registry
    ]
    return "\n".join(statements), entities


def opa_input(router: Router, dataset_id: str, op: Operation, region: str) -> dict:
    """OPA's input for a question: the effective attributes Domicile computed (OPA has no lineage)."""
    attrs = router.explain(dataset_id).attributes
    return {
        "labels": sorted(attrs.classifications),
        "origins": sorted(attrs.origins),
        "operation": op.value,
        "region": region,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- client process ------------------------------------------------------------------------


async def client_main(args) -> None:
    loaded = json.loads(Path(args.questions).read_text())
    if args.client.startswith("opa"):
        result = await opa_client(args, loaded)
    else:
        result = await grpc_client(args, loaded)
    print(json.dumps(result))


async def grpc_client(args, loaded) -> dict:
    ops = {"store": residency_pb2.OPERATION_STORE, "process": residency_pb2.OPERATION_PROCESS}
    requests = [residency_pb2.DecideRequest(dataset_id=d, operation=ops[op], region=r) for d, op, r in loaded]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{args.port}") as channel:
        stub = residency_pb2_grpc.ResidencyServiceStub(channel)
        if args.client in ("fixed", "max"):
            for request in requests[:2000]:  # warm up the connection and both processes
                await stub.Decide(request)
        if args.client == "fixed":
            return await fixed_rate(lambda i: stub.Decide(requests[i % len(requests)]), args.rate, args.seconds)
        if args.client == "max":
            return await max_rate(lambda i: stub.Decide(requests[i % len(requests)]), args.concurrency, args.seconds)
        # compact: as the client library asks; sets: allowed regions shared, reasons in full.
        batches = [
            residency_pb2.BatchDecideRequest(
                requests=requests[i : i + 1000],
                shared_region_sets=args.answer_shape != "full",
                shared_reason_texts=args.answer_shape == "compact",
            )
            for i in range(0, len(requests), 1000)
        ]
        if args.client == "warm":  # every question once, untimed
            stale = 0
            for batch in batches:
                stale += is_stale_answer(await stub.BatchDecide(batch))
            return {"stale": stale}
        for batch in batches[:2]:  # warm up the connection and both processes
            await stub.BatchDecide(batch)
        # `concurrency` calls in flight, each answer parsed: while this process builds the next
        # request and parses an answer, the server works on another call. The server's CPU time
        # and this process's are read around the timed calls only.
        done = stale = 0
        server_cpu, client_cpu = process_cpu_seconds(args.server_pid), time.process_time()
        start = time.perf_counter()

        async def caller() -> None:
            nonlocal done, stale
            while time.perf_counter() - start < args.seconds:
                index, done = done, done + 1
                batch = batches[index % len(batches)]
                response = await stub.BatchDecide(batch)
                assert len(response.decisions) == len(batch.requests)
                stale += is_stale_answer(response)

        await asyncio.gather(*(caller() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - start
        server_cpu, client_cpu = process_cpu_seconds(args.server_pid) - server_cpu, time.process_time() - client_cpu
        decisions = sum(len(batches[i % len(batches)].requests) for i in range(done))
        return {
            "throughput": decisions / elapsed,
            "server_cpu_us": server_cpu / decisions * 1e6,
            "client_cpu_us": client_cpu / decisions * 1e6,
            "stale": stale,
        }


def is_stale_answer(response: residency_pb2.BatchDecideResponse) -> bool:
    """Whether a BatchDecide answer failed closed for a stale catalog (a router's freshness
    holds for a whole batch, so its first decision tells)."""
    first = response.decisions[0] if response.decisions else None
    if not (first and first.reasons):
        return False
    reason = first.reasons[0]
    text = response.reason_texts[reason.text] if response.reason_texts else reason
    return text.code == ReasonCode.STALE_CATALOG.value


async def opa_client(args, inputs) -> dict:
    import aiohttp

    url = f"http://127.0.0.1:{args.port}/v1/data/residency/allow"
    bodies = [json.dumps({"input": i}).encode() for i in inputs]
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # OPA needs a moment to listen
            try:
                async with session.post(url, data=bodies[0]) as response:
                    await response.read()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)

        async def call(i: int) -> None:
            async with session.post(
                url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
            ) as r:
                await r.read()

        for i in range(2000):
            await call(i)
        return await fixed_rate(call, args.rate, args.seconds)


async def fixed_rate(call, rate: int, seconds: float) -> dict:
    """Open loop: request i is sent at start + i/rate whatever the earlier answers do;
    latency is measured from the scheduled send time (no coordinated omission)."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    details: dict[str, int] = {}  # each distinct error's own message and details, counted
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, scheduled: float) -> None:
        try:
            await call(i)
        except Exception as exc:  # counted and reported: a failed call has no latency
            name = type(exc).__name__ if not hasattr(exc, "code") else str(exc.code())
            errors[name] = errors.get(name, 0) + 1
            text = error_text(exc)
            details[text] = details.get(text, 0) + 1
            return
        latencies.append(loop.time() - scheduled)

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, scheduled)))
    await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "rate": rate,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "achieved_rate": total / (loop.time() - start),
        "errors": errors,
        "error_details": details,
    }


def error_text(exc: Exception) -> str:
    """A failed call's code, message and ErrorInfo (reason and metadata), for a report that
    says why a server refused."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return repr(exc)
    text = f"{exc.code().name}: {exc.details()}"
    status = rpc_status.from_call(exc)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            text += f" [{info.reason} {dict(info.metadata)}]"
    return text


async def max_rate(call, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call(next(counter))
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"throughput": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000}


# ---- main ----------------------------------------------------------------------------------


async def main(args) -> None:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="router-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        await run(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


async def run(args, workdir: Path) -> None:
    report = Report()
    print(
        f"router benchmark: {args.datasets:,} datasets, policy {POLICY.name}, workdir {workdir}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    report.line("CPU probe at the start (lower is faster)", cpu_probe(), "ms")
    started = time.perf_counter()
    store_uri, store, ids, edge_count = await synthetic_catalog(workdir, args.datasets, args.seed)
    try:
        print(
            f"  catalog: {len(ids):,} datasets, {edge_count:,} edges, lineage depth up to {LEVELS - 1} "
            f"(generated and imported in {time.perf_counter() - started:.1f}s)",
            flush=True,
        )
        # The in-process loops run decisions back to back and yield to the event loop only
        # between calls or batches, so the catalog poll runs late; a generous staleness bound
        # keeps those answers real decisions (`check_fresh` refuses fail-closed answers).
        settings = load_settings(
            store=store_uri,
            data_dir=workdir,
            policy=POLICY,
            insecure=True,
            http_listen="",
            router={"staleness_bound_seconds": 60, "durable_decision_log": False},
            # The servicer phase answers 10,000 decisions per call (~13 MB here): within the
            # largest message a server may be configured to send, not the 4 MiB default.
            max_message_bytes=64 * 2**20,
        )
        app = App(settings=settings, store=store)

        print("start-up", flush=True)
        gc.collect()
        rss_before = rss_bytes()
        start, cpu_start = time.perf_counter(), time.process_time()
        router = app.router = await Router.start(app)
        try:
            report.line("Router.start (snapshot read + index build)", time.perf_counter() - start, "s", "start_seconds")
            report.line("  CPU time (all threads)", time.process_time() - cpu_start, "s", "start_seconds")
            gc.collect()
            report.line("RSS growth over Router.start", (rss_bytes() - rss_before) / 2**20, "MiB")
            if args.unary_only or args.batch_only:
                await bench_rounds(app, ids, report, args, workdir)
                print(json.dumps({"figures": report.figures}, indent=1))  # the rounds' figures too
                return
            await measure_index_memory(store, router, report)
            await bench_in_process(app, ids, report, args.seed)
            if args.in_process_only:
                return
            await router.close()
            app.settings.router.durable_decision_log = True
            router = app.router = await Router.start(app)
            await bench_in_process_durable(app, ids, report, args)
            await bench_grpc(app, ids, report, args, workdir)
            if args.opa:
                await bench_opa(Path(args.opa), ids, router, report, args, workdir)
            if args.cedar:
                await bench_cedar(Path(args.cedar), ids, router, report, args, workdir)
        finally:
            await router.close()
    finally:
        await store.close()
    report.line("CPU probe at the end (lower is faster)", cpu_probe(), "ms")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(json.dumps({"figures": report.figures}, indent=1))


async def measure_index_memory(store, router: Router, report: Report) -> None:
    """The index alone, built again in a second engine from the store's residency snapshot
    already read: build time and process RSS growth (the engine's memory is not Python's, so
    RSS, not tracemalloc); then single lineage edges added to it, each timed."""
    snapshot = await store.residency_snapshot()
    gc.collect()
    rss_before = rss_bytes()
    start = time.perf_counter()
    engine = Engine(router.policy)
    engine.load(snapshot)
    report.line("index build from the snapshot read", time.perf_counter() - start, "s", "index_build_seconds")
    datasets = len(snapshot.datasets) + len(snapshot.placeholders)
    edges = len(snapshot.edges)
    del snapshot
    gc.collect()
    grown = rss_bytes() - rss_before
    report.line(f"  RSS growth ({datasets:,} datasets, {edges:,} edges)", grown / 2**20, "MiB")
    report.line("  per dataset", grown / max(1, datasets), "bytes", "index_bytes_per_dataset")
    rng = random.Random(5)
    sample = [d.id for d in (await store.residency_snapshot()).datasets]
    timings = []
    for n in range(2000):
        source, target = rng.choice(sample), rng.choice(sample)
        change = (source, target, f"bench/added-{n}")
        start_ns = time.perf_counter_ns()
        engine.add((), [model.Edge(input=change[0], output=change[1], job=change[2], run_id="bench")])
        timings.append(time.perf_counter_ns() - start_ns)
    timings.sort()
    report.line("one lineage edge added: p50", percentile(timings, 0.50) / 1e6, "ms")
    report.line("one lineage edge added: p99", percentile(timings, 0.99) / 1e6, "ms", "edge_added_p99_ms")
    del engine


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="requests/s of the fixed-rate phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fixed-rate phase")
    parser.add_argument("--concurrency", type=int, default=32, help="callers of the max-throughput phase")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--in-process-only",
        action="store_true",
        help="stop after the in-process phase with the non-durable log (quick before/after comparisons)",
    )
    parser.add_argument(
        "--unary-only",
        action="store_true",
        help="only the unary fixed-rate phase, driven by --loadgen (required), in --rounds rounds: "
        "durable log, non-durable log, the canned-answer floor",
    )
    parser.add_argument(
        "--batch-only",
        action="store_true",
        help="only BatchDecide over gRPC (1,000 per call, 2 in flight, compact answers), in --rounds "
        "rounds: durable log, non-durable log",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --unary-only / --batch-only")
    parser.add_argument(
        "--base-python",
        help="with --unary-only / --batch-only: another build's interpreter (a worktree's .venv/bin/python) whose "
        "`domicile serve` runs beside this one's in every round, alternating (A/B)",
    )
    parser.add_argument("--workdir", help="keep the catalog and logs here (default: a temporary directory)")
    parser.add_argument("--opa", help="path of an `opa` binary to compare with (tools/install-opa.sh)")
    parser.add_argument(
        "--cedar",
        help="path of the Cedar harness built from bench/cedar by tools/install-cedar.sh "
        "(.tools/cedar-target/release/domicile-cedar-bench)",
    )
    parser.add_argument(
        "--loadgen",
        help="path of bench/loadgen built (tools/install-loadgen.sh): the fixed-rate "
        "phase again, driven by a light Go client",
    )
    parser.add_argument(
        "--ghz",
        help="path of a `ghz` binary (tools/install-ghz.sh): the fixed-rate phase again, driven by a Go load generator",
    )
    # Internal: the client process.
    parser.add_argument("--client", choices=["fixed", "max", "batch", "warm", "opa-fixed"], help=argparse.SUPPRESS)
    parser.add_argument("--serve-canned", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--questions", help=argparse.SUPPRESS)
    parser.add_argument(
        "--answer-shape", choices=["compact", "sets", "full"], default="compact", help=argparse.SUPPRESS
    )
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.unary_only and not args.loadgen:
        parser.error("--unary-only needs --loadgen")
    if args.unary_only and args.batch_only:
        parser.error("--unary-only and --batch-only exclude each other")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if arguments.serve_canned:
        asyncio.run(serve_canned(arguments.serve_canned))
    else:
        asyncio.run(client_main(arguments) if arguments.client else main(arguments))
