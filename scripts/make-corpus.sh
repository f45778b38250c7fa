#!/usr/bin/env bash
# Builds the benchmark corpus (base.img, next.img: two 768 MiB raw ext4 images
# from Debian packages) with ../shared/corpus/make-images.sh into OUT_DIR
# (default .cache/corpus, which the benchmarks look in). Needs root and
# debootstrap, which it installs. About 2 minutes; nothing to do when present.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.cache/corpus}
if [ -f "$out/base.img" ] && [ -f "$out/next.img" ]; then echo "$out"; exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "make-corpus: needs root (debootstrap); run it with sudo" >&2; exit 2; }
make_images=../shared/corpus/make-images.sh
[ -x "$make_images" ] || { echo "make-corpus: $make_images not found: pass a folder holding base.img and next.img to the benchmark instead" >&2; exit 2; }
for pkg in debootstrap e2fsprogs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
done
"$make_images" "$out" >&2
rm -rf "$out"/*.root
echo "$out"
