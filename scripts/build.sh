#!/usr/bin/env bash
# `npm run build` (and npm pack's prepack): the JavaScript that ships in dist/,
# or in OUTDIR when given (scripts/build-deb.sh builds into its own staging
# tree, so a build running meanwhile cannot change what it copies). For plain
# Node >= 22: no type stripping, no devDependencies. The CLI and what it imports
# are bundled into OUTDIR/bin/ (scripts/bundle.ts: main.js and the chunks its
# commands load); native addons and the coordinator's database, directory and S3
# clients stay in node_modules. bench/, test/ and scripts/ are not built: the
# shipped CLI does not import them. Types are checked by `tsc -b` (npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
node_modules/.bin/node scripts/sync-version.ts --check
rm -rf "$out"
node_modules/.bin/node scripts/bundle.ts "$out"
