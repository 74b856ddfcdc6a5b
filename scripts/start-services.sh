#!/usr/bin/env bash
# Starts the services tsbuild's tests talk to, idempotently:
#  - Debian's dockerd (20.10) on its default socket, so tests can `docker load` and
#    `docker run --network host` what tsbuild built.
# Registries are started by the tests themselves on ports they choose.
set -euo pipefail

DOCKER=/usr/bin/docker
SOCK=/var/run/docker.sock
if [ "$(id -u)" -ne 0 ]; then
  echo "services: not root; dockerd not started (tests that need it will say so)" >&2
  exit 0
fi
if ! DOCKER_HOST="unix://$SOCK" "$DOCKER" info >/dev/null 2>&1; then
  echo "services: starting dockerd"
  mkdir -p /var/log
  setsid /usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none -H "unix://$SOCK" >/var/log/tsbuild-ci-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    DOCKER_HOST="unix://$SOCK" "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! DOCKER_HOST="unix://$SOCK" "$DOCKER" info >/dev/null 2>&1; then
    echo "services: dockerd did not start; last log lines:" >&2
    tail -n 30 /var/log/tsbuild-ci-dockerd.log >&2 || true
    exit 1
  fi
fi
echo "services: dockerd ready on $SOCK"
