#!/usr/bin/env bash
# Builds bench/loadgen (the router benchmark's light gRPC load generator, Go) into
# .tools/bin/loadgen and prints its path. Its dependencies come from the Go module proxy, pinned
# by bench/loadgen/go.sum; rebuilt every time (Go's build cache makes that quick).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$ROOT/.tools/bin"
(cd "$ROOT/bench/loadgen" && GOFLAGS=-buildvcs=false go build -o "$ROOT/.tools/bin/loadgen" .) >&2
echo "$ROOT/.tools/bin/loadgen"
