"""Generate the Python code for protos/domicile/v1 with the pinned grpcio-tools.

Usage: python scripts/gen_protos.py [--out DIR]

Writes domicile/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py under DIR (default: the repository
root). tests/unit/test_generated_code.py regenerates into a temporary directory and fails when
the committed files differ, so run this after every .proto change.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("domicile") / "v1"


def proto_files() -> list[Path]:
    """The .proto sources, sorted so generation order is stable."""
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc into `out`; returns the generated files (relative to `out`)."""
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    (out / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    # protoc resolves relative file names against the -I roots.
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    init = out / PACKAGE_DIR / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated protobuf and gRPC code for domicile.v1 (scripts/gen_protos.py)."""\n')
    return sorted(p.relative_to(out) for p in (out / PACKAGE_DIR).iterdir() if p.suffix in {".py", ".pyi"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
