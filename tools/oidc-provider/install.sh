#!/usr/bin/env bash
# Installs the test OpenID Connect provider (package.json + the committed package-lock.json,
# `npm ci`) into .tools/oidc-provider and prints the path of its provider.mjs. Re-installs only
# when the lockfile changed; the npm step is capped at 5 minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SRC="$ROOT/tools/oidc-provider"
DEST="$ROOT/.tools/oidc-provider"
mkdir -p "$DEST"
if ! cmp -s "$SRC/package-lock.json" "$DEST/package-lock.json" || [[ ! -d "$DEST/node_modules/oidc-provider" ]]; then
  cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
  (cd "$DEST" && timeout 300 npm ci --silent --no-audit --no-fund >&2)
fi
cp "$SRC/provider.mjs" "$DEST/provider.mjs"
echo "$DEST/provider.mjs"
