#!/usr/bin/env bash
# Debian's Chromium for the console's browser tests (tests/browser), which Playwright drives
# through `executable_path` (Playwright's own browser downloads are not available here).
# Installs with apt-get when run as root and missing; otherwise says what to do. Time-capped.
set -uo pipefail
BROWSER="${DOMICILE_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$BROWSER" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "no Chromium at $BROWSER: install Debian's chromium (apt-get install chromium) or set DOMICILE_TEST_CHROMIUM; browser tests are skipped" >&2
  exit 0
fi
echo "== installing chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
timeout 600 apt-get update -qq || true
timeout 1200 apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null || {
  echo "apt-get install chromium failed; browser tests will fail in CI" >&2
  exit 0
}
