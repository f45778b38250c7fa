#!/bin/sh
# Runs INSIDE a fresh Debian 12 root (test/package/deb-install.test.ts), as root, with
# no network but loopback: installs the .deb with nothing else, then uses it as an admin
# would (coordinator as the trimswarm user, publish, a machine token, one agent sync),
# and leaves it installed (the test then checks the units with systemd-analyze from
# outside); `remove` then removes and purges it. Prints "key: value" lines the test checks.
# Usage: deb-smoke.sh use DEB IMAGE OUT | deb-smoke.sh remove
set -eu
admin=/var/lib/trimswarm/coordinator/admin.token
# setpriv execs (runuser forks and would take the SIGTERM meant for the coordinator); a
# variable, not a function: a backgrounded function is a subshell, and $! would be its PID
as_trimswarm="setpriv --reuid=trimswarm --regid=trimswarm --init-groups --reset-env"
fail () { echo "FAILED: $*"; for f in /tmp/dpkg.log /tmp/coordinator.log /tmp/agent.log; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

use () {
deb=$1 image=$2 out=$3
dpkg -i "$deb" >/tmp/dpkg.log 2>&1 || fail "dpkg -i"
echo "version: $(trimswarm --version)"
echo "user: $(getent passwd trimswarm | cut -d: -f1,6,7)"
echo "state: $(stat -c '%a %U:%G' /var/lib/trimswarm)"
echo "conffiles: $(dpkg-query -W -f='${Conffiles}' trimswarm | awk 'NF { printf "%s ", $1 }')"

$as_trimswarm trimswarm coordinator --data /var/lib/trimswarm/coordinator --config /etc/trimswarm/coordinator.json \
  --listen 127.0.0.1:8440 >/tmp/coordinator.log 2>&1 &
coordinator=$!
tries=0
until grep -q 'coordinator listening' /tmp/coordinator.log; do
  kill -0 "$coordinator" 2>/dev/null || fail "coordinator exited"
  tries=$((tries + 1)); [ "$tries" -lt 600 ] || fail "coordinator did not start in 60 s"
  sleep 0.1
done
url=http://127.0.0.1:8440
echo "health: $(/usr/lib/trimswarm/node/bin/node -e "fetch('$url/healthz').then(r => r.text()).then(t => process.stdout.write(t))")"

trimswarm publish "$image" --image smoke --version v1 --coordinator "$url" --token-file "$admin" >/tmp/publish.log 2>&1 || { cat /tmp/publish.log; fail publish; }
trimswarm policy set branch --images smoke --coordinator "$url" --token-file "$admin" >/dev/null || fail "policy set"
trimswarm token create --group branch --json --coordinator "$url" --token-file "$admin" \
  | sed -n 's/^ *"token": *"\([^"]*\)".*/\1/p' >/etc/trimswarm/agent.token
[ -s /etc/trimswarm/agent.token ] || fail "token create"
chown root:trimswarm /etc/trimswarm/agent.token && chmod 0640 /etc/trimswarm/agent.token

install -d -o trimswarm -g trimswarm /srv/trimswarm/images
$as_trimswarm trimswarm agent sync smoke --coordinator "$url" --token-file /etc/trimswarm/agent.token \
  --data /var/lib/trimswarm/agent --out /srv/trimswarm/images/smoke.img --no-index --no-mdns --no-lan --linger 0 \
  >/tmp/agent.log 2>&1 || fail "agent sync"
cmp "$image" /srv/trimswarm/images/smoke.img || fail "synced image differs"
cp /srv/trimswarm/images/smoke.img "$out"
echo "synced: $(stat -c '%s %U' /srv/trimswarm/images/smoke.img)"

kill -TERM "$coordinator"; wait "$coordinator" || fail "coordinator did not stop cleanly"
}

remove () {

dpkg -r trimswarm >/tmp/dpkg.log 2>&1 || fail "dpkg -r"
echo "removed: bin=$([ -e /usr/bin/trimswarm ] && echo kept || echo gone) config=$([ -e /etc/trimswarm/coordinator.json ] && echo kept || echo gone) data=$([ -e "$admin" ] && echo kept || echo gone)"
dpkg --purge trimswarm >/tmp/dpkg.log 2>&1 || fail "dpkg --purge"
echo "purged: config=$([ -e /etc/trimswarm/coordinator.json ] && echo kept || echo gone) data=$([ -e "$admin" ] && echo kept || echo gone) user=$(getent passwd trimswarm >/dev/null && echo kept || echo gone)"
}

"$@"
