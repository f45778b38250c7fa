#!/usr/bin/env bash
# The README's main command: installs what trimswarm needs, then runs the demo:
# a coordinator on the embedded default (level + a local directory store), an
# image published, several agents on 127.0.0.1 syncing it, and a closing table
# of bytes by source. Extra arguments go to `trimswarm demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec npx trimswarm demo "$@"
