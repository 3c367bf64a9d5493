#!/usr/bin/env bash
# Builds grpcurl (pinned) from the Go module proxy into .tools/bin/grpcurl. Prints the path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="v1.9.3"
BIN="$ROOT/.tools/bin/grpcurl"
# `go install` builds report no version of their own, so a stamp file records it.
STAMP="$BIN.version"
if [[ ! -x "$BIN" ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$VERSION" ]]; then
  mkdir -p "$ROOT/.tools/bin"
  GOBIN="$ROOT/.tools/bin" GOFLAGS=-buildvcs=false go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
  echo "$VERSION" > "$STAMP"
fi
echo "$BIN"
