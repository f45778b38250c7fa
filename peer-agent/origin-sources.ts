/**
 * The origin (coordinator) as a block source: POST .../blocks batches (one
 * zstd stream per batch, decoded as it arrives; after a broken stream only the
 * blocks not yet received are asked again), and the one whole-chunk fetch every
 * caller falls back to when assembled blocks do not verify. The delta pack is
 * delta-pack-source.ts.
 */
import { api } from '../protocol/index.ts'
import { chunkCid, toHex } from '../protocol/block-id.ts'
import { isUnavailableBlock, MAX_BLOCK_BATCH_BLOCKS } from '../protocol/block-batch.ts'
import { rangesFromIndices } from '../protocol/delta-pack.ts'
import { hashBytes } from '../chunker/blake3.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { blocksOf, unzstd } from './block-stream.ts'
import { BATCH_MAX_BLOCKS } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isDiskFull, isUnavailableAtOrigin, SyncIncompleteError } from './errors.ts'
import { createSegmentSource } from './segment-source.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'

/** The origin's blocks: the segments the cost rule picks (segment-source.ts), then POST .../blocks batches for the rest. */
export function createBlockBatchSource (
  components: { client: CoordinatorClient, logger: AgentLogger },
  init: { image: string, version: string, batchBlocks?: number, segments?: BlockSource }
): BlockSource {
  // LAN claim rounds pass the sync's one segment source, so its table is asked once, not once per round
  const segments = init.segments ?? createSegmentSource(components, init)
  const batchBlocks = Math.min(init.batchBlocks ?? BATCH_MAX_BLOCKS, MAX_BLOCK_BATCH_BLOCKS)
  return {
    name: 'origin blocks',
    kind: 'origin',
    async fill (ctx, options) {
      await segmentsFirst(ctx, options)
      let failures = 0
      // blocks the origin already sent: one that failed verification is not asked again
      // here (its chunk is fetched whole and verified by digest instead)
      const received = new Set<number>()
      for (;;) {
        const missing = ctx.missing().filter(block => !received.has(block))
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

  /**
   * The segments the cost rule picks; when they fail (a coordinator away longer than one request's
   * retries, e.g. during its restart) the batches below carry on: they retry whole rounds on top of
   * each request's retries, which the single segment-table request has not.
   */
  async function segmentsFirst (ctx: SyncContext, options: AbortOptions): Promise<void> {
    try {
      await segments.fill(ctx, options)
    } catch (err) {
      if (options.signal?.aborted === true || isDiskFull(err)) throw err
      components.logger.warn(`origin segments: ${(err as Error).message}; asking for the ${ctx.missingCount()} blocks still missing in block batches`)
    }
  }

  async function fetchBatch (ctx: SyncContext, batch: number[], received: Set<number>, options: AbortOptions): Promise<void> {
    const ranges = rangesFromIndices(batch)
    const res = await components.client.stream('POST', api.routes.blocks(init.image, init.version), { ranges } satisfies api.BlockBatchRequest, options)
    let next = 0
    let bad = 0
    let unavailable = 0
    const stream = unzstd(res.body)
    try {
      for await (const bytes of blocksOf(stream)) {
        if (next >= batch.length) throw new Error('block stream holds more blocks than asked for')
        received.add(batch[next])
        if (!ctx.offerBlock(batch[next], bytes, 'origin')) {
          if (isUnavailableBlock(bytes)) unavailable++
          else bad++
        }
        next++
        if (next % 256 === 0) await ctx.tick()
      }
    } finally {
      stream.close()
    }
    if (next < batch.length) throw new Error(`block stream ended after ${next} of ${batch.length} blocks`)
    // blocks that failed verification stay missing; their chunks are fetched whole later
    if (bad > 0) components.logger.warn(`${bad} blocks from the coordinator failed verification (discarded)`)
    if (unavailable > 0) {
      components.logger.warn(`the coordinator cannot serve ${unavailable} blocks (its stored copy of their chunk is damaged); ` +
        'they are asked from other sources')
    }
  }
}

/**
 * Fetches chunk `chunk` of the sync's version whole from the origin (GET .../chunks/CID)
 * and offers it: true once placed; the coordinator's answer when its copy is damaged or
 * gone (a peer may have it); SyncIncompleteError when what it sends does not match the manifest.
 */
export async function fetchChunkFromOrigin (client: CoordinatorClient, ctx: SyncContext, chunk: number, options: AbortOptions): Promise<true | Error> {
  const { name, version, chunks } = ctx.manifest
  const cid = chunkCid(chunks[chunk].digest).toString()
  let bytes: Uint8Array
  try {
    bytes = await client.bytes('GET', api.routes.chunk(name, version, cid), undefined, { signal: options.signal, maxBytes: chunks[chunk].length })
  } catch (err) {
    if (isUnavailableAtOrigin(err)) return err as Error
    throw err
  }
  if (!ctx.offerChunk(chunk, bytes, 'origin')) {
    throw new SyncIncompleteError(`chunk ${chunk} (${cid}) from the coordinator does not match the manifest: digest ${toHex(hashBytes(bytes))}`)
  }
  return true
}
