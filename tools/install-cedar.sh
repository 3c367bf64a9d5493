#!/usr/bin/env bash
# Builds the Cedar peer harness (bench/cedar: the `cedar-policy` crate evaluating the example
# policy translated to Cedar) for bench/router_bench.py --cedar. Its own workspace and target
# directory under .tools/, so the project's build never compiles cedar-policy. The release
# build takes minutes on two cores: capped at CEDAR_BUILD_TIMEOUT seconds (default 1200).
# Prints the binary's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="$ROOT/.tools/cedar-target"
BIN="$TARGET/release/domicile-cedar-bench"
CARGO_TARGET_DIR="$TARGET" timeout "${CEDAR_BUILD_TIMEOUT:-1200}" \
  cargo build --release --locked --manifest-path "$ROOT/bench/cedar/Cargo.toml" >&2
echo "$BIN"
