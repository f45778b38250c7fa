/**
 * The block-aligned content-defined cut rule (docs/ARCHITECTURE.md "Units"):
 * a chunk is a run of consecutive non-zero 4 KiB blocks; it ends after a block
 * whose BLAKE3 digest's first 32 bits (little-endian) masked with avg - 1 are
 * zero, once it holds at least min blocks; it ends at max blocks; a zero block
 * (or the image end) always ends it. Cuts depend only on the blocks' digests,
 * so an unchanged run of blocks is cut the same way wherever it moves.
 * Pure: no I/O, no hashing.
 */
import type { ChunkingParams } from '../protocol/manifest.ts'
import { DIGEST_BYTES, MAX_CHUNK_BLOCKS } from '../protocol/constants.ts'
import { DEFAULT_AVG_BLOCKS, DEFAULT_MAX_BLOCKS, DEFAULT_MIN_BLOCKS } from './constants.ts'
import { InvalidChunkingError } from './errors.ts'

/** Chunking options; each falls back to its DEFAULT_* constant. */
export interface ChunkingInit {
  minBlocks?: number
  avgBlocks?: number
  maxBlocks?: number
}

/** Applies defaults and validates; throws InvalidChunkingError naming the problem. */
export function resolveChunking (init: ChunkingInit = {}): ChunkingParams {
  const p: ChunkingParams = {
    minBlocks: init.minBlocks ?? DEFAULT_MIN_BLOCKS,
    avgBlocks: init.avgBlocks ?? DEFAULT_AVG_BLOCKS,
    maxBlocks: init.maxBlocks ?? DEFAULT_MAX_BLOCKS
  }
  for (const [k, v] of Object.entries(p)) {
    if (!Number.isSafeInteger(v) || v < 1 || v > MAX_CHUNK_BLOCKS) {
      throw new InvalidChunkingError(`${k} must be an integer from 1 to ${MAX_CHUNK_BLOCKS}, got ${v}`)
    }
  }
  if ((p.avgBlocks & (p.avgBlocks - 1)) !== 0) throw new InvalidChunkingError(`avgBlocks must be a power of two (the cut mask is avg - 1), got ${p.avgBlocks}`)
  if (p.minBlocks > p.avgBlocks || p.avgBlocks > p.maxBlocks) {
    throw new InvalidChunkingError(`need minBlocks <= avgBlocks <= maxBlocks, got ${p.minBlocks} / ${p.avgBlocks} / ${p.maxBlocks}`)
  }
  return p
}

/** The first 32 bits of a digest (at byte `pos` of `digests`), little-endian. */
export function digestWord (digests: Uint8Array, pos = 0): number {
  return (digests[pos] | (digests[pos + 1] << 8) | (digests[pos + 2] << 16) | (digests[pos + 3] << 24)) >>> 0
}

/** Incremental cutter fed one non-zero block digest at a time (how the image scan uses the rule). */
export interface BlockChunker {
  readonly params: ChunkingParams
  /** Blocks in the chunk not yet ended. */
  readonly pending: number
  /** Adds a non-zero block (digest at byte `pos` of `digests`); true when the chunk ends after it (pending is then 0). */
  push: (digests: Uint8Array, pos?: number) => boolean
  /** Ends the current chunk (at a zero block or the image end); returns how many blocks it held (0: none open). */
  flush: () => number
}

/** A cutter with the given (or default) parameters. */
export function createBlockChunker (init: ChunkingInit = {}): BlockChunker {
  const params = resolveChunking(init)
  const mask = params.avgBlocks - 1
  let pending = 0
  return {
    params,
    get pending () { return pending },
    push (digests, pos = 0) {
      pending++
      if (pending >= params.maxBlocks || (pending >= params.minBlocks && (digestWord(digests, pos) & mask) === 0)) {
        pending = 0
        return true
      }
      return false
    },
    flush () {
      const n = pending
      pending = 0
      return n
    }
  }
}

/** A chunk as a run of blocks: index of its first block in the image and its length in blocks. */
export interface BlockRun {
  firstBlock: number
  blocks: number
}

/**
 * Whole-image form of the rule, for tests and tools: `digests` holds one
 * 32-byte digest per image block, `isZero(i)` says which blocks are all zero.
 */
export function cutBlocks (digests: Uint8Array, isZero: (block: number) => boolean, init: ChunkingInit = {}): BlockRun[] {
  const chunker = createBlockChunker(init)
  const n = digests.length / DIGEST_BYTES
  const runs: BlockRun[] = []
  const close = (end: number, blocks: number): void => { if (blocks > 0) runs.push({ firstBlock: end - blocks, blocks }) }
  for (let i = 0; i < n; i++) {
    if (isZero(i)) {
      close(i, chunker.flush())
    } else {
      const before = chunker.pending
      if (chunker.push(digests, i * DIGEST_BYTES)) close(i + 1, before + 1)
    }
  }
  close(n, chunker.flush())
  return runs
}
