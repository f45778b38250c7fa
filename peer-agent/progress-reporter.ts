/**
 * Progress for people: a one-line bar redrawn in place on a TTY (bytes done /
 * total, by source, rate, ETA; at most PROGRESS_REDRAWS_PER_SECOND redraws),
 * plain lines every PROGRESS_PLAIN_INTERVAL_MS otherwise.
 */
import { PROGRESS_PLAIN_INTERVAL_MS, PROGRESS_REDRAWS_PER_SECOND } from './constants.ts'
import type { SyncProgress } from './image-sync.ts'

/** A sink for sync progress. */
export interface ProgressReporter {
  update: (p: SyncProgress) => void
  /** Clears the bar (before the final line). */
  done: () => void
}

/** Bytes for people (MiB with one decimal, or KiB / B when small). */
export function formatBytes (n: number): string {
  if (n >= 1024 * 1024 * 1024) return `${(n / 1024 ** 3).toFixed(2)} GiB`
  if (n >= 1024 * 1024) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`
  return `${n} B`
}

/** A count with its noun, singular for one: "1 peer", "176 chunks". */
export function plural (n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

function formatSeconds (s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--'
  const m = Math.floor(s / 60)
  return `${m}:${String(Math.floor(s % 60)).padStart(2, '0')}`
}

/** Creates a reporter writing to `stream` (a TTY gets the redrawn bar). */
export function createProgressReporter (stream: NodeJS.WriteStream = process.stderr, options: { tty?: boolean } = {}): ProgressReporter {
  const tty = options.tty ?? stream.isTTY === true
  const minInterval = tty ? 1000 / PROGRESS_REDRAWS_PER_SECOND : PROGRESS_PLAIN_INTERVAL_MS
  let last = 0
  let lastPhase = ''
  let drawn = false
  const samples: Array<[number, number]> = []

  function line (p: SyncProgress): string {
    const now = performance.now()
    samples.push([now, p.doneBytes])
    while (samples.length > 2 && now - samples[0][0] > 5000) samples.shift()
    const [t0, b0] = samples[0]
    const rate = now > t0 ? (p.doneBytes - b0) / ((now - t0) / 1000) : 0
    const eta = rate > 0 ? (p.totalBytes - p.doneBytes) / rate : Infinity
    const pct = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : 1
    const src = `local ${formatBytes(p.bytes.local)}, peers ${formatBytes(p.bytes.peers)}, origin ${formatBytes(p.bytes.origin)}`
    const head = `${p.image}@${p.version} ${(pct * 100).toFixed(1).padStart(5)}% ${formatBytes(p.doneBytes)}/${formatBytes(p.totalBytes)}`
    if (!tty) return `${head} (${src}) ${formatBytes(rate)}/s ETA ${formatSeconds(eta)} [${p.phase}]`
    const width = 20
    const fill = Math.round(pct * width)
    return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${head} | ${src} | ${formatBytes(rate)}/s ETA ${formatSeconds(eta)} | ${p.phase}`
  }

  return {
    update (p) {
      const now = performance.now()
      const phaseChanged = p.phase !== lastPhase
      if (!phaseChanged && now - last < minInterval) return
      last = now
      lastPhase = p.phase
      if (tty) {
        const cols = stream.columns ?? 120
        stream.write('\r\x1b[K' + line(p).slice(0, cols - 1))
        drawn = true
      } else {
        stream.write(line(p) + '\n')
      }
    },
    done () {
      if (tty && drawn) stream.write('\r\x1b[K')
      drawn = false
    }
  }
}
