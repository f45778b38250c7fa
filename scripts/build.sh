#!/usr/bin/env bash
# `npm run build` (and npm pack's prepack): the JavaScript that ships in dist/,
# or in OUTDIR when given (scripts/build-deb.sh builds into its own staging
# tree, so a build running meanwhile cannot change what it copies). For plain
# Node >= 22: no type stripping, no devDependencies. The sources import with .ts
# extensions; tsc rewrites them to .js (tsconfig.dist.json). bench/, test/ and
# scripts/ are not built: the shipped CLI does not import them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
node_modules/.bin/node scripts/sync-version.ts --check
rm -rf "$out"
node_modules/.bin/tsc -p tsconfig.dist.json --outDir "$out"
# files the code reads at run time, next to the module that reads them
cp -r coordinator/console/assets "$out/coordinator/console/assets"
