#!/usr/bin/env bash
# Installs what trimswarm's tests and benchmarks need on a Debian machine:
# Debian packages (slapd for LDAP tests, b3sum to check digests, prometheus for
# promtool, which checks the /metrics output, iputils-ping for the queueing
# delay of the background benchmark, e2fsprogs to
# build test images) and the npm dependencies (which pin Node 24).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in slapd ldap-utils b3sum e2fsprogs iproute2 zstd chromium prometheus iputils-ping; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# `npm install` installs exactly what package-lock.json pins, like `npm ci`, but tolerates
# per-platform optional packages the registry does not carry (@napi-rs/blake-hash's other
# platforms), which make `npm ci` refuse the lock file.
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
