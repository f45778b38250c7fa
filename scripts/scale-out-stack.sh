#!/usr/bin/env bash
# Runs the shared back-ends of several trimswarm coordinators on one machine,
# for tests, benchmarks and trying the scale-out set-up (docs/OPERATIONS.md
# "Object storage (S3)"): Debian's PostgreSQL and Ceph's RADOS Gateway (S3) on
# a one-node Ceph cluster, everything under DIR, listening on 127.0.0.1 only,
# no systemd, nothing under /etc or /var/lib.
#
#   scripts/scale-out-stack.sh up DIR
#   scripts/scale-out-stack.sh down DIR
#   scripts/scale-out-stack.sh database DIR NAME
#   scripts/scale-out-stack.sh postgres DIR
#
# up: creates the stack on first use, starts whatever of it is not running
# (a second `up` of a running stack only prints its values), and writes:
#   DIR/coordinator.json  a coordinator config with "metadata": {"postgres": ...}
#                         and "blockStore": {"s3": ...}: every coordinator
#                         started with it shares metadata and chunks
#   DIR/s3-secret         the S3 secret access key (mode 0600)
#   DIR/admin.token       an admin token for the coordinators (mode 0600)
#   DIR/postgres.json     how to reach PostgreSQL (host, port, database, user,
#                         passwordFile): coordinator.json's "metadata.postgres"
#   DIR/postgres-password the database user's password (mode 0600)
# and prints key=value lines: s3Endpoint, bucket, postgresPort, config.
# down: stops every daemon of DIR's stack and keeps their data (a later `up`
# starts them again with the same data, buckets, keys and ports).
# database: creates database NAME (if missing) in the running stack's
# PostgreSQL, owned by the same user, so several users of one stack (the test
# files of one vitest run) each have their own; prints database=NAME.
# postgres: starts only PostgreSQL (its own cluster under DIR, as `up` does)
# and writes DIR/postgres.json: for a test that stops its database without
# stopping anyone else's (`down DIR` stops it).
#
# Ceph runs as one monitor (cephx on, keys in DIR/ceph/keyring, mode 0600),
# one OSD whose BlueStore lives in a sparse file (DIR/ceph/osd.0.block, 20 GiB
# unless STACK_OSD_GIB says otherwise; memstore would start a second faster but
# loses every object when the OSD stops), and one radosgw. No manager: RGW and
# the OSD work without one, and it would cost start-up time and memory.
# Measured here (2 cores shared with other work, load 12): first `up` 22-30 s,
# `up` after `down` 8-10 s, `down` 6-7 s; about 200 MB of RAM in all, 55 MB of
# disk (the 20 GiB BlueStore file is sparse).
# PostgreSQL refuses to run as root; as root the script runs it as the
# `postgres` user, so DIR must be reachable by that user (the script makes DIR
# mode 0711: files in it stay private, 0600).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
BUCKET=${STACK_BUCKET:-trimswarm}
REGION=us-east-1
RGW_UID=trimswarm
PG_DB=trimswarm
PG_USER=trimswarm
# Size of the OSD's BlueStore file (sparse: it takes disk space only as objects are written).
OSD_FILE_BYTES=$((${STACK_OSD_GIB:-20} * 1024 * 1024 * 1024))
START_TIMEOUT_S=${STACK_START_TIMEOUT_S:-120}
CEPH_TIMEOUT_S=30

die () { echo "scale-out-stack.sh: $*" >&2; exit 1; }
usage () { die "usage: $0 up DIR | down DIR | database DIR NAME | postgres DIR"; }
log () { echo "scale-out-stack.sh: $*" >&2; }

need () { # a command from a Debian package
  command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || die "$1 not found: install the Debian package $2 (scripts/install-deps.sh)"
}

alive () { # whether the pid in file $1 is a running process
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_free () { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

TAKEN=''
# Ports are picked below the kernel's ephemeral range (ip_local_port_range), which the kernel never hands out
# for listen(0) or connect: radosgw binds its port ~10 s after it is picked, and a port from the ephemeral
# range could meanwhile become a test's or a client's (seen in a CI rehearsal: "failed to bind ... in use").
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
pick_port () { # sets variable $1 to a TCP port nobody listens on now and not picked before
  local p i span=$((EPHEMERAL_LOW - 10000))
  [ "$span" -gt 1000 ] || span=20000
  for i in $(seq 1 200); do
    p=$((10000 + RANDOM % span))
    case " $TAKEN " in *" $p "*) continue ;; esac
    if port_free "$p"; then TAKEN="$TAKEN $p"; printf -v "$1" '%s' "$p"; return 0; fi
  done
  die "no free TCP port found on 127.0.0.1"
}

secret () { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c "${1:-40}"; }

write_private () { # file, content: mode 0600 from the start
  (umask 077; printf '%s\n' "$2" >"$1.tmp")
  mv "$1.tmp" "$1"
}

stop_pid () { # pidfile, name: TERM, wait up to 20 s (the OSD flushes BlueStore), then KILL
  local pidfile="$1" pid i
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then log "$2 did not stop within 20 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

wait_until () { # description, pidfile, log file, command...: polls the command until it succeeds
  local what="$1" pidfile="$2" logfile="$3" deadline=$((SECONDS + START_TIMEOUT_S))
  shift 3
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pidfile" ] && ! alive "$pidfile"; then
      [ -f "$logfile" ] && tail -n 20 "$logfile" >&2
      die "$what exited during start (log: $logfile)"
    fi
    [ $SECONDS -lt $deadline ] || { [ -f "$logfile" ] && tail -n 20 "$logfile" >&2; die "$what not ready within ${START_TIMEOUT_S} s (log: $logfile)"; }
    sleep 0.2
  done
}

# ---------------------------------------------------------------- PostgreSQL

as_pg () { # runs a command as the user PostgreSQL runs as
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_up () {
  local dir="$1" data="$1/pg/data" run="$1/pg/run" port
  need "$PG_BIN/initdb" postgresql
  mkdir -p "$dir/pg"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no user postgres: install the Debian package postgresql"
    chmod 0711 "$dir"
    chown postgres: "$dir/pg"
    as_pg test -w "$dir/pg" || die "user postgres cannot write $dir/pg: a parent directory of $dir is closed to it (PostgreSQL refuses to run as root); use a DIR under /tmp or /var/tmp"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    [ -f "$dir/postgres-password" ] || write_private "$dir/postgres-password" "$(secret 32)"
    pick_port port; echo "$port" >"$dir/pg/port"
    as_pg mkdir -p "$run"; as_pg chmod 0700 "$run"
    local pw="$dir/pg/initdb-password"
    (umask 077; secret 32 >"$pw"); [ "$(id -u)" -ne 0 ] || chown postgres: "$pw"
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 --pwfile="$pw" -E UTF8 --locale=C.UTF-8 >"$dir/pg/initdb.log" 2>&1 \
      || { cat "$dir/pg/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pw"
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF
# scale-out-stack.sh: loopback only, socket in the stack's own directory
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$run'
fsync = on
EOF
    as_pg tee "$data/pg_hba.conf" >/dev/null <<EOF
# scale-out-stack.sh: the superuser over the socket (peer), the trimswarm user over TCP with its password
# (to the databases it may connect to: its own, and those `database NAME` creates for it)
local all postgres peer
host all $PG_USER 127.0.0.1/32 scram-sha-256
EOF
  fi
  port=$(cat "$dir/pg/port")
  if ! alive "$data/postmaster.pid" 2>/dev/null && ! as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port_free "$port" || die "PostgreSQL's port $port (from $dir/pg/port) is taken by another process"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$dir/pg/postgres.log" -w -t "$START_TIMEOUT_S" start >/dev/null \
      || { tail -n 20 "$dir/pg/postgres.log" >&2; die "PostgreSQL did not start (log: $dir/pg/postgres.log)"; }
  fi
  if [ ! -f "$dir/pg/created" ]; then
    local pass; pass=$(head -n 1 "$dir/postgres-password")
    as_pg "$PG_BIN/psql" -h "$run" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<EOF \
      || die "creating the database $PG_DB and user $PG_USER failed"
CREATE ROLE $PG_USER LOGIN PASSWORD '$pass';
CREATE DATABASE $PG_DB OWNER $PG_USER;
EOF
    touch "$dir/pg/created"
  fi
  cat >"$dir/postgres.json" <<EOF
{
  "host": "127.0.0.1",
  "port": $port,
  "database": "$PG_DB",
  "user": "$PG_USER",
  "passwordFile": "$dir/postgres-password"
}
EOF
}

pg_down () {
  local data="$1/pg/data"
  [ -f "$data/PG_VERSION" ] || return 0
  if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null || die "PostgreSQL did not stop (log: $1/pg/postgres.log)"
  fi
}

# ---------------------------------------------------------------- Ceph + RGW

cephc () { timeout "$CEPH_TIMEOUT_S" ceph -c "$CONF" --connect-timeout 10 "$@"; }

write_ceph_conf () {
  local c="$1" fsid="$2" mon1="$3" mon2="$4" rgw="$5"
  cat >"$c/ceph.conf" <<EOF
# Generated by scripts/scale-out-stack.sh for a private one-node test cluster.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon2,v1:127.0.0.1:$mon1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
keyring = $c/keyring
run dir = $c/run
admin socket = $c/run/\$name.asok
pid file = $c/run/\$name.pid
log file = $c/log/\$name.log
crash dir = $c/crash
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
# one OSD: one copy, no failure domain above the OSD, few placement groups
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
[mon]
mon data = $c/mon.\$id
mon cluster log file = $c/log/cluster.log
[osd]
osd data = $c/osd.\$id
keyring = $c/osd.\$id/keyring
osd objectstore = bluestore
bluestore block path = $c/osd.\$id.block
bluestore block create = true
bluestore block size = $OSD_FILE_BYTES
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 939524096
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw
rgw data = $c/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
EOF
}

ceph_create () { # first `up`: keys, monitor, OSD id
  local dir="$1" c="$1/ceph" fsid mon1 mon2 rgw
  need ceph-mon ceph-mon; need ceph-osd ceph-osd; need radosgw radosgw; need ceph ceph-common; need monmaptool ceph-common
  rm -rf "$c"; mkdir -p "$c/run" "$c/log" "$c/crash" "$c/rgw"; chmod 0700 "$c"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  pick_port mon1; pick_port mon2; pick_port rgw
  echo "$rgw" >"$c/rgw-port"
  write_ceph_conf "$c" "$fsid" "$mon1" "$mon2" "$rgw"
  CONF="$c/ceph.conf"
  (umask 077
   ceph-authtool --create-keyring "$c/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
   ceph-authtool "$c/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
   ceph-authtool "$c/keyring" --gen-key -n client.rgw --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null)
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon2,v1:127.0.0.1:$mon1]" "$c/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$c/monmap" --keyring "$c/keyring" >"$c/log/mkfs-mon.log" 2>&1 \
    || { cat "$c/log/mkfs-mon.log" >&2; die "ceph-mon --mkfs failed"; }
  rm -f "$c/monmap"
}

ceph_up () {
  local dir="$1" c="$1/ceph"
  [ -f "$c/mon.a/keyring" ] || ceph_create "$dir"
  CONF="$c/ceph.conf"
  if ! alive "$c/run/mon.a.pid"; then
    ceph-mon -c "$CONF" -i a >>"$c/log/start-mon.log" 2>&1 || { tail -n 20 "$c/log/mon.a.log" >&2; die "ceph-mon did not start (log: $c/log/mon.a.log)"; }
  fi
  wait_until "ceph-mon" "$c/run/mon.a.pid" "$c/log/mon.a.log" cephc mon stat
  if [ ! -f "$c/osd.0/keyring" ]; then
    # The OSD's key is registered with `osd new` before mkfs, as ceph's own vstart.sh does.
    # uuid and key are kept until mkfs succeeds: `osd new` with the same uuid and key is
    # idempotent, so an `up` interrupted here can simply run again.
    if [ ! -s "$c/osd-new.json" ]; then
      (umask 077; printf '{"uuid": "%s", "cephx_secret": "%s"}\n' "$(cat /proc/sys/kernel/random/uuid)" "$(ceph-authtool --gen-print-key)" >"$c/osd-new.json")
    fi
    local uuid key
    uuid=$(sed -n 's/.*"uuid": "\([^"]*\)".*/\1/p' "$c/osd-new.json")
    key=$(sed -n 's/.*"cephx_secret": "\([^"]*\)".*/\1/p' "$c/osd-new.json")
    rm -rf "$c/osd.0" "$c/osd.0.block"; mkdir -p "$c/osd.0"
    [ "$(cephc osd new "$uuid" -i "$c/osd-new.json")" = 0 ] || die "ceph osd new did not give id 0"
    ceph-osd -c "$CONF" -i 0 --mkfs --key "$key" --osd-uuid "$uuid" --no-mon-config >"$c/log/mkfs-osd.log" 2>&1 \
      || { cat "$c/log/mkfs-osd.log" >&2; die "ceph-osd --mkfs failed"; }
    (umask 077; ceph-authtool --create-keyring "$c/osd.0/keyring" -n osd.0 --add-key "$key" >/dev/null)
    rm -f "$c/osd-new.json"
  fi
  if ! alive "$c/run/osd.0.pid"; then
    ceph-osd -c "$CONF" -i 0 >>"$c/log/start-osd.log" 2>&1 || { tail -n 20 "$c/log/osd.0.log" >&2; die "ceph-osd did not start (log: $c/log/osd.0.log)"; }
  fi
  wait_until "ceph-osd" "$c/run/osd.0.pid" "$c/log/osd.0.log" osd_up
  local rgw; rgw=$(cat "$c/rgw-port")
  if ! alive "$c/run/client.rgw.pid"; then
    port_free "$rgw" || die "radosgw's port $rgw (from $c/rgw-port) is taken by another process"
    radosgw -c "$CONF" -n client.rgw >>"$c/log/start-rgw.log" 2>&1 || { tail -n 20 "$c/log/client.rgw.log" >&2; die "radosgw did not start (log: $c/log/client.rgw.log)"; }
  fi
  wait_until "radosgw" "$c/run/client.rgw.pid" "$c/log/client.rgw.log" curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$rgw/"
}

osd_up () { cephc osd dump 2>/dev/null | grep -q '^osd\.0 up '; }

json_field () { # first "NAME": "VALUE" of a JSON text on stdin (radosgw-admin's output)
  sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" | head -n 1
}

s3_user () { # the RGW user; radosgw-admin makes its keys, so the secret is never on a command line
  local dir="$1" c="$1/ceph" out access secret_key
  (umask 077
   timeout "$CEPH_TIMEOUT_S" radosgw-admin -c "$CONF" -n client.admin user info --uid "$RGW_UID" >"$c/user.json" 2>/dev/null \
     || timeout "$CEPH_TIMEOUT_S" radosgw-admin -c "$CONF" -n client.admin user create --uid "$RGW_UID" --display-name "trimswarm coordinators" >"$c/user.json" 2>"$c/log/user-create.log") \
    || { cat "$c/log/user-create.log" >&2; die "radosgw-admin user create failed"; }
  access=$(json_field access_key <"$c/user.json")
  secret_key=$(json_field secret_key <"$c/user.json")
  rm -f "$c/user.json"
  [ -n "$access" ] && [ -n "$secret_key" ] || die "radosgw-admin gave no keys for user $RGW_UID"
  echo "$access" >"$dir/s3-access-key"
  write_private "$dir/s3-secret" "$secret_key"
}

s3_bucket () { # PUT /BUCKET, signed with the user's keys (a second PUT by the owner is a no-op)
  local dir="$1" rgw="$2" code
  # The keys go to curl on stdin (-K -), not on its command line where `ps` shows them.
  # curl 7.88 signs without x-amz-content-sha256, which RGW requires: send the empty body's SHA-256.
  code=$(printf 'user = "%s:%s"\n' "$(cat "$dir/s3-access-key")" "$(head -n 1 "$dir/s3-secret")" | curl -K - -sS \
    -o "$dir/ceph/log/bucket-create.out" -w '%{http_code}' --max-time 30 -X PUT \
    -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -d' ' -f1)" \
    --aws-sigv4 "aws:amz:$REGION:s3" "http://127.0.0.1:$rgw/$BUCKET") \
    || die "creating bucket $BUCKET failed: no answer from radosgw on 127.0.0.1:$rgw"
  case "$code" in
    200|409) ;;
    *) cat "$dir/ceph/log/bucket-create.out" >&2; die "creating bucket $BUCKET failed: HTTP $code" ;;
  esac
}

ceph_down () {
  local c="$1/ceph"
  [ -d "$c" ] || return 0
  stop_pid "$c/run/client.rgw.pid" radosgw
  stop_pid "$c/run/osd.0.pid" ceph-osd
  stop_pid "$c/run/mon.a.pid" ceph-mon
}

# ---------------------------------------------------------------- commands

cmd_up () {
  local dir="$1" started=$SECONDS rgw
  need curl curl; need ss iproute2
  mkdir -p "$dir" 2>/dev/null || die "cannot create $dir"
  dir=$(cd "$dir" && pwd)
  pg_up "$dir"
  ceph_up "$dir"
  rgw=$(cat "$dir/ceph/rgw-port")
  s3_user "$dir"
  s3_bucket "$dir" "$rgw"
  [ -f "$dir/admin.token" ] || write_private "$dir/admin.token" "tsa_$(secret 43)"
  cat >"$dir/coordinator.json" <<EOF
{
  "metadata": {
    "postgres": $(sed 's/^/    /; 1s/^    //' "$dir/postgres.json")
  },
  "blockStore": {
    "s3": {
      "endpoint": "http://127.0.0.1:$rgw",
      "bucket": "$BUCKET",
      "region": "$REGION",
      "accessKeyId": "$(cat "$dir/s3-access-key")",
      "secretAccessKeyFile": "$dir/s3-secret",
      "forcePathStyle": true
    }
  }
}
EOF
  log "up in $((SECONDS - started)) s"
  echo "s3Endpoint=http://127.0.0.1:$rgw"
  echo "bucket=$BUCKET"
  echo "postgresPort=$(cat "$dir/pg/port")"
  echo "config=$dir/coordinator.json"
}

cmd_down () {
  local dir="$1"
  [ -d "$dir" ] || exit 0
  dir=$(cd "$dir" && pwd)
  CONF="$dir/ceph/ceph.conf"
  ceph_down "$dir"
  pg_down "$dir"
}

cmd_database () {
  local dir="$1" name="$2" port run exists
  [[ "$name" =~ ^[a-z][a-z0-9_]{0,62}$ ]] || die "database name $name: up to 63 lower-case letters, digits and _, starting with a letter"
  dir=$(cd "$dir" 2>/dev/null && pwd) || die "no stack in $1"
  [ -f "$dir/pg/port" ] || die "no PostgreSQL in $dir: run \`$0 up $dir\` first"
  port=$(cat "$dir/pg/port"); run="$dir/pg/run"
  exists=$(as_pg "$PG_BIN/psql" -h "$run" -p "$port" -U postgres -d postgres -Atq -c "SELECT 1 FROM pg_database WHERE datname = '$name'") \
    || die "PostgreSQL of $dir does not answer: run \`$0 up $dir\`"
  if [ "$exists" != 1 ]; then
    as_pg "$PG_BIN/psql" -h "$run" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE $name OWNER $PG_USER" >/dev/null \
      || die "creating database $name failed"
  fi
  echo "database=$name"
}

cmd_postgres () {
  local dir="$1"
  need ss iproute2
  mkdir -p "$dir" 2>/dev/null || die "cannot create $dir"
  dir=$(cd "$dir" && pwd)
  pg_up "$dir"
  echo "postgresPort=$(cat "$dir/pg/port")"
}

case "${1:-}" in
  up) [ $# -eq 2 ] || usage; cmd_up "$2" ;;
  down) [ $# -eq 2 ] || usage; cmd_down "$2" ;;
  database) [ $# -eq 3 ] || usage; cmd_database "$2" "$3" ;;
  postgres) [ $# -eq 2 ] || usage; cmd_postgres "$2" ;;
  *) usage ;;
esac
