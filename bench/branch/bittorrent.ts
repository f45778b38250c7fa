/**
 * The BitTorrent baseline's command lines: opentracker and one aria2c seed in
 * hq, one aria2c per client in the branch. Pure (strings only); run.ts spawns
 * them. DHT, LPD and peer exchange are off and the torrent is private, so
 * peers come from our tracker only and nothing leaves the two namespaces.
 */
import { BT_LINGER_MAX_S, BT_ZSTD_WINDOW_LOG, CLIENT_PORT_BASE, HQ_ADDRESS, SEED_PORT, TRACKER_PORT } from './constants.ts'
import type { CommandLine } from './network.ts'

/** The tracker's announce URL (opentracker listens on the hq end of the veth, no relay in between). */
export const ANNOUNCE_URL = `http://${HQ_ADDRESS}:${TRACKER_PORT}/announce`

/** aria2c options every peer gets: no DHT, LPD or PEX, quiet, no preallocation. */
export function aria2Common (): string[] {
  return ['--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false', '--enable-peer-exchange=false',
    '--seed-ratio=0.0', '--file-allocation=none', '--allow-overwrite=true', '--auto-file-renaming=false',
    '--console-log-level=warn', '--summary-interval=0', '--download-result=hide']
}

/** opentracker in hq: whitelisted info hashes only, drops root for `nobody`, chrooted into `chroot`. */
export function trackerCommand (chroot: string, whitelist: string): CommandLine {
  return ['opentracker', ['-i', HQ_ADDRESS, '-p', String(TRACKER_PORT), '-P', String(TRACKER_PORT), '-w', whitelist, '-u', 'nobody', '-d', chroot]]
}

/** The seed in hq: already has the files in `dir`, so it skips the hash check and seeds until killed. */
export function seedCommand (dir: string, torrents: string[]): CommandLine {
  return ['aria2c', [...aria2Common(), `--dir=${dir}`, `--listen-port=${SEED_PORT}`, '--bt-seed-unverified=true', ...torrents]]
}

/**
 * Run by aria2c when client's download is complete (args: GID, file count,
 * path): decompress next to it, then rename into place, so the output appears
 * whole (a new inode the runner polls) and only after decompression.
 */
export const HOOK_SCRIPT = `#!/bin/sh
d=$(dirname "$3")
if zstd -d -q -f --long=${BT_ZSTD_WINDOW_LOG} "$3" -o "$d/out.img.tmp" && mv "$d/out.img.tmp" "$d/out.img"; then touch "$d/done"; else touch "$d/failed"; fi
`

/**
 * One client: aria2c in the background; once its own image is in place it
 * keeps seeding until every client's folder has "done" (or BT_LINGER_MAX_S),
 * like trimswarm's --linger. Exits 0 when its image is in place.
 * Args: torrent, own folder, listen port, hook, then every client's folder.
 */
const CLIENT_SCRIPT = `set -u
torrent=$1 dir=$2 port=$3 hook=$4; shift 4
aria2c ${aria2Common().join(' ')} --dir="$dir" --listen-port="$port" --on-bt-download-complete="$hook" "$torrent" >"$dir/aria2.log" 2>&1 &
pid=$!
end=
while kill -0 "$pid" 2>/dev/null && [ ! -e "$dir/failed" ]; do
  if [ -e "$dir/done" ]; then
    [ -n "$end" ] || end=$((SECONDS + ${BT_LINGER_MAX_S}))
    all=1; for d in "$@"; do [ -e "$d/done" ] || all=0; done
    if [ "$all" = 1 ] || [ "$SECONDS" -ge "$end" ]; then break; fi
  fi
  sleep 0.1
done
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
[ -e "$dir/done" ]
`

/** Client i's command line (i from 0); `dirs` are every client's folders, its own is dirs[i]. */
export function clientCommand (i: number, torrent: string, hook: string, dirs: string[]): CommandLine {
  return ['bash', ['-c', CLIENT_SCRIPT, 'bt-client', torrent, dirs[i], String(CLIENT_PORT_BASE + i), hook, ...dirs]]
}

/** Scrape URL of one info hash (hex): the runner waits until the tracker knows the seed. */
export function scrapeUrl (infoHash: string): string {
  return `http://${HQ_ADDRESS}:${TRACKER_PORT}/scrape?info_hash=${infoHash.replace(/../g, '%$&')}`
}
