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
import { checkSegmentTable, distinctBlocks, SegmentTable, segmentRoutes, segmentsOf } from '../protocol/segments.ts'
import { isUnavailableBlock } from '../protocol/block-batch.ts'
import { encodeManifest, type Manifest } from '../protocol/manifest.ts'
import { manifestCidOf } from '../chunker/blake3.ts'
import { blockRunsOf, unzstd } from './block-stream.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { SEGMENT_BATCH_PENALTY, SEGMENT_PARALLEL_FETCHES } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isDiskFull, SegmentMismatchError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { planSegments } from './segment-plan.ts'
import { forEachLimit } from '../utils/worker-pool.ts'

/** Largest zstd window a segment may ask for: 2^23 (8 MiB) covers a 4 MiB frame at any level. */
const SEGMENT_WINDOW_LOG_MAX = 23

/** Blocks per piece the segment decoder hands out (256 KiB at 4 KiB blocks). */
const SEGMENT_DECODE_BLOCKS = 64

/** What the segment source needs to know of the sync. */
export interface SegmentSourceInit {
  image: string
  version: string
  /** The cost rule's factor (default SEGMENT_BATCH_PENALTY). */
  penalty?: number
  /** Downloads in flight (default SEGMENT_PARALLEL_FETCHES). */
  parallel?: number
}

/** The segment source; `table` is the version's checked segment table, asked once per source (LAN claim rounds plan with it). */
export interface SegmentSource extends BlockSource {
  table: (ctx: SyncContext, options: AbortOptions) => Promise<SegmentTable | undefined>
}

/** Creates the segment source; it gives nothing (and the batches do the work) when the coordinator has no segments for the version. */
export function createSegmentSource (components: { client: CoordinatorClient, logger: AgentLogger }, init: SegmentSourceInit): SegmentSource {
  const { client, logger } = components
  const name = `${init.image}@${init.version}`
  // one table request per source, not per fill (a failed request is asked again next time)
  let tableOnce: Promise<SegmentTable | undefined> | undefined
  const tableOf = async (ctx: SyncContext, options: AbortOptions): Promise<SegmentTable | undefined> =>
    await (tableOnce ??= fetchTable(ctx, options).catch((err: unknown) => { tableOnce = undefined; throw err }))
  return {
    name: 'origin segments',
    kind: 'origin',
    table: tableOf,
    async fill (ctx, options) {
      const table = await tableOf(ctx, options)
      if (table == null) return
      const segments = segmentsOf(distinctOf(ctx.manifest), table.segmentBlocks)
      // blocks a segment already delivered are not asked of segments again (one that failed
      // verification goes to the batches, which read the coordinator's chunks)
      const received = new Uint8Array(segments.length)
      // what this fill is asked for: every missing block, or (LAN sharing) those of the chunks the claim
      // rule gave this agent; the cost rule counts only these, a segment taken fills every missing block it holds
      const wanted = new Set(ctx.missing())
      let failures = 0
      for (;;) {
        const costs = segments.map((idx, i) => ({
          bytes: table.segments[i].bytes, blocks: idx.length, needed: received[i] === 1 ? 0 : countWanted(ctx, idx, wanted)
        }))
        const take = planSegments(costs, init.penalty ?? SEGMENT_BATCH_PENALTY)
        if (take.length === 0) return
        try {
          await forEachLimit(take, init.parallel ?? SEGMENT_PARALLEL_FETCHES, async (i) => {
            await fetchSegment(ctx, i, segments[i], table.segments[i].bytes, options)
            received[i] = 1
          }, options)
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
    const distinct = distinctOf(ctx.manifest).length
    const wrong = checkSegmentTable(table, { image: init.image, version: init.version, manifestCid: cidOfManifest(ctx.manifest), distinctBlocks: distinct })
    if (wrong != null) {
      logger.warn(`${wrong}; not using segments`)
      return undefined
    }
    return table
  }

  /**
   * Streams segment `i` (at most the table's size, itself at most 4 MiB) through a zstd decoder and
   * offers each block as soon as it is decoded (verified by the sync), so an agent killed mid-segment
   * keeps what arrived, as with block batches (test/reliability/agent-kill.test.ts). The decoder's
   * output pieces are whole blocks (SEGMENT_DECODE_BLOCKS at a time: few calls, little CPU per block),
   * its window is bounded and its output counted against the segment's blocks (no decompression bomb).
   */
  async function fetchSegment (ctx: SyncContext, i: number, indices: Uint32Array, bytes: number, options: AbortOptions): Promise<void> {
    const res = await client.stream('GET', segmentRoutes.segment(init.image, init.version, i), undefined, options)
    let sourceError: unknown
    async function * frame (): AsyncGenerator<Uint8Array> {
      let wire = 0
      try {
        for await (const piece of res.body) {
          // the table said how big it is; a longer body is refused before it is decoded
          if (wire + piece.length > bytes) throw new SegmentMismatchError(`segment ${i} of ${name} is longer than the ${bytes} bytes its table lists`)
          wire += piece.length
          yield piece
        }
        // a broken connection throws above; a body that ends cleanly but short is not the segment the table lists
        if (wire < bytes) throw new SegmentMismatchError(`segment ${i} of ${name} is ${wire} bytes, its table lists ${bytes}`)
      } catch (err) {
        sourceError = err
        throw err
      }
    }
    const decoded = unzstd(frame(), { windowLogMax: SEGMENT_WINDOW_LOG_MAX, chunkSize: SEGMENT_DECODE_BLOCKS * BLOCK_SIZE })
    let n = 0
    let bad = 0
    try {
      for await (const run of blockRunsOf(decoded)) {
        for (let at = 0; at < run.length; at += BLOCK_SIZE) {
          if (n >= indices.length) throw new SegmentMismatchError(`segment ${i} of ${name} decodes to more than its ${indices.length} blocks`)
          const index = indices[n]
          // a whole chunk here, its blocks in order: one hash against its digest instead of one per block and then the chunk
          const whole = wholeChunkAt(ctx, indices, n, run.length - at)
          if (whole >= 0 && ctx.offerChunkBlocks(whole, run.subarray(at, at + ctx.manifest.chunks[whole].length), 'origin')) {
            const blocks = ctx.manifest.chunks[whole].length / BLOCK_SIZE
            n += blocks
            at += (blocks - 1) * BLOCK_SIZE
            continue
          }
          n++
          const block = run.subarray(at, at + BLOCK_SIZE)
          if (ctx.isMissing(index) && !ctx.offerBlock(index, block, 'origin') && !isUnavailableBlock(block)) bad++
        }
        // every decoded piece (SEGMENT_DECODE_BLOCKS blocks), whatever the segment's size: checkpoints, progress and aborts follow the bytes
        await ctx.tick()
      }
    } catch (err) {
      const passOn = err === sourceError || err instanceof SegmentMismatchError || options.signal?.aborted === true ||
        isDiskFull(err) || (err as Error).name === 'AbortError'
      if (passOn) throw err
      throw new SegmentMismatchError(`segment ${i} of ${name} does not decode to its ${indices.length} blocks: ${(err as Error).message}`)
    } finally {
      decoded.close()
    }
    await ctx.tick()
    if (n !== indices.length) {
      throw new SegmentMismatchError(`segment ${i} of ${name} decodes to ${n} blocks, not its ${indices.length}`)
    }
    if (bad > 0) logger.warn(`${bad} blocks of segment ${i} from the coordinator failed verification (discarded; asked again in a block batch)`)
  }
}

const manifestCids = new WeakMap<Manifest, string>()
const distincts = new WeakMap<Manifest, Uint32Array>()

/** The manifest's distinct blocks, computed once per manifest (LAN sharing asks in every claim round). */
function distinctOf (m: Manifest): Uint32Array {
  let d = distincts.get(m)
  if (d == null) distincts.set(m, d = distinctBlocks(m.blockPrefixes))
  return d
}

/** The CID of a verified manifest (re-encoded once per manifest: the encoding is canonical, so it is the CID that was verified). */
function cidOfManifest (m: Manifest): string {
  let cid = manifestCids.get(m)
  if (cid == null) manifestCids.set(m, cid = manifestCidOf(encodeManifest(m)).toString())
  return cid
}

/**
 * The chunk whose blocks come next in the segment, all of them, in order, within the `left` bytes
 * of the decoded piece (so it can be checked whole); -1 otherwise. Chunks of one block gain nothing.
 */
function wholeChunkAt (ctx: SyncContext, indices: Uint32Array, n: number, left: number): number {
  const first = indices[n]
  const chunk = ctx.chunkStartingAt(first)
  if (chunk < 0) return -1
  const blocks = ctx.manifest.chunks[chunk].length / BLOCK_SIZE
  if (blocks < 2 || blocks * BLOCK_SIZE > left || n + blocks > indices.length) return -1
  for (let k = 1; k < blocks; k++) if (indices[n + k] !== first + k) return -1
  return chunk
}

function countWanted (ctx: SyncContext, indices: Uint32Array, wanted: Set<number>): number {
  let n = 0
  for (const i of indices) if (wanted.has(i) && ctx.isMissing(i)) n++
  return n
}
