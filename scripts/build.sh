#!/usr/bin/env bash
# `npm run build`: the JavaScript that ships (npm package, .deb) in dist/, for
# plain Node >= 22 (no type stripping, no devDependencies). The sources import
# with .ts extensions; tsc rewrites them to .js (tsconfig.dist.json). bench/,
# test/ and scripts/ are not built: the shipped CLI does not import them.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/node scripts/sync-version.ts --check
rm -rf dist
node_modules/.bin/tsc -p tsconfig.dist.json
# files the code reads at run time, next to the module that reads them
cp -r coordinator/console/assets dist/coordinator/console/assets
