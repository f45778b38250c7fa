/**
 * A chunk as a peer sent it (BLOCK, or BLOCK_ZSTD on blocks 1.1.0): its lengths, and its bytes
 * decoded and verified against the manifest before anything else sees them.
 */
import { verifyChunk } from '../../chunker/blake3.ts'
import type { ExchangeMessage } from '../../protocol/block-exchange.ts'
import { decompressChunk } from './chunk-compression.ts'
import { BadChunkError } from './errors.ts'

/**
 * A BLOCK as the stream delivered it: `parts` (several when it spanned transport messages) or
 * `bytes` alone; or a BLOCK_ZSTD, whose `bytes` are the chunk's zstd frame.
 */
export type ReceivedBlock = Extract<ExchangeMessage, { type: 'block' | 'block-zstd' }>

/** A BLOCK_PART as the stream delivered it: some blocks of a chunk, as they are or as one zstd frame. */
export type ReceivedPart = Extract<ExchangeMessage, { type: 'block-part' }>

/** A manifest entry: what a chunk must be. */
interface ChunkEntry { length: number, digest: Uint8Array }

/** The block's length on the wire, and the chunk's (a BLOCK_ZSTD's is the manifest's, when the index is in it). */
export function lengthsOf (block: ReceivedBlock, chunk: ChunkEntry | undefined): { wire: number, raw: number } {
  if (block.type === 'block-zstd') return { wire: block.bytes.length, raw: chunk?.length ?? block.bytes.length }
  let wire = 0
  for (const part of block.parts ?? [block.bytes]) wire += part.length
  return { wire, raw: wire }
}

/**
 * The chunk's bytes as pieces (a BLOCK's as received, a BLOCK_ZSTD's decoded within the
 * manifest's length), checked against the manifest (length, full BLAKE3); BadChunkError otherwise.
 */
export function verifiedPieces (index: number, block: ReceivedBlock, chunk: ChunkEntry): readonly Uint8Array[] {
  const parts = block.type === 'block' ? block.parts ?? [block.bytes] : [decompressChunk(index, block.bytes, chunk.length)]
  let length = 0
  for (const part of parts) length += part.length
  if (length !== chunk.length) throw new BadChunkError(`chunk ${index} has ${length} bytes, the manifest says ${chunk.length}`)
  try {
    verifyChunk(parts, chunk.digest)
  } catch (err) {
    throw new BadChunkError((err as Error).message, { cause: err })
  }
  return parts
}

/**
 * The blocks a BLOCK_PART carries, `length` bytes (what its WANT_BLOCKS asked for), a frame decoded
 * within that length; BadChunkError otherwise. Checking them against the manifest is the engine's.
 */
export function partBlocks (index: number, part: ReceivedPart, length: number): Uint8Array {
  if (part.compressed) return decompressChunk(index, part.bytes, length)
  if (part.bytes.length !== length) throw new BadChunkError(`blocks of chunk ${index} are ${part.bytes.length} bytes, ${length} were asked for`)
  return part.bytes
}
