"""The committed generated code must be exactly what scripts/gen_protos.py and
scripts/gen_printable.py produce."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "domicile" / "v1").iterdir() if p.is_file())
    committed = sorted(
        p.relative_to(ROOT) for p in (ROOT / "domicile" / "v1").iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}
    )
    assert generated == committed, "generated file set differs: run `make proto`"
    stale = [str(p) for p in generated if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"stale generated code (run `make proto` and commit): {stale}"


def test_buf_lint_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "buf.sh"), "lint"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_printable_table_is_current(tmp_path: Path) -> None:
    """The engine quotes like Python's `repr` from a table of this Python's Unicode database."""
    out = tmp_path / "printable.rs"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_printable.py"), "--out", str(out)], check=True)
    committed = ROOT / "crates" / "engine" / "src" / "printable.rs"
    assert out.read_bytes() == committed.read_bytes(), "stale table: run scripts/gen_printable.py and commit"
