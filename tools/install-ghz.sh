#!/usr/bin/env bash
# Builds ghz (pinned), the gRPC load generator, from the Go module proxy into .tools/bin/ghz, for
# the fixed-rate phase of bench/router_bench.py (--ghz .tools/bin/ghz). Prints the path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="v0.120.0"
BIN="$ROOT/.tools/bin/ghz"
# `go install` builds report no version of their own ("dev"), so a stamp file records it.
STAMP="$BIN.version"
if [[ ! -x "$BIN" ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$VERSION" ]]; then
  mkdir -p "$ROOT/.tools/bin"
  GOBIN="$ROOT/.tools/bin" GOFLAGS=-buildvcs=false go install "github.com/bojand/ghz/cmd/ghz@$VERSION" >&2
  echo "$VERSION" > "$STAMP"
fi
echo "$BIN"
