"""Browser tests: Debian's Chromium, driven by Playwright through `executable_path`, against
a real `domicile serve --dev --demo` process with the console on a port of its own.

Chromium comes from `tools/install-chromium.sh` (run by `make test`); without it these tests
are skipped locally and fail under CI=true. Screenshots go to `test-artifacts/console/`
(or $DOMICILE_TEST_ARTIFACTS): look at them after a run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DOMICILE_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("DOMICILE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
# Without the background-networking flags Chromium's own connections are refused by closed
# networks and it stalls. Playwright gives every launch a new, empty profile directory.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LINK = re.compile(r"sign in \(one-time link\): (\S+)")
CONSOLE = re.compile(r"domicile console on (\S+)")
GRPC = re.compile(r"serving gRPC on \S+ \(port (\d+)\)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class ConsoleServer:
    url: str
    sign_in_link: str
    grpc_port: int
    data_dir: Path
    process: subprocess.Popen

    def cli(self, *args: str) -> str:
        """Run a `domicile` client command against this server; its output."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "domicile",
                "--data-dir",
                str(self.data_dir),
                "--server",
                f"127.0.0.1:{self.grpc_port}",
                *args,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # 3: a DENY (`domicile decide`), which these tests ask for on purpose.
        assert result.returncode in (0, 3), result.stderr
        return result.stdout

    def new_link(self, *scopes: str) -> str:
        return self.cli("dev", "console-link", "--console-url", self.url, *[f"--scope={s}" for s in scopes]).strip()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: tools/install-chromium.sh should have installed it")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DOMICILE_TEST_CHROMIUM)")
    if not (ROOT / "domicile" / "console" / "static" / "index.html").is_file():
        pytest.fail("the console is not built: run `make console`")
    return CHROMIUM


@pytest.fixture(scope="module")
def console_server(chromium_path) -> Iterator[ConsoleServer]:
    data_dir = Path(tempfile.mkdtemp(prefix="domicile-console-"))
    env = {
        **os.environ,
        "DOMICILE_CONSOLE__LISTEN": "127.0.0.1:0",
        # A signed checkpoint after every line: a decision's page shows its checkpoint at once.
        "DOMICILE_AUDIT__CHECKPOINT_EVERY_LINES": "1",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "domicile",
            "serve",
            "--dev",
            "--demo",
            "--store",
            f"sqlite:///{data_dir / 'catalog.db'}",
            "--policy",
            str(ROOT / "examples" / "policy.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    found: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(found) < 3:
        line = process.stdout.readline()
        if not line:
            break
        for name, pattern in (("link", LINK), ("url", CONSOLE), ("grpc", GRPC)):
            if match := pattern.search(line):
                found[name] = match.group(1)
    if len(found) < 3:
        process.kill()
        pytest.fail(f"domicile serve did not start its console (saw {found})")
    yield ConsoleServer(found["url"], found["link"], int(found["grpc"]), data_dir, process)
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
