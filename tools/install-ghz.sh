#!/usr/bin/env bash
# Builds ghz (pinned), the gRPC load generator, from the Go module proxy into .tools/bin/ghz, for
# the fixed-rate phase of bench/router_bench.py (--ghz .tools/bin/ghz). Prints the path.
set -euo pipefail
exec "$(dirname "$0")/go-install.sh" ghz github.com/bojand/ghz/cmd/ghz v0.120.0
