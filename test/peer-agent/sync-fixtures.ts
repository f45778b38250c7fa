/** Small manifests over real bytes, for the sync's unit tests (ledger, context). */
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE } from '../../protocol/constants.ts'
import type { Manifest } from '../../protocol/manifest.ts'
import { hashBytes } from '../../chunker/blake3.ts'

/** A block whose every byte is `fill`. */
export function block (fill: number): Uint8Array {
  return new Uint8Array(BLOCK_SIZE).fill(fill)
}

/** A manifest over real bytes: `chunks` lists each chunk's blocks; `gapBlocks` of zeros before each chunk. */
export function manifestOf (chunks: Uint8Array[][], gapBlocks = 1): Manifest {
  const prefixes: Uint8Array[] = []
  const out: Manifest['chunks'] = []
  let offset = 0
  for (const blocks of chunks) {
    offset += gapBlocks * BLOCK_SIZE
    const bytes = new Uint8Array(blocks.length * BLOCK_SIZE)
    blocks.forEach((b, k) => bytes.set(b, k * BLOCK_SIZE))
    out.push({ offset, length: bytes.length, firstBlock: prefixes.length, digest: hashBytes(bytes) })
    for (const b of blocks) prefixes.push(hashBytes(b).subarray(0, BLOCK_PREFIX_BYTES))
    offset += bytes.length
  }
  const blockPrefixes = new Uint8Array(prefixes.length * BLOCK_PREFIX_BYTES)
  prefixes.forEach((p, i) => blockPrefixes.set(p, i * BLOCK_PREFIX_BYTES))
  return { name: 'img', version: 'v1', size: offset, blockSize: BLOCK_SIZE, chunking: { minBlocks: 1, avgBlocks: 2, maxBlocks: 4 }, chunks: out, blockPrefixes }
}
