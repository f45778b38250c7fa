/**
 * Storage gc: deletes the chunks and delta packs that no live version uses,
 * through the BlockStore interface (`list`, `stat`, `delete`), so every
 * store implementation gets it.
 *
 * One run: (1) read which chunks live versions use and which retired versions
 * are not collected yet; (2) mark those retired versions `collected` (never
 * served again: their chunks are about to go); (3) walk the store and delete
 * every chunk that is not live, not younger than the grace period and not
 * claimed by a publish in progress (chunk-guard.ts); (4) delete the delta
 * packs of retired versions. Each deletion is atomic and the order makes any
 * prefix of the run safe: a kill -9 at any point leaves a store where every
 * live version is whole, and the next run finishes the job.
 */
import type { GcReport } from '../protocol/api-admin.ts'
import { ConflictError, NotFoundError } from '../protocol/errors.ts'
import { DEFAULT_GC_GRACE_SECONDS, DEFAULT_GC_INTERVAL_SECONDS } from './constants.ts'
import { ConfigError } from './errors.ts'
import type { ImageService } from './image-service.ts'
import type { AbortOptions, BlockStore, Logger } from './interface.ts'

/** What gc works on. */
export interface StorageGcComponents {
  blockStore: BlockStore
  images: ImageService
  logger: Logger
}

/** Settings (defaults in constants.ts; the config file's `storageGc` section). */
export interface StorageGcInit {
  /** Automatic run period in seconds; 0 = off (default DEFAULT_GC_INTERVAL_SECONDS). */
  intervalSeconds?: number
  /** Unused chunks younger than this are kept (default DEFAULT_GC_GRACE_SECONDS). */
  graceSeconds?: number
}

/** Storage gc: one run on demand, and the automatic sweep between start() and stop(). */
export interface StorageGc {
  run: (options?: AbortOptions & { dryRun?: boolean }) => Promise<GcReport>
  start: () => void
  stop: () => Promise<void>
}

/** What to do with one stored chunk (pure, so the rules are tested without a store). */
export function chunkVerdict (cid: string, storedAt: number | undefined,
  ctx: { live: ReadonlySet<string>, claimed: (cid: string) => boolean, cutoff: number }
): 'live' | 'kept' | 'delete' {
  if (ctx.live.has(cid)) return 'live'
  if (ctx.claimed(cid)) return 'kept'
  // unknown age (vanished meanwhile) or newer than the cutoff: keep
  if (storedAt == null || storedAt > ctx.cutoff) return 'kept'
  return 'delete'
}

function checkInit (init: StorageGcInit): void {
  for (const k of ['intervalSeconds', 'graceSeconds'] as const) {
    const v = init[k]
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new ConfigError(`storageGc.${k} must be a whole number of seconds >= 0`)
  }
}

/** Creates storage gc; throws ConfigError for a bad init. */
export function createStorageGc (components: StorageGcComponents, init: StorageGcInit = {}): StorageGc {
  checkInit(init)
  const { blockStore, images, logger } = components
  const intervalMs = (init.intervalSeconds ?? DEFAULT_GC_INTERVAL_SECONDS) * 1000
  const graceMs = (init.graceSeconds ?? DEFAULT_GC_GRACE_SECONDS) * 1000
  let running: Promise<GcReport> | undefined
  let timer: NodeJS.Timeout | undefined
  const stopping = new AbortController()

  async function runOnce (dryRun: boolean, signal?: AbortSignal): Promise<GcReport> {
    const started = performance.now()
    const watch = images.guard.begin()
    const report: GcReport = { dryRun, versionsCollected: 0, chunks: { scanned: 0, live: 0, kept: 0, deleted: 0, deletedBytes: 0 },
      packs: { deleted: 0, deletedBytes: 0 }, seconds: 0 }
    try {
      const { live, retired } = await images.liveChunks({ signal })
      report.versionsCollected = dryRun ? retired.length : await images.markCollected(retired)
      const cutoff = Date.now() - graceMs
      for await (const cid of blockStore.list({ signal })) {
        report.chunks.scanned++
        const key = cid.toString()
        let stat: { bytes: number, storedAt: number } | undefined
        if (!live.has(key)) {
          try {
            stat = await blockStore.stat(cid, { signal })
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err
          }
        }
        const verdict = chunkVerdict(key, stat?.storedAt, { live, claimed: watch.isClaimed, cutoff })
        if (verdict !== 'delete') {
          report.chunks[verdict]++
          continue
        }
        if (!dryRun && !await watch.deleteUnclaimed(key, async () => { await blockStore.delete(cid, { signal }) })) {
          report.chunks.kept++
          continue
        }
        report.chunks.deleted++
        report.chunks.deletedBytes += stat?.bytes ?? 0
      }
      report.packs = await images.collectPacks({ dryRun })
    } finally {
      watch.end()
    }
    report.seconds = Math.round((performance.now() - started) / 100) / 10
    logger.info(dryRun ? 'storage gc dry run' : 'storage gc', { ...report.chunks, versionsCollected: report.versionsCollected,
      packsDeleted: report.packs.deleted, packBytesDeleted: report.packs.deletedBytes, seconds: report.seconds })
    return report
  }

  const gc: StorageGc = {
    async run (options = {}) {
      if (running != null) throw new ConflictError('a storage gc is already running; try again when it has finished')
      const signal = options.signal != null ? AbortSignal.any([options.signal, stopping.signal]) : stopping.signal
      running = runOnce(options.dryRun === true, signal)
      try {
        return await running
      } finally {
        running = undefined
      }
    },
    start () {
      if (intervalMs === 0 || timer != null) return
      timer = setInterval(() => {
        if (running != null) return
        gc.run().catch((err: Error) => {
          if (!stopping.signal.aborted) logger.error('storage gc failed', { error: err.message })
        })
      }, intervalMs)
      timer.unref()
    },
    async stop () {
      clearInterval(timer)
      timer = undefined
      stopping.abort()
      await running?.catch(() => {})
    }
  }
  return gc
}
