/**
 * Compressed segments (issue 19): a version's distinct non-zero blocks, cut
 * into runs of at most `SEGMENT_BLOCKS` blocks, each run compressed once, at
 * publish, as one independent zstd frame. A cold client downloads them as
 * files (no compression per request); a client missing only part of a
 * segment asks for its blocks in a batch instead (the agent's cost rule).
 *
 * Which blocks a segment holds follows from the manifest alone
 * (`distinctBlocks`), so the segment table on the wire carries only sizes and
 * content ids. docs/PROTOCOL.md "Segments" describes the routes byte for byte.
 */
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, MAX_CHUNK_BLOCKS } from './constants.ts'
import { groupByPrefix } from './prefix-groups.ts'
import { array, integer, object, string, type Infer } from './schema.ts'

/**
 * Blocks per segment. 1,008 x 4 KiB is the largest count whose zstd worst case
 * (input + input/256 + a frame header) still fits one block store object
 * (`MAX_CHUNK_BLOCKS` x `BLOCK_SIZE`, 4 MiB: the S3 store's object limit).
 * Measured on base.img's 186 MiB of distinct blocks (docs/BENCHMARKS.md
 * `## origin segments`): 4 MiB frames at level 19 make 50.4 MB, 16 MiB frames
 * at level 15 53.1 MB; the smaller frame is what lets a trim client take a
 * segment whole only where it lacks most of it.
 */
export const SEGMENT_BLOCKS = 1008

/** The largest segment file (compressed) the coordinator may store or a client accepts. */
export const MAX_SEGMENT_BYTES = MAX_CHUNK_BLOCKS * BLOCK_SIZE

/** Content type of GET .../segments/:index (one zstd frame). */
export const SEGMENT_MEDIA_TYPE = 'application/zstd'

/** Most segments a version may have: a 2^40-byte image of distinct blocks. */
export const MAX_SEGMENTS = Math.ceil(2 ** 40 / BLOCK_SIZE / SEGMENT_BLOCKS)

/** GET .../segments/:index paths. */
export const segmentRoutes = {
  /** GET: the version's SegmentTable (JSON); 404 while not built. */
  table: (image: string, version: string) => `/v1/images/${encodeURIComponent(image)}/versions/${encodeURIComponent(version)}/segments`,
  /** GET (Range, If-None-Match, If-Range supported): segment `index`, one zstd frame. */
  segment: (image: string, version: string, index: number) => `${segmentRoutes.table(image, version)}/${index}`
}

const cidText = string({ minLength: 10, maxLength: 100, pattern: /^[a-z0-9]+$/ })

/** One segment: its content id (BLAKE3 of the compressed bytes, a raw CID), compressed bytes, and blocks. */
export const SegmentEntry = object({
  cid: cidText,
  bytes: integer({ min: 1, max: MAX_SEGMENT_BYTES }),
  blocks: integer({ min: 1, max: SEGMENT_BLOCKS })
})

/** GET .../segments: the version's segments in order. */
export const SegmentTable = object({
  image: string({ minLength: 1, maxLength: 128 }),
  version: string({ minLength: 1, maxLength: 128 }),
  manifestCid: cidText,
  segmentBlocks: integer({ min: 1, max: SEGMENT_BLOCKS }),
  segments: array(SegmentEntry, { maxItems: MAX_SEGMENTS })
})
/** A parsed segment table. */
export type SegmentTable = Infer<typeof SegmentTable>

/**
 * The manifest's distinct blocks: the first index of every distinct 8-byte
 * block prefix, ascending. Both sides dedupe by prefix, as the agent does
 * (a block is fetched once per prefix and written wherever it occurs).
 */
export function distinctBlocks (blockPrefixes: Uint8Array): Uint32Array {
  return groupByPrefix(blockPrefixes).firsts
}

/** The block indices of every segment: `distinct` cut into runs of `segmentBlocks`. */
export function segmentsOf (distinct: Uint32Array, segmentBlocks: number = SEGMENT_BLOCKS): Uint32Array[] {
  const out: Uint32Array[] = []
  for (let at = 0; at < distinct.length; at += segmentBlocks) out.push(distinct.subarray(at, at + segmentBlocks))
  return out
}

/**
 * Checks a table against the manifest the client verified: same version and
 * manifest, and block counts that cut its distinct blocks exactly as
 * `segmentsOf` does. Returns what is wrong, or undefined when it fits.
 */
export function checkSegmentTable (
  table: SegmentTable, expect: { image: string, version: string, manifestCid: string, distinctBlocks: number }
): string | undefined {
  if (table.image !== expect.image || table.version !== expect.version || table.manifestCid !== expect.manifestCid) {
    return `segment table is for ${table.image}@${table.version} (${table.manifestCid}), not ${expect.image}@${expect.version} (${expect.manifestCid})`
  }
  const n = table.segments.length
  const want = Math.ceil(expect.distinctBlocks / table.segmentBlocks)
  if (n !== want) {
    return `segment table lists ${n} segments, the manifest's ${expect.distinctBlocks} distinct blocks make ${want} of ${table.segmentBlocks} blocks`
  }
  for (let i = 0; i < n; i++) {
    const blocks = i < n - 1 ? table.segmentBlocks : expect.distinctBlocks - (n - 1) * table.segmentBlocks
    if (table.segments[i].blocks !== blocks) return `segment ${i} lists ${table.segments[i].blocks} blocks, expected ${blocks}`
  }
  return undefined
}
