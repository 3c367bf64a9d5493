"""A durable decision log's answer latency alone: append + flush at a fixed rate of random arrivals.

    python bench/decision_log_probe.py [--dir DIR] [--rate 1000] [--seconds 5] [--phases]

Opens a `DecisionLog` with its defaults (durable) in a new directory under --dir (default: the
system's temporary directory; put it on the disk the decision log uses), then --rate decisions
a second arrive at random (Poisson) for --seconds, each appended and awaited (`flush`) as a
durable Decide does; prints the latency from each arrival to its release. What a unary Decide
waits for on the log, without gRPC or the engine: run it with two builds in turn for an A/B.

With --phases, each wait is taken apart (timestamps from wrappers around the writer's steps,
in this process only): until the writer took the decision (the commit in progress, the
writer's wake-up), the commit's steps (render and chain, the write -- synced as it is written,
O_DSYNC --, until its waiters are released) and from the release until the waiting coroutine
runs again (the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from router_bench import percentile

from domicile.appendfile import AppendOnlyFile
from domicile.router.decision_log import CheckpointSigner, DecisionLog, writer
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

REASON = Reason(ReasonCode.RULE_DENIED, "EU personal data stays in the EU", "gdpr", "GDPR Art. 44", ("s3://a",))


def decision(n: int) -> Decision:
    return Decision(
        f"probe:{n:010x}",
        Outcome.DENY,
        f"s3://bank-eu/customers-{n % 1000}",
        Operation.STORE,
        "aws:us-east-1",
        ("aws:eu-central-1", "aws:eu-west-1"),
        (REASON,),
        "2026.11.1",
        7,
        datetime.now(UTC),
        "spiffe://bank/pipeline",
    )


class Phases:
    """Timestamps along the durable path (see the module docstring), from wrappers around the
    writer's steps; the writer thread's events in the order it made them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []  # (step, time) on the writer thread
        self.flushes: list[tuple[float, float]] = []  # (asked, resumed) per awaited flush
        self.settled: list[float] = []  # when each release ran on the event loop

    def install(self) -> None:
        events = self.events

        def after(step: str, function):
            @functools.wraps(function)
            def wrapped(*args, **kwargs):
                result = function(*args, **kwargs)
                events.append((step, time.perf_counter()))
                return result

            return wrapped

        def before_and_after(function):
            @functools.wraps(function)
            def wrapped(*args, **kwargs):
                events.append(("write", time.perf_counter()))
                result = function(*args, **kwargs)
                events.append(("written", time.perf_counter()))
                return result

            return wrapped

        settle = writer._settle

        def settled(outcomes):
            self.settled.append(time.perf_counter())
            settle(outcomes)

        DecisionLog._take = after("taken", DecisionLog._take)
        AppendOnlyFile.write_pieces = before_and_after(AppendOnlyFile.write_pieces)
        DecisionLog._release_waiters = after("released", DecisionLog._release_waiters)
        writer._settle = settled

    def report(self) -> None:
        commits = []  # (taken, write, written, released) of each commit that took work
        current: dict[str, float] = {}
        for step, when in self.events:
            if step == "taken":
                current = {"taken": when}
            elif current and step not in current:
                current[step] = when
                if step == "released" and len(current) == 4:
                    commits.append(tuple(current[key] for key in ("taken", "write", "written", "released")))
                    current = {}
        takes = [commit[0] for commit in commits]
        until_taken = []
        for asked, _ in self.flushes:
            index = bisect.bisect_left(takes, asked)
            if index < len(takes):
                until_taken.append(takes[index] - asked)
        settled = sorted(self.settled)
        resumed = []
        for _, back in self.flushes:
            index = bisect.bisect_right(settled, back) - 1
            if index >= 0:
                resumed.append(back - settled[index])
        print(f"  {len(self.flushes)} flushes, {len(commits)} commits")
        show("flush: asked -> resumed", [back - asked for asked, back in self.flushes])
        show("  asked -> taken by a commit", until_taken)
        show("  commit: taken -> write (render, chain)", [c[1] - c[0] for c in commits])
        show("  commit: write, synced", [c[2] - c[1] for c in commits])
        show("  commit: synced -> waiters released", [c[3] - c[2] for c in commits])
        show("  released on the event loop -> resumed", resumed)


def ms(timed: list[float], p: float) -> float:
    """The `p` quantile of sorted seconds `timed`, in milliseconds."""
    return percentile(timed, p) * 1000


def show(what: str, seconds: list[float]) -> None:
    if not seconds:
        return
    t = sorted(seconds)
    print(f"  {what:42s} p50 {ms(t, 0.5):6.3f} p90 {ms(t, 0.9):6.3f} p99 {ms(t, 0.99):6.3f} max {t[-1] * 1000:7.3f} ms")


async def probe(directory: Path, rate: float, seconds: float, phases: Phases | None) -> list[float]:
    log = await DecisionLog.open(directory / "decisions.jsonl", signer=CheckpointSigner(Ed25519PrivateKey.generate()))
    latencies: list[float] = []

    async def answer(n: int, arrived: float) -> None:
        log.append(decision(n))
        asked = time.perf_counter()
        await log.flush()
        resumed = time.perf_counter()
        latencies.append(resumed - arrived)
        if phases is not None:
            phases.flushes.append((asked, resumed))

    try:
        tasks = []
        start = arrival = time.perf_counter()
        while arrival - start < seconds:
            arrival += random.expovariate(rate)
            delay = arrival - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(answer(len(tasks) + 1, arrival)))
        await asyncio.gather(*tasks)
    finally:
        await log.close()
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--phases", action="store_true", help="take each wait apart (see the module docstring)")
    args = parser.parse_args()
    phases = Phases() if args.phases else None
    if phases is not None:
        phases.install()
    directory = Path(tempfile.mkdtemp(prefix="decision-log-probe-", dir=args.dir))
    try:
        latencies = asyncio.run(probe(directory, args.rate, args.seconds, phases))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    t = latencies
    print(
        f"durable append + flush, {len(t)} at {args.rate:g}/s: p50 {ms(t, 0.5):.2f} p90 {ms(t, 0.9):.2f} "
        f"p99 {ms(t, 0.99):.2f} max {t[-1] * 1000:.2f} ms (load average {os.getloadavg()[0]:.2f})"
    )
    if phases is not None:
        phases.report()


if __name__ == "__main__":
    main()
