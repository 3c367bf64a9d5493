"""Overload: what callers get when they send more than the server can answer.

Runs `domicile serve --insecure --demo` (the demo catalog, the example policy) in its own
process and drives unary Decide with bench/loadgen (Go, open loop: calls leave on schedule
whatever the server does; `tools/install-loadgen.sh` builds it):

1. a ramp of rising rates against a server without load shedding: the most calls it answered
   OK per second is the maximum throughput (the server's own, not one a shedder lowered);
2. then against the server measured: 1,000 req/s, the accepted calls' p99 -- the reference;
3. twice the maximum throughput (`--overload-factor`): how many calls were refused, how many refusals carry
   a google.rpc.RetryInfo (load shedding's RESOURCE_EXHAUSTED) and how many failed otherwise
   (CANCELLED or DEADLINE_EXCEEDED: the caller learns nothing), and the accepted calls' p99.

Beside each phase: the server's CPU time per call (all its threads, /proc), whatever became of
the call -- what a refusal costs against an answer -- and the median latency of each kind of
failure (one that came at once, or after waiting in a queue).

The targets (issue "Operable in production"): at twice the maximum throughput 100% of
refusals carry RetryInfo, and the accepted calls' p99 stays within 2x its value at 1,000
req/s. `--no-shedding` runs the same with load shedding off, for comparison.

    tools/install-loadgen.sh
    DOMICILE_LOAD_SHEDDING__MIN_EVENT_LOOP_IDLE_SHARE=0.25 \
        .venv/bin/python bench/overload_bench.py --loadgen .tools/bin/loadgen
    .venv/bin/python bench/overload_bench.py --loadgen .tools/bin/loadgen --no-shedding
    # A/B against another build, both at a maximum throughput measured before:
    .venv/bin/python bench/overload_bench.py --loadgen .tools/bin/loadgen --max-throughput 2200 \
        --server-python ../other/.venv/bin/python

Results go to docs/benchmarks.md with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path

from router_bench import ServerProcess, run_json, serve_argv, server_process

from domicile.demo import DATASETS
from domicile.v1 import residency_pb2

METHODS = ("/domicile.v1.ResidencyService/Decide", "/domicile.v1.ResidencyService/BatchDecide")
WARMUP_SECONDS = 1.0
REGIONS = ("aws:eu-central-1", "aws:us-east-1", "aws:ap-south-1", "gcp:europe-west3", "azure:centralindia")


def write_requests(path: Path, batch: int) -> None:
    """Every demo dataset x region x operation as a DecideRequest (or, with `batch`, that many
    of them in each BatchDecideRequest), as loadgen's length-prefixed request file."""
    questions = [
        residency_pb2.DecideRequest(dataset_id=dataset.id, operation=operation, region=region)
        for dataset in DATASETS
        for region in REGIONS
        for operation in (residency_pb2.OPERATION_STORE, residency_pb2.OPERATION_PROCESS)
    ]
    if batch:
        messages = [
            residency_pb2.BatchDecideRequest(requests=[questions[(i + j) % len(questions)] for j in range(batch)])
            for i in range(len(questions))
        ]
    else:
        messages = questions
    with path.open("wb") as out:
        for message in messages:
            data = message.SerializeToString()
            out.write(len(data).to_bytes(4, "big") + data)


async def drive(loadgen: Path, server: ServerProcess, requests: Path, rate: int, seconds: float) -> dict:
    """One phase at `rate`; adds the server's CPU time per call (`server_cpu_us_per_call`)."""
    cpu = server.cpu_seconds()
    result = await run_json(
        "loadgen",
        str(loadgen),
        "-target",
        f"127.0.0.1:{server.port}",
        "-requests",
        str(requests),
        "-method",
        METHODS[bool(args.batch)],
        "-rate",
        str(rate),
        "-duration",
        f"{seconds:g}s",
        "-warmup",
        f"{WARMUP_SECONDS:g}s",
        "-timeout",
        f"{args.timeout:g}s",
    )
    calls = result["count"] * (1 + WARMUP_SECONDS / seconds)  # the warm-up's calls used CPU too
    result["server_cpu_us_per_call"] = (server.cpu_seconds() - cpu) / calls * 1e6
    return result


def summary(label: str, rate: int, result: dict) -> None:
    failed = sum(result["errors"].values())
    ok_rate = result["ok"] / result["count"] * result["achieved_rate"]
    failures = ", ".join(
        f"{code} {count:,} (p50 {result['error_p50_ms'][code]:,.1f} ms)" for code, count in result["errors"].items()
    )
    print(
        f"{label:>22} {rate:>6,} req/s: OK {result['ok']:>6,} ({ok_rate:7,.0f}/s)  "
        f"p99 OK {result['ok_p99_ms']:8.2f} ms  refused {failed:>6,} "
        f"(RetryInfo {result['retry_info']:>6,})  server CPU/call {result['server_cpu_us_per_call']:5.0f} us  "
        f"failed: {failures or 'none'}",
        flush=True,
    )


def serve(workdir: Path, *, shedding: bool) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """`domicile serve --insecure --demo` on a new catalog in `workdir`."""
    os.environ["DOMICILE_LOAD_SHEDDING__ENABLED"] = "true" if shedding else "false"
    argv = serve_argv(f"sqlite:///{workdir / 'catalog.db'}", workdir / "server", "--demo")
    if args.server_python:
        argv[0] = args.server_python
    workdir.mkdir()
    return server_process("domicile serve", argv, workdir / "server.log")


async def main() -> None:
    loadgen = Path(args.loadgen)
    with tempfile.TemporaryDirectory(prefix="overload-bench-") as tmp:
        workdir = Path(tmp)
        requests = workdir / "requests.bin"
        write_requests(requests, args.batch)
        os.environ["DOMICILE_ACCESS_LOG"] = "false" if args.no_access_log else "true"
        what = f"BatchDecide of {args.batch}" if args.batch else "Decide"
        print(f"{what}; load shedding {'off' if args.no_shedding else 'on'}; calls time out after {args.timeout:g} s")
        # The maximum throughput is the server's own, measured without load shedding: a
        # shedder refusing early would otherwise lower the bar it is measured against.
        best = float(args.max_throughput)
        if not best:
            async with serve(workdir / "capacity", shedding=False) as server:
                await drive(loadgen, server, requests, 500, 2)  # warm-up
                for rate in args.ramp:
                    result = await drive(loadgen, server, requests, rate, args.ramp_seconds)
                    summary("ramp, no shedding", rate, result)
                    best = max(best, result["ok"] / result["count"] * result["achieved_rate"])
                    await asyncio.sleep(2)  # let any backlog drain
        async with serve(workdir / "measured", shedding=not args.no_shedding) as server:
            await drive(loadgen, server, requests, 500, 2)  # warm-up
            reference = await drive(loadgen, server, requests, args.reference_rate, args.seconds)
            summary("reference", args.reference_rate, reference)
            overload = int(args.overload_factor * best)
            result = await drive(loadgen, server, requests, overload, args.seconds)
            summary(f"{args.overload_factor:g}x max throughput", overload, result)
        refused = sum(result["errors"].values())
        with_retry = result["retry_info"]
        print(
            json.dumps(
                {
                    "max_throughput": round(best),
                    "reference_ok_p99_ms": reference["ok_p99_ms"],
                    "overload_factor": args.overload_factor,
                    "overload_rate": overload,
                    "overload_ok": result["ok"],
                    "overload_ok_p99_ms": result["ok_p99_ms"],
                    "overload_refused": refused,
                    "overload_refused_with_retry_info": with_retry,
                    "overload_errors": result["errors"],
                    "reference_server_cpu_us_per_call": round(reference["server_cpu_us_per_call"]),
                    "overload_server_cpu_us_per_call": round(result["server_cpu_us_per_call"]),
                    "target_retry_info_met": refused == with_retry,
                    "target_p99_met": result["ok"] > 0 and result["ok_p99_ms"] <= 2 * reference["ok_p99_ms"],
                }
            ),
            flush=True,
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loadgen", required=True, help="bench/loadgen binary (tools/install-loadgen.sh)")
    parser.add_argument("--seconds", type=float, default=10.0, help="reference and overload phases")
    parser.add_argument("--reference-rate", type=int, default=1000, help="calls per second of the reference")
    parser.add_argument("--ramp", type=int, nargs="+", default=[1500, 2000, 2500, 3000, 3500, 4000])
    parser.add_argument("--ramp-seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="each call's deadline")
    parser.add_argument(
        "--overload-factor", type=float, default=2.0, help="the last phase's rate, times the maximum throughput"
    )
    parser.add_argument("--no-shedding", action="store_true", help="load_shedding.enabled: false")
    parser.add_argument("--batch", type=int, default=0, help="BatchDecide with this many questions per call")
    parser.add_argument("--no-access-log", action="store_true", help="access_log: false")
    parser.add_argument(
        "--max-throughput",
        type=int,
        default=0,
        help="skip the ramp and take this maximum throughput (one measured before: A/B runs share it)",
    )
    parser.add_argument(
        "--server-python", help="the interpreter that runs the servers (another build's, for A/B); default: this one"
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main())
