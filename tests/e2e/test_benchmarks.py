"""The router benchmark still runs, end to end, at a small size (it is not timed here: the
figures of a 1,000-dataset catalog on a test machine mean nothing; docs/benchmarks.md has the
real ones)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


def run_benchmark(script: str, *args: str) -> tuple[str, dict[str, float]]:
    """`bench/<script>` run with `args`: its output and the figures it printed as JSON."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=900,  # generous: only a hang misses it (the machine may be shared and slow)
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, json.loads(result.stdout[result.stdout.index('{\n "figures"') :])["figures"]


def test_the_router_benchmark_runs_and_reports_every_phase(tmp_path: Path) -> None:
    _, figures = run_benchmark("router_bench.py", "--datasets", "1000", "--seconds", "1", "--workdir", str(tmp_path))
    for name in (
        "Router.start (snapshot read + index build)",
        "Router.decide p50 (warm)",
        "Router.batch_decide (10,000 per call, logged, every Decision read)",
        "BatchDecide servicer (parsing, validation, wire encoding, logged), 1 in flight",
        "BatchDecide servicer (parsing, validation, wire encoding, logged), 2 in flight",
        "decision-log entry per decision (BatchDecide's)",
        "Router.decide p50, durable log, 1 caller",
        "Router.decide, durable log, 32 callers",
        "Router.batch_decide (10,000 per call, durable log)",
        "BatchDecide servicer, durable log, 2 in flight",
        "BatchDecide servicer, durable log, 4 in flight",
        "unary Decide p99 at 1,000 req/s",
        "unary Decide max throughput (32 callers)",
        "BatchDecide over gRPC (1,000 per call, 1 in flight, compact answers)",
        "BatchDecide over gRPC (1,000 per call, 2 in flight, compact answers)",
        "BatchDecide over gRPC (1,000 per call, 2 in flight, answers listing allowed regions per decision)",
        "unary Decide p99 at 1,000 req/s [non-durable log]",
        "BatchDecide over gRPC (1,000 per call, 2 in flight, compact answers) [non-durable log]",
        "`domicile serve` ready (process start, imports, Router.start)",
        "floor (Python client): unary Decide p99 at 1,000 req/s",  # the canned-answer server's process
        "index build from the snapshot read",
        "one lineage edge added: p99",
    ):
        assert figures[name] > 0, name


def test_the_router_benchmarks_batch_rounds_alternate_two_builds(tmp_path: Path) -> None:
    # This interpreter stands in for the base build: the rounds run both, each in its turn.
    stdout, figures = run_benchmark(
        "router_bench.py",
        *("--batch-only", "--rounds", "2", "--datasets", "1000", "--seconds", "1", "--workdir", str(tmp_path)),
        *("--base-python", sys.executable),
    )
    for build in ("this", "base"):
        for mode in ("durable", "non-durable"):
            rounds = re.findall(rf"^  {build} {mode}: [\d,]+ decisions/s", stdout, re.MULTILINE)
            assert len(rounds) == 2, (build, mode)
            assert figures[f"  {build} {mode}: server CPU per decision"] > 0
            assert any(name.startswith(f"{build} {mode}: BatchDecide over gRPC (each round: ") for name in figures)


def test_the_access_benchmark_runs_and_reports_every_figure() -> None:
    _, figures = run_benchmark(
        "access_bench.py",
        *("--events", "80", "--rounds", "1", "--decide-calls", "2", "--actors", "300", "--pattern-calls", "5"),
    )
    for name in (
        "OpenLineage HTTP ingest (events/s), access on",
        "RecordLineage over gRPC (calls/s), access on",
        "BatchDecide over gRPC (decisions/s), access on",
        "GetAccessPatterns p99 ms (300 actors)",
    ):
        assert figures[name] > 0, name


def test_the_access_benchmarks_router_phase_runs_three_servers_in_windows() -> None:
    stdout, figures = run_benchmark(
        "access_bench.py",
        *("--router-datasets", "1000", "--router-windows", "4", "--router-window-seconds", "0.3"),
        *("--router-sets", "1"),
    )
    for server in ("off A", "on", "off B"):
        assert f"set 1 access {server}: " in stdout, stdout
    cost = "BatchDecide over gRPC (router catalog), cost from throughput, median of cycles %"
    low, high = (
        figures["BatchDecide over gRPC (router catalog), cost from throughput, 90% interval low %"],
        figures["BatchDecide over gRPC (router catalog), cost from throughput, 90% interval high %"],
    )
    # Window figures on a shared machine can be anything: only their form is checked.
    assert math.isfinite(low) and low <= figures[cost] <= high and math.isfinite(high)
    total = "BatchDecide over gRPC (router catalog), cost in all (windows and periodic work) %"
    total_low, total_high = (
        figures["BatchDecide over gRPC (router catalog), cost in all, 90% interval low %"],
        figures["BatchDecide over gRPC (router catalog), cost in all, 90% interval high %"],
    )
    # (a resampled interval of a median combined with a pooled share need not hold the whole
    # run's figure when there are four cycles)
    assert math.isfinite(total_low) and total_low <= total_high and math.isfinite(figures[total])
    for name in (
        "BatchDecide over gRPC (router catalog), control off B against off A, median %",
        "BatchDecide over gRPC (router catalog), cost from CPU per decision, median of cycles %",
        "BatchDecide over gRPC (router catalog), cost from all windows' throughput %",
        "BatchDecide over gRPC (router catalog), cost from all the servers' CPU %",
        "BatchDecide over gRPC (router catalog), periodic work, share of a core beyond the off servers' %",
    ):
        assert math.isfinite(figures[name]), name
