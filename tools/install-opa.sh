#!/usr/bin/env bash
# Builds Open Policy Agent (pinned) from the Go module proxy into .tools/bin/opa, for the peer
# comparison of bench/router_bench.py (--opa .tools/bin/opa). Needs Go >= 1.24. Prints the path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OPA_VERSION="v1.22.4"
OPA="$ROOT/.tools/bin/opa"
if [[ ! -x "$OPA" ]] || ! "$OPA" version 2>/dev/null | grep -q "^Version: ${OPA_VERSION#v}$"; then
  mkdir -p "$ROOT/.tools/bin"
  GOBIN="$ROOT/.tools/bin" GOFLAGS=-buildvcs=false go install "github.com/open-policy-agent/opa@$OPA_VERSION" >&2
fi
echo "$OPA"
