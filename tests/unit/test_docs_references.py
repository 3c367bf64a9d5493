"""Every document, example and file the repository's text refers to is in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Markdown links to files, and mentions of files under the directories users are sent to.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MENTION = re.compile(r"(?<![\w/.-])((?:docs|examples|tools|scripts|bench)/[\w./-]+\.(?:md|yaml|yml|json|sh|py))")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "*.md", "*.py", "*.yaml", "*.yml", "*.toml", "Makefile", "*.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in names if not name.startswith("domicile/v1/")]


def test_links_and_mentions_name_files_that_exist():
    missing = []
    for path in tracked_text_files():
        if not path.exists():  # deleted in the working tree, not yet committed
            continue
        text = path.read_text("utf-8")
        for target in LINK.findall(text) if path.suffix == ".md" else ():
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                missing.append(f"{path.relative_to(ROOT)} links {target}")
        for target in MENTION.findall(text):
            if not (ROOT / target).exists():
                missing.append(f"{path.relative_to(ROOT)} mentions {target}")
    assert missing == []


def test_no_reference_to_documents_outside_the_repository():
    offenders = [
        str(path.relative_to(ROOT))
        for path in tracked_text_files()
        if path.exists() and re.search(r"DESIGN\.md|\.\./shared", path.read_text("utf-8"))
    ]
    assert offenders == []
