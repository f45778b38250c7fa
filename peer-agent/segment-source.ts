/**
 * The origin's compressed segments as a block source (issue 19,
 * protocol/segments.ts): the segment table is checked against the verified
 * manifest, the cost rule (segment-plan.ts) picks the segments worth taking
 * whole, and each is streamed, decoded as it arrives and offered block by
 * block, so every block is checked against its BLAKE3 prefix (and its chunk
 * against the full digest) before it counts. What the segments do not give
 * is left to the block batch source that runs next.
 */
import { NotFoundError } from '../protocol/errors.ts'
import { checkSegmentTable, distinctBlocks, MAX_SEGMENT_BYTES, SegmentTable, segmentRoutes, segmentsOf } from '../protocol/segments.ts'
import { isUnavailableBlock } from '../protocol/block-batch.ts'
import { encodeManifest, type Manifest } from '../protocol/manifest.ts'
import { manifestCidOf } from '../chunker/blake3.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { SEGMENT_BATCH_PENALTY, SEGMENT_PARALLEL_FETCHES } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isDiskFull, SegmentMismatchError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { blocksOf, unzstd } from './origin-sources.ts'
import { planSegments } from './segment-plan.ts'

/** What the segment source needs to know of the sync. */
export interface SegmentSourceInit {
  image: string
  version: string
  /** The cost rule's factor (default SEGMENT_BATCH_PENALTY). */
  penalty?: number
  /** Downloads in flight (default SEGMENT_PARALLEL_FETCHES). */
  parallel?: number
  /**
   * Which missing blocks this source is asked for (default: every missing block). LAN sharing
   * passes the blocks of the chunks the claim rule gave this agent: the cost rule counts only
   * those, while a segment taken still fills every missing block it holds.
   */
  wanted?: (index: number) => boolean
}

/** Creates the segment source; it gives nothing (and the batches do the work) when the coordinator has no segments for the version. */
export function createSegmentSource (components: { client: CoordinatorClient, logger: AgentLogger }, init: SegmentSourceInit): BlockSource {
  const { client, logger } = components
  return {
    name: 'origin segments',
    kind: 'origin',
    async fill (ctx, options) {
      const table = await fetchTable(ctx, options)
      if (table == null) return
      const segments = segmentsOf(distinctBlocks(ctx.manifest.blockPrefixes), table.segmentBlocks)
      // blocks a segment already delivered are not asked of segments again (one that failed
      // verification goes to the batches, which read the coordinator's chunks)
      const received = new Uint8Array(segments.length)
      let failures = 0
      for (;;) {
        const costs = segments.map((idx, i) => ({ bytes: table.segments[i].bytes, blocks: idx.length, needed: received[i] === 1 ? 0 : countWanted(ctx, idx, init.wanted) }))
        const take = planSegments(costs, init.penalty ?? SEGMENT_BATCH_PENALTY)
        if (take.length === 0) return
        try {
          await forEachParallel(take, init.parallel ?? SEGMENT_PARALLEL_FETCHES, async (i) => {
            await fetchSegment(ctx, i, segments[i], table.segments[i].bytes, options)
            received[i] = 1
          })
          failures = 0
        } catch (err) {
          if (options.signal?.aborted === true || isDiskFull(err)) throw err
          if (err instanceof SegmentMismatchError) {
            // a coordinator that lists one thing and sends another: what it sent was verified block by block; the rest comes in batches
            logger.warn(`${err.message}; not using segments for the rest`)
            return
          }
          const why = `segment download from the coordinator broke (${(err as Error).message}); asking again for the ${ctx.missingCount()} blocks not received`
          if (!(await client.backoff(++failures, why, options))) throw err
        }
      }
    }
  }

  /** The table, checked against the manifest; undefined (batches instead) when the coordinator has none. */
  async function fetchTable (ctx: SyncContext, options: AbortOptions): Promise<SegmentTable | undefined> {
    let table: SegmentTable
    try {
      table = await client.json('GET', segmentRoutes.table(init.image, init.version), SegmentTable, undefined, options)
    } catch (err) {
      // not built yet, or a coordinator older than segments: block batches serve every client
      if (!(err instanceof NotFoundError)) throw err
      logger.info(`the coordinator has no segments of ${init.image}@${init.version} (${err.message}); asking for block batches`)
      return undefined
    }
    const distinct = distinctBlocks(ctx.manifest.blockPrefixes).length
    const wrong = checkSegmentTable(table, { image: init.image, version: init.version, manifestCid: cidOfManifest(ctx.manifest), distinctBlocks: distinct })
    if (wrong != null) {
      logger.warn(`${wrong}; not using segments`)
      return undefined
    }
    return table
  }

  /** Streams segment `i`, decoding as it arrives; every block is offered (verified by the sync). */
  async function fetchSegment (ctx: SyncContext, i: number, indices: Uint32Array, bytes: number, options: AbortOptions): Promise<void> {
    const res = await client.stream('GET', segmentRoutes.segment(init.image, init.version, i), undefined, options)
    let wire = 0
    const limited = async function * (): AsyncGenerator<Uint8Array> {
      for await (const piece of res.body) {
        wire += piece.length
        // the table said how big it is; a longer body is refused before it is decoded further
        if (wire > bytes || wire > MAX_SEGMENT_BYTES) throw new SegmentMismatchError(`segment ${i} of ${init.image}@${init.version} is longer than the ${bytes} bytes its table lists`)
        yield piece
      }
    }
    const stream = unzstd(limited())
    let n = 0
    let bad = 0
    try {
      for await (const block of blocksOf(stream)) {
        if (n >= indices.length) throw new SegmentMismatchError(`segment ${i} of ${init.image}@${init.version} holds more than its ${indices.length} blocks`)
        const index = indices[n++]
        if (ctx.isMissing(index) && !ctx.offerBlock(index, block, 'origin') && !isUnavailableBlock(block)) bad++
        if (n % 256 === 0) await ctx.tick()
      }
    } finally {
      stream.close()
    }
    if (n < indices.length) throw new Error(`segment ${i} ended after ${n} of ${indices.length} blocks`)
    if (bad > 0) logger.warn(`${bad} blocks of segment ${i} from the coordinator failed verification (discarded; asked again in a block batch)`)
  }
}

const manifestCids = new WeakMap<Manifest, string>()

/** The CID of a verified manifest (re-encoded once per manifest: the encoding is canonical, so it is the CID that was verified). */
function cidOfManifest (m: Manifest): string {
  let cid = manifestCids.get(m)
  if (cid == null) manifestCids.set(m, cid = manifestCidOf(encodeManifest(m)).toString())
  return cid
}

function countWanted (ctx: SyncContext, indices: Uint32Array, wanted?: (index: number) => boolean): number {
  let n = 0
  for (const i of indices) if (ctx.isMissing(i) && (wanted == null || wanted(i))) n++
  return n
}

/** Runs `fn` over items with at most `limit` in flight; the first failure is thrown once all have settled. */
async function forEachParallel<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failure: unknown
  const worker = async (): Promise<void> => {
    while (next < items.length && failure == null) {
      const item = items[next++]
      try {
        await fn(item)
      } catch (err) {
        failure ??= err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (failure != null) throw failure
}
