"""fsync / fdatasync latency of small appends, as the decision log's writer makes them.

    python bench/fsync_probe.py [--dir DIR] [--bytes 600] [--gap-ms 1] [--count 2000]
                                [--sync fsync,fdatasync,o_dsync]

Appends --bytes to a new file in --dir (default: the system's temporary directory; put it on
the disk the decision log uses), syncs, sleeps --gap-ms, --count times; prints the latency of
the append and its sync, percentiles. `o_dsync` is the decision log's way: the file opened
with O_DSYNC, the append synced by the write itself. With several --sync ways, each has its own
file and they take turns, append by append, so that they meet the same moments of the disk (an
A/B in one run). A durable Decide waits for up to two of these (the commit in progress, then
its own), so their p99 bounds how close a durable answer can come to one that does not write.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

SYNCS = {"fsync": os.fsync, "fdatasync": os.fdatasync, "o_dsync": None}  # None: the write syncs (O_DSYNC)


def probe_file(name: str, directory: str | None) -> tuple[int, str]:
    """A new file in `directory` for the `name` way to sync: its descriptor and path."""
    fd, path = tempfile.mkstemp(prefix=f"{name}-probe-", dir=directory)
    if SYNCS[name] is None:  # opened again with O_DSYNC: fcntl's F_SETFL cannot set it
        os.close(fd)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_DSYNC)
    return fd, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--bytes", type=int, default=600)
    parser.add_argument("--gap-ms", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--sync", default="fsync", help="comma-separated: fsync, fdatasync, o_dsync (taking turns)")
    args = parser.parse_args()
    names = args.sync.split(",")
    if not names or any(name not in SYNCS for name in names) or len(set(names)) < len(names):
        parser.error(f"--sync: one or more of {', '.join(SYNCS)}, each once")
    line = b"x" * (args.bytes - 1) + b"\n"
    files = [probe_file(name, args.dir) for name in names]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    try:
        for _ in range(args.count):
            for name, (fd, _path) in zip(names, files, strict=True):
                start = time.perf_counter()
                os.write(fd, line)
                sync = SYNCS[name]
                if sync is not None:
                    sync(fd)
                latencies[name].append(time.perf_counter() - start)
                if args.gap_ms:
                    time.sleep(args.gap_ms / 1000)
    finally:
        for fd, path in files:
            os.close(fd)
            os.unlink(path)
    for name in names:
        timed = sorted(latencies[name])

        def ms(p: float, timed: list[float] = timed) -> float:
            return timed[min(len(timed) - 1, int(p * len(timed)))] * 1000

        print(
            f"{name}: a {args.bytes}-byte append and its sync, {args.count}x, {args.gap_ms:g} ms apart: p50 {ms(0.5):.2f} "
            f"p90 {ms(0.9):.2f} p99 {ms(0.99):.2f} p99.9 {ms(0.999):.2f} max {timed[-1] * 1000:.2f} ms "
            f"(load average {os.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
