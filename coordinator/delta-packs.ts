/**
 * The coordinator's delta packs: built in the background after each commit
 * (one at a time, build-queue.ts; the file itself by delta-pack-builder.ts),
 * looked up for the delta route, and deleted with retired versions.
 * Files: DATA/PACKS_DIR/<image>/<version>/from-<from>.pack
 */
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { NotFoundError } from '../protocol/errors.ts'
import type { ZstdSettings } from './block-batch.ts'
import { createBuildQueue } from './build-queue.ts'
import { PACKS_DIR } from './constants.ts'
import { digestSet, planDeltaPack, writeDeltaPack } from './delta-pack-builder.ts'
import type { BlockStore, Logger } from './interface.ts'
import type { VersionCache } from './version-cache.ts'
import type { PackRecord, PackRef, VersionStore } from './version-store.ts'
import type { WriteLock } from './write-lock.ts'
import type { MetaDb } from './meta-db.ts'
import { createLeases } from './meta-store/leases.ts'

/** One version whose delta pack is to be built (from its previous version). */
interface BuildJob {
  image: string
  version: string
}

/** What the delta packs need. */
export interface DeltaPacksComponents {
  store: VersionStore
  cache: VersionCache
  blockStore: BlockStore
  logger: Logger
  /** The image service's write lock: pack records are written under it. */
  writeLock: WriteLock
  dataDir: string
  /** The metadata store: with several coordinators on it, one builds a pack under its lease. */
  db: MetaDb
}

/** Settings of the delta packs. */
export interface DeltaPacksInit {
  zstd: ZstdSettings
  /** false: nothing is ever queued (packs are not built). */
  build: boolean
}

/** Counters for /metrics. */
export interface DeltaPackStats {
  deltaPacksBuilt: number
  deltaPackBuildFailures: number
  /** Delta packs waiting or being built. */
  deltaPacksPending: number
}

/** The delta packs (see the module comment). */
export interface DeltaPacks {
  /** Queues the packs lost to a crash mid-build or deleted by an operator, then builds in the background. */
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Queues a (re)build of a version's pack from its previous version. */
  enqueue: (image: string, version: string) => void
  whenIdle: () => Promise<void>
  /** The pack's record when it is built and its file is whole; else undefined. */
  ready: (ref: PackRef) => Promise<PackRecord | undefined>
  path: (ref: PackRef) => string
  /** Deletes the packs (records, then files) of retired versions; with dryRun only counts them. */
  collect: (options: { dryRun: boolean }) => Promise<{ deleted: number, deletedBytes: number }>
  stats: () => DeltaPackStats
}

/** Creates the delta packs; start() runs the builder. */
export function createDeltaPacks (components: DeltaPacksComponents, init: DeltaPacksInit): DeltaPacks {
  const { store, cache, blockStore, logger, writeLock, dataDir } = components
  const counts = { built: 0, failures: 0 }
  const path = (ref: PackRef): string => join(dataDir, PACKS_DIR, ref.image, ref.version, `from-${ref.from}.pack`)

  /** Builds one version's pack from its previous version and records it. */
  async function build ({ image, version }: BuildJob, signal: AbortSignal): Promise<void> {
    const rec = await cache.record(image, version)
    const from = rec?.info.previous
    // a retired version's pack is of no use, and storage gc may have taken its chunks
    if (rec == null || from == null || rec.info.retired) return
    const [digests, prevDigests] = await Promise.all([store.digests(image, version), store.digests(image, from)])
    if (digests == null || prevDigests == null) throw new NotFoundError(`block digests of ${image} ${version} or ${from} are missing`)
    const { manifest } = await cache.manifest(rec.info)
    const ranges = planDeltaPack(digests, digestSet(prevDigests))
    const started = performance.now()
    const ref = { image, version, from }
    const built = await writeDeltaPack(blockStore, { manifest, from, ranges, path: path(ref), zstd: init.zstd, signal })
    const seconds = (performance.now() - started) / 1000
    await writeLock(async () => {
      const cur = await cache.record(image, version)
      if (cur == null) return
      const pack: PackRecord = { bytes: built.bytes, blocks: built.blocks, etag: built.etag, builtAt: new Date().toISOString() }
      try {
        await store.putPack({ ...cur, info: { ...cur.info, deltaPackBytes: built.bytes } }, ref, pack)
      } finally {
        cache.invalidate(image)
      }
    })
    counts.built++
    logger.info('delta pack built', { image, version, from, blocks: built.blocks, bytes: built.bytes, seconds: Math.round(seconds * 10) / 10 })
  }

  /** Whether a version's pack is recorded (read afresh: another coordinator may have built it). */
  async function packRecorded ({ image, version }: BuildJob): Promise<boolean> {
    return (await store.imageRecords(image)).find(r => r.info.version === version)?.info.deltaPackBytes != null
  }

  const queue = createBuildQueue<BuildJob>({
    key: (job) => `${job.image}/${job.version}`,
    // several coordinators on one store: one builds under a lease (meta-store/leases.ts), the others find the version's pack recorded
    run: async (job, signal) => {
      await createLeases({ db: components.db }).runExclusive(`delta-pack:${job.image}/${job.version}`, async (lost) => { await build(job, lost) },
        { done: async () => await packRecorded(job), signal })
    },
    onError: (job, err) => {
      counts.failures++
      logger.error('delta pack build failed', { image: job.image, version: job.version, error: err.message })
    }
  })

  const packs: DeltaPacks = {
    async start () {
      for await (const rec of store.allRecords()) {
        const { image, version, previous } = rec.info
        if (previous != null && !rec.info.retired && await packs.ready({ image, version, from: previous }) == null) packs.enqueue(image, version)
      }
      queue.start()
    },
    stop: async () => { await queue.stop() },
    enqueue (image, version) {
      if (init.build) queue.enqueue({ image, version })
    },
    whenIdle: async () => { await queue.whenIdle() },
    async ready (ref) {
      const rec = await store.pack(ref)
      if (rec == null) return undefined
      try {
        const st = await stat(path(ref))
        if (st.size === rec.bytes) return rec
      } catch {}
      return undefined
    },
    path,
    async collect ({ dryRun }) {
      // records first: a crash between leaves files without records, which the directory pass deletes on the next run
      const stale: PackRef[] = []
      let deletedBytes = 0
      for await (const { pack, ...ref } of store.allPacks()) {
        if (!await isRetired(ref.image, ref.version)) continue
        stale.push(ref)
        deletedBytes += pack.bytes
      }
      if (!dryRun) {
        await store.deletePacks(stale)
        await removeRetiredDirs()
      }
      return { deleted: stale.length, deletedBytes }
    },
    stats: () => ({ deltaPacksBuilt: counts.built, deltaPackBuildFailures: counts.failures, deltaPacksPending: queue.pending() })
  }

  /** Whether a version is retired or gone (its packs are of no use). */
  async function isRetired (image: string, version: string): Promise<boolean> {
    const rec = await cache.record(image, version)
    return rec == null || rec.info.retired
  }

  /** Deletes the pack directories of retired or unknown versions. */
  async function removeRetiredDirs (): Promise<void> {
    for (const image of await dirNames(join(dataDir, PACKS_DIR))) {
      for (const version of await dirNames(join(dataDir, PACKS_DIR, image))) {
        if (await isRetired(image, version)) await rm(join(dataDir, PACKS_DIR, image, version), { recursive: true, force: true })
      }
    }
  }

  return packs
}

/** Sub-directory names of `dir` (none when it is missing). */
async function dirNames (dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter(d => d.isDirectory()).map(d => d.name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}
