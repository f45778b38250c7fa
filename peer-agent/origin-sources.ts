/**
 * The origin (coordinator) as block sources: the precomputed delta pack
 * (downloaded into the data dir with HTTP Range resume, then applied) and
 * POST .../blocks batches (one zstd stream per batch, decoded as it arrives;
 * after a broken stream only the blocks not yet received are asked again).
 */
import { createReadStream } from 'node:fs'
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Readable } from 'node:stream'
import { constants as zlibConstants, createZstdDecompress } from 'node:zlib'
import { api } from '../protocol/index.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import { decodeDeltaPackHeader, deltaPackHeaderLength, indicesOfRanges, rangesFromIndices } from '../protocol/delta-pack.ts'
import { isUnavailableBlock, MAX_BLOCK_BATCH_BLOCKS } from '../protocol/block-batch.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { BATCH_MAX_BLOCKS, PRIVATE_FILE_MODE } from './constants.ts'
import { mkdirPrivate } from './private-files.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isDiskFull } from './errors.ts'
import { createSegmentSource } from './segment-source.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'

/** Splits a byte stream into BLOCK_SIZE blocks. */
async function * blocksOf (stream: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const buf = new Uint8Array(BLOCK_SIZE)
  let fill = 0
  for await (const piece of stream) {
    let at = 0
    if (fill > 0) {
      const take = Math.min(BLOCK_SIZE - fill, piece.length)
      buf.set(piece.subarray(0, take), fill)
      fill += take
      at = take
      if (fill === BLOCK_SIZE) { yield buf; fill = 0 }
    }
    while (piece.length - at >= BLOCK_SIZE) {
      yield piece.subarray(at, at + BLOCK_SIZE)
      at += BLOCK_SIZE
    }
    if (at < piece.length) {
      buf.set(piece.subarray(at), 0)
      fill = piece.length - at
    }
  }
  if (fill !== 0) throw new Error(`block stream ended mid-block (${fill} extra bytes)`)
}

/**
 * Decompresses a zstd byte stream (windows up to 2^31, as the coordinator may use
 * long-distance matching). The decoder holds a window of up to the frame's size, so
 * callers close it as soon as they are done instead of waiting for GC (peak RSS).
 */
function unzstd (input: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> & { close: () => void } {
  const z = createZstdDecompress({ params: { [zlibConstants.ZSTD_d_windowLogMax]: 31 } })
  const src = Readable.from(input, { objectMode: false })
  src.on('error', (err) => z.destroy(err))
  src.pipe(z)
  return {
    [Symbol.asyncIterator]: () => z[Symbol.asyncIterator](),
    close: () => { src.destroy(); z.destroy() } // destroy frees the native decoder context now
  }
}

/**
 * The origin's blocks: first the precomputed segments the cost rule picks (segment-source.ts: every one
 * for a cold client, none from a coordinator without segments), then POST .../blocks for the rest, one
 * distinct block each, in batches.
 */
export function createBlockBatchSource (components: { client: CoordinatorClient, logger: AgentLogger }, init: { image: string, version: string, batchBlocks?: number }): BlockSource {
  const batchBlocks = Math.min(init.batchBlocks ?? BATCH_MAX_BLOCKS, MAX_BLOCK_BATCH_BLOCKS)
  return {
    name: 'origin blocks',
    kind: 'origin',
    async fill (ctx, options) {
      await createSegmentSource(components, init).fill(ctx, options)
      let failures = 0
      // blocks the origin already sent: one that failed verification is not asked again
      // here (its chunk is fetched whole and verified by digest instead)
      const received = new Set<number>()
      for (;;) {
        const missing = ctx.missing().filter(i => !received.has(i))
        if (missing.length === 0) return
        const batch = missing.slice(0, batchBlocks)
        try {
          await fetchBatch(ctx, batch, received, options)
          failures = 0
        } catch (err) {
          // a full disk is not a broken stream: asking again cannot help
          if (options.signal?.aborted === true || isDiskFull(err)) throw err
          // a broken stream keeps what arrived; the next round asks only for the rest
          const why = `block stream from the coordinator broke (${(err as Error).message}); asking again for the ${ctx.missingCount()} blocks not received`
          if (!(await components.client.backoff(++failures, why, options))) throw err
        }
      }
    }
  }

  async function fetchBatch (ctx: SyncContext, batch: number[], received: Set<number>, options: AbortOptions): Promise<void> {
    const ranges = rangesFromIndices(batch)
    const res = await components.client.stream('POST', api.routes.blocks(init.image, init.version), { ranges } satisfies api.BlockBatchRequest, options)
    let i = 0
    let bad = 0
    let unavailable = 0
    const stream = unzstd(res.body)
    try {
      for await (const block of blocksOf(stream)) {
        if (i >= batch.length) throw new Error('block stream holds more blocks than asked for')
        received.add(batch[i])
        if (!ctx.offerBlock(batch[i], block, 'origin')) {
          if (isUnavailableBlock(block)) unavailable++
          else bad++
        }
        i++
        if (i % 256 === 0) await ctx.tick()
      }
    } finally {
      stream.close()
    }
    if (i < batch.length) throw new Error(`block stream ended after ${i} of ${batch.length} blocks`)
    // blocks that failed verification stay missing; their chunks are fetched whole later
    if (bad > 0) components.logger.warn(`${bad} blocks from the coordinator failed verification (discarded)`)
    if (unavailable > 0) components.logger.warn(`the coordinator cannot serve ${unavailable} blocks (its stored copy of their chunk is damaged); they are asked from other sources`)
  }
}

/** Which of the new version's blocks a delta pack from `old` holds: first occurrence of each prefix not in `old`. */
export function deltaPackBlocks (newPrefixes: Uint8Array, oldPrefixes: Uint8Array): number[] {
  const key = (p: Uint8Array, i: number): bigint => new DataView(p.buffer, p.byteOffset + i * 8, 8).getBigUint64(0)
  const old = new Set<bigint>()
  for (let i = 0; i < oldPrefixes.length / 8; i++) old.add(key(oldPrefixes, i))
  const seen = new Set<bigint>()
  const out: number[] = []
  for (let i = 0; i < newPrefixes.length / 8; i++) {
    const k = key(newPrefixes, i)
    if (old.has(k) || seen.has(k)) continue
    seen.add(k)
    out.push(i)
  }
  return out
}

/** The delta pack from version `from`: downloaded to `path` (resumable with Range), then applied. */
export function createDeltaPackSource (components: { client: CoordinatorClient, logger: AgentLogger }, init: { image: string, version: string, from: string, path: string }): BlockSource {
  const etagPath = init.path + '.etag'
  return {
    name: `delta pack from ${init.from}`,
    kind: 'origin',
    async fill (ctx, options) {
      await mkdirPrivate(dirname(init.path))
      let failures = 0
      for (;;) {
        try {
          await download(options)
          break
        } catch (err) {
          if (options.signal?.aborted === true || isDiskFull(err)) throw err
          if (!(await components.client.backoff(++failures, `delta pack download broke (${(err as Error).message}); resuming`, options))) throw err
        }
      }
      await apply(ctx)
    },
    async close () {}
  }

  async function download (options: AbortOptions): Promise<void> {
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
    const res = await components.client.stream('GET', api.routes.delta(init.image, init.version, init.from), undefined, { ...options, headers })
    if (res.status === 416) {
      // nothing past what we hold: the file is complete
      for await (const _ of res.body) {}
      return
    }
    const newTag = res.headers.get('etag')
    const append = res.status === 206
    if (!append && newTag != null) await writeFile(etagPath, newTag, { mode: PRIVATE_FILE_MODE })
    const fh = await open(init.path, append ? 'a' : 'w', PRIVATE_FILE_MODE)
    try {
      for await (const piece of res.body) await fh.write(piece)
      await fh.sync()
    } finally {
      await fh.close()
    }
  }

  async function apply (ctx: SyncContext): Promise<void> {
    const fh = await open(init.path, 'r')
    let head = new Uint8Array(64 * 1024)
    try {
      let { bytesRead } = await fh.read(head, 0, head.length, 0)
      let len = deltaPackHeaderLength(head.subarray(0, bytesRead))
      if (len != null && len > bytesRead) {
        head = new Uint8Array(len)
        bytesRead = (await fh.read(head, 0, len, 0)).bytesRead
        len = deltaPackHeaderLength(head.subarray(0, bytesRead))
      }
      const { header, bodyOffset } = decodeDeltaPackHeader(head.subarray(0, bytesRead))
      if (header.version !== ctx.manifest.version || header.from !== init.from || header.name !== ctx.manifest.name) {
        throw new Error(`delta pack is for ${header.name} ${header.from} -> ${header.version}, not ${ctx.manifest.name} ${init.from} -> ${ctx.manifest.version}`)
      }
      const indices = indicesOfRanges(header.ranges)
      let n = 0
      const stream = unzstd(createReadStream(init.path, { start: bodyOffset, highWaterMark: 1024 * 1024 }))
      try {
        for await (const block of blocksOf(stream)) {
          const next = indices.next()
          if (next.done === true) throw new Error('delta pack holds more blocks than its header says')
          if (ctx.isMissing(next.value)) ctx.offerBlock(next.value, block, 'origin')
          if (++n % 256 === 0) await ctx.tick()
        }
      } finally {
        stream.close()
      }
    } finally {
      await fh.close()
    }
  }
}

/** Removes a downloaded delta pack and its ETag. */
export async function removeDeltaPack (path: string): Promise<void> {
  await rm(path, { force: true })
  await rm(path + '.etag', { force: true })
}
