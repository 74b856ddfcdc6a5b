#!/usr/bin/env bash
# Installs the Debian packages tsbuild and its tests use (gcc, make, python3: node-gyp
# builds better-sqlite3 and the snapshotter addon from source during npm ci). Idempotent: packages already
# present are not reinstalled, and apt-get update runs only when something is missing.
set -euo pipefail

# fuse3, libfuse3-dev: the power-loss test (T33) compiles its FUSE filesystem (plfs, with gcc) and mounts it
PACKAGES=(gcc libc6-dev make python3 runc busybox-static docker.io skopeo umoci docker-registry pigz zstd bzip2 xz-utils util-linux tar attr iproute2 apache2-utils git fuse3 libfuse3-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system deps: all present (${PACKAGES[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "system deps: missing ${missing[*]}; run this script as root to install them" >&2
  exit 1
fi

echo "system deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The docker-registry package starts a service on :5000 on install in some setups;
# tests start their own registries on ports they choose, so leave any such service alone.
echo "system deps: done"
