#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. Lints and type-checks the Python code
# first (ruff, mypy: any finding fails the run) and scans the deployment files (hadolint,
# checkov: tools/scan.sh). Installs buf and the test OpenID Connect
# provider (tools/oidc-provider) and builds the Neo4j launcher first (so their downloads are
# not charged to a test's timeout); the Neo4j server
# itself is started once by the pytest session fixture (tests/neo4j_plugin.py) and stopped at
# the end, unless DOMICILE_TEST_NEO4J_URI points at one that is already running. The Rust
# engine's own checks run before those: its tests, clippy, rustfmt and a short fuzz run
# (FUZZ_SECONDS per target, default 60; tools/fuzz.sh). The pipeline tests' environments
# (tools/pipelines/venv.sh) are built in the background meanwhile.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"

echo "== ruff"
"$PY" -m ruff format --check .
"$PY" -m ruff check --quiet .
echo "== mypy"
"$PY" scripts/typecheck.py
# The pipeline tools' environments (tests/pipelines: Airflow, dbt) install from PyPI while the
# checks below run; each pip step is time-capped, the result cached under .tools/pipelines.
mkdir -p .tools/pipelines
(bash tools/pipelines/venv.sh airflow && bash tools/pipelines/venv.sh dbt) >.tools/pipelines/install.log 2>&1 &
PIPELINE_TOOLS=$!
echo "== deployment files (hadolint, checkov)"
bash tools/scan.sh
echo "== rust: cargo test, clippy, rustfmt"
cargo test --locked --release --workspace
cargo clippy --locked --release --workspace --all-targets -- -D warnings
cargo fmt --all --check
echo "== rust: fuzz"
bash tools/fuzz.sh
echo "== buf"
bash tools/buf.sh --version
echo "== chromium (browser tests)"
bash tools/install-chromium.sh
echo "== test OpenID Connect provider (npm ci)"
bash tools/oidc-provider/install.sh >/dev/null
echo "== neo4j launcher build"
bash tools/neo4j/neo4j.sh build
echo "== pipeline tools (Airflow, dbt; .tools/pipelines/install.log)"
wait "$PIPELINE_TOOLS" || { cat .tools/pipelines/install.log; exit 1; }
echo "== pytest"
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
