"""A durable decision log's answer latency alone: append + flush at a fixed rate of random arrivals.

    python bench/decision_log_probe.py [--dir DIR] [--rate 1000] [--seconds 5]

Opens a `DecisionLog` with its defaults (durable) in a new directory under --dir (default: the
system's temporary directory; put it on the disk the decision log uses), then --rate decisions
a second arrive at random (Poisson) for --seconds, each appended and awaited (`flush`) as a
durable Decide does; prints the latency from each arrival to its release. What a unary Decide
waits for on the log, without gRPC or the engine: run it with two builds in turn for an A/B.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domicile.router.decision_log import CheckpointSigner, DecisionLog
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


async def probe(directory: Path, rate: float, seconds: float) -> list[float]:
    log = await DecisionLog.open(directory / "decisions.jsonl", signer=CheckpointSigner(Ed25519PrivateKey.generate()))
    latencies: list[float] = []

    async def answer(n: int, arrived: float) -> None:
        log.append(decision(n))
        await log.flush()
        latencies.append(time.perf_counter() - arrived)

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
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="decision-log-probe-", dir=args.dir))
    try:
        latencies = asyncio.run(probe(directory, args.rate, args.seconds))
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    def ms(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(
        f"durable append + flush, {len(latencies)} at {args.rate:g}/s: p50 {ms(0.5):.2f} p90 {ms(0.9):.2f} "
        f"p99 {ms(0.99):.2f} max {latencies[-1] * 1000:.2f} ms (load average {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
