/**
 * The coordinator's delta packs: built in the background after each commit
 * (one at a time, build-queue.ts; the pack itself by delta-pack-builder.ts),
 * stored through the block store as pieces named by their content
 * (stored-files.ts), so every coordinator sharing the store serves a pack one
 * of them built; looked up and read by byte range for the delta route;
 * deleted with retired versions.
 *
 * A data dir from before packs moved to the block store keeps them as files,
 * DATA/PACKS_DIR/<image>/<version>/from-<from>.pack: at start each is imported
 * into the block store (its bytes unchanged, so its ETag too, and a client's
 * partial download resumes), then its file is deleted. Until then the pack
 * answers 404 and agents use block batches, as while a pack is being built.
 */
import { createReadStream } from 'node:fs'
import { readdir, rm, rmdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { parseChunkCid } from '../protocol/block-id.ts'
import { HashMismatchError, NotFoundError } from '../protocol/errors.ts'
import type { ZstdSettings } from './block-batch.ts'
import { createBuildQueue } from './build-queue.ts'
import { DELTA_PACK_CACHE_BYTES, DELTA_PACK_PIECE_BYTES, PACKS_DIR } from './constants.ts'
import { digestSet, planDeltaPack, storePackBytes, writeDeltaPack, type StoredPack } from './delta-pack-builder.ts'
import type { AbortOptions, BlockStore, Logger } from './interface.ts'
import { createStoredFiles } from './stored-files.ts'
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

/** A pack stored in the block store: its record lists its pieces. */
export type StoredPackRecord = PackRecord & { pieces: NonNullable<PackRecord['pieces']> }

/** Settings of the delta packs. */
export interface DeltaPacksInit {
  zstd: ZstdSettings
  /** false: nothing is ever queued (packs are not built). */
  build: boolean
  /** Bytes per stored piece (default DELTA_PACK_PIECE_BYTES, 1 MiB; tests use less). */
  pieceBytes?: number
  /** Pieces kept in memory once read (default DELTA_PACK_CACHE_BYTES, 64 MiB). */
  cacheBytes?: number
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
  /**
   * Starts the builder, and in the background queues the packs lost (a crash mid-build, a piece deleted
   * by an operator or fsck) or still kept as files from before the block store held them.
   */
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Queues a (re)build of a version's pack from its previous version. */
  enqueue: (image: string, version: string) => void
  /** Resolves when the start-up check is done and nothing is waiting or being built. */
  whenIdle: () => Promise<void>
  /** The pack's record when it is built into the block store; else undefined. */
  ready: (ref: PackRef) => Promise<StoredPackRecord | undefined>
  /**
   * Bytes `start` to `end` (inclusive) of a pack, read piece by piece (one piece in memory at a time); the first
   * piece is read before this resolves. A missing or damaged piece fails the read (NotFoundError,
   * HashMismatchError) and queues the pack's rebuild.
   */
  open: (ref: PackRef, pack: StoredPackRecord, range: { start: number, end: number }, options?: AbortOptions) => Promise<AsyncIterable<Uint8Array>>
  /** CIDs of every recorded pack's pieces: storage gc's chunk pass keeps them; collect() deletes those of retired versions. */
  liveCids: () => Promise<Set<string>>
  /** Deletes the packs (records, then pieces and old files) of retired versions; with dryRun only counts them. */
  collect: (options: { dryRun: boolean }) => Promise<{ deleted: number, deletedBytes: number }>
  stats: () => DeltaPackStats
}

/** A piece of a pack and the part of it a byte range covers (`from`, `to` exclusive, within the piece). */
export interface PieceSlice {
  index: number
  from: number
  to: number
}

/** The pieces (and the part of each) that bytes `start` to `end` (inclusive) of a pack cover, in order (pure). */
export function piecesInRange (pieces: ReadonlyArray<{ bytes: number }>, start: number, end: number): PieceSlice[] {
  const out: PieceSlice[] = []
  let off = 0
  for (let index = 0; index < pieces.length && off <= end; index++) {
    const next = off + pieces[index].bytes
    if (next > start) out.push({ index, from: Math.max(0, start - off), to: Math.min(pieces[index].bytes, end + 1 - off) })
    off = next
  }
  return out
}

/** Creates the delta packs; start() runs the builder. */
export function createDeltaPacks (components: DeltaPacksComponents, init: DeltaPacksInit): DeltaPacks {
  const { store, cache, blockStore, logger, writeLock, dataDir } = components
  const pieceBytes = init.pieceBytes ?? DELTA_PACK_PIECE_BYTES
  const files = createStoredFiles({ blockStore }, { cacheBytes: init.cacheBytes ?? DELTA_PACK_CACHE_BYTES })
  const counts = { built: 0, failures: 0 }
  let stopping = new AbortController()
  let scanning: Promise<void> = Promise.resolve()
  const legacyPath = (ref: PackRef): string => join(dataDir, PACKS_DIR, ref.image, ref.version, `from-${ref.from}.pack`)

  /** Builds one version's pack from its previous version (or imports its old file) and records it. */
  async function build ({ image, version }: BuildJob, signal: AbortSignal): Promise<void> {
    const rec = await cache.record(image, version)
    const from = rec?.info.previous
    // a retired version's pack is of no use, and storage gc may have taken its chunks
    if (rec == null || from == null || rec.info.retired) return
    const ref = { image, version, from }
    const started = performance.now()
    const old = await store.pack(ref)
    const imported = old != null && old.pieces == null ? await importFile(ref, old, signal) : undefined
    const built = imported ?? await buildPack(ref, signal)
    await writeLock(async () => {
      const cur = await cache.record(image, version)
      if (cur == null) return
      const pack: PackRecord = { bytes: built.bytes, blocks: built.blocks, etag: built.etag, builtAt: new Date().toISOString(), pieces: built.pieces }
      try {
        await store.putPack({ ...cur, info: { ...cur.info, deltaPackBytes: built.bytes } }, ref, pack)
      } finally {
        cache.invalidate(image)
      }
    })
    await removeFile(legacyPath(ref))
    counts.built++
    const seconds = Math.round((performance.now() - started) / 100) / 10
    logger.info(imported != null ? 'delta pack imported into the block store' : 'delta pack built',
      { image, version, from, blocks: built.blocks, bytes: built.bytes, pieces: built.pieces.length, seconds })
  }

  /** Compresses the pack from the blocks the version has and its previous version lacks. */
  async function buildPack (ref: PackRef, signal: AbortSignal): Promise<StoredPack & { blocks: number }> {
    const [digests, prevDigests] = await Promise.all([store.digests(ref.image, ref.version), store.digests(ref.image, ref.from)])
    if (digests == null || prevDigests == null) throw new NotFoundError(`block digests of ${ref.image} ${ref.version} or ${ref.from} are missing`)
    const { manifest } = await cache.manifest((await cache.record(ref.image, ref.version))!.info)
    const ranges = planDeltaPack(digests, digestSet(prevDigests))
    return await writeDeltaPack(blockStore, files, { manifest, from: ref.from, ranges, zstd: init.zstd, pieceBytes, signal })
  }

  /** Stores an old pack file's bytes in the block store; undefined when the file is missing or not the recorded pack. */
  async function importFile (ref: PackRef, old: PackRecord, signal: AbortSignal): Promise<(StoredPack & { blocks: number }) | undefined> {
    let stored: StoredPack
    try {
      stored = await storePackBytes(files, createReadStream(legacyPath(ref), { signal }), pieceBytes, { signal })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    if (stored.bytes === old.bytes && stored.etag === old.etag) return { ...stored, blocks: old.blocks }
    logger.warn('old delta pack file differs from its record: rebuilt instead', { ...ref, bytes: stored.bytes, recordedBytes: old.bytes })
    return undefined
  }

  /** Whether a pack is recorded with pieces and every piece is in the block store (read afresh: another coordinator may have built it). */
  async function whole (ref: PackRef, signal?: AbortSignal): Promise<boolean> {
    const rec = await store.pack(ref)
    if (rec?.pieces == null) return false
    for (const p of rec.pieces) if (!await blockStore.has(parseChunkCid(p.cid), { signal })) return false
    return true
  }

  /** Queues every live version's pack that is not whole in the block store. */
  async function scan (signal: AbortSignal): Promise<void> {
    for await (const rec of store.allRecords()) {
      signal.throwIfAborted()
      const { image, version, previous } = rec.info
      if (previous == null || rec.info.retired || rec.collected === true) continue
      if (!await whole({ image, version, from: previous }, signal)) packs.enqueue(image, version)
    }
  }

  const queue = createBuildQueue<BuildJob>({
    key: (job) => `${job.image}/${job.version}`,
    // several coordinators on one store: one builds under a lease (meta-store/leases.ts), the others find the version's pack whole
    run: async (job, signal) => {
      await createLeases({ db: components.db }).runExclusive(`delta-pack:${job.image}/${job.version}`, async (lost) => { await build(job, lost) },
        { done: async () => await packWhole(job, signal), signal })
    },
    onError: (job, err) => {
      counts.failures++
      logger.error('delta pack build failed', { image: job.image, version: job.version, error: err.message })
    }
  })

  /** Whether a queued job's pack is whole already (a job for a version that has no previous one is done). */
  async function packWhole ({ image, version }: BuildJob, signal: AbortSignal): Promise<boolean> {
    const from = (await store.imageRecords(image)).find(r => r.info.version === version)?.info.previous
    return from == null || await whole({ image, version, from }, signal)
  }

  const packs: DeltaPacks = {
    async start () {
      stopping = new AbortController()
      queue.start()
      // in the background: on the S3 store the check asks for every piece of every pack
      scanning = scan(stopping.signal).catch((err: Error) => {
        if (!stopping.signal.aborted) logger.error('delta pack check at start failed', { error: err.message })
      })
    },
    async stop () {
      stopping.abort()
      await scanning
      await queue.stop()
    },
    enqueue (image, version) {
      if (init.build) queue.enqueue({ image, version })
    },
    async whenIdle () {
      await scanning
      await queue.whenIdle()
    },
    async ready (ref) {
      const rec = await store.pack(ref)
      return rec?.pieces != null ? rec as StoredPackRecord : undefined
    },
    async open (ref, pack, range, options = {}) {
      const it = readPieces(ref, pack, range, options)[Symbol.asyncIterator]()
      // the first piece before the answer: a pack whose start is missing gets a 404, not a 200 that breaks off
      const first = await it.next()
      return (async function * () {
        if (first.done === true) return
        yield first.value
        yield * { [Symbol.asyncIterator]: () => it }
      })()
    },
    async liveCids () {
      const live = new Set<string>()
      for await (const { pack } of store.allPacks()) for (const p of pack.pieces ?? []) live.add(p.cid)
      return live
    },
    async collect ({ dryRun }) {
      // records first, then pieces: a crash between leaves pieces no record names, which the next gc's chunk pass deletes
      const stale: Array<PackRef & { pack: PackRecord }> = []
      const kept = new Set<string>()
      let deletedBytes = 0
      for await (const entry of store.allPacks()) {
        if (await isRetired(entry.image, entry.version)) {
          stale.push(entry)
          deletedBytes += entry.pack.bytes
        } else {
          for (const p of entry.pack.pieces ?? []) kept.add(p.cid)
        }
      }
      if (!dryRun) {
        await store.deletePacks(stale.map(({ image, version, from }) => ({ image, version, from })))
        // a piece another pack also has (the same bytes at the same offset) stays
        for (const { pack } of stale) for (const p of pack.pieces ?? []) if (!kept.has(p.cid)) await blockStore.delete(parseChunkCid(p.cid))
        await removeRetiredDirs()
      }
      return { deleted: stale.length, deletedBytes }
    },
    stats: () => ({ deltaPacksBuilt: counts.built, deltaPackBuildFailures: counts.failures, deltaPacksPending: queue.pending() })
  }

  /** The pieces a range covers, read one at a time; a missing or damaged one queues the pack's rebuild. */
  async function * readPieces (ref: PackRef, pack: StoredPackRecord, range: { start: number, end: number }, options: AbortOptions): AsyncGenerator<Uint8Array> {
    for (const { index, from, to } of piecesInRange(pack.pieces, range.start, range.end)) {
      const piece = pack.pieces[index]
      let bytes: Uint8Array
      try {
        bytes = await files.read(piece.cid, options)
      } catch (err) {
        if (err instanceof NotFoundError || err instanceof HashMismatchError) {
          logger.error('delta pack piece missing or damaged: pack queued for a rebuild', { ...ref, piece: index, cid: piece.cid, error: err.message })
          // a damaged piece goes first (as fsck deletes a damaged chunk), else the rebuild's put would find it present and keep it
          if (err instanceof HashMismatchError) await blockStore.delete(parseChunkCid(piece.cid)).catch(() => {})
          packs.enqueue(ref.image, ref.version)
        }
        throw err
      }
      yield bytes.subarray(from, to)
    }
  }

  /** Whether a version is retired or gone (its packs are of no use). */
  async function isRetired (image: string, version: string): Promise<boolean> {
    const rec = await cache.record(image, version)
    return rec == null || rec.info.retired
  }

  /** Deletes the old pack directories of retired or unknown versions. */
  async function removeRetiredDirs (): Promise<void> {
    for (const image of await dirNames(join(dataDir, PACKS_DIR))) {
      for (const version of await dirNames(join(dataDir, PACKS_DIR, image))) {
        if (await isRetired(image, version)) await rm(join(dataDir, PACKS_DIR, image, version), { recursive: true, force: true })
      }
    }
  }

  return packs
}

/** Deletes an old pack file and then its version's and image's directories when they are left empty. */
async function removeFile (file: string): Promise<void> {
  await rm(file, { force: true })
  for (let dir = dirname(file), n = 0; n < 2; dir = dirname(dir), n++) {
    try { await rmdir(dir) } catch { return } // not empty (another pack) or gone
  }
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
