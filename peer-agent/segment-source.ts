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
import { encodeManifest, type Manifest } from '../protocol/manifest.ts'
import { manifestCidOf } from '../chunker/blake3.ts'
import { isDecodedTooLarge, unzstdWhole } from './block-stream.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { SEGMENT_BATCH_PENALTY, SEGMENT_PARALLEL_FETCHES } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { isDiskFull, SegmentMismatchError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { planSegments } from './segment-plan.ts'
import { mkdirPrivate } from './private-files.ts'
import { forEachLimit } from '../utils/worker-pool.ts'
import { releaseBytes } from '../utils/release-bytes.ts'
import { downloadSegment, dropSpool, spoolPathOf } from './segment-download.ts'
import { offerBlocks } from './block-offers.ts'

/** Largest zstd window a segment may ask for: 2^23 (8 MiB) covers a 4 MiB frame at any level. */
const SEGMENT_WINDOW_LOG_MAX = 23

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
        if (ctx.segmentSpool != null) await mkdirPrivate(ctx.segmentSpool)
        try {
          await forEachLimit(take, init.parallel ?? SEGMENT_PARALLEL_FETCHES, async (i) => {
            await fetchSegment(ctx, i, segments[i], table.segments[i], options)
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
   * Downloads segment `i` whole (at most the table's size, itself at most 4 MiB; spooled to the data
   * dir as it arrives, so a kill -9 mid-segment resumes it: segment-download.ts), decodes it in one
   * call into one buffer bounded by its blocks (no decompression bomb), and offers its blocks: a chunk
   * whose blocks all come in order is checked once against its full digest, every other block against
   * its prefix. Both buffers are freed as soon as the segment is done (peak RSS).
   */
  async function fetchSegment (
    ctx: SyncContext, i: number, indices: Uint32Array, entry: SegmentTable['segments'][number], options: AbortOptions
  ): Promise<void> {
    const label = `segment ${i} of ${name}`
    const spool = ctx.segmentSpool != null ? spoolPathOf(ctx.segmentSpool, entry.cid) : undefined
    const route = segmentRoutes.segment(init.image, init.version, i)
    const frame = await downloadSegment({ client, logger }, { route, cid: entry.cid, bytes: entry.bytes, label }, spool, options)
    let decoded: Uint8Array
    try {
      decoded = unzstdWhole(frame, indices.length * BLOCK_SIZE, SEGMENT_WINDOW_LOG_MAX)
    } catch (err) {
      dropSpool(spool)
      const why = isDecodedTooLarge(err)
        ? `decodes to more than its ${indices.length} blocks`
        : `does not decode to its ${indices.length} blocks: ${(err as Error).message}`
      throw new SegmentMismatchError(`${label} ${why}`)
    } finally {
      releaseBytes(frame)
    }
    try {
      if (decoded.length !== indices.length * BLOCK_SIZE) {
        dropSpool(spool)
        throw new SegmentMismatchError(`${label} decodes to ${decoded.length} bytes, not its ${indices.length} blocks of ${BLOCK_SIZE} bytes`)
      }
      const bad = await offerBlocks(ctx, indices, decoded, 'origin')
      if (bad > 0) logger.warn(`${bad} blocks of ${label} from the coordinator failed verification (discarded; asked again in a block batch)`)
    } finally {
      releaseBytes(decoded)
    }
    // its blocks are written (every tick flushes): a kill from here on re-reads them from the partial file
    dropSpool(spool)
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

function countWanted (ctx: SyncContext, indices: Uint32Array, wanted: Set<number>): number {
  let n = 0
  for (const i of indices) if (wanted.has(i) && ctx.isMissing(i)) n++
  return n
}
