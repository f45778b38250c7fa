/**
 * The origin's precomputed delta pack from the installed version as a block
 * source: whether it pays (a pure cost model, decided after the local sources
 * and peers ran), its download into the data dir (resumed with HTTP Range and
 * If-Range), and its application (every block offered like any other).
 */
import { open, readFile, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { writeFileAtomic } from '../utils/atomic-write.ts'
import { readFull } from '../utils/read-full.ts'
import { api } from '../protocol/index.ts'
import { decodeDeltaPackHeader, deltaPackHeaderLength, type BlockRange } from '../protocol/delta-pack.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { blockRunsOf, unzstd } from './block-stream.ts'
import { offerBlocks } from './block-offers.ts'
import { groupVersions, isFirstNew } from './version-groups.ts'
import { BATCH_COMPRESSION_PENALTY, DELTA_PACK_PIECE_BYTES, PRIVATE_FILE_MODE } from './constants.ts'
import { mkdirPrivate } from './private-files.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isDiskFull, PackRestartedError } from './errors.ts'
import { createPackGrowth, readGrowing, waitForBytes, type PackGrowth } from './delta-pack-growth.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { closeBody, rangeStartsAt } from './range-resume.ts'

/** Which of the new version's blocks a delta pack from `old` holds: first occurrence of each prefix not in `old`. */
export function deltaPackBlocks (newPrefixes: Uint8Array, oldPrefixes: Uint8Array): number[] {
  const groups = groupVersions(oldPrefixes, newPrefixes)
  const blocks: number[] = []
  for (let index = 0; index < newPrefixes.length / BLOCK_PREFIX_BYTES; index++) if (isFirstNew(groups, index)) blocks.push(index)
  return blocks
}

/** What the cost model weighs. */
export interface DeltaPackCostInput {
  /** Size of the whole pack (the coordinator's version info). */
  packBytes: number
  /** Blocks the pack holds. */
  packBlocks: number
  /** Of those, blocks the sync still misses. */
  neededFromPack: number
  /** Distinct blocks the sync still misses in all. */
  missing: number
  /** Bytes of the pack already downloaded by an earlier run. */
  downloadedBytes: number
  /** How many times worse a per-request block batch compresses than the pack (default 1.5). */
  batchPenalty?: number
}

/** What the cost model decided, with the estimates behind it (bytes still to download). */
export interface DeltaPackCost {
  /** Everything missing as block batches. */
  batchOnlyBytes: number
  /** The rest of the pack, plus batches for the missing blocks it does not hold. */
  withPackBytes: number
  pays: boolean
}

/**
 * Whether the delta pack pays: a pack block costs its share of the pack's
 * bytes, a batch block that share times the batch penalty (batches are
 * compressed per request at a lower level; constants.ts has the measurement).
 */
export function deltaPackCost (input: DeltaPackCostInput): DeltaPackCost {
  const penalty = input.batchPenalty ?? BATCH_COMPRESSION_PENALTY
  const perBlock = input.packBytes / Math.max(1, input.packBlocks)
  const batchOnlyBytes = input.missing * perBlock * penalty
  const withPackBytes = input.packBytes - input.downloadedBytes + (input.missing - input.neededFromPack) * perBlock * penalty
  return { batchOnlyBytes, withPackBytes, pays: withPackBytes < batchOnlyBytes }
}

/** The delta pack as a block source; `used()` tells whether it was applied. */
export interface DeltaPackSource extends BlockSource {
  used: () => boolean
  /** Removes the downloaded pack (the sync finished). */
  remove: () => Promise<void>
}

/** What a delta pack source needs to know. */
export interface DeltaPackInit {
  image: string
  version: string
  /** The installed (older) version the pack starts from. */
  from: Manifest
  /** Where the pack is downloaded (resumable: an earlier run's part is kept); its ETag beside it. */
  path: string
}

/**
 * The delta pack from `init.from` to the sync's version: asked for only when the coordinator
 * has one from that version and the cost model says it pays against block batches; otherwise
 * a partly downloaded pack is dropped and nothing is offered.
 */
export function createDeltaPackSource (components: { client: CoordinatorClient, logger: AgentLogger }, init: DeltaPackInit): DeltaPackSource {
  const { client, logger } = components
  const from = init.from.version
  const etagPath = init.path + '.etag'
  let used = false
  return {
    name: `delta pack from ${from}`,
    kind: 'origin',
    used: () => used,
    remove: async () => { await removeDeltaPack(init.path) },
    async fill (ctx, options) {
      if (!(await pays(ctx, options))) {
        await removeDeltaPack(init.path)
        return
      }
      used = true
      await mkdirPrivate(dirname(init.path))
      await downloadAndApply(ctx, options)
    }
  }

  /**
   * Applies the pack while it downloads (the decoding and writes take as long as the download's
   * seconds on a fast link: one after the other they added up). A failed download ends the apply
   * with its error; a failed apply stops the download.
   */
  async function downloadAndApply (ctx: SyncContext, options: AbortOptions): Promise<void> {
    const growth = createPackGrowth()
    const stop = new AbortController()
    const signal = options.signal == null ? stop.signal : AbortSignal.any([options.signal, stop.signal])
    const downloading = downloadWithRetries({ signal }, growth).then(() => { growth.finish() }, (err: unknown) => { growth.fail(err) })
    try {
      for (;;) {
        const generation = growth.generation
        try {
          await apply(ctx, growth)
          return
        } catch (err) {
          // the download started the file afresh under the reader (its bytes may have been mixed): once more from the start
          if (err instanceof PackRestartedError || growth.generation !== generation) continue
          throw err
        }
      }
    } finally {
      stop.abort()
      await downloading
    }
  }

  async function pays (ctx: SyncContext, options: AbortOptions): Promise<boolean> {
    const info = await client.json('GET', api.routes.versionInfo(init.image, init.version), api.VersionInfo, undefined, options)
    if (info.previous !== from || info.deltaPackBytes == null || info.deltaPackBytes === 0) return false
    const pack = deltaPackBlocks(ctx.manifest.blockPrefixes, init.from.blockPrefixes)
    const neededFromPack = pack.filter(block => ctx.isMissing(block)).length
    const missing = ctx.missingCount()
    const downloadedBytes = await stat(init.path).then(s => s.size, () => 0)
    const cost = deltaPackCost({ packBytes: info.deltaPackBytes, packBlocks: pack.length, neededFromPack, missing, downloadedBytes })
    if (!cost.pays) logger.info(`delta pack skipped: ${neededFromPack} of its ${pack.length} blocks still missing (${missing} missing in all)`)
    return cost.pays
  }

  async function downloadWithRetries (options: AbortOptions, growth: PackGrowth): Promise<void> {
    let failures = 0
    for (;;) {
      try {
        await download(options, growth)
        return
      } catch (err) {
        if (options.signal?.aborted === true || isDiskFull(err)) throw err
        if (!(await client.backoff(++failures, `delta pack download broke (${(err as Error).message}); resuming`, options))) throw err
      }
    }
  }

  async function download (options: AbortOptions, growth: PackGrowth): Promise<void> {
    let have = 0
    let etag: string | undefined
    try {
      have = (await stat(init.path)).size
      etag = (await readFile(etagPath, 'utf8')).trim()
    } catch {
      have = 0
    }
    const headers: Record<string, string> = {}
    if (have > 0 && etag != null && etag !== '') {
      headers.range = `bytes=${have}-`
      headers['if-range'] = etag
    }
    const res = await client.stream('GET', api.routes.delta(init.image, init.version, from), undefined, { ...options, headers })
    if (res.status === 416) {
      // nothing past what we hold: the file is complete
      for await (const _ of res.body) {}
      growth.start(have)
      return
    }
    const append = res.status === 206
    if (append && !rangeStartsAt(res.headers.get('content-range'), have)) {
      // a range we did not ask for (a broken cache): appended, it would corrupt the pack; start afresh on the next try
      await closeBody(res.body)
      await rm(init.path, { force: true })
      throw new Error(`delta pack: asked from byte ${have}, answered ${res.headers.get('content-range') ?? 'no Content-Range'}`)
    }
    const newTag = res.headers.get('etag')
    if (!append && newTag != null) await writeFileAtomic(etagPath, newTag, { mode: PRIVATE_FILE_MODE })
    // before the file is truncated, so a reader applying it meanwhile knows to start over
    growth.start(append ? have : 0)
    const fh = await open(init.path, append ? 'a' : 'w', PRIVATE_FILE_MODE)
    try {
      for await (const piece of res.body) {
        await fh.write(piece)
        growth.grew(piece.length)
      }
      await fh.sync()
    } finally {
      await fh.close()
    }
  }

  /**
   * Decodes the pack as it is written (delta-pack-growth.ts) in pieces of DELTA_PACK_PIECE_BYTES (bounded
   * memory whatever the pack's size) and offers each piece's blocks at once (block-offers.ts: a chunk all in the piece is hashed
   * once against its digest, every other block against its prefix).
   */
  async function apply (ctx: SyncContext, growth: PackGrowth): Promise<void> {
    const generation = growth.generation
    const { bodyOffset, indices } = await openPack(ctx, growth)
    let n = 0
    let bad = 0
    const stream = unzstd(readGrowing(init.path, bodyOffset, growth, generation, DELTA_PACK_PIECE_BYTES), { chunkSize: DELTA_PACK_PIECE_BYTES })
    try {
      for await (const run of blockRunsOf(stream)) {
        const count = run.length / BLOCK_SIZE
        if (n + count > indices.length) throw new Error('delta pack holds more blocks than its header says')
        bad += await offerBlocks(ctx, indices.subarray(n, n + count), run, 'origin')
        n += count
      }
    } finally {
      stream.close()
    }
    if (bad > 0) logger.warn(`${bad} blocks of the delta pack from ${from} failed verification (discarded; asked again in block batches)`)
  }

  /** The pack's header, checked against the sync: where its body starts, and the block of each of its blocks in order. */
  async function openPack (ctx: SyncContext, growth: PackGrowth): Promise<{ bodyOffset: number, indices: Uint32Array }> {
    await waitForBytes(growth, HEADER_PROBE_BYTES)
    if (growth.failed != null) throw growth.failed
    const fh = await open(init.path, 'r')
    try {
      const { header, bodyOffset } = await readHeader(fh, growth)
      if (header.version !== ctx.manifest.version || header.from !== from || header.name !== ctx.manifest.name) {
        throw new Error(`delta pack is for ${header.name} ${header.from} -> ${header.version}, not ${ctx.manifest.name} ${from} -> ${ctx.manifest.version}`)
      }
      return { bodyOffset, indices: packIndices(header.ranges, header.blocks, ctx.manifest.blockPrefixes.length / BLOCK_PREFIX_BYTES) }
    } finally {
      await fh.close()
    }
  }
}

/**
 * The block indices a pack's ranges name, in order; an error when any is not a block of the
 * manifest (`blockCount` blocks), so a hostile header cannot make it allocate more than the image has.
 */
export function packIndices (ranges: readonly BlockRange[], blocks: number, blockCount: number): Uint32Array {
  const last = ranges.at(-1)
  if (blocks > blockCount || (last != null && last[0] + last[1] > blockCount)) {
    throw new Error(`delta pack names blocks past the ${blockCount} of the manifest`)
  }
  const indices = new Uint32Array(blocks)
  let k = 0
  for (const [start, count] of ranges) {
    for (let i = 0; i < count; i++) indices[k++] = start + i
  }
  return indices
}

/** Bytes read first to find the header's length (a header of a few ranges fits). */
const HEADER_PROBE_BYTES = 64 * 1024

/** The header of an open delta pack file being written (its length is known only once its start is read). */
async function readHeader (fh: Awaited<ReturnType<typeof open>>, growth: PackGrowth): Promise<ReturnType<typeof decodeDeltaPackHeader>> {
  let head = new Uint8Array(HEADER_PROBE_BYTES)
  let bytesRead = await readFull(fh, head, 0)
  const length = deltaPackHeaderLength(head.subarray(0, bytesRead))
  if (length != null && length > bytesRead) {
    await waitForBytes(growth, length)
    head = new Uint8Array(length)
    bytesRead = await readFull(fh, head, 0)
  }
  return decodeDeltaPackHeader(head.subarray(0, bytesRead))
}

/** Removes a downloaded delta pack and its ETag. */
export async function removeDeltaPack (path: string): Promise<void> {
  await rm(path, { force: true })
  await rm(path + '.etag', { force: true })
}
