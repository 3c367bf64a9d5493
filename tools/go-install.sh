#!/usr/bin/env bash
# go-install.sh NAME MODULE VERSION: builds the Go command MODULE@VERSION (pinned) from the Go
# module proxy into .tools/bin/NAME unless that version is already there, and prints its path.
# `go install` builds report no version of their own, so a stamp file records it.
set -euo pipefail
NAME="$1" MODULE="$2" VERSION="$3"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.tools/bin/$NAME"
STAMP="$BIN.version"
if [[ ! -x "$BIN" ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$VERSION" ]]; then
  mkdir -p "$ROOT/.tools/bin"
  GOBIN="$ROOT/.tools/bin" GOFLAGS=-buildvcs=false go install "$MODULE@$VERSION" >&2
  echo "$VERSION" > "$STAMP"
fi
echo "$BIN"
