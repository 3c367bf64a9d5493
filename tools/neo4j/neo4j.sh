#!/usr/bin/env bash
# Local Neo4j Community server for development and tests (see README.md in this folder).
#
#   tools/neo4j/neo4j.sh up     [--port P] [--data DIR] [--timeout SECONDS]
#   tools/neo4j/neo4j.sh down   [--port P]
#   tools/neo4j/neo4j.sh status [--port P]
#   tools/neo4j/neo4j.sh build                  # compile the launcher (done by `up` if needed)
#   tools/neo4j/neo4j.sh run    --port P --data DIR   # foreground, for supervisors and tests
#
# `up` builds the launcher when needed (works offline once ~/.m2 holds the dependencies),
# starts it in the background with pid and log files under .neo4j/ at the repository root,
# and returns once the server prints "NEO4J READY bolt://127.0.0.1:P". `down` sends SIGTERM
# (a clean shutdown) and waits for the process to exit.
#
# Environment: JAVA (default: java), NEO4J_HEAP (default 512m), NEO4J_PAGE_CACHE (default
# 64m), DOMICILE_NEO4J_PASSWORD (enables authentication for user neo4j; unset = no auth),
# NEO4J_FULL_JIT=1 (the optimising JIT too: for benchmarks; see JVM_FLAGS).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE="$ROOT/.neo4j"
JAVA="${JAVA:-java}"
HEAP="${NEO4J_HEAP:-512m}"
PAGE_CACHE="${NEO4J_PAGE_CACHE:-64m}"

# JVM flags. Neo4j 5 on Java 17 needs these packages opened to the unnamed module (the
# classpath); without them it falls back to slower paths (warnings in logs/debug.log):
#   java.base/java.nio    - page cache: reflective access to DirectByteBuffer
#   java.base/sun.nio.ch  - native file access: FileChannelImpl's file descriptor
#   java.base/java.io     - native file access: FileDescriptor.fd (fadvise on transaction logs)
# -Dio.netty.tryReflectionSetAccessible=true lets Netty (Bolt) use the opened java.nio for
# direct buffers. Heap is fixed (-Xms = -Xmx) as Neo4j recommends; a small heap and page
# cache suit a 2-core machine shared with other processes.
JVM_FLAGS=(
  "-Xms$HEAP" "-Xmx$HEAP"
  -XX:+UseG1GC
  -XX:+ExitOnOutOfMemoryError
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
)
# Start-up speed, which tests pay on every server they start (measured on the shared 2-core
# machine under load: ~35 s to ready with neither, ~9 s with both):
# - C1 only (TieredStopAtLevel=1): the optimising C2 compiler would spend the scarce CPU
#   compiling start-up code; short-lived dev/test servers never earn that back.
# - An application class-data-sharing archive (target/launcher.jsa, made by `build` in one
#   training start): the ~20k classes are mapped instead of loaded and verified.
if [[ "${NEO4J_FULL_JIT:-0}" != 1 ]]; then
  JVM_FLAGS+=(-XX:TieredStopAtLevel=1)
fi
CDS_ARCHIVE="$HERE/target/launcher.jsa"
CLASSPATH_ARG="$HERE/target/launcher.jar:$HERE/target/lib/*"
MAIN=dev.domicile.neo4j.Launcher

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

PORT=7687
DATA="$STATE/data"
TIMEOUT=180

parse_options() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) PORT="$2"; shift 2 ;;
      --data) DATA="$2"; shift 2 ;;
      --timeout) TIMEOUT="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
}

# True when target/ is missing or older than the sources.
needs_build() {
  local jar="$HERE/target/launcher.jar"
  [[ ! -f "$jar" || ! -d "$HERE/target/lib" ]] && return 0
  [[ -n "$(find "$HERE/pom.xml" "$HERE/src" -newer "$jar" -print -quit)" ]]
}

build() {
  mkdir -p "$STATE"
  # Several test sessions may start at once; one builds, the others wait and reuse.
  exec 9>"$STATE/build.lock"
  flock 9
  if needs_build; then
    echo "building the Neo4j launcher (first run downloads ~120 MB into ~/.m2)..." >&2
    rm -f "$CDS_ARCHIVE"
    # Offline first so a warm ~/.m2 never touches the network; fall back to online.
    (cd "$HERE" && { mvn -q -B -o package >/dev/null 2>&1 || mvn -q -B package; })
  fi
  [[ -f "$CDS_ARCHIVE" ]] || make_cds_archive
  flock -u 9
}

# Training start: run the server once on a scratch directory and stop it; at exit the JVM
# writes the classes it loaded to the archive. A failed training only costs start-up speed.
make_cds_archive() {
  local scratch port pid deadline
  scratch="$(mktemp -d)"
  port=$((20000 + RANDOM % 20000))
  echo "making the class-data archive (one training start of Neo4j)..." >&2
  "$JAVA" "${JVM_FLAGS[@]}" -XX:ArchiveClassesAtExit="$CDS_ARCHIVE.tmp" -cp "$CLASSPATH_ARG" "$MAIN" \
    --port "$port" --data "$scratch/data" >"$scratch/log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + TIMEOUT))
  until grep -qs "^NEO4J READY" "$scratch/log"; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "training start failed; Neo4j will start without the archive (log below)" >&2
      tail -n 5 "$scratch/log" >&2
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      rm -rf "$scratch" "$CDS_ARCHIVE.tmp"
      return 0
    fi
    sleep 0.2
  done
  kill -TERM "$pid"
  wait "$pid" || true
  [[ -s "$CDS_ARCHIVE.tmp" ]] && mv "$CDS_ARCHIVE.tmp" "$CDS_ARCHIVE"
  rm -rf "$scratch"
}

pid_file() { echo "$STATE/neo4j-$PORT.pid"; }
log_file() { echo "$STATE/neo4j-$PORT.log"; }

running_pid() {
  local f pid
  f="$(pid_file)"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_run() {
  build
  mkdir -p "$DATA"
  if [[ -f "$CDS_ARCHIVE" ]]; then
    JVM_FLAGS+=(-XX:SharedArchiveFile="$CDS_ARCHIVE")
  fi
  exec "$JAVA" "${JVM_FLAGS[@]}" -cp "$CLASSPATH_ARG" "$MAIN" --port "$PORT" --data "$DATA" --page-cache "$PAGE_CACHE"
}

cmd_up() {
  local pid log deadline
  if pid="$(running_pid)"; then
    echo "NEO4J READY bolt://127.0.0.1:$PORT (already running, pid $pid)"
    return 0
  fi
  build
  mkdir -p "$DATA"
  log="$(log_file)"
  : >"$log"
  # setsid: the server outlives this shell and is not killed by the caller's Ctrl-C.
  setsid "$0" run --port "$PORT" --data "$DATA" >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$(pid_file)"
  deadline=$((SECONDS + TIMEOUT))
  until grep -qs "^NEO4J READY" "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "Neo4j exited during start-up; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      rm -f "$(pid_file)"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "Neo4j not ready after ${TIMEOUT}s; stopping it (log: $log)" >&2
      kill -TERM "$pid" 2>/dev/null || true
      rm -f "$(pid_file)"
      return 1
    fi
    sleep 0.2
  done
  grep "^NEO4J READY" "$log"
}

cmd_down() {
  local pid deadline
  if ! pid="$(running_pid)"; then
    rm -f "$(pid_file)"
    echo "not running (port $PORT)"
    return 0
  fi
  kill -TERM "$pid"
  deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "Neo4j (pid $pid) did not stop within 60s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$(pid_file)"
  echo "stopped (port $PORT)"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running: bolt://127.0.0.1:$PORT (pid $pid, log $(log_file))"
  else
    echo "not running (port $PORT)"
    return 3
  fi
}

[[ $# -ge 1 ]] || usage
command="$1"
shift
parse_options "$@"
case "$command" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  build) build ;;
  run) cmd_run ;;
  *) usage ;;
esac
