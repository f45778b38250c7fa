#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them all
# (type check + import direction, unit, integration against a real slapd,
# multi-process end-to-end on 127.0.0.1) and ends with one plain summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
mkdir -p test-artifacts
rc=0
npm test -- --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json || rc=$?
if [ -f test-artifacts/vitest.json ]; then
  node_modules/.bin/node -e '
    const r = JSON.parse(require("fs").readFileSync("test-artifacts/vitest.json", "utf8"))
    const skipped = r.numPendingTests + r.numTodoTests
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)'
fi
exit $rc
