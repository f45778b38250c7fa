/**
 * Images and versions on the coordinator, the facade the routes, storage gc,
 * metrics and the console use. HTTP lives in image-routes.ts; each concern
 * behind this facade has its module:
 *   version-store.ts    where versions are kept (the one storage interface)
 *   version-cache.ts    read-through caches of records, envelopes, manifests
 *   version-records.ts  pure: `latest`, what may be served, the listings
 *   version-commit.ts   publishing: missing chunks, the checked commit
 *   origin.ts           block batches (within batch slots) and single chunks
 *   delta-packs.ts      background delta pack builds (build-queue.ts) and their files
 *   write-lock.ts       writes one at a time
 */
import type { CID } from 'multiformats/cid'
import { api } from '../protocol/index.ts'
import type { AdminImageList } from '../protocol/api-admin.ts'
import type { BlockRange } from '../protocol/delta-pack.ts'
import { NotFoundError, ValidationError } from '../protocol/errors.ts'
import { chunkCid } from '../protocol/block-id.ts'
import { signVersionPointer } from '../protocol/version-pointer.ts'
import type { ZstdSettings } from './block-batch.ts'
import { createChunkGuard, type ChunkGuard } from './chunk-guard.ts'
import { DELTA_PACK_ZSTD_LEVEL, DELTA_PACK_ZSTD_WINDOW_LOG, ORIGIN_ZSTD_LEVEL, ORIGIN_ZSTD_WINDOW_LOG, VERSION_RECORD_CACHE_IMAGES } from './constants.ts'
import { createDeltaPacks, type DeltaPackStats } from './delta-packs.ts'
import type { AbortOptions, BlockStore, Logger, ManifestSigner } from './interface.ts'
import type { MetaDb } from './meta-db.ts'
import { createLruCache } from './lru-cache.ts'
import { createOrigin, type BlockBatchOptions, type OriginStats } from './origin.ts'
import { createVersionCache } from './version-cache.ts'
import { createVersionCommit } from './version-commit.ts'
import { adminImageList, groupByImage, imageList, LATEST, latestOf, pickServable } from './version-records.ts'
import { createVersionStore, storedManifest, type VersionRecord, type VersionStore } from './version-store.ts'
import { createWriteLock } from './write-lock.ts'

export type { BlockBatchOptions } from './origin.ts'
export { setVersionIncomplete, storedVersions, type StoredVersion } from './version-store.ts'

/** What the image service needs from the server (D1's createCoordinator passes these). */
export interface ImageServiceComponents {
  /** The root level db; the service creates its own `img-*` sublevels. */
  db: MetaDb
  blockStore: BlockStore
  signer: ManifestSigner
  logger: Logger
  /** The coordinator's data dir (old delta pack files under PACKS_DIR are imported from it into the block store). */
  dataDir: string
  /** Shared with storage gc (default: a new one; get it back as `service.guard`). */
  guard?: ChunkGuard
  /** Where versions are kept (default: level sublevels of `db`, version-store.ts); another backend plugs in here. */
  versions?: VersionStore
}

/** Tunables (defaults in coordinator/constants.ts). */
export interface ImageServiceInit {
  /** zstd settings of POST .../blocks responses. */
  originZstd?: Partial<ZstdSettings>
  /** zstd settings of delta packs. */
  deltaPackZstd?: Partial<ZstdSettings>
  /** Build delta packs in the background after commits (default true). */
  buildDeltaPacks?: boolean
  /** Block batch streams compressing at once; more wait their turn (default ORIGIN_MAX_CONCURRENT_BATCHES). */
  maxConcurrentBatches?: number
  /** Most of those one principal (token or user) holds at once (default: batch-slots.ts defaultShare, 6 of 8). */
  maxBatchesPerPrincipal?: number
  /** Most of those the principals of one group hold together (default: batch-slots.ts defaultShare, 6 of 8). */
  maxBatchesPerGroup?: number
  /** A batch stream whose client takes no byte for this long is aborted and its slot freed (default ORIGIN_BATCH_STALL_MS). */
  batchStallMs?: number
}

/** Upload and commit counters (the rest of ImageStats comes from the origin and the delta packs). */
interface PublishCounts {
  chunksUploaded: number
  bytesUploaded: number
  uploadsRejected: number
  versionsCommitted: number
}

/** Plain counters for /metrics. */
export interface ImageStats extends PublishCounts, Omit<OriginStats, 'blockBytesServed'>, DeltaPackStats {
  /** Bytes sent, by kind: signed manifests, block batches (compressed, as on the wire), raw chunks, delta packs. */
  bytesServed: { manifest: number, blocks: number, chunk: number, delta: number }
}

/** A delta pack ready to serve. */
export interface DeltaPackFile {
  bytes: number
  etag: string
  blocks: number
  /** Bytes `start` to `end` (inclusive), piece by piece from the block store (delta-packs.ts); NotFoundError when its first piece is missing. */
  open: (range: { start: number, end: number }, options?: AbortOptions) => Promise<AsyncIterable<Uint8Array>>
}

/** What storage gc needs to know of the stored versions. */
export interface LiveChunks {
  /** CID strings of every chunk a version that is not retired uses (live or incomplete). */
  live: Set<string>
  /** Retired versions not collected yet: their chunks are not in `live`. */
  retired: Array<{ image: string, version: string }>
}

/** The image service (see the module comment). */
export interface ImageService {
  /** Claims of a publish in progress, which storage gc respects. */
  readonly guard: ChunkGuard
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Drops the cached version records (the shared-store refresh calls it when other coordinators wrote). */
  refresh: () => void
  stats: () => ImageStats
  /** The CIDs among `cids` that the block store lacks, in the given order. */
  missingChunks: (cids: CID[], options?: AbortOptions) => Promise<CID[]>
  /** Stores one uploaded chunk (re-hashed by the block store; a mismatch throws HashMismatchError). */
  putChunk: (cid: CID, bytes: Uint8Array, options?: AbortOptions) => Promise<void>
  /** Checks, signs and stores a version from unsigned manifest bytes; `image` is the name in the path. */
  commitVersion: (image: string, manifestBytes: Uint8Array, options?: AbortOptions) => Promise<api.VersionInfo>
  /** Every image with at least one version for which `filter(name)` holds. */
  listImages: (filter: (image: string) => boolean) => Promise<api.ImageList>
  /** The versions of an image, oldest first. NotFoundError when it has none. */
  listVersions: (image: string) => Promise<api.VersionList>
  /** A version's info; `version` may be `latest`. */
  getInfo: (image: string, version: string) => Promise<api.VersionInfo>
  /** The signed envelope bytes of a version (`latest` allowed) and its info. */
  getEnvelope: (image: string, version: string) => Promise<{ info: api.VersionInfo, bytes: Uint8Array }>
  /** The signed version pointer of `latest` (protocol/version-pointer.ts): never a retired or incomplete version. */
  getLatestPointer: (image: string) => Promise<{ info: api.VersionInfo, bytes: Uint8Array }>
  /** Marks a version retired (idempotent): it stops being `latest` or anyone's `previous`, but stays fetchable by name. */
  retire: (image: string, version: string) => Promise<api.VersionInfo>
  /** Checks a block batch and returns its zstd stream plus the resolved version. */
  openBlockBatch: (image: string, version: string, ranges: BlockRange[], options?: BlockBatchOptions) =>
    Promise<{ info: api.VersionInfo, stream: ReadableStream<Uint8Array> }>
  /** One chunk of a version, by CID (NotFoundError when the version does not hold it). */
  getChunk: (image: string, version: string, cid: CID, options?: AbortOptions) => Promise<Uint8Array>
  /** The delta pack from `from` to `version`; NotFoundError while not built (or `from` is not the version's previous). */
  getDeltaPack: (image: string, version: string, from: string) => Promise<DeltaPackFile>
  /** Counts bytes sent by the routes (manifest, chunk, delta) into stats. */
  countServed: (kind: 'manifest' | 'chunk' | 'delta', bytes: number) => void
  /** Resolves when no delta pack is waiting or being built (tests, benchmarks). */
  whenIdle: () => Promise<void>
  /** Queues a (re)build of a version's delta pack from its previous version. */
  rebuildDeltaPack: (image: string, version: string) => Promise<void>
  /** Every image and version with its state (admin list). */
  adminImages: () => Promise<AdminImageList>
  /** The chunks in use, for storage gc (reads every live version's manifest), and every recorded delta pack's pieces (collectPacks deletes those). */
  liveChunks: (options?: AbortOptions) => Promise<LiveChunks>
  /** Marks retired versions collected (no longer served): storage gc calls it before it deletes their chunks. */
  markCollected: (versions: ReadonlyArray<{ image: string, version: string }>) => Promise<number>
  /** Deletes the delta packs (records, then pieces) of retired versions; with dryRun only counts them. */
  collectPacks: (options: { dryRun: boolean }) => Promise<{ deleted: number, deletedBytes: number }>
}

/** Options of zstd with the defaults filled in. */
function zstdSettings (given: Partial<ZstdSettings> | undefined, level: number, windowLog: number): ZstdSettings {
  return { level: given?.level ?? level, windowLog: given?.windowLog ?? windowLog }
}

/** Creates the image service; call start() to run the background delta pack builder. `init` is validated by config.ts. */
export function createImageService (components: ImageServiceComponents, init: ImageServiceInit = {}): ImageService {
  const { db, blockStore, signer, logger, dataDir } = components
  const guard = components.guard ?? createChunkGuard()
  const store = components.versions ?? createVersionStore({ db })
  const cache = createVersionCache({ store })
  const writeLock = createWriteLock(db, () => { cache.refresh() })
  const counts: PublishCounts = { chunksUploaded: 0, bytesUploaded: 0, uploadsRejected: 0, versionsCommitted: 0 }
  const served = { manifest: 0, chunk: 0, delta: 0 }
  const packs = createDeltaPacks({ db, store, cache, blockStore, logger, writeLock, dataDir }, {
    zstd: zstdSettings(init.deltaPackZstd, DELTA_PACK_ZSTD_LEVEL, DELTA_PACK_ZSTD_WINDOW_LOG),
    build: init.buildDeltaPacks ?? true
  })
  const origin = createOrigin({ blockStore, logger }, { ...init, zstd: zstdSettings(init.originZstd, ORIGIN_ZSTD_LEVEL, ORIGIN_ZSTD_WINDOW_LOG) })
  const onCommitted = (info: api.VersionInfo): void => {
    counts.versionsCommitted++
    if (info.previous != null) packs.enqueue(info.image, info.version)
  }
  const publish = createVersionCommit({ store, cache, blockStore, signer, logger, guard, writeLock, onCommitted })
  // signed once per image and latest version (a signature costs ~0.1 ms; daemons poll `latest` often)
  const pointerCache = createLruCache<{ version: string, seq: number, bytes: Uint8Array }>({ maxEntries: VERSION_RECORD_CACHE_IMAGES })
  let started = false

  /** The record `version` (or `latest`) of `image` names, if it may be served. */
  async function resolve (image: string, version: string): Promise<VersionRecord> {
    api.name.parse(image, 'image')
    api.name.parse(version, 'version')
    return pickServable(image, version, await cache.records(image))
  }

  /** Replaces a version record; the image's cached records are dropped even when the write fails. */
  async function putRecord (next: VersionRecord): Promise<void> {
    try {
      await store.putRecord(next)
    } finally {
      cache.invalidate(next.info.image)
    }
  }

  /** Sets a flag on version records under the write lock; how many changed. */
  type Change = (rec: VersionRecord) => VersionRecord | undefined
  async function updateRecords (list: ReadonlyArray<{ image: string, version: string }>, change: Change): Promise<number> {
    return await writeLock(async () => {
      let n = 0
      for (const { image, version } of list) {
        const rec = await cache.record(image, version)
        const next = rec == null ? undefined : change(rec)
        if (next == null) continue
        await putRecord(next)
        n++
      }
      return n
    })
  }

  async function allGrouped (filter: (image: string) => boolean = () => true): Promise<Array<[string, VersionRecord[]]>> {
    const recs: VersionRecord[] = []
    for await (const rec of store.allRecords()) if (filter(rec.info.image)) recs.push(rec)
    return groupByImage(recs)
  }

  const service: ImageService = {
    guard,
    async start () {
      if (started) return
      started = true
      await packs.start()
    },
    // drops the cached version records: with a shared store other coordinators publish and retire (a cached pointer is checked against them)
    refresh () { cache.refresh() },
    async stop () {
      started = false
      await packs.stop()
    },
    stats () {
      const { blockBytesServed, ...originStats } = origin.stats()
      return { ...counts, ...originStats, ...packs.stats(), bytesServed: { ...served, blocks: blockBytesServed } }
    },
    missingChunks: async (cids, options) => await publish.missingChunks(cids, options),
    async putChunk (cid, bytes, options = {}) {
      await guard.claim([cid.toString()])
      try {
        await blockStore.put(cid, bytes, options)
      } catch (err) {
        counts.uploadsRejected++
        throw err
      }
      counts.chunksUploaded++
      counts.bytesUploaded += bytes.length
    },
    commitVersion: async (image, manifestBytes, options) => await publish.commit(image, manifestBytes, options),
    listImages: async (filter) => imageList(await allGrouped(filter)),
    async listVersions (image) {
      api.name.parse(image, 'image')
      const recs = await cache.records(image)
      if (recs.length === 0) throw new NotFoundError(`no image ${image}`)
      return { image, latest: latestOf(recs)?.info.version ?? null, versions: recs.map(r => r.info) }
    },
    getInfo: async (image, version) => (await resolve(image, version)).info,
    async getEnvelope (image, version) {
      const rec = await resolve(image, version)
      return { info: rec.info, bytes: await cache.envelope(image, rec.info.version) }
    },
    async getLatestPointer (image) {
      const rec = await resolve(image, LATEST)
      const hit = pointerCache.get(image)
      if (hit != null && hit.version === rec.info.version && hit.seq === rec.seq) return { info: rec.info, bytes: hit.bytes }
      const pointer = { image, version: rec.info.version, manifestCid: rec.info.manifestCid, seq: rec.seq, time: Math.floor(Date.now() / 1000) }
      const bytes = await signVersionPointer(pointer, signer.privateKey)
      pointerCache.set(image, { version: pointer.version, seq: pointer.seq, bytes })
      return { info: rec.info, bytes }
    },
    async retire (image, version) {
      if (version === LATEST) throw new ValidationError('name the version to retire, not "latest"')
      return await writeLock(async () => {
        const rec = await resolve(image, version)
        if (rec.info.retired) return rec.info
        const next: VersionRecord = { ...rec, info: { ...rec.info, retired: true } }
        await putRecord(next)
        logger.info('version retired', { image, version })
        return next.info
      })
    },
    async openBlockBatch (image, version, ranges, options) {
      const rec = await resolve(image, version)
      return { info: rec.info, stream: await origin.openBlockBatch(rec.info, await cache.manifest(rec.info), ranges, options) }
    },
    async getChunk (image, version, cid, options) {
      const rec = await resolve(image, version)
      return await origin.getChunk(rec.info, await cache.manifest(rec.info), cid, options)
    },
    async getDeltaPack (image, version, from) {
      const rec = await resolve(image, version)
      api.name.parse(from, 'from')
      const what = `${image} from ${from} to ${rec.info.version}`
      if (rec.info.previous !== from) {
        throw new NotFoundError(`no delta pack of ${what} (packs exist from the previous version, ${rec.info.previous ?? 'none'})`)
      }
      const ref = { image, version: rec.info.version, from }
      const pack = await packs.ready(ref)
      if (pack == null) throw new NotFoundError(`the delta pack of ${what} is not built yet`)
      return { bytes: pack.bytes, etag: pack.etag, blocks: pack.blocks, open: async (range, options) => await packs.open(ref, pack, range, options) }
    },
    countServed (kind, bytes) {
      served[kind] += bytes
    },
    whenIdle: async () => { await packs.whenIdle() },
    async rebuildDeltaPack (image, version) {
      const rec = await resolve(image, version)
      if (rec.info.previous == null) throw new NotFoundError(`version ${rec.info.version} of ${image} has no previous version`)
      packs.enqueue(image, rec.info.version)
    },
    adminImages: async () => adminImageList(await allGrouped()),
    async liveChunks (options) {
      const found = await liveChunksOf(store, options)
      for (const cid of await packs.liveCids()) found.live.add(cid)
      return found
    },
    async markCollected (list) {
      const n = await updateRecords(list, rec => !rec.info.retired || rec.collected === true ? undefined : { ...rec, collected: true })
      for (const { image, version } of list) cache.forgetManifest(image, version)
      return n
    },
    collectPacks: async (options) => await packs.collect(options)
  }

  return service
}

/** The chunks in use (every live version's manifest, read from storage: storage gc reads each once) and the retired versions. */
async function liveChunksOf (store: VersionStore, options: AbortOptions = {}): Promise<LiveChunks> {
  const live = new Set<string>()
  const retired: LiveChunks['retired'] = []
  for await (const rec of store.allRecords()) {
    options.signal?.throwIfAborted()
    if (rec.collected === true) continue
    const { image, version } = rec.info
    if (rec.info.retired) retired.push({ image, version })
    else for (const c of (await storedManifest(store, image, version)).chunks) live.add(chunkCid(c.digest).toString())
  }
  return { live, retired }
}
