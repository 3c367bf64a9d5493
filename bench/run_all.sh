#!/usr/bin/env bash
# Every benchmark in one command (`make bench`): lineage on SQLite (full size), lineage on
# Neo4j (a server of its own, started and stopped here), then the router (with the OPA and Cedar
# peer comparisons, bench/loadgen and the ghz load generator when they can be built). Figures go to stdout; record them in docs/benchmarks.md.
# Pass BENCH_DATASETS=N to run the lineage benchmarks at a smaller size.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
SIZE=()
[[ -n "${BENCH_DATASETS:-}" ]] && SIZE=(--datasets "$BENCH_DATASETS")

echo "== lineage, SQLite"
"$PY" bench/lineage_bench.py --backend sqlite "${SIZE[@]}"

echo "== lineage, Neo4j"
PORT=7700
DATA="$(mktemp -d)/neo4j"
trap 'tools/neo4j/neo4j.sh down --port "$PORT" >/dev/null 2>&1 || true; rm -rf "$(dirname "$DATA")"' EXIT
NEO4J_FULL_JIT=1 NEO4J_HEAP=2g NEO4J_PAGE_CACHE=2g tools/neo4j/neo4j.sh up --port "$PORT" --data "$DATA"
"$PY" bench/lineage_bench.py --backend neo4j --store "bolt://127.0.0.1:$PORT" "${SIZE[@]}"
tools/neo4j/neo4j.sh down --port "$PORT"

echo "== access"
"$PY" bench/access_bench.py

echo "== router"
PEERS=()
if bash tools/install-opa.sh >/dev/null 2>&1 && [[ -x .tools/bin/opa ]]; then
  PEERS+=(--opa .tools/bin/opa)
fi
if bash tools/install-loadgen.sh >/dev/null 2>&1 && [[ -x .tools/bin/loadgen ]]; then
  PEERS+=(--loadgen .tools/bin/loadgen)
fi
if bash tools/install-cedar.sh >/dev/null 2>&1 && [[ -x .tools/cedar-target/release/domicile-cedar-bench ]]; then
  PEERS+=(--cedar .tools/cedar-target/release/domicile-cedar-bench)
fi
if bash tools/install-ghz.sh >/dev/null 2>&1 && [[ -x .tools/bin/ghz ]]; then
  PEERS+=(--ghz .tools/bin/ghz)
fi
"$PY" bench/router_bench.py "${PEERS[@]}"
