#!/usr/bin/env bash
# Build the console's single-page app (console-web/) into domicile/console/static, where
# `domicile serve` serves it from. `make run`, `make test` and `make console` call this when
# the sources changed. npm's cache lives under .tools/ (gitignored); each step has a time cap
# so a hung registry cannot stall CI.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/console-web"
if ! command -v npm >/dev/null; then
  echo "npm is needed to build the console (Node.js 20 or newer); the server runs without it and says so" >&2
  exit 1
fi
export npm_config_cache="$ROOT/.tools/npm-cache"
export npm_config_update_notifier=false
# Reinstall only when the lockfile is newer than the installed tree.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== console: npm ci"
  timeout 900 npm ci --no-audit --no-fund --loglevel=error
fi
echo "== console: build"
timeout 600 npm run --silent build
