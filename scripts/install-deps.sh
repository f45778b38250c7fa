#!/usr/bin/env bash
# Installs what trimswarm's tests and benchmarks need on a Debian machine:
# Debian packages (slapd for LDAP tests, b3sum to check digests, prometheus for
# promtool, which checks the /metrics output, e2fsprogs to build test images;
# iputils-ping for the queueing delay of the background benchmark;
# debootstrap, systemd (systemd-analyze) and binutils (strip) to build the .deb
# and test it on a fresh Debian 12; curl, PostgreSQL and Ceph's monitor, OSD and
# RADOS Gateway for scripts/scale-out-stack.sh: 99 packages, 64 MB download,
# 286 MB on disk, 2.5 min to install on the CI-sized machine; aria2 and
# opentracker for the branch benchmark's BitTorrent baseline, casync for its
# casync baseline) and the npm
# dependencies (which pin Node 24).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in slapd ldap-utils b3sum e2fsprogs iproute2 zstd chromium prometheus debootstrap systemd binutils curl postgresql ceph-mon ceph-osd radosgw ceph-common iputils-ping aria2 opentracker casync; do
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
# `npx trimswarm` in a checkout makes npm link the checkout into its npx cache the first time
# it runs in that folder, and that one install checks package.json's `engines` (Node >= 22)
# against the Node npm itself runs on: an older system Node prints EBADENGINE warnings there,
# although the checkout's own Node 24 (`node` devDependency) is what runs trimswarm. Make that
# first call here, once, so no later `npx trimswarm` call prints them.
PATH="$PATH" npx --yes trimswarm --version >/dev/null 2>&1 || true
