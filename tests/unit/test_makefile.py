"""`make run` and `make run-insecure` keep their data and addresses apart (so both can run at
once) and take DATA_DIR; checked on the commands make would run (`make -n`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def planned(*args: str) -> str:
    # -o: the virtualenv and the console count as built; only the target's own commands show.
    return subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "-o", "domicile/console/static/index.html", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def data_dirs(commands: str) -> set[str]:
    return set(re.findall(r"--data-dir (\S+)", commands)) | set(re.findall(r"sqlite:///(\S+)/catalog\.db", commands))


def test_run_and_run_insecure_use_different_data_dirs():
    assert data_dirs(planned("run")) == {".domicile"}
    assert data_dirs(planned("run-insecure")) == {".domicile/insecure"}


def addresses(commands: str) -> set[str]:
    return set(re.findall(r"--(?:listen|http-listen|console-listen) (\S+)", commands))


def test_run_and_run_insecure_listen_on_different_addresses():
    run, insecure = addresses(planned("run")), addresses(planned("run-insecure"))
    assert run == {"127.0.0.1:50051", "127.0.0.1:8080", "127.0.0.1:8081"}
    assert insecure == {"127.0.0.1:50052", "127.0.0.1:8082"}  # (--insecure serves no console)
    assert addresses(planned("run-insecure", "RUN_PORT=6000", "RUN_HTTP=6001")) == {"127.0.0.1:6000", "127.0.0.1:6001"}


def test_data_dir_is_a_variable():
    assert data_dirs(planned("run", "DATA_DIR=/srv/domicile")) == {"/srv/domicile"}
    assert data_dirs(planned("run-insecure", "DATA_DIR=/tmp/x")) == {"/tmp/x"}
