#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them all
# (unit, integration against a real slapd, multi-process end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec npm test
