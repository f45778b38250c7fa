/**
 * The ledger of one sync: pure state and bookkeeping, no disk, no network
 * (docs/ARCHITECTURE.md "Sync"). It knows which blocks of the target version
 * are in place, which chunks are verified, and what is still missing, grouped
 * by block digest prefix so that each distinct block is obtained once and
 * written wherever it occurs. The driver (image-sync.ts) asks it what to
 * fetch, writes what a source offers at the positions it names, and tells it
 * which chunks verified; sources see it through the SyncContext.
 */
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, MAX_CHUNK_BLOCKS } from '../protocol/constants.ts'
import { bitmapHas, bitmapSet } from '../protocol/block-exchange.ts'
import { groupByPrefix, groupMembers } from '../protocol/prefix-groups.ts'
import type { Manifest } from '../protocol/manifest.ts'
import type { BytesBySource } from './interface.ts'
import type { SourceKind } from './block-source.ts'

/** What a sync counts for its summary. */
export interface SyncTally {
  /** Blocks written, by the name of the source that gave them. */
  blocksBySource: Record<string, number>
  /** Bytes by source kind, as far as the ledger sees them (origin bytes are the client's to count). */
  bytes: BytesBySource
  /** Blocks from any source that failed their prefix. */
  discardedBlocks: number
  /** Chunks that failed their digest (assembled, or offered whole). */
  discardedChunks: number
  /** Chunks offered whole from the origin. */
  chunksFetched: number
}

/** What placing one block decided: the positions to write it at, and the chunks that write completes. */
export interface BlockPlacement {
  /** Block positions (indices among the manifest's non-zero blocks) that had no bytes yet. */
  blocks: number[]
  /** Chunks whose every block is now in place: to be hashed as a whole. */
  completed: number[]
}

/** The state of one sync. */
export interface SyncLedger {
  readonly manifest: Manifest
  readonly chunkCount: number
  /** Verified chunks, one bit each (the checkpoint stores it). */
  readonly verifiedBitmap: Uint8Array
  readonly tally: SyncTally
  /** The prefix group of every block (protocol/prefix-groups.ts): blocks of one prefix share one missing flag. */
  readonly groupOf: Uint32Array
  /** One block per distinct missing prefix, ascending. */
  missing: () => number[]
  /** Distinct blocks still missing. */
  missingCount: () => number
  isMissing: (block: number) => boolean
  isVerified: (chunk: number) => boolean
  verifiedCount: () => number
  unverifiedChunks: () => number[]
  /** Non-zero bytes in place (verified or still unverified against their chunk digest). */
  doneBytes: () => number
  /** Image byte offset of block `block`. */
  offsetOf: (block: number) => number
  /**
   * Takes every missing position of the prefix of `block` (a block that
   * matched its prefix, from `source`): they count as in place from now on.
   * Nothing when that prefix is not missing. The placement returned is reused
   * by the next call: read it before placing another block.
   */
  placeBlock: (block: number, source: string, kind: SourceKind) => BlockPlacement
  /**
   * A whole chunk was written and verified: its blocks are in place. Returns
   * its blocks whose prefix is still missing at other positions (the same
   * bytes serve them).
   */
  placeChunk: (chunk: number, kind: SourceKind) => number[]
  /**
   * Whether every block of `chunk` is missing and no two of them share a prefix: then
   * placing each as the chunk's own bytes puts every position of the chunk right.
   */
  blocksAllMissingAndDistinct: (chunk: number) => boolean
  /** The chunk whose first block is `block`, or -1 when `block` is inside a chunk. */
  chunkStartingAt: (block: number) => number
  markVerified: (chunk: number) => void
}

/** Key of block `index`'s digest prefix, for maps. */
export function prefixKey (prefixes: Uint8Array, index: number): bigint {
  return new DataView(prefixes.buffer, prefixes.byteOffset + index * BLOCK_PREFIX_BYTES, BLOCK_PREFIX_BYTES).getBigUint64(0)
}

/** The non-zero bytes of a manifest's image (what a sync has to place). */
export function nonZeroBytesOf (manifest: Manifest): number {
  return manifest.blockPrefixes.length / BLOCK_PREFIX_BYTES * BLOCK_SIZE
}

/** Image byte offset of every non-zero block of a manifest. */
export function blockOffsets (manifest: Manifest): Float64Array {
  const offsets = new Float64Array(manifest.blockPrefixes.length / BLOCK_PREFIX_BYTES)
  for (const chunk of manifest.chunks) {
    const blocks = chunk.length / BLOCK_SIZE
    for (let k = 0; k < blocks; k++) offsets[chunk.firstBlock + k] = chunk.offset + k * BLOCK_SIZE
  }
  return offsets
}

/** Whether BLAKE3 digest `digest` (at least a prefix long) matches the manifest's prefix of block `block`. */
export function matchesPrefix (manifest: Manifest, block: number, digest: Uint8Array): boolean {
  const at = block * BLOCK_PREFIX_BYTES
  for (let b = 0; b < BLOCK_PREFIX_BYTES; b++) {
    if (digest[b] !== manifest.blockPrefixes[at + b]) return false
  }
  return true
}

/**
 * A ledger for `manifest` whose chunks set in `verified` (a bitmap, e.g. a
 * trusted checkpoint's) are in place and verified; every other block is missing.
 */
export function createSyncLedger (manifest: Manifest, verified?: Uint8Array): SyncLedger {
  const chunkCount = manifest.chunks.length
  const blockCount = manifest.blockPrefixes.length / BLOCK_PREFIX_BYTES
  const verifiedBitmap = new Uint8Array(Math.ceil(chunkCount / 8))
  if (verified != null) verifiedBitmap.set(verified.subarray(0, verifiedBitmap.length))
  const offsets = blockOffsets(manifest)
  const chunkOfBlock = new Uint32Array(blockCount)
  /** Blocks of each chunk not in place yet; 0: complete (verified or waiting for its hash). */
  const remaining = new Uint32Array(chunkCount)
  const inPlace = new Uint8Array(blockCount)
  let placedBlocks = 0
  for (let chunk = 0; chunk < chunkCount; chunk++) {
    const { firstBlock, length } = manifest.chunks[chunk]
    const blocks = length / BLOCK_SIZE
    chunkOfBlock.fill(chunk, firstBlock, firstBlock + blocks)
    if (bitmapHas(verifiedBitmap, chunk)) {
      inPlace.fill(1, firstBlock, firstBlock + blocks)
      placedBlocks += blocks
    } else {
      remaining[chunk] = blocks
    }
  }
  // missing blocks grouped by prefix: each distinct block is obtained once and written everywhere it occurs;
  // a group is missing while it has a position not in place (numbers only: no BigInt key per block lookup)
  const groups = groupByPrefix(manifest.blockPrefixes)
  const { groupOf } = groups
  const { starts, members } = groupMembers(groups)
  const groupCount = groups.firsts.length
  const groupMissing = new Uint8Array(groupCount)
  /** The block a missing group is asked for by: its first position not in place when the ledger was made. */
  const askFor = new Uint32Array(groupCount)
  let missingGroups = 0
  for (let block = 0; block < blockCount; block++) {
    const group = groupOf[block]
    if (inPlace[block] === 1 || groupMissing[group] === 1) continue
    groupMissing[group] = 1
    askFor[group] = block
    missingGroups++
  }
  const tally: SyncTally = { blocksBySource: {}, bytes: { local: 0, peers: 0, origin: 0 }, discardedBlocks: 0, discardedChunks: 0, chunksFetched: 0 }
  const isMissing = (block: number): boolean => groupMissing[groupOf[block]] === 1
  const isVerified = (chunk: number): boolean => bitmapHas(verifiedBitmap, chunk)
  // one placement, emptied by each call (placing runs per block: no two fresh arrays each time)
  const placement: BlockPlacement = { blocks: [], completed: [] }

  function placeBlock (block: number, source: string, kind: SourceKind): BlockPlacement {
    placement.blocks.length = 0
    placement.completed.length = 0
    const group = groupOf[block]
    if (groupMissing[group] === 0) return placement
    groupMissing[group] = 0
    missingGroups--
    for (let m = starts[group]; m < starts[group + 1]; m++) {
      const position = members[m]
      if (inPlace[position] === 1) continue
      inPlace[position] = 1
      placedBlocks++
      placement.blocks.push(position)
      const chunk = chunkOfBlock[position]
      if (--remaining[chunk] === 0) placement.completed.push(chunk)
    }
    const placed = placement.blocks.length
    if (placed > 0) tally.blocksBySource[source] = (tally.blocksBySource[source] ?? 0) + placed
    if (kind === 'local') tally.bytes.local += placed * BLOCK_SIZE
    return placement
  }

  function placeChunk (chunk: number, kind: SourceKind): number[] {
    const { firstBlock, length } = manifest.chunks[chunk]
    const blocks = length / BLOCK_SIZE
    if (kind === 'peers') tally.bytes.peers += length
    for (let block = firstBlock; block < firstBlock + blocks; block++) {
      if (inPlace[block] === 0) { inPlace[block] = 1; placedBlocks++ }
    }
    remaining[chunk] = 0
    bitmapSet(verifiedBitmap, chunk)
    const stillMissing: number[] = []
    for (let block = firstBlock; block < firstBlock + blocks; block++) if (isMissing(block)) stillMissing.push(block)
    return stillMissing
  }

  // one scratch list of a chunk's groups, sorted to find a repeat (a chunk has at most MAX_CHUNK_BLOCKS blocks)
  const chunkGroups = new Int32Array(MAX_CHUNK_BLOCKS)

  function blocksAllMissingAndDistinct (chunk: number): boolean {
    const { firstBlock, length } = manifest.chunks[chunk]
    const blocks = length / BLOCK_SIZE
    if (blocks > chunkGroups.length) return false
    for (let k = 0; k < blocks; k++) {
      const group = groupOf[firstBlock + k]
      if (groupMissing[group] === 0) return false
      chunkGroups[k] = group
    }
    const sorted = chunkGroups.subarray(0, blocks).sort()
    for (let k = 1; k < blocks; k++) if (sorted[k] === sorted[k - 1]) return false
    return true
  }

  return {
    manifest,
    chunkCount,
    verifiedBitmap,
    tally,
    groupOf,
    missing () {
      const blocks: number[] = []
      for (let group = 0; group < groupCount; group++) if (groupMissing[group] === 1) blocks.push(askFor[group])
      return blocks.sort((a, b) => a - b)
    },
    missingCount: () => missingGroups,
    isMissing,
    isVerified,
    verifiedCount () {
      let count = 0
      for (let chunk = 0; chunk < chunkCount; chunk++) if (isVerified(chunk)) count++
      return count
    },
    unverifiedChunks () {
      const chunks: number[] = []
      for (let chunk = 0; chunk < chunkCount; chunk++) if (!isVerified(chunk)) chunks.push(chunk)
      return chunks
    },
    doneBytes: () => placedBlocks * BLOCK_SIZE,
    offsetOf: (block) => offsets[block],
    placeBlock,
    placeChunk,
    blocksAllMissingAndDistinct,
    chunkStartingAt (block) {
      const chunk = chunkOfBlock[block]
      return manifest.chunks[chunk].firstBlock === block ? chunk : -1
    },
    markVerified: (chunk) => { bitmapSet(verifiedBitmap, chunk) }
  }
}
