"""The README's walkthrough, as a newcomer runs it: `make run` in a copy of the repository (the
files git tracks, as a fresh clone has them) and every walkthrough command in a second shell,
in a directory outside the repository, with a home directory of its own. Each command's exit
status is the one the README promises."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMICILE = str(ROOT / ".venv" / "bin" / "domicile")
CUSTOMERS, EU = "s3://bank-eu-lake/customers", "aws:eu-west-1"

pytestmark = pytest.mark.slow

# The walkthrough's commands in order (a prefix of each), with the exit status the README gives.
EXPECTED_EXIT = [
    ("domicile health", 0),
    ("domicile regions --country IN", 0),
    ("domicile dataset list", 0),
    ("domicile dataset get postgres://core-eu.bank.example:5432/core.public.customers", 0),
    ("domicile dataset put s3://bank-eu-lake/loans --name", 0),
    ("domicile dataset list -c PII", 0),
    ('domicile dataset put s3://bank-eu-lake/loans --name "Loan book" --expected-revision 1', 1),  # ABORTED
    ("domicile dataset get s3://bank-eu-lake/loans --as-of", 4),  # NOT_FOUND: it did not exist then
    ("domicile dataset delete s3://bank-eu-lake/loans", 0),
    ("domicile lineage show s3://bank-global-analytics/customer-payments-joined", 0),
    ("domicile lineage show s3://bank-eu-lake/customers --downstream", 0),
    ("domicile lineage record", 0),
    ("domicile lineage export", 0),
    ("domicile decide s3://bank-global-analytics/customer-payments-joined", 3),  # DENY
    ("domicile decide s3://bank-eu-lake/custmers", 4),  # unknown
    ("printf", 0),  # batch-decide: both allowed
    ("domicile explain", 0),
    ("domicile route", 0),
    ("domicile check-job", 0),
    ("domicile violations", 3),  # the demo has violations
    ("domicile policy check", 0),
    ("domicile policy test", 0),
    ("domicile policy impact", 0),
    ("domicile policy set", 0),
    ("domicile policy get", 0),
    ("domicile audit get", 0),
    ("domicile audit replay", 0),
    ("domicile --data-dir $REPO/.domicile audit verify", 0),
    ("domicile --data-dir $REPO/.domicile backup /tmp/backup-1", 0),  # (into tmp_path here)
    ("domicile lineage record --job risk-us/scoring", 0),
    ("domicile violations --observed", 3),  # the run above processed EU data in the US
    ("domicile access show", 0),
    ("domicile access actor", 0),
    ("domicile access anomalies", 0),
]


def walkthrough_commands() -> list[str]:
    """The commands of the README's walkthrough section, continuation lines joined and
    comments dropped, without the set-up block (which the test does itself)."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## A five-minute walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)[1:]
    commands = []
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            code = re.sub(r"\s+#.*$", "", line).rstrip()
            if not code:
                continue
            pending += code.rstrip("\\") + " " if code.endswith(("\\", "|")) else code
            if not code.endswith(("\\", "|")):
                commands.append(" ".join(pending.split()))
                pending = ""
    return commands


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def clone(tmp_path) -> Path:
    """The tracked files as a fresh clone has them, with this checkout's virtualenv and built
    console (make is told not to rebuild them: `make test` has)."""
    target = tmp_path / "domicile"
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in names:
        if (ROOT / name).exists():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def start(clone: Path, env: dict[str, str], target: str, *variables: str) -> tuple[subprocess.Popen, str]:
    """`make TARGET` in `clone` (its own process group), once its server serves; and its output."""
    server = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "-o", "domicile/console/static/index.html", target, *variables],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    output = []
    assert server.stdout is not None
    for line in server.stdout:
        output.append(line)
        if "domicile serving HTTP" in line:
            return server, "".join(output)
        if time.monotonic() - started > 180:
            stop(server)
            pytest.fail(f"make {target} did not start:\n" + "".join(output))
    server.wait(timeout=60)
    pytest.fail(f"make {target} ended:\n" + "".join(output))


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)


def test_the_walkthrough_works_from_outside_the_repository(clone, tmp_path):
    commands = walkthrough_commands()
    assert len(commands) == len(EXPECTED_EXIT), commands
    home, outside = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOMICILE_", "XDG_", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    port, http_port, console_port = free_port(), free_port(), free_port()
    server, output = start(
        clone, env, "run", f"RUN_PORT={port}", f"RUN_HTTP={http_port}", f"RUN_CONSOLE={console_port}"
    )
    try:
        assert "installed the client credentials in " + str(home / ".config" / "domicile" / "dev") in output

        # `make run-insecure` beside it: its own data (catalog, decision log), so both serve.
        # (Free ports here: the machine may run other servers; the default ports differ too,
        # tests/unit/test_makefile.py.)
        insecure_port = free_port()
        insecure, _ = start(clone, env, "run-insecure", f"RUN_PORT={insecure_port}", f"RUN_HTTP={free_port()}")
        try:
            result = subprocess.run(
                [
                    DOMICILE,
                    "--insecure",
                    "--server",
                    f"127.0.0.1:{insecure_port}",
                    "decide",
                    CUSTOMERS,
                    "--op",
                    "store",
                    "-r",
                    EU,
                ],
                cwd=outside,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0 and "ALLOW" in result.stdout, result.stdout + result.stderr
        finally:
            stop(insecure)
        assert (clone / ".domicile" / "insecure" / "catalog.db").is_file()

        shell_env = {**env, "REPO": str(clone), "DOMICILE_SERVER": f"127.0.0.1:{port}"}
        decision_id = ""
        for written, (prefix, expected) in zip(commands, EXPECTED_EXIT, strict=True):
            assert written.startswith(prefix), (written, prefix)
            command = written.replace("DECISION_ID", decision_id).replace("/tmp/backup-1", str(tmp_path / "backup"))
            result = subprocess.run(
                ["bash", "-c", f"set -o pipefail; source $REPO/.venv/bin/activate && {command}"],
                cwd=outside,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == expected, f"{command}\n{result.stdout}\n{result.stderr}"
            found = re.search(r"decision (\S+)  policy", result.stdout)
            if found:
                decision_id = found.group(1)
        assert (outside / "lineage.dot").read_text().startswith("digraph")
    finally:
        stop(server)
