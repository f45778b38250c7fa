/** Manifests without bytes, for LAN sharing's planning tests (lan-plan, lan-round-plan): only chunk sizes and block prefixes matter. */
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../../protocol/constants.ts'
import type { Manifest } from '../../protocol/manifest.ts'

/** A manifest of chunks of `blocks[k]` blocks each; block prefixes from `prefix(block)` (default: all distinct). */
export function manifestOfCounts (blocks: number[], prefix: (block: number) => number = b => b + 1): Manifest {
  let firstBlock = 0
  const chunks = blocks.map(count => {
    const chunk = { offset: firstBlock * BLOCK_SIZE, length: count * BLOCK_SIZE, firstBlock, digest: new Uint8Array(32) }
    firstBlock += count
    return chunk
  })
  const blockPrefixes = new Uint8Array(firstBlock * BLOCK_PREFIX_BYTES)
  const view = new DataView(blockPrefixes.buffer)
  for (let b = 0; b < firstBlock; b++) view.setBigUint64(b * BLOCK_PREFIX_BYTES, BigInt(prefix(b)))
  return { name: 'img', version: 'v1', size: firstBlock * BLOCK_SIZE, blockSize: BLOCK_SIZE, chunking: { minBlocks: 1, avgBlocks: 4, maxBlocks: 16 }, chunks, blockPrefixes }
}
