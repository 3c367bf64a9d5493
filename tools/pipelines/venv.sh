#!/usr/bin/env bash
# The virtual environment of one pipeline integration's tests (tests/pipelines), built under
# .tools/pipelines/NAME from PyPI: the packages of integrations/NAME/requirements.txt pinned
# by integrations/NAME/constraints.txt, each integration apart (Airflow and dbt pin different
# versions of shared libraries). For airflow also this repository's `domicile` (a wheel
# built with the project's Python, so the Rust engine's build cache is reused) and the
# provider in integrations/airflow. Rebuilt when those files change; `domicile` and the
# provider are reinstalled alone when their sources change. Each pip run is time-capped
# (PIPELINES_INSTALL_TIMEOUT seconds, default 1200). Prints the environment's bin directory.
#
#   bash tools/pipelines/venv.sh airflow|dbt
set -euo pipefail
NAME="${1:?usage: venv.sh airflow|dbt}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
INTEGRATION="$ROOT/integrations/$NAME"
[ -f "$INTEGRATION/requirements.txt" ] || { echo "venv.sh: no integration named $NAME" >&2; exit 2; }
PY="${PY:-$ROOT/.venv/bin/python}"
BASE_PYTHON="${PYTHON:-python3.11}"
CAP="${PIPELINES_INSTALL_TIMEOUT:-1200}"
TOOLS="$ROOT/.tools/pipelines"
ENV="$TOOLS/$NAME"
mkdir -p "$TOOLS"
# One builder at a time per environment (parallel test sessions share .tools/).
exec 9>"$TOOLS/.$NAME.lock"
flock 9

pip_install() { timeout "$CAP" "$ENV/bin/pip" install -q --disable-pip-version-check "$@"; }
digest() { sha256sum "$@" | sha256sum | cut -c1-16; }

needs_domicile=false
env_files=("$INTEGRATION/requirements.txt" "$INTEGRATION/constraints.txt")
if [ -f "$INTEGRATION/pyproject.toml" ]; then
  needs_domicile=true
  env_files+=("$ROOT/pyproject.toml" "$INTEGRATION/pyproject.toml")
fi
env_stamp="$(digest "${env_files[@]}")"

source_stamp=""
if $needs_domicile; then
  # What the wheel and the provider are built from (tracked and untracked files alike).
  mapfile -t sources < <(cd "$ROOT" && git ls-files --cached --others --exclude-standard -- \
    domicile catalog lineage router access crates protos setup.py pyproject.toml "integrations/$NAME" | sort)
  source_stamp="$(cd "$ROOT" && digest "${sources[@]}")"
fi

build_domicile_wheel() {
  rm -rf "$ENV/wheels"
  timeout "$CAP" "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$ENV/wheels" "$ROOT" >&2
}

if [ "$(cat "$ENV/.env-stamp" 2>/dev/null)" != "$env_stamp" ]; then
  echo "venv.sh: building $ENV (pip, at most ${CAP}s per step)" >&2
  rm -rf "$ENV"
  "$BASE_PYTHON" -m venv "$ENV"
  packages=(-r "$INTEGRATION/requirements.txt")
  if $needs_domicile; then
    build_domicile_wheel
    packages+=("$ENV"/wheels/domicile-*.whl "$INTEGRATION")
  fi
  pip_install -c "$INTEGRATION/constraints.txt" "${packages[@]}" >&2
  echo "$source_stamp" >"$ENV/.source-stamp"
  echo "$env_stamp" >"$ENV/.env-stamp"
elif $needs_domicile && [ "$(cat "$ENV/.source-stamp" 2>/dev/null)" != "$source_stamp" ]; then
  echo "venv.sh: reinstalling domicile and the $NAME provider into $ENV" >&2
  build_domicile_wheel
  pip_install --no-deps --force-reinstall "$ENV"/wheels/domicile-*.whl "$INTEGRATION" >&2
  echo "$source_stamp" >"$ENV/.source-stamp"
fi
echo "$ENV/bin"
