#!/usr/bin/env bash
# Builds the engine's fuzz targets (crates/fuzz) with libFuzzer's coverage instrumentation on
# the stable toolchain and runs each for FUZZ_SECONDS (default 60), starting from the corpus
# kept in crates/fuzz/corpus/<target>. New inputs go to .tools/fuzz/corpus (not the
# repository); a crash or failed invariant leaves its input in .tools/fuzz/artifacts and fails.
#
#   tools/fuzz.sh                 # every target
#   FUZZ_SECONDS=600 tools/fuzz.sh apply
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGET_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(batch_request apply)
fi

# What `cargo fuzz build -s none` passes; `--target` keeps the flags off build scripts.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
FUZZ_CRATE=(--locked --release --manifest-path crates/fuzz/Cargo.toml --target "$TARGET_TRIPLE" --bins)
cargo build "${FUZZ_CRATE[@]}"
# Linted with the same flags, so that libFuzzer (built by a build script) is compiled once.
cargo clippy "${FUZZ_CRATE[@]}" -- -D warnings

BIN_DIR=".tools/cargo-target/$TARGET_TRIPLE/release"
for target in "${TARGETS[@]}"; do
  work=".tools/fuzz/corpus/$target"
  artifacts=".tools/fuzz/artifacts/$target/"
  output=".tools/fuzz/$target.log"
  seeds="crates/fuzz/corpus/$target"
  mkdir -p "$work" "$artifacts"
  # libFuzzer exits on a missing corpus directory; a target without committed seeds starts empty.
  [ -d "$seeds" ] || seeds="$work"
  echo "== fuzz $target (${SECONDS_EACH}s; libFuzzer's output in $output)"
  if ! "$BIN_DIR/$target" "$work" "$seeds" \
    -max_total_time="$SECONDS_EACH" -artifact_prefix="$artifacts" -print_final_stats=1 -close_fd_mask=3 \
    >"$output" 2>&1; then
    tail -n 60 "$output"
    echo "fuzz target $target failed; the input is in $artifacts" >&2
    exit 1
  fi
  grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$output"
done
