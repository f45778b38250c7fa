#!/usr/bin/env bash
# scripts/build-deb.sh OUTDIR: writes OUTDIR/trimswarm_<version>_amd64.deb, a
# self-contained Debian package (docs/OPERATIONS.md "Install"): the built
# JavaScript (npm run build) and the production dependencies under
# /usr/lib/trimswarm, with the Node 24 runtime the checkout pins (the `node`
# devDependency; Debian 12's nodejs is too old), /usr/bin/trimswarm, the
# systemd units, and /etc/trimswarm/{coordinator,agent}.json as conffiles.
# Needs a checkout with its npm install (scripts/install-deps.sh) and dpkg-deb;
# no network. TRIMSWARM_DEB_COMPRESS=zstd|xz|gzip (default zstd: fast to build,
# read by dpkg >= 1.21.18, i.e. Debian 12; xz for older dpkg).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/build-deb.sh OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
node=node_modules/.bin/node
version=$($node -p 'require("./package.json").version')
arch=amd64
[ "$(uname -m)" = x86_64 ] || { echo "build-deb: the bundled Node runtime is this machine's ($(uname -m)); the package is amd64 only" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
lib="$stage/usr/lib/trimswarm"
mkdir -p "$lib/bin" "$lib/node/bin" "$lib/node_modules" "$stage/usr/bin" "$stage/etc/trimswarm" \
  "$stage/lib/systemd/system" "$stage/usr/share/doc/trimswarm" "$stage/DEBIAN"

# the program: entry script, built JavaScript, package.json ("type": "module" for dist/)
cp bin/trimswarm.js "$lib/bin/"
scripts/build.sh "$lib/dist"
$node -e '
  const p = require("./package.json")
  const keep = { name: p.name, version: p.version, description: p.description, type: p.type, license: p.license, engines: p.engines, dependencies: p.dependencies }
  process.stdout.write(JSON.stringify(keep, null, 2) + "\n")' > "$lib/package.json"

# production dependencies exactly as package-lock.json installed them (npm ls follows the lock, not the registry)
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | while read -r dir; do
  rel=${dir#"$PWD/node_modules/"}
  [ "$rel" != "$dir" ] || rel=${dir#"$(readlink -f node_modules)/"}
  # nested node_modules of a package are listed on their own lines: copy each package without them;
  # type declarations and source maps are for development, not for running
  mkdir -p "$lib/node_modules/$rel"
  tar -C "$dir" --exclude=./node_modules --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' --exclude='*.map' -cf - . |
    tar -C "$lib/node_modules/$rel" -xf -
done

# the runtime, stripped like Debian's own binaries (124 MB -> 109 MB); native addons link against .dynsym, which stays
cp "$(readlink -f $node)" "$lib/node/bin/node"
strip --strip-all "$lib/node/bin/node"

install -m 0755 packaging/deb/trimswarm.sh "$stage/usr/bin/trimswarm"
install -m 0644 packaging/deb/etc/coordinator.json packaging/deb/etc/agent.json "$stage/etc/trimswarm/"
install -m 0644 packaging/deb/systemd/*.service "$stage/lib/systemd/system/"
{
  echo "trimswarm is licensed under the Apache License 2.0 (below). It bundles, under /usr/lib/trimswarm:"
  echo " - Node.js $($node -p process.version) (node/bin/node): MIT and others, https://github.com/nodejs/node/blob/$($node -p process.version)/LICENSE"
  echo " - npm packages (node_modules/): each under the license in its own folder"
  echo
  cat LICENSE
} > "$stage/usr/share/doc/trimswarm/copyright"
install -m 0644 README.md docs/OPERATIONS.md docs/CONFIGURATION.md "$stage/usr/share/doc/trimswarm/"
install -m 0755 packaging/deb/DEBIAN/postinst packaging/deb/DEBIAN/prerm packaging/deb/DEBIAN/postrm "$stage/DEBIAN/"
install -m 0644 packaging/deb/DEBIAN/conffiles "$stage/DEBIAN/"

size_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: trimswarm
Version: $version
Architecture: $arch
Maintainer: trimswarm maintainers <trimswarm@localhost>
Installed-Size: $size_kib
Depends: adduser, libc6 (>= 2.28), libstdc++6 (>= 8), libgcc-s1
Section: net
Priority: optional
Homepage: https://github.com/trimswarm/trimswarm
Description: peer-assisted distribution of large versioned VM disk images
 trimswarm keeps workspace disk images current on branch-office machines:
 a coordinator publishes content-addressed versions, agents fetch only the
 chunks they lack, from local files, LAN peers and the coordinator.
 .
 This package carries its own Node.js runtime and libraries under
 /usr/lib/trimswarm, systemd units for the coordinator and the agent, and
 their configuration in /etc/trimswarm.
CONTROL

deb="$out/trimswarm_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${TRIMSWARM_DEB_COMPRESS:-zstd}" --build "$stage" "$deb" >/dev/null
echo "$deb"
