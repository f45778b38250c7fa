/**
 * Offering a run of blocks held in one buffer (a decoded segment, a piece of the
 * delta pack, a run of the older version read in one call, a run of a host file): a chunk whose blocks
 * all come in order is checked once against its full digest, every other block
 * against its prefix. Shared by the segment source, the delta pack, the self-seed and the host index reads.
 */
import { BLOCK_SIZE } from '../protocol/constants.ts'
import { isUnavailableBlock } from '../protocol/block-batch.ts'
import type { SourceKind, SyncContext } from './block-source.ts'
import { WRITE_GATHER_BYTES } from './constants.ts'

/**
 * Blocks offered between two ticks: one gathered write's worth (1 MiB), as a tick writes what is
 * gathered; progress, checkpoints and aborts follow every MiB.
 */
const OFFER_TICK_BLOCKS = WRITE_GATHER_BYTES / BLOCK_SIZE

/**
 * Offers the blocks of `bytes` (`indices[n]` is the block at `n` x BLOCK_SIZE), ticking every
 * OFFER_TICK_BLOCKS blocks and once at the end. Returns how many blocks failed verification
 * (an origin's marker of a block it cannot serve is not counted).
 */
export async function offerBlocks (ctx: SyncContext, indices: Uint32Array, bytes: Uint8Array, kind: SourceKind): Promise<number> {
  let bad = 0
  let nextTick = OFFER_TICK_BLOCKS
  for (let n = 0; n < indices.length;) {
    const taken = offerWholeChunkAt(ctx, indices, n, indices.length, bytes.subarray(n * BLOCK_SIZE), kind)
    if (taken > 0) {
      n += taken
    } else {
      const index = indices[n]
      const block = bytes.subarray(n * BLOCK_SIZE, (n + 1) * BLOCK_SIZE)
      if (ctx.isMissing(index) && !ctx.offerBlock(index, block, kind) && !isUnavailableBlock(block)) bad++
      n++
    }
    if (n >= nextTick) {
      nextTick = n + OFFER_TICK_BLOCKS
      await ctx.tick()
    }
  }
  await ctx.tick()
  return bad
}

/**
 * A whole chunk here, its blocks in order: offered as that chunk, one hash against its digest instead of
 * one per block and then the chunk. The chunk is the one whose blocks come next in the run (`indices[n]`
 * on, before `end`); `bytes` holds the blocks from `indices[n]` on, as far as they are there. Returns the
 * blocks taken: 0 when there is no such chunk, its bytes are not all in `bytes`, or it failed (the caller
 * then offers the blocks one by one). `source`: the name its blocks count under (default: the source running now).
 */
export function offerWholeChunkAt (ctx: SyncContext, indices: ArrayLike<number>, n: number, end: number,
  bytes: Uint8Array, kind: SourceKind, source?: string): number {
  const whole = wholeChunkAt(ctx, indices, n, end)
  if (whole < 0) return 0
  const { length } = ctx.manifest.chunks[whole]
  if (bytes.length < length || !ctx.offerChunkBlocks(whole, bytes.subarray(0, length), kind, source)) return 0
  return length / BLOCK_SIZE
}

/**
 * The chunk whose blocks come next in the run (`indices[n]` on, before `end`), all of them, in order
 * (so it can be checked whole); -1 otherwise. Chunks of one block gain nothing.
 */
function wholeChunkAt (ctx: SyncContext, indices: ArrayLike<number>, n: number, end: number): number {
  const first = indices[n]
  const chunk = ctx.chunkStartingAt(first)
  if (chunk < 0) return -1
  const blocks = ctx.manifest.chunks[chunk].length / BLOCK_SIZE
  if (blocks < 2 || n + blocks > end) return -1
  for (let k = 1; k < blocks; k++) if (indices[n + k] !== first + k) return -1
  return chunk
}
