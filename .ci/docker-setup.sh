#!/usr/bin/env bash
# Makes a Docker engine available for the docker/ssh backend tests.
# Installs docker.io and debootstrap when missing, starts dockerd in the
# background if no engine answers, and waits for it. Records what it started
# in $SQUALL_CI_STATE (default /tmp/squall-ci-docker) so that
# .ci/docker-teardown.sh stops only that. Run as root on Debian 12.
set -euo pipefail

STATE_DIR="${SQUALL_CI_STATE:-/tmp/squall-ci-docker}"
mkdir -p "$STATE_DIR"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "docker-setup: apt-get install ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi

if timeout 20 docker info >/dev/null 2>&1; then
  # (if an earlier call of this script started it, its pid file stays, so
  # the teardown still stops it)
  echo "docker-setup: a Docker engine is already running; leaving it alone"
  exit 0
fi

echo "docker-setup: starting dockerd (log: /var/log/dockerd.log)"
nohup dockerd >/var/log/dockerd.log 2>&1 &
echo $! >"$STATE_DIR/dockerd.pid"

for _ in $(seq 1 60); do
  if timeout 10 docker info >/dev/null 2>&1; then
    echo "docker-setup: dockerd is up"
    exit 0
  fi
  sleep 1
done
echo "docker-setup: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
