/**
 * Images and versions on the coordinator: chunk upload, version commit
 * (checked, signed, made visible atomically), listing and retirement, and the
 * origin (block batches, single chunks, delta packs) with a background delta
 * pack builder. HTTP lives in image-routes.ts; this is the logic and storage.
 *
 * Storage (level sublevels of the root db, all prefixed IMAGE_SUBLEVEL_PREFIX):
 *   img-versions  `${image}/${version}` -> VersionRecord (json)
 *   img-envelopes `${image}/${version}` -> signed envelope bytes
 *   img-digests   `${image}/${version}` -> full BLAKE3 digest of every non-zero block, 32 bytes each
 *   img-packs     `${image}/${version}/${from}` -> PackRecord (json)
 *   img-meta      `seq` -> last publish sequence number
 * Delta pack files: DATA/PACKS_DIR/<image>/<version>/from-<from>.pack
 */
import type { MetaDb } from './meta-db.ts'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { equals } from 'multiformats/bytes'
import { api } from '../protocol/index.ts'
import type { AdminImageList, AdminVersion } from '../protocol/api-admin.ts'
import { chunkCid, toHex } from '../protocol/block-id.ts'
import { checkBlockBatch } from '../protocol/block-batch.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import type { BlockRange } from '../protocol/delta-pack.ts'
import { ConflictError, HashMismatchError, InvalidManifestError, NotFoundError, UnavailableError, ValidationError } from '../protocol/errors.ts'
import { blockCount, decodeManifest, nonZeroBytes, type Manifest } from '../protocol/manifest.ts'
import { decodeEnvelope } from '../protocol/signed-manifest.ts'
import { signVersionPointer, type VersionPointer } from '../protocol/version-pointer.ts'
import { hashBlocks, hashBytes, manifestCidOf } from '../chunker/blake3.ts'
import { createBlockBatchStream, type ZstdSettings } from './block-batch.ts'
import { createBatchSlots, defaultShare, type SlotOwner } from './batch-slots.ts'
import {
  CHUNK_CHECK_CONCURRENCY, DELTA_PACK_ZSTD_LEVEL, ORIGIN_BATCH_STALL_MS, DELTA_PACK_ZSTD_WINDOW_LOG, ENVELOPE_CACHE_BYTES, ENVELOPE_CACHE_ENTRIES,
  IMAGE_SUBLEVEL_PREFIX, MANIFEST_CACHE_SIZE, ORIGIN_MAX_CONCURRENT_BATCHES, ORIGIN_ZSTD_LEVEL, ORIGIN_ZSTD_WINDOW_LOG, PACKS_DIR,
  VERSION_RECORD_CACHE_IMAGES
} from './constants.ts'
import { ConfigError } from './errors.ts'
import { countReusedBlocks, digestSet, planDeltaPack, writeDeltaPack } from './delta-pack-builder.ts'
import type { AbortOptions, BlockStore, Logger, ManifestSigner } from './interface.ts'
import { createLruCache } from './lru-cache.ts'
import { createChunkGuard, type ChunkGuard } from './chunk-guard.ts'
import { createLeases } from './meta-store/leases.ts'

/** What the image service needs from the server (D1's createCoordinator passes these). */
export interface ImageServiceComponents {
  /** The root level db; the service creates its own `img-*` sublevels. */
  db: MetaDb
  blockStore: BlockStore
  signer: ManifestSigner
  logger: Logger
  /** The coordinator's data dir (delta packs go under PACKS_DIR). */
  dataDir: string
  /** Shared with storage gc (default: a new one; get it back as `service.guard`). */
  guard?: ChunkGuard
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

/** Plain counters for /metrics. */
export interface ImageStats {
  /** Bytes sent, by kind: signed manifests, block batches (compressed, as on the wire), raw chunks, delta packs. */
  bytesServed: { manifest: number, blocks: number, chunk: number, delta: number }
  /** Uncompressed bytes of the blocks sent in batches (blocks * BLOCK_SIZE), to compare with `bytesServed.blocks`. */
  blockBatchRawBytes: number
  blockBatches: number
  blockBatchesFailed: number
  /** Block batch requests waiting for a compression slot. */
  blockBatchesWaiting: number
  /** Block batch streams aborted because their client took no byte for batchStallMs. */
  blockBatchesStalled: number
  /** Times a stored chunk failed its digest (or was missing) when the origin read it: refused, never served; run `coordinator fsck`. */
  corruptChunkReads: number
  chunksUploaded: number
  bytesUploaded: number
  uploadsRejected: number
  versionsCommitted: number
  deltaPacksBuilt: number
  deltaPackBuildFailures: number
  /** Delta packs waiting or being built. */
  deltaPacksPending: number
}

/** A delta pack ready to serve. */
export interface DeltaPackFile {
  path: string
  bytes: number
  etag: string
  blocks: number
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
  openBlockBatch: (image: string, version: string, ranges: BlockRange[], options?: BlockBatchOptions) => Promise<{ info: api.VersionInfo, stream: ReadableStream<Uint8Array> }>
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
  /** The chunks in use, for storage gc (reads every live version's manifest). */
  liveChunks: (options?: AbortOptions) => Promise<LiveChunks>
  /** Marks retired versions collected (no longer served): storage gc calls it before it deletes their chunks. */
  markCollected: (versions: ReadonlyArray<{ image: string, version: string }>) => Promise<number>
  /** Deletes the delta packs (records, then files) of retired versions; with dryRun only counts them. */
  collectPacks: (options: { dryRun: boolean }) => Promise<{ deleted: number, deletedBytes: number }>
}

/** Options of openBlockBatch. */
export interface BlockBatchOptions extends AbortOptions {
  /** Who asks (their share of the batch slots); default: one anonymous owner. */
  owner?: SlotOwner
  /** Called when the stream is aborted for making no write progress: the caller drops the connection. */
  onStall?: () => void
}

/** What is stored per version: the public info plus the publish order. */
interface VersionRecord {
  info: api.VersionInfo
  seq: number
  /** Set by `coordinator fsck` when chunks of the version are damaged or missing: never served nor `latest`. */
  incomplete?: boolean
  /** Set by storage gc on a retired version before it deletes its chunks: never served again. */
  collected?: boolean
}

interface PackRecord {
  bytes: number
  blocks: number
  etag: string
  builtAt: string
}

interface CachedManifest {
  manifest: Manifest
  cids: Set<string>
}

const LATEST = 'latest'
const ZERO_BLOCK_DIGEST = hashBytes(new Uint8Array(BLOCK_SIZE))

function versionKey (image: string, version: string): string {
  return `${image}/${version}`
}

/** Runs `fn` over items with at most `limit` in flight; the first failure stops the rest from starting. */
async function forEachLimit<T> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++
      try {
        await fn(items[i], i)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

const INIT_KEYS = ['originZstd', 'deltaPackZstd', 'buildDeltaPacks', 'maxConcurrentBatches', 'maxBatchesPerPrincipal', 'maxBatchesPerGroup', 'batchStallMs']

/** Throws ConfigError for an init the service cannot run with (checked once, at creation). */
function checkInit (init: ImageServiceInit): void {
  const fail = (why: string): never => { throw new ConfigError(`images: ${why}`) }
  for (const k of Object.keys(init)) if (!INIT_KEYS.includes(k)) fail(`unknown setting ${JSON.stringify(k)} (known: ${INIT_KEYS.join(', ')})`)
  for (const k of ['originZstd', 'deltaPackZstd'] as const) {
    const z = init[k]
    if (z == null) continue
    if (typeof z !== 'object') fail(`${k} must be an object {level, windowLog}`)
    for (const f of Object.keys(z)) if (f !== 'level' && f !== 'windowLog') fail(`${k}: unknown setting ${JSON.stringify(f)} (known: level, windowLog)`)
    if (z.level !== undefined && (!Number.isInteger(z.level) || z.level < 1 || z.level > 22)) fail(`${k}.level must be an integer from 1 to 22`)
    if (z.windowLog !== undefined && (!Number.isInteger(z.windowLog) || (z.windowLog !== 0 && (z.windowLog < 10 || z.windowLog > 30)))) fail(`${k}.windowLog must be 0 (zstd's default) or an integer from 10 to 30`)
  }
  if (init.buildDeltaPacks !== undefined && typeof init.buildDeltaPacks !== 'boolean') fail('buildDeltaPacks must be true or false')
  for (const k of ['maxConcurrentBatches', 'maxBatchesPerPrincipal', 'maxBatchesPerGroup'] as const) {
    const v = init[k]
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) fail(`${k} must be a whole number >= 1`)
  }
  if (init.batchStallMs !== undefined && (!Number.isInteger(init.batchStallMs) || init.batchStallMs < 100)) fail('batchStallMs must be a whole number of milliseconds >= 100')
}

/** One stored version as `coordinator fsck` sees it. */
export interface StoredVersion {
  image: string
  version: string
  manifest: Manifest
  incomplete: boolean
}

function versionSublevels (db: MetaDb): { versions: any, envelopes: any } {
  return {
    versions: db.sublevel<string, VersionRecord>(`${IMAGE_SUBLEVEL_PREFIX}-versions`, { valueEncoding: 'json' }),
    envelopes: db.sublevel<string, Uint8Array>(`${IMAGE_SUBLEVEL_PREFIX}-envelopes`, { valueEncoding: 'view' })
  }
}

/** Every stored version with its manifest, but those storage gc collected (their chunks are gone on purpose); for fsck, the coordinator must be stopped. */
export async function * storedVersions (db: MetaDb): AsyncGenerator<StoredVersion> {
  const { versions, envelopes } = versionSublevels(db)
  for await (const [key, rec] of versions.iterator() as AsyncIterable<[string, VersionRecord]>) {
    if (rec.collected === true) continue
    const envelope = await envelopes.get(key)
    if (envelope == null) throw new NotFoundError(`version ${key} has no stored manifest`)
    yield { image: rec.info.image, version: rec.info.version, manifest: decodeManifest(decodeEnvelope(envelope).manifest), incomplete: rec.incomplete === true }
  }
}

/** Marks a version incomplete (never served nor `latest`) or complete again; for fsck, with the coordinator stopped. */
export async function setVersionIncomplete (db: MetaDb, image: string, version: string, incomplete: boolean): Promise<void> {
  const { versions } = versionSublevels(db)
  const key = versionKey(image, version)
  const rec: VersionRecord | undefined = await versions.get(key)
  if (rec == null) throw new NotFoundError(`image ${image} has no version ${version}`)
  if ((rec.incomplete === true) === incomplete) return
  if (incomplete) rec.incomplete = true
  else delete rec.incomplete
  await versions.put(key, rec)
}

/** Creates the image service; call start() to run the background delta pack builder. Throws ConfigError for a bad init. */
export function createImageService (components: ImageServiceComponents, init: ImageServiceInit = {}): ImageService {
  checkInit(init)
  const { db, blockStore, signer, logger, dataDir } = components
  const guard = components.guard ?? createChunkGuard()
  const originZstd: ZstdSettings = { level: init.originZstd?.level ?? ORIGIN_ZSTD_LEVEL, windowLog: init.originZstd?.windowLog ?? ORIGIN_ZSTD_WINDOW_LOG }
  const packZstd: ZstdSettings = { level: init.deltaPackZstd?.level ?? DELTA_PACK_ZSTD_LEVEL, windowLog: init.deltaPackZstd?.windowLog ?? DELTA_PACK_ZSTD_WINDOW_LOG }
  const buildPacks = init.buildDeltaPacks ?? true
  const versions = db.sublevel<string, VersionRecord>(`${IMAGE_SUBLEVEL_PREFIX}-versions`, { valueEncoding: 'json' })
  const envelopes = db.sublevel<string, Uint8Array>(`${IMAGE_SUBLEVEL_PREFIX}-envelopes`, { valueEncoding: 'view' })
  const digestsDb = db.sublevel<string, Uint8Array>(`${IMAGE_SUBLEVEL_PREFIX}-digests`, { valueEncoding: 'view' })
  const packs = db.sublevel<string, PackRecord>(`${IMAGE_SUBLEVEL_PREFIX}-packs`, { valueEncoding: 'json' })
  const meta = db.sublevel<string, number>(`${IMAGE_SUBLEVEL_PREFIX}-meta`, { valueEncoding: 'json' })

  const stats: ImageStats = {
    bytesServed: { manifest: 0, blocks: 0, chunk: 0, delta: 0 },
    blockBatchRawBytes: 0,
    blockBatches: 0,
    blockBatchesFailed: 0,
    blockBatchesWaiting: 0,
    blockBatchesStalled: 0,
    corruptChunkReads: 0,
    chunksUploaded: 0,
    bytesUploaded: 0,
    uploadsRejected: 0,
    versionsCommitted: 0,
    deltaPacksBuilt: 0,
    deltaPackBuildFailures: 0,
    deltaPacksPending: 0
  }

  // Commits, retirements and pack records are serialised (in every coordinator sharing the store, reading records
  // afresh): publish order (seq, previous) and the duplicate-version check need it, and they are rare next to reads.
  const serialised = async <T>(fn: () => Promise<T>): Promise<T> => await db.lock('images', async () => { if (db.shared) service.refresh(); return await fn() })

  const manifestCache = new Map<string, CachedManifest>()

  // ---- read caches ----
  // Each manifest request used to open a level iterator over the image's
  // versions (to resolve `latest`) and copy the envelope out of level: under a
  // crowd of agents that was most of the request's cost, plus a copy of up to
  // MAX_MANIFEST_BYTES per request. Every write to img-versions goes through
  // this service (fsck writes only while the coordinator is stopped) and
  // envelopes never change once committed (a retired version stays fetchable
  // by name), so both are cached: an image's version records, frozen, in
  // publish order (dropped by every write to that image), and the envelope
  // bytes (one shared buffer, sent as is to every client).
  const recordCache = createLruCache<readonly VersionRecord[]>({ maxEntries: VERSION_RECORD_CACHE_IMAGES })
  // signed once per image and latest version (a signature costs ~0.1 ms; daemons poll `latest` often)
  const pointerCache = createLruCache<{ version: string, seq: number, bytes: Uint8Array }>({ maxEntries: VERSION_RECORD_CACHE_IMAGES })
  const envelopeCache = createLruCache<Uint8Array>({ maxEntries: ENVELOPE_CACHE_ENTRIES, maxWeight: ENVELOPE_CACHE_BYTES, weigh: b => b.byteLength })
  // Loads in progress, so a crowd arriving at a cold cache reads level once.
  const recordLoads = new Map<string, Promise<readonly VersionRecord[]>>()
  const envelopeLoads = new Map<string, Promise<Uint8Array>>()
  // Bumped by every write: a load that started before a write must not cache what it read.
  let generation = 0

  /** Drops the cached records of `image`; call after every write to its version records. */
  function invalidate (image: string): void {
    generation++
    recordCache.delete(image)
    recordLoads.delete(image)
  }

  // Each batch stream holds a zstd window of up to 2^windowLog bytes (sized
  // down to the batch by the pledged size): bound how many run at once so a
  // crowd of first installs queues instead of exhausting memory, and share
  // them so one token or group cannot hold them all (batch-slots.ts).
  const maxBatches = init.maxConcurrentBatches ?? ORIGIN_MAX_CONCURRENT_BATCHES
  const slots = createBatchSlots({
    maxSlots: maxBatches,
    maxPerPrincipal: init.maxBatchesPerPrincipal ?? defaultShare(maxBatches),
    maxPerGroup: init.maxBatchesPerGroup ?? defaultShare(maxBatches)
  })
  const stallMs = init.batchStallMs ?? ORIGIN_BATCH_STALL_MS
  const anonymous: SlotOwner = { principal: '', groups: [] }

  /** A stored chunk the origin could not read (failed its digest, or gone): counted and logged with what the admin should do. */
  function chunkUnreadable (image: string, version: string, cid: string, err: Error): void {
    stats.corruptChunkReads++
    logger.error('stored chunk refused: not served', {
      image,
      version,
      cid,
      error: err.message,
      hint: 'stop the coordinator and run `trimswarm coordinator fsck --data DIR --repair-from IMAGE_FILE` to restore it from the source image (without --repair-from fsck marks the versions holding it incomplete)'
    })
  }

  /** A version's record (frozen: copy it to change it). */
  async function getRecord (image: string, version: string): Promise<VersionRecord | undefined> {
    return (await imageRecords(image)).find(r => r.info.version === version)
  }

  /** Every version record of an image, in publish order, from the cache or level (frozen). */
  async function imageRecords (image: string): Promise<readonly VersionRecord[]> {
    const hit = recordCache.get(image)
    if (hit != null) return hit
    let pending = recordLoads.get(image)
    if (pending == null) {
      const gen = generation
      const load: Promise<readonly VersionRecord[]> = readImageRecords(image)
        .then(recs => {
          if (gen === generation) recordCache.set(image, recs)
          return recs
        })
        .finally(() => { if (recordLoads.get(image) === load) recordLoads.delete(image) })
      recordLoads.set(image, pending = load)
    }
    return await pending
  }

  async function readImageRecords (image: string): Promise<readonly VersionRecord[]> {
    const out: VersionRecord[] = []
    // '/' + 1 is '0': every key `${image}/...` and nothing of another image.
    for await (const value of versions.values({ gt: `${image}/`, lt: `${image}0` })) {
      Object.freeze(value.info)
      out.push(Object.freeze(value))
    }
    return Object.freeze(out.sort((a, b) => a.seq - b.seq))
  }

  /** A version's signed envelope, from the cache or level (shared: never modify it). */
  async function envelopeOf (image: string, version: string): Promise<Uint8Array> {
    const key = versionKey(image, version)
    const hit = envelopeCache.get(key)
    if (hit != null) return hit
    let pending = envelopeLoads.get(key)
    if (pending == null) {
      const load: Promise<Uint8Array> = envelopes.get(key)
        .then((bytes: Uint8Array | undefined) => {
          if (bytes == null) throw new NotFoundError(`image ${image} version ${version} has no manifest`)
          envelopeCache.set(key, bytes)
          return bytes
        })
        .finally(() => { envelopeLoads.delete(key) })
      envelopeLoads.set(key, pending = load)
    }
    return await pending
  }

  function latestOf (records: readonly VersionRecord[]): VersionRecord | undefined {
    for (let i = records.length - 1; i >= 0; i--) if (!records[i].info.retired && records[i].incomplete !== true) return records[i]
    return undefined
  }

  async function resolve (image: string, version: string): Promise<VersionRecord> {
    api.name.parse(image, 'image')
    api.name.parse(version, 'version')
    if (version === LATEST) {
      const latest = latestOf(await imageRecords(image))
      if (latest == null) throw new NotFoundError(`image ${image} has no current version`)
      return latest
    }
    const rec = await getRecord(image, version)
    if (rec == null) throw new NotFoundError(`image ${image} has no version ${version}`)
    // fsck found chunks of it damaged or missing: serving it would only make agents fail later.
    if (rec.collected === true) throw new NotFoundError(`image ${image} version ${version} was retired and its data deleted by storage gc`)
    if (rec.incomplete === true) throw new UnavailableError(`image ${image} version ${version} is incomplete on this coordinator (damaged or missing chunks; see coordinator fsck)`)
    return rec
  }

  async function loadManifest (info: api.VersionInfo): Promise<CachedManifest> {
    const key = versionKey(info.image, info.version)
    const hit = manifestCache.get(key)
    if (hit != null) {
      manifestCache.delete(key)
      manifestCache.set(key, hit)
      return hit
    }
    const envelope = await envelopeOf(info.image, info.version)
    // The envelope was built by us at commit; decode the manifest inside without re-verifying the signature.
    const manifest = decodeManifest(decodeEnvelope(envelope).manifest)
    const entry: CachedManifest = { manifest, cids: new Set(manifest.chunks.map(c => chunkCid(c.digest).toString())) }
    manifestCache.set(key, entry)
    while (manifestCache.size > MANIFEST_CACHE_SIZE) manifestCache.delete(manifestCache.keys().next().value as string)
    return entry
  }

  function packPath (image: string, version: string, from: string): string {
    return join(dataDir, PACKS_DIR, image, version, `from-${from}.pack`)
  }

  // ---- background delta pack builder ----
  const queue: Array<{ image: string, version: string }> = []
  let running = false
  let stopped = true
  let building: Promise<void> = Promise.resolve()
  let buildAbort = new AbortController()
  const idleWaiters: Array<() => void> = []

  function notifyIdle (): void {
    if (queue.length > 0 || running) return
    for (const w of idleWaiters.splice(0)) w()
  }

  function enqueue (image: string, version: string): void {
    if (!buildPacks) return
    if (queue.some(q => q.image === image && q.version === version)) return
    queue.push({ image, version })
    stats.deltaPacksPending = queue.length + (running ? 1 : 0)
    pump()
  }

  function pump (): void {
    if (running || stopped || queue.length === 0) return
    const job = queue.shift()!
    running = true
    stats.deltaPacksPending = queue.length + 1
    // several coordinators on one store: one builds under a lease (meta-store/leases.ts), the others find the version's pack recorded
    building = createLeases({ db }).runExclusive(`delta-pack:${job.image}/${job.version}`, async (lost) => { await buildOne(job.image, job.version, lost) },
      { done: async () => (await versions.get(versionKey(job.image, job.version)))?.info.deltaPackBytes != null, signal: buildAbort.signal }).then(() => {})
      .catch((err: Error) => {
        if (buildAbort.signal.aborted) return
        stats.deltaPackBuildFailures++
        logger.error('delta pack build failed', { image: job.image, version: job.version, error: err.message })
      })
      .finally(() => {
        running = false
        stats.deltaPacksPending = queue.length
        notifyIdle()
        pump()
      })
  }

  async function buildOne (image: string, version: string, signal: AbortSignal): Promise<void> {
    const rec = await getRecord(image, version)
    const from = rec?.info.previous
    // a retired version's pack is of no use, and storage gc may have taken its chunks
    if (rec == null || from == null || rec.info.retired) return
    const key = versionKey(image, version)
    const [digests, prevDigests] = await Promise.all([digestsDb.get(key), digestsDb.get(versionKey(image, from))])
    if (digests == null || prevDigests == null) throw new NotFoundError(`block digests of ${image} ${version} or ${from} are missing`)
    const { manifest } = await loadManifest(rec.info)
    const ranges = planDeltaPack(digests, digestSet(prevDigests))
    const started = performance.now()
    const path = packPath(image, version, from)
    const built = await writeDeltaPack(blockStore, { manifest, from, ranges, path, zstd: packZstd, signal })
    const seconds = (performance.now() - started) / 1000
    await serialised(async () => {
      const cur = await getRecord(image, version)
      if (cur == null) return
      const next: VersionRecord = { ...cur, info: { ...cur.info, deltaPackBytes: built.bytes } }
      const pack: PackRecord = { bytes: built.bytes, blocks: built.blocks, etag: built.etag, builtAt: new Date().toISOString() }
      try {
        await db.batch([
          { type: 'put', sublevel: versions, key, value: next },
          { type: 'put', sublevel: packs, key: `${key}/${from}`, value: pack }
        ] as any)
      } finally {
        invalidate(image)
      }
    })
    stats.deltaPacksBuilt++
    logger.info('delta pack built', { image, version, from, blocks: built.blocks, bytes: built.bytes, seconds: Math.round(seconds * 10) / 10 })
  }

  async function packReady (image: string, version: string, from: string): Promise<PackRecord | undefined> {
    const rec = await packs.get(`${versionKey(image, version)}/${from}`)
    if (rec == null) return undefined
    try {
      const st = await stat(packPath(image, version, from))
      if (st.size === rec.bytes) return rec
    } catch {}
    return undefined
  }

  /** The rest of commitVersion, while its chunks are claimed against storage gc. */
  async function commitChecked (image: string, manifestBytes: Uint8Array, manifest: Manifest, cids: CID[], options: AbortOptions): Promise<api.VersionInfo> {
    const key = versionKey(image, manifest.version)
    const missing = await service.missingChunks(cids, options)
    if (missing.length > 0) {
      throw new ConflictError(`${missing.length} of ${cids.length} chunks are not uploaded yet (first: ${missing.slice(0, 3).join(', ')})`)
    }
    const digests = new Uint8Array(blockCount(manifest) * DIGEST_BYTES)
    await forEachLimit(manifest.chunks, CHUNK_CHECK_CONCURRENCY, async (chunk, i) => {
      options.signal?.throwIfAborted()
      const bytes = await blockStore.get(cids[i], { ...options, verify: true })
      if (bytes.length !== chunk.length) throw new InvalidManifestError(`chunk ${i} is ${chunk.length} bytes in the manifest, ${bytes.length} stored`)
      const blockDigests = hashBlocks(bytes)
      digests.set(blockDigests, chunk.firstBlock * DIGEST_BYTES)
      for (let b = 0; b < chunk.length / BLOCK_SIZE; b++) {
        const d = blockDigests.subarray(b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES)
        const index = chunk.firstBlock + b
        if (!equals(d.subarray(0, BLOCK_PREFIX_BYTES), manifest.blockPrefixes.subarray(index * BLOCK_PREFIX_BYTES, (index + 1) * BLOCK_PREFIX_BYTES))) {
          throw new InvalidManifestError(`block ${index} (in chunk ${i}) has digest ${toHex(d)}, the manifest's prefix does not match`)
        }
        if (equals(d, ZERO_BLOCK_DIGEST)) throw new InvalidManifestError(`block ${index} is all zero; zero blocks are holes, never part of a chunk`)
      }
    })
    const envelope = await signer.sign(manifestBytes)
    const manifestCid = manifestCidOf(manifestBytes).toString()

    return await serialised(async () => {
      if (await getRecord(image, manifest.version) != null) throw new ConflictError(`image ${image} already has version ${manifest.version} (versions are immutable)`)
      const previous = latestOf(await imageRecords(image))
      let reused: number | null = null
      if (previous != null) {
        const prevDigests = await digestsDb.get(versionKey(image, previous.info.version))
        if (prevDigests != null) {
          const n = blockCount(manifest)
          reused = n === 0 ? 100 : Math.round(countReusedBlocks(digests, digestSet(prevDigests)) / n * 10000) / 100
        }
      }
      const seq = ((await meta.get('seq')) ?? 0) + 1
      const info: api.VersionInfo = {
        image,
        version: manifest.version,
        manifestCid,
        size: manifest.size,
        nonZeroBytes: nonZeroBytes(manifest),
        chunks: manifest.chunks.length,
        blocks: blockCount(manifest),
        publishedAt: new Date().toISOString(),
        retired: false,
        previous: previous?.info.version ?? null,
        deltaPackBytes: null,
        reusedFromPreviousPercent: reused
      }
      // One batch: an interrupted commit leaves no version, a finished one leaves all of it.
      try {
        await db.batch([
          { type: 'put', sublevel: versions, key, value: { info, seq } },
          { type: 'put', sublevel: envelopes, key, value: envelope },
          { type: 'put', sublevel: digestsDb, key, value: digests },
          { type: 'put', sublevel: meta, key: 'seq', value: seq }
        ] as any)
      } finally {
        // `latest` moves for the very next request
        invalidate(image)
      }
      stats.versionsCommitted++
      logger.info('version committed', { image, version: manifest.version, previous: info.previous, chunks: info.chunks, reusedFromPreviousPercent: reused })
      if (info.previous != null) enqueue(image, manifest.version)
      return info
    })
  }

  // ---- the service ----
  const service: ImageService = {
    guard,

    async start () {
      if (!stopped) return
      stopped = false
      buildAbort = new AbortController()
      // Rebuild packs lost to a crash mid-build or deleted by an operator.
      for await (const rec of versions.values()) {
        if (rec.info.previous != null && !rec.info.retired && await packReady(rec.info.image, rec.info.version, rec.info.previous) == null) enqueue(rec.info.image, rec.info.version)
      }
      pump()
    },

    // drops the cached version records: with a shared store other coordinators publish and retire (a cached pointer is checked against them)
    refresh () { generation++; recordCache.clear(); recordLoads.clear() },
    async stop () {
      stopped = true
      queue.length = 0
      buildAbort.abort()
      await building
      stats.deltaPacksPending = 0
      notifyIdle()
    },

    stats: () => structuredClone({ ...stats, blockBatchesWaiting: slots.waiting() }),

    async missingChunks (cids, options = {}) {
      // asked by a publish before it uploads: what is present now is claimed for it (kept by storage gc)
      await guard.claim(cids.map(c => c.toString()))
      const present = new Array<boolean>(cids.length)
      await forEachLimit(cids, CHUNK_CHECK_CONCURRENCY, async (cid, i) => {
        options.signal?.throwIfAborted()
        try {
          await blockStore.touch(cid, options)
          present[i] = true
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err
          present[i] = false
        }
      })
      return cids.filter((_, i) => !present[i])
    },

    async putChunk (cid, bytes, options = {}) {
      await guard.claim([cid.toString()])
      try {
        await blockStore.put(cid, bytes, options)
      } catch (err) {
        stats.uploadsRejected++
        throw err
      }
      stats.chunksUploaded++
      stats.bytesUploaded += bytes.length
    },

    async commitVersion (image, manifestBytes, options = {}) {
      api.name.parse(image, 'image')
      const manifest = decodeManifest(manifestBytes)
      if (manifest.name !== image) throw new ValidationError(`manifest is for image ${manifest.name}, not ${image}`)
      if (manifest.version === LATEST) throw new ValidationError(`"${LATEST}" is reserved and cannot be a version name`)
      if (await getRecord(image, manifest.version) != null) throw new ConflictError(`image ${image} already has version ${manifest.version} (versions are immutable)`)

      // Every chunk present, and every block prefix true to the stored bytes:
      // a manifest whose prefixes lie would make clients reuse wrong local blocks.
      const cids = manifest.chunks.map(c => chunkCid(c.digest))
      const release = guard.committing(cids.map(c => c.toString()))
      try {
        return await commitChecked(image, manifestBytes, manifest, cids, options)
      } finally {
        release()
      }
    },

    async listImages (filter) {
      const byImage = new Map<string, VersionRecord[]>()
      for await (const rec of versions.values()) {
        if (!filter(rec.info.image)) continue
        let list = byImage.get(rec.info.image)
        if (list == null) byImage.set(rec.info.image, list = [])
        list.push(rec)
      }
      const images = [...byImage.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([name, recs]) => {
        recs.sort((a, b) => a.seq - b.seq)
        return { name, latest: latestOf(recs)?.info.version ?? null, versions: recs.length }
      })
      return { images }
    },

    async listVersions (image) {
      api.name.parse(image, 'image')
      const recs = await imageRecords(image)
      if (recs.length === 0) throw new NotFoundError(`no image ${image}`)
      return { image, latest: latestOf(recs)?.info.version ?? null, versions: recs.map(r => r.info) }
    },

    async getInfo (image, version) {
      return (await resolve(image, version)).info
    },

    async getEnvelope (image, version) {
      const rec = await resolve(image, version)
      return { info: rec.info, bytes: await envelopeOf(image, rec.info.version) }
    },

    async getLatestPointer (image) {
      const rec = await resolve(image, LATEST)
      const hit = pointerCache.get(image)
      if (hit != null && hit.version === rec.info.version && hit.seq === rec.seq) return { info: rec.info, bytes: hit.bytes }
      const pointer: VersionPointer = { image, version: rec.info.version, manifestCid: rec.info.manifestCid, seq: rec.seq, time: Math.floor(Date.now() / 1000) }
      const bytes = await signVersionPointer(pointer, signer.privateKey)
      pointerCache.set(image, { version: pointer.version, seq: pointer.seq, bytes })
      return { info: rec.info, bytes }
    },

    async retire (image, version) {
      if (version === LATEST) throw new ValidationError('name the version to retire, not "latest"')
      return await serialised(async () => {
        const rec = await resolve(image, version)
        if (rec.info.retired) return rec.info
        const next: VersionRecord = { ...rec, info: { ...rec.info, retired: true } }
        try {
          await versions.put(versionKey(image, version), next)
        } finally {
          invalidate(image)
        }
        logger.info('version retired', { image, version })
        return next.info
      })
    },

    async openBlockBatch (image, version, ranges, options = {}) {
      const rec = await resolve(image, version)
      const { manifest } = await loadManifest(rec.info)
      const blocks = checkBlockBatch(ranges, blockCount(manifest))
      const owner = options.owner ?? anonymous
      const release = await slots.acquire(owner, options.signal)
      const unreadable = new Set<string>()
      stats.blockBatches++
      stats.blockBatchRawBytes += blocks * BLOCK_SIZE
      let stream: ReadableStream<Uint8Array>
      try {
        stream = createBlockBatchStream(blockStore, manifest, ranges, {
          zstd: originZstd,
          blocks,
          signal: options.signal,
          stallMs,
          onStall: () => {
            stats.blockBatchesStalled++
            logger.warn('block batch aborted: its client took no byte', { image, version: rec.info.version, principal: owner.principal, seconds: stallMs / 1000 })
            options.onStall?.()
          },
          onUnavailable: (cid, err) => {
            // one report per chunk and stream, however many of its ranges name it
            if (unreadable.has(cid)) return
            unreadable.add(cid)
            chunkUnreadable(image, rec.info.version, cid, err)
          },
          onWireBytes: (n) => { stats.bytesServed.blocks += n },
          onDone: (err) => {
            release()
            if (err == null) return
            stats.blockBatchesFailed++
            logger.warn('block batch ended early', { image, version: rec.info.version, error: err.message })
          }
        })
      } catch (err) {
        release()
        throw err
      }
      return { info: rec.info, stream }
    },

    async getChunk (image, version, cid, options = {}) {
      const rec = await resolve(image, version)
      const { cids } = await loadManifest(rec.info)
      if (!cids.has(cid.toString())) throw new NotFoundError(`version ${rec.info.version} of ${image} has no chunk ${cid.toString()}`)
      try {
        return await blockStore.get(cid, options)
      } catch (err) {
        if (err instanceof HashMismatchError || err instanceof NotFoundError) chunkUnreadable(image, rec.info.version, cid.toString(), err)
        throw err
      }
    },

    async getDeltaPack (image, version, from) {
      const rec = await resolve(image, version)
      api.name.parse(from, 'from')
      if (rec.info.previous !== from) throw new NotFoundError(`no delta pack of ${image} from ${from} to ${rec.info.version} (packs exist from the previous version, ${rec.info.previous ?? 'none'})`)
      const pack = await packReady(image, rec.info.version, from)
      if (pack == null) throw new NotFoundError(`the delta pack of ${image} from ${from} to ${rec.info.version} is not built yet`)
      return { path: packPath(image, rec.info.version, from), bytes: pack.bytes, etag: pack.etag, blocks: pack.blocks }
    },

    countServed (kind, bytes) {
      stats.bytesServed[kind] += bytes
    },

    async whenIdle () {
      if (queue.length === 0 && !running) return
      await new Promise<void>(resolve => idleWaiters.push(resolve))
    },

    async rebuildDeltaPack (image, version) {
      const rec = await resolve(image, version)
      if (rec.info.previous == null) throw new NotFoundError(`version ${rec.info.version} of ${image} has no previous version`)
      enqueue(image, rec.info.version)
    },

    async adminImages () {
      const byImage = new Map<string, VersionRecord[]>()
      for await (const rec of versions.values() as AsyncIterable<VersionRecord>) {
        let list = byImage.get(rec.info.image)
        if (list == null) byImage.set(rec.info.image, list = [])
        list.push(rec)
      }
      const images = [...byImage.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([name, recs]) => {
        recs.sort((a, b) => a.seq - b.seq)
        const latest = latestOf(recs)?.info.version ?? null
        return { name, latest, versions: recs.map(r => adminVersion(r, latest)) }
      })
      return { images }
    },

    async liveChunks (options = {}) {
      const live = new Set<string>()
      const retired: LiveChunks['retired'] = []
      for await (const [key, rec] of versions.iterator() as AsyncIterable<[string, VersionRecord]>) {
        options.signal?.throwIfAborted()
        if (rec.collected === true) continue
        if (rec.info.retired) {
          retired.push({ image: rec.info.image, version: rec.info.version })
          continue
        }
        const envelope = await envelopes.get(key)
        if (envelope == null) throw new NotFoundError(`version ${key} has no stored manifest`)
        for (const c of decodeManifest(decodeEnvelope(envelope).manifest).chunks) live.add(chunkCid(c.digest).toString())
      }
      return { live, retired }
    },

    async markCollected (list) {
      return await serialised(async () => {
        let n = 0
        for (const { image, version } of list) {
          const rec = await getRecord(image, version)
          if (rec == null || !rec.info.retired || rec.collected === true) continue
          try {
            await versions.put(versionKey(image, version), { ...rec, collected: true })
          } finally {
            invalidate(image)
          }
          manifestCache.delete(versionKey(image, version))
          n++
        }
        return n
      })
    },

    async collectPacks ({ dryRun }) {
      let deleted = 0
      let deletedBytes = 0
      // records first: a crash between leaves files without records, which the directory pass below deletes on the next run
      const stale: string[] = []
      for await (const [key, pack] of packs.iterator() as AsyncIterable<[string, PackRecord]>) {
        const [image, version] = key.split('/')
        const rec = await getRecord(image, version)
        if (rec != null && !rec.info.retired) continue
        stale.push(key)
        deleted++
        deletedBytes += pack.bytes
      }
      if (dryRun) return { deleted, deletedBytes }
      if (stale.length > 0) await db.batch(stale.map(key => ({ type: 'del', sublevel: packs, key })) as any)
      for (const image of await dirNames(join(dataDir, PACKS_DIR))) {
        for (const version of await dirNames(join(dataDir, PACKS_DIR, image))) {
          const rec = await getRecord(image, version)
          if (rec != null && !rec.info.retired) continue
          await rm(join(dataDir, PACKS_DIR, image, version), { recursive: true, force: true })
        }
      }
      return { deleted, deletedBytes }
    }
  }
  return service
}

/** A version record as the admin list shows it. */
function adminVersion (rec: VersionRecord, latest: string | null): AdminVersion {
  const { info } = rec
  const state = rec.collected === true ? 'collected' : info.retired ? 'retired' : rec.incomplete === true ? 'incomplete' : 'live'
  return {
    version: info.version,
    state,
    latest: info.version === latest,
    publishedAt: info.publishedAt,
    size: info.size,
    nonZeroBytes: info.nonZeroBytes,
    chunks: info.chunks,
    previous: info.previous,
    deltaPackBytes: info.deltaPackBytes
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
