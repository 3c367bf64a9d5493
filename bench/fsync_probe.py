"""fsync latency of small appends, as the decision log's writer makes them.

    python bench/fsync_probe.py [--dir DIR] [--bytes 600] [--gap-ms 1] [--count 2000]

Appends --bytes to a new file in --dir (default: the system's temporary directory; put it on
the disk the decision log uses), fsyncs, sleeps --gap-ms, --count times; prints the fsync
latency's percentiles. A durable Decide waits for up to two of these (the commit in progress,
then its own), so their p99 bounds how close a durable answer can come to one that does not
write.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--bytes", type=int, default=600)
    parser.add_argument("--gap-ms", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    fd, path = tempfile.mkstemp(prefix="fsync-probe-", dir=args.dir)
    line = b"x" * (args.bytes - 1) + b"\n"
    latencies = []
    try:
        for _ in range(args.count):
            os.write(fd, line)
            start = time.perf_counter()
            os.fsync(fd)
            latencies.append(time.perf_counter() - start)
            if args.gap_ms:
                time.sleep(args.gap_ms / 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()

    def ms(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(
        f"fsync after a {args.bytes}-byte append, {args.count}x, {args.gap_ms:g} ms apart: p50 {ms(0.5):.2f} "
        f"p90 {ms(0.9):.2f} p99 {ms(0.99):.2f} p99.9 {ms(0.999):.2f} max {latencies[-1] * 1000:.2f} ms "
        f"(load average {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
