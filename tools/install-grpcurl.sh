#!/usr/bin/env bash
# Builds grpcurl (pinned) from the Go module proxy into .tools/bin/grpcurl. Prints the path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="v1.9.3"
BIN="$ROOT/.tools/bin/grpcurl"
if [[ ! -x "$BIN" ]] || ! "$BIN" -version 2>&1 | grep -q "${VERSION#v}"; then
  mkdir -p "$ROOT/.tools/bin"
  GOBIN="$ROOT/.tools/bin" GOFLAGS=-buildvcs=false go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
fi
echo "$BIN"
