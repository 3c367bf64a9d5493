"""Console benchmark: first paint of the overview, and a 2,000-node lineage graph laid out and
interactive, in headless Chromium against `domicile serve --dev` on a 100,000-dataset catalog.

The catalog is router_bench's synthetic bank (sources labelled like the demo's: EU personal
data, Indian payments, ...; derived datasets over ten levels of lineage), imported into a
temporary SQLite store, plus one lineage cluster of `--graph-nodes` datasets upstream of
`s3://bench-graph/report` within depth 10, which the lineage page shows whole.

Measured, `--runs` times each, in fresh pages of one signed-in browser context:
- overview: `first-contentful-paint` (the shell painted) and the time until the world map and
  the catalog counts are drawn (every panel's data loaded), from navigation start;
- lineage: the time from navigation start until the graph is laid out (in a Web
  Worker) and drawn (the page stamps `data-ready-at` then) and the main thread is free again
  (two animation frames later), and a pan + zoom answered after that.

On a shared machine wall time says more about the neighbours than about the code, so each
page load is also measured in CPU time (/proc, user + system): the browser's (every Chromium
process this benchmark started: the page's renderer does nearly all of it) and the server
process's, while the page loads. Their sum bounds the page's critical path on an otherwise idle
machine (network and I/O waits on loopback are small next to it). Of the browser's, the
lineage page's main thread (the renderer's: scripts, styles, drawing, input; not the layout's
worker) is counted apart: what it spends is how long the page does not answer input.

    .venv/bin/python bench/console_bench.py                 # 100,000 datasets, 2,000-node graph
    .venv/bin/python bench/console_bench.py --datasets 20000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.router_bench import generate, history_records  # noqa: E402
from domicile.catalog.stores.sqlite import SQLiteGraphStore  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

REPORT = "s3://bench-graph/report"
# Generous: on a loaded machine a page may wait minutes for the CPU; the figures say how long.
TIMEOUT_MS = 900_000


def graph_cluster(nodes: int, seed: int) -> list[tuple[str, str, str, str]]:
    """Edges of a layered DAG of `nodes` datasets that all lie upstream of REPORT within depth 10."""
    rng = random.Random(seed)
    layers = 9
    per_layer = max(1, (nodes - 1) // layers)
    levels = [[REPORT]]
    edges = []
    made = 1
    for level in range(1, layers + 1):
        size = per_layer if level < layers else nodes - made
        ids = [f"s3://bench-graph/l{level}-{i:05d}" for i in range(size)]
        made += size
        for i, dataset in enumerate(ids):
            # Each dataset feeds one or two of the level below (towards the report).
            outputs = {levels[-1][i % len(levels[-1])]}
            if rng.random() < 0.5:
                outputs.add(rng.choice(levels[-1]))
            for output in sorted(outputs):
                transform = "aggregate" if rng.random() < 0.05 else ""
                edges.append((dataset, output, f"job-l{level}-{transform or 'copy'}", transform))
        levels.append(ids)
    return edges


async def build_store(path: Path, datasets: int, graph_nodes: int, seed: int) -> None:
    catalog, edges = generate(datasets - graph_nodes, seed)
    cluster = graph_cluster(graph_nodes, seed)
    from domicile.catalog import model

    ids = {d.id for d in catalog}
    for input_id, output, _, _ in cluster:
        for dataset in (input_id, output):
            if dataset not in ids:
                ids.add(dataset)
                catalog.append(
                    model.Dataset.create(
                        dataset, classifications=("PII.CONTACT",), origins=("DE",), locations=("aws:eu-central-1",)
                    )
                )
    store = await SQLiteGraphStore.open(f"sqlite:///{path}")
    try:
        await store.import_history(history_records(catalog, edges + cluster))
    finally:
        await store.close()
    print(f"catalog: {len(catalog)} datasets, {len(edges) + len(cluster)} edges ({len(cluster)} in the graph cluster)")


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "domicile", "serve", "--dev",
            "--store", f"sqlite:///{data_dir / 'catalog.db'}",
            "--policy", str(ROOT / "examples" / "policy.yaml"),
            "--listen", "127.0.0.1:0", "--http-listen", "", "--console-listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), "--log-level", "WARNING",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    url = link = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not link:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        if match := re.search(r"domicile console on (\S+)", line):
            url = match.group(1)
        if match := re.search(r"sign in \(one-time link\): (\S+)", line):
            link = match.group(1)
    if not link:
        process.kill()
        raise SystemExit("the server did not start its console")
    return process, url, link


def process_cpu_ms(pid: int, thread: int | None = None) -> float:
    """CPU time (user + system) a process (or one of its threads) has used so far, in milliseconds."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def browser_cpu_ms(server_pid: int) -> dict[int, float]:
    """CPU time so far of each process this benchmark started, but the server: Playwright's
    driver and Chromium's processes."""
    used: dict[int, float] = {}
    for pid in _browser_processes(server_pid):
        try:
            used[pid] = process_cpu_ms(pid)
        except OSError:
            continue  # gone meanwhile
    return used


def renderer_main_threads_cpu_ms(server_pid: int) -> dict[int, float]:
    """CPU time so far of the main thread (the one that runs the page's scripts, styles and
    draws, and answers input; not its workers) of each of Chromium's renderer processes."""
    used: dict[int, float] = {}
    for pid in _browser_processes(server_pid):
        try:
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                used[pid] = process_cpu_ms(pid, thread=pid)
        except OSError:
            continue  # gone meanwhile
    return used


def _browser_processes(server_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    pending = list(children.get(os.getpid(), []))
    while pending:
        pid = pending.pop()
        if pid == server_pid:
            continue
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two `browser_cpu_ms` snapshots by the processes alive at the second."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def measure(url: str, link: str, runs: int, graph_nodes: int, server_pid: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {
        "fcp": [],
        "overview": [],
        "overview_page_cpu": [],
        "overview_server_cpu": [],
        "lineage": [],
        "lineage_page_cpu": [],
        "lineage_server_cpu": [],
        "lineage_main_thread": [],
        "pan_zoom": [],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto(link)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Where regulated data lives").wait_for(timeout=TIMEOUT_MS)
        page.close()
        for _ in range(runs):
            page = context.new_page()
            server_before, browser_before = process_cpu_ms(server_pid), browser_cpu_ms(server_pid)
            page.goto(url + "/")
            page.wait_for_selector(".map svg path.country", timeout=TIMEOUT_MS)
            page.get_by_text("datasets the router judges").wait_for(timeout=TIMEOUT_MS)
            drawn = page.evaluate("() => performance.now()")
            results["overview_server_cpu"].append(process_cpu_ms(server_pid) - server_before)
            results["overview_page_cpu"].append(cpu_since(browser_before, browser_cpu_ms(server_pid)))
            fcp = page.evaluate(
                "() => new Promise(r => { const e = performance.getEntriesByName('first-contentful-paint')[0];"
                " if (e) r(e.startTime); else new PerformanceObserver(l => r(l.getEntries()[0].startTime))"
                ".observe({type: 'paint', buffered: true}); })"
            )
            results["fcp"].append(fcp)
            results["overview"].append(drawn)
            page.close()

            page = context.new_page()
            server_before, browser_before = process_cpu_ms(server_pid), browser_cpu_ms(server_pid)
            main_before = renderer_main_threads_cpu_ms(server_pid)
            page.goto(f"{url}/lineage?id={REPORT}&direction=DIRECTION_UPSTREAM&depth=10")
            page.wait_for_selector(f".graph[data-ready='{graph_nodes}']", timeout=TIMEOUT_MS)
            ready_at = float(page.get_attribute(".graph", "data-ready-at") or 0)
            idle = page.evaluate(
                "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))"
            )
            results["lineage"].append(max(ready_at, idle))
            results["lineage_server_cpu"].append(process_cpu_ms(server_pid) - server_before)
            results["lineage_page_cpu"].append(cpu_since(browser_before, browser_cpu_ms(server_pid)))
            results["lineage_main_thread"].append(cpu_since(main_before, renderer_main_threads_cpu_ms(server_pid)))
            box = page.locator(".graph").bounding_box()
            assert box is not None
            started = page.evaluate("() => performance.now()")
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40, steps=5)
            page.mouse.up()
            page.mouse.wheel(0, -300)
            done = page.evaluate(
                "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))"
            )
            results["pan_zoom"].append(done - started)
            page.close()
        browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--graph-nodes", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"no Chromium at {CHROMIUM} (tools/install-chromium.sh)")
    data_dir = Path(tempfile.mkdtemp(prefix="console-bench-"))
    process = None
    try:
        started = time.perf_counter()
        asyncio.run(build_store(data_dir / "catalog.db", args.datasets, args.graph_nodes, args.seed))
        print(f"store built in {time.perf_counter() - started:.1f}s")
        process, url, link = start_server(data_dir)
        # Measured loads should not share the CPU with the server's start-up work.
        settle(process.pid)
        results = measure(url, link, args.runs, args.graph_nodes, process.pid)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
    results["overview_cpu"] = [
        a + b for a, b in zip(results["overview_page_cpu"], results["overview_server_cpu"], strict=True)
    ]
    results["lineage_cpu"] = [
        a + b for a, b in zip(results["lineage_page_cpu"], results["lineage_server_cpu"], strict=True)
    ]
    labels = {
        "fcp": "overview first contentful paint (wall)",
        "overview": "overview with map and counts drawn (wall)",
        "overview_page_cpu": "  browser CPU",
        "overview_server_cpu": "  server CPU",
        "overview_cpu": "  CPU, browser + server",
        "lineage": f"lineage, {args.graph_nodes} nodes, laid out and idle (wall)",
        "lineage_page_cpu": "  browser CPU",
        "lineage_server_cpu": "  server CPU",
        "lineage_cpu": "  CPU, browser + server",
        "lineage_main_thread": "  of which the page's main thread",
        "pan_zoom": "pan + zoom answered, two frames (wall)",
    }
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    for key, label in labels.items():
        values = results[key]
        print(
            f"{label:<52} median {statistics.median(values):7.0f} ms   max {max(values):7.0f} ms   ({len(values)} runs)"
        )
    return 0


def settle(pid: int, quiet_ms: float = 200.0, timeout: float = 600.0) -> None:
    """Wait until the server uses less than `quiet_ms` of CPU per second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = process_cpu_ms(pid)
        time.sleep(1.0)
        if process_cpu_ms(pid) - before < quiet_ms:
            return


if __name__ == "__main__":
    sys.exit(main())
