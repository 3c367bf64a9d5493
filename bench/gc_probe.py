"""`domicile` with every garbage collection recorded: a diagnosis aid for latency stalls.

    .venv/bin/python bench/gc_probe.py OUT.json serve --insecure ...     # as `domicile serve ...`
    .venv/bin/python bench/gc_probe.py --unreachable OUT.json serve ...

Runs the `domicile` command line with the arguments after OUT.json and, once a second, writes
to OUT.json every collection so far: `[unix time at its end, generation, seconds, objects
collected]`. With `--unreachable` it keeps what each collection finds unreachable instead of
freeing it (`gc.DEBUG_SAVEALL`), and writes once a second how many such objects there were by
type -- the reference cycles a workload makes (it costs memory and time: not for timing).
Drive the server as usual (bench/loadgen, bench/router_bench.py's clients) and read the
collections within the window measured. Not part of the product: the server itself never
touches the collector.
"""

from __future__ import annotations

import collections
import gc
import json
import sys
import threading
import time
from pathlib import Path


def _record(out: Path) -> None:
    collections_seen: list[tuple[float, int, float, int]] = []
    started = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections_seen.append(
                (time.time(), info["generation"], time.perf_counter() - started[0], info["collected"])
            )

    gc.callbacks.append(timed)

    def write() -> None:
        while True:
            time.sleep(1)
            out.write_text(json.dumps({"collections": collections_seen}))

    threading.Thread(target=write, daemon=True).start()


def _unreachable(out: Path) -> None:
    gc.set_debug(gc.DEBUG_SAVEALL)
    seconds: list[tuple[float, int, list[tuple[str, int]]]] = []

    def write() -> None:
        while True:
            time.sleep(1)
            gc.collect()
            types = collections.Counter(type(o).__qualname__ for o in gc.garbage)
            gc.garbage.clear()
            seconds.append((time.time(), sum(types.values()), types.most_common(30)))
            out.write_text(json.dumps({"unreachable": seconds}))

    threading.Thread(target=write, daemon=True).start()


def main() -> None:
    args = sys.argv[1:]
    unreachable = bool(args) and args[0] == "--unreachable"
    if unreachable:
        args = args[1:]
    if not args:
        raise SystemExit(__doc__)
    out, sys.argv = Path(args[0]), ["domicile", *args[1:]]
    (_unreachable if unreachable else _record)(out)
    from domicile.cli.main import main as domicile

    domicile()


if __name__ == "__main__":
    main()
