/**
 * POST /v1/images/:name/versions/:version/blocks: limits and the pure check
 * of a BlockBatchRequest, shared by the coordinator (which enforces them) and
 * the agent (which splits its requests to fit). Response: one zstd stream of
 * the named blocks' bytes, BLOCK_SIZE each, in request order (docs/PROTOCOL.md);
 * a block the coordinator cannot serve comes as BLOCK_SIZE zero bytes.
 */
import { ValidationError, TooLargeError } from './errors.ts'
import type { BlockRange } from './delta-pack.ts'

/**
 * Most blocks one request may name (1 GiB uncompressed). Big enough for a
 * first install's whole missing set as one stream (base.img: 77 MiB, see
 * ../shared/FACTS.md), small enough that one request cannot hold a core for long.
 */
export const MAX_BLOCK_BATCH_BLOCKS = 262_144

/** Most ranges one request may hold (its JSON stays under ~8 MiB). */
export const MAX_BLOCK_BATCH_RANGES = 500_000

/**
 * Checks ranges against a manifest's non-zero block count and the limits;
 * returns the number of blocks named. Ranges may repeat or come in any order
 * (the stream follows request order). Throws ValidationError / TooLargeError.
 */
export function checkBlockBatch (ranges: readonly BlockRange[], blockCount: number): number {
  if (ranges.length === 0) throw new ValidationError('ranges: must name at least one block')
  if (ranges.length > MAX_BLOCK_BATCH_RANGES) throw new TooLargeError(`a block batch may hold at most ${MAX_BLOCK_BATCH_RANGES} ranges, got ${ranges.length}`)
  let total = 0
  for (const [i, [start, count]] of ranges.entries()) {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 1) {
      throw new ValidationError(`ranges[${i}]: must be [start >= 0, count >= 1]`)
    }
    if (start + count > blockCount) {
      throw new ValidationError(`ranges[${i}]: blocks ${start}..${start + count - 1} are past the manifest's ${blockCount} non-zero blocks`)
    }
    total += count
    if (total > MAX_BLOCK_BATCH_BLOCKS) throw new TooLargeError(`a block batch may name at most ${MAX_BLOCK_BATCH_BLOCKS} blocks; split the request`)
  }
  return total
}

/**
 * Whether a block of a batch stream is the coordinator's "unavailable" (its
 * stored chunk failed its digest or is gone): BLOCK_SIZE zero bytes. Never a
 * real block: a version's non-zero blocks are never all zero (the coordinator
 * refuses such a manifest at commit). Check it only for a block that failed
 * verification, so the normal path pays nothing.
 */
export function isUnavailableBlock (block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false
  return true
}
