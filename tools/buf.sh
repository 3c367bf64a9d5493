#!/usr/bin/env bash
# Runs buf (installed from npm @bufbuild/buf into .tools/, pinned) with the given arguments.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUF_VERSION="1.75.0"
BUF="$ROOT/.tools/node_modules/.bin/buf"
if [[ ! -x "$BUF" ]] || [[ "$("$BUF" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
  mkdir -p "$ROOT/.tools"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "@bufbuild/buf@$BUF_VERSION" >&2
fi
cd "$ROOT"
exec "$BUF" "$@"
