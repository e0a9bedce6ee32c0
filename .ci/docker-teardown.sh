#!/usr/bin/env bash
# Stops what .ci/docker-setup.sh started: leftover squall containers and
# networks (by label), then the dockerd it launched (and only that one).
set -uo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${SQUALL_CI_STATE:-/tmp/squall-ci-docker}"
PID_FILE="$STATE_DIR/dockerd.pid"

if timeout 20 docker info >/dev/null 2>&1; then
  # --all: the leftovers of runs whose harness is gone (every run of the suite
  # by now), not the clusters of whoever else shares this engine
  timeout 120 python3 -m harness.cli cluster down --all >/dev/null 2>&1 || true
fi

if [ -f "$PID_FILE" ]; then
  pid="$(cat "$PID_FILE")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "docker-teardown: stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PID_FILE"
fi
exit 0
