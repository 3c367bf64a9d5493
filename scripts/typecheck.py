"""Type-check the `domicile` package with mypy, laid out as it installs.

Usage: python scripts/typecheck.py [MYPY ARGS...]

`catalog/`, `lineage/`, `router/` and `access/` install as `domicile.catalog`, `domicile.lineage`,
`domicile.router` and `domicile.access` ([tool.setuptools] package-dir). The editable install maps them with an
import hook, which mypy cannot follow, so this script links the installed layout under
`.tools/typecheck/` (symbolic links to the repository's files), runs mypy there with the
settings of [tool.mypy] in pyproject.toml, and reports every finding under the repository
path of its file. Exit status: mypy's (0 clean, 1 findings, 2 mypy could not run).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".tools" / "typecheck"
MAPPED = ("catalog", "lineage", "router", "access")


def link_tree() -> None:
    """`.tools/typecheck/domicile/` = `domicile/` with `catalog`, `lineage` and `router` inside."""
    if TREE.exists():
        shutil.rmtree(TREE)
    package = TREE / "domicile"
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "domicile").iterdir()):
        if entry.name != "__pycache__":
            os.symlink(entry, package / entry.name)
    for name in MAPPED:
        os.symlink(ROOT / name, package / name)


def repository_path(line: str) -> str:
    """A finding as mypy prints it from the tree (`domicile/router/x.py:3: ...`), with the
    file's path in the repository (`router/x.py:3: ...`)."""
    return re.sub(rf"^domicile/({'|'.join(MAPPED)})/", r"\1/", line)


def main(argv: list[str]) -> int:
    link_tree()
    os.chdir(TREE)
    stdout, stderr, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(TREE.parent / "mypy-cache"), *argv]
    )
    for line in stdout.splitlines():
        print(repository_path(line))
    if stderr:
        print(stderr, end="", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
