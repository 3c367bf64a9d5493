#!/usr/bin/env bash
# Builds grpcurl (pinned) from the Go module proxy into .tools/bin/grpcurl. Prints the path.
set -euo pipefail
exec "$(dirname "$0")/go-install.sh" grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.3
