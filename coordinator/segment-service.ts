/**
 * Compressed segments of each version (issue 19, protocol/segments.ts): built
 * in the background after a commit (like the delta pack), each segment one
 * zstd frame stored through the block store under the CID of its compressed
 * bytes (so the S3 store holds them too and storage gc sees them), and served
 * as files: a cold client costs the coordinator a read, not a compression.
 *
 * Storage: level sublevel SEGMENT_SUBLEVEL `${image}/${version}` -> SegmentTable (json).
 */
import { promisify } from 'node:util'
import { constants as zlibConstants, zstdCompress } from 'node:zlib'
import type { api } from '../protocol/index.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import { rangesFromIndices } from '../protocol/delta-pack.ts'
import { HashMismatchError, NotFoundError } from '../protocol/errors.ts'
import { decodeManifest, type Manifest } from '../protocol/manifest.ts'
import { distinctBlocks, MAX_SEGMENT_BYTES, SEGMENT_BLOCKS, segmentsOf, type SegmentTable } from '../protocol/segments.ts'
import { decodeEnvelope } from '../protocol/signed-manifest.ts'
import { blockBytes } from './block-batch.ts'
import { SEGMENT_CACHE_BYTES, SEGMENT_SUBLEVEL, SEGMENT_ZSTD_LEVEL, VERSION_RECORD_CACHE_IMAGES } from './constants.ts'
import { ConfigError } from './errors.ts'
import { createImageService, type ImageService, type ImageServiceComponents, type ImageServiceInit } from './image-service.ts'
import type { AbortOptions, BlockStore, Logger } from './interface.ts'
import { createLruCache } from './lru-cache.ts'
import { createStoredFiles } from './stored-files.ts'
import { createBuildQueue } from './build-queue.ts'
import type { MetaDb } from './meta-db.ts'

const compress = promisify(zstdCompress)

/** What the segment service needs. */
export interface SegmentServiceComponents {
  db: MetaDb
  blockStore: BlockStore
  /** Resolves versions (latest, retired, collected, incomplete) and gives their manifests. */
  images: Pick<ImageService, 'getInfo' | 'getEnvelope' | 'adminImages'>
  logger: Logger
}

/** Tunables (defaults in coordinator/constants.ts and protocol/segments.ts). */
export interface SegmentServiceInit {
  /** Build segments after commits and at start (default true). */
  build?: boolean
  /** zstd level of the segments (default SEGMENT_ZSTD_LEVEL, 19). */
  zstdLevel?: number
  /** Segment files kept in memory (bytes; default SEGMENT_CACHE_BYTES, 64 MiB). */
  cacheBytes?: number
  /** Blocks per segment (default SEGMENT_BLOCKS; tests use fewer). */
  segmentBlocks?: number
}

/** Counters for /metrics and the benchmarks. */
export interface SegmentStats {
  /** Compressed segment bytes sent (as on the wire, ranges included). */
  bytesServed: number
  /** Segment responses with a body (200 or 206). */
  segmentsServed: number
  /** Answers 304 Not Modified. */
  notModified: number
  segmentsBuilt: number
  buildFailures: number
  /** Versions waiting or being built. */
  pending: number
}

/** One segment ready to send. */
export interface SegmentFile {
  bytes: Uint8Array
  cid: string
}

/** The segment service (see the module comment). */
export interface SegmentService {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Queues a build of a version's segments (after its commit). */
  enqueue: (info: api.VersionInfo) => void
  /** Resolves when no build is waiting or running (tests, benchmarks). */
  whenIdle: () => Promise<void>
  /** The version's segment table (`latest` allowed); NotFoundError while not built. */
  table: (image: string, version: string) => Promise<SegmentTable>
  /** Segment `index` of the version; NotFoundError past the last one. */
  segment: (image: string, version: string, index: number, options?: AbortOptions) => Promise<SegmentFile>
  /** CIDs of the segments of every version that is not retired (storage gc keeps them). */
  liveCids: () => Promise<Set<string>>
  stats: () => SegmentStats
  /** Counts what the routes sent. */
  countServed: (kind: 'body' | 'notModified', bytes: number) => void
}

/** Throws ConfigError for an init the service cannot run with. */
function checkInit (init: SegmentServiceInit): void {
  const fail = (why: string): never => { throw new ConfigError(`images: ${why}`) }
  if (init.build !== undefined && typeof init.build !== 'boolean') fail('segments.build must be true or false')
  const intIn = (v: number | undefined, min: number, max: number): boolean => v === undefined || (Number.isSafeInteger(v) && v >= min && v <= max)
  if (!intIn(init.zstdLevel, 1, 22)) fail('segments.zstdLevel must be an integer from 1 to 22')
  if (!intIn(init.cacheBytes, 0, Number.MAX_SAFE_INTEGER)) fail('segments.cacheBytes must be a whole number of bytes >= 0')
  if (!intIn(init.segmentBlocks, 1, SEGMENT_BLOCKS)) fail(`segments.segmentBlocks must be from 1 to ${SEGMENT_BLOCKS}`)
}

/** Compresses the named blocks of a manifest as one zstd frame (the whole segment is in memory: at most 4 MiB). */
export async function buildSegment (
  blockStore: BlockStore, manifest: Manifest, indices: Uint32Array, level: number, options: AbortOptions = {}
): Promise<Uint8Array> {
  const raw = Buffer.allocUnsafe(indices.length * BLOCK_SIZE)
  let at = 0
  for await (const piece of blockBytes(blockStore, manifest, rangesFromIndices(indices), options)) {
    raw.set(piece, at)
    at += piece.length
  }
  const frame = await compress(raw, { params: { [zlibConstants.ZSTD_c_compressionLevel]: level, [zlibConstants.ZSTD_c_checksumFlag]: 1 } })
  if (frame.length > MAX_SEGMENT_BYTES) {
    throw new Error(`segment of ${indices.length} blocks compressed to ${frame.length} bytes, more than ${MAX_SEGMENT_BYTES}`)
  }
  return new Uint8Array(frame.buffer, frame.byteOffset, frame.length)
}

/** Creates the segment service; call start() to build what is missing. */
export function createSegmentService (components: SegmentServiceComponents, init: SegmentServiceInit = {}): SegmentService {
  checkInit(init)
  const { db, blockStore, images, logger } = components
  const buildOn = init.build ?? true
  const level = init.zstdLevel ?? SEGMENT_ZSTD_LEVEL
  const segmentBlocks = init.segmentBlocks ?? SEGMENT_BLOCKS
  const tables = db.sublevel<string, SegmentTable>(SEGMENT_SUBLEVEL, { valueEncoding: 'json' })
  // tables never change once written: cache them; segment files too (bounded by bytes)
  const tableCache = createLruCache<SegmentTable>({ maxEntries: VERSION_RECORD_CACHE_IMAGES })
  const files = createStoredFiles({ blockStore }, { cacheBytes: init.cacheBytes ?? SEGMENT_CACHE_BYTES })
  const stats: SegmentStats = { bytesServed: 0, segmentsServed: 0, notModified: 0, segmentsBuilt: 0, buildFailures: 0, pending: 0 }

  const builds = createBuildQueue<api.VersionInfo>({
    key: (info) => key(info.image, info.version),
    run: buildVersion,
    onError: (info, err) => {
      stats.buildFailures++
      logger.error('segment build failed', { image: info.image, version: info.version, error: err.message })
    }
  })
  const key = (image: string, version: string): string => `${image}/${version}`

  async function storedTable (image: string, version: string): Promise<SegmentTable | undefined> {
    const k = key(image, version)
    const hit = tableCache.get(k)
    if (hit != null) return hit
    const t = await tables.get(k)
    if (t != null) tableCache.set(k, t)
    return t
  }

  async function buildVersion (info: api.VersionInfo, signal: AbortSignal): Promise<void> {
    if (await storedTable(info.image, info.version) != null) return
    const started = performance.now()
    const { bytes } = await images.getEnvelope(info.image, info.version)
    const manifest = decodeManifest(decodeEnvelope(bytes).manifest)
    const entries: SegmentTable['segments'] = []
    let raw = 0
    for (const indices of segmentsOf(distinctBlocks(manifest.blockPrefixes), segmentBlocks)) {
      signal.throwIfAborted()
      const frame = await buildSegment(blockStore, manifest, indices, level, { signal })
      const { cid } = await files.put(frame, { signal })
      entries.push({ cid, bytes: frame.length, blocks: indices.length })
      raw += indices.length * BLOCK_SIZE
    }
    const table: SegmentTable = { image: info.image, version: info.version, manifestCid: info.manifestCid, segmentBlocks, segments: entries }
    await tables.put(key(info.image, info.version), table)
    stats.segmentsBuilt += entries.length
    const compressed = entries.reduce((s, e) => s + e.bytes, 0)
    const seconds = Math.round((performance.now() - started) / 100) / 10
    logger.info('segments built', { image: info.image, version: info.version, segments: entries.length, rawBytes: raw, bytes: compressed, seconds })
  }

  return {
    async start () {
      builds.start()
      if (!buildOn) return
      const { images: list } = await images.adminImages()
      for (const img of list) {
        for (const v of img.versions) {
          if (v.state !== 'live' || await storedTable(img.name, v.version) != null) continue
          this.enqueue(await images.getInfo(img.name, v.version))
        }
      }
    },

    stop: async () => { await builds.stop() },

    enqueue (info) {
      if (buildOn) builds.enqueue(info)
    },

    whenIdle: async () => { await builds.whenIdle() },

    async table (image, version) {
      const info = await images.getInfo(image, version)
      const t = await storedTable(image, info.version)
      if (t == null) throw new NotFoundError(`the segments of ${image} ${info.version} are not built yet`)
      return t
    },

    async segment (image, version, index, options = {}) {
      const t = await this.table(image, version)
      const entry = t.segments[index]
      if (entry == null) throw new NotFoundError(`${image} ${t.version} has ${t.segments.length} segments, no segment ${index}`)
      try {
        return { bytes: await files.read(entry.cid, options), cid: entry.cid }
      } catch (err) {
        if (err instanceof HashMismatchError || err instanceof NotFoundError) {
          logger.error('stored segment refused: not served', {
            image, version: t.version, segment: index, cid: entry.cid, error: err.message, hint: 'run `trimswarm coordinator fsck`'
          })
        }
        throw err
      }
    },

    async liveCids () {
      const live = new Set<string>()
      for await (const t of tables.values() as AsyncIterable<SegmentTable>) {
        // retired or collected: not live; incomplete (fsck) or any other state: kept
        let keep: boolean
        try { keep = !(await images.getInfo(t.image, t.version)).retired } catch (err) { keep = !(err instanceof NotFoundError) }
        if (keep) for (const s of t.segments) live.add(s.cid)
      }
      return live
    },

    stats: () => ({ ...stats, pending: builds.pending() }),

    countServed (kind, bytes) {
      if (kind === 'notModified') { stats.notModified++; return }
      stats.segmentsServed++
      stats.bytesServed += bytes
    }
  }
}

/**
 * Creates and starts the image service and the segment service over it, and
 * registers their stops in `cleanups`. The image service returned is the
 * coordinator's view of both: a commit queues the version's segment build,
 * storage gc counts the segments of live versions as live chunks, and the
 * stats count segment bytes as one more kind of origin bytes
 * (trimswarm_origin_sent_bytes_total{kind="segment"}).
 */
export async function startImageServices (
  components: ImageServiceComponents,
  config: { images?: ImageServiceInit, segments?: SegmentServiceInit },
  cleanups: Array<() => Promise<void>>
): Promise<{ images: ImageService, segments: SegmentService }> {
  const base = createImageService(components, config.images ?? {})
  await base.start()
  cleanups.push(async () => { await base.stop() })
  const { db, blockStore, logger } = components
  const segments = createSegmentService({ db, blockStore, images: base, logger }, config.segments ?? {})
  await segments.start()
  cleanups.push(async () => { await segments.stop() })
  const images: ImageService = {
    ...base,
    commitVersion: async (image, bytes, options) => {
      const info = await base.commitVersion(image, bytes, options)
      segments.enqueue(info)
      return info
    },
    liveChunks: async (options) => {
      const found = await base.liveChunks(options)
      for (const cid of await segments.liveCids()) found.live.add(cid)
      return found
    },
    stats: () => {
      const s = base.stats()
      return { ...s, bytesServed: { ...s.bytesServed, segment: segments.stats().bytesServed } }
    }
  }
  return { images, segments }
}
