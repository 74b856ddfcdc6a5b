#!/usr/bin/env bash
# One-time setup on a fresh Debian 12 machine with Node 20: system packages, the
# services the tests use (dockerd), npm dependencies (which also compiles tsbuild),
# and the busybox:local base image in the store that fixtures/hello builds from.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
# dockerd, which the tests use to `docker load` and `docker run` what tsbuild builds
bash scripts/start-services.sh
[ -d node_modules/@tsbuild/cli ] && [ -f packages/cli/dist/main.js ] || npm ci --no-audit --no-fund
if ! npx --no-install tsbuild inspect busybox:local >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  bash scripts/make-busybox-rootfs.sh "$tmp/rootfs"
  npx --no-install tsbuild import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$tmp/rootfs" busybox:local
fi
echo "setup: ready (base image busybox:local is in the store)"
