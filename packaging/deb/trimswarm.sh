#!/bin/sh
# /usr/bin/trimswarm: the CLI on the Node runtime the package carries (Debian 12's nodejs is too old).
exec /usr/lib/trimswarm/node/bin/node /usr/lib/trimswarm/bin/trimswarm.js "$@"
