/**
 * zstd of single chunks on BLOCKS_PROTOCOL_ZSTD. The receiver decodes a peer's frame with hard
 * bounds (output: the chunk's length in the manifest; window: the largest chunk) before it
 * hashes the result, so a frame that inflates past the chunk (a decompression bomb), asks for a
 * huge window, is cut short or decodes to other bytes costs at most one chunk's memory and is a
 * bad chunk like any other.
 */
import { promisify } from 'node:util'
import { constants, zstdCompress, zstdDecompress } from 'node:zlib'
import { MAX_BLOCK_BYTES } from '../../protocol/block-exchange.ts'
import { LAN_ZSTD_LEVEL, LAN_ZSTD_MAX_RATIO } from './constants.ts'
import { BadChunkError } from './errors.ts'

const compress = promisify(zstdCompress)
const decompress = promisify(zstdDecompress)

/** Largest window (log2 bytes) a frame may ask for: the largest chunk, so a frame cannot make us allocate more. */
const WINDOW_LOG_MAX = Math.ceil(Math.log2(MAX_BLOCK_BYTES))

/** The chunk as a zstd frame at LAN_ZSTD_LEVEL, or null when that is not at most LAN_ZSTD_MAX_RATIO of its length. */
export async function compressChunk (bytes: Uint8Array, level = LAN_ZSTD_LEVEL): Promise<Uint8Array | null> {
  const frame = await compress(bytes, {
    pledgedSrcSize: bytes.length,
    params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_windowLog]: Math.min(WINDOW_LOG_MAX, Math.max(10, Math.ceil(Math.log2(bytes.length)))) }
  })
  return frame.length <= bytes.length * LAN_ZSTD_MAX_RATIO ? frame : null
}

/** Decodes chunk `index`'s frame to exactly `length` bytes; BadChunkError otherwise, with no more than `length` bytes ever held. */
export async function decompressChunk (index: number, frame: Uint8Array, length: number): Promise<Uint8Array> {
  let out: Uint8Array
  try {
    out = await decompress(frame, { maxOutputLength: length, params: { [constants.ZSTD_d_windowLogMax]: WINDOW_LOG_MAX } })
  } catch (err) {
    const code = (err as { code?: string }).code
    const why = code === 'ERR_BUFFER_TOO_LARGE' ? `decodes to more than its ${length} bytes` : `is not a valid zstd frame (${(err as Error).message})`
    throw new BadChunkError(`compressed chunk ${index} ${why}`, { cause: err })
  }
  if (out.length !== length) throw new BadChunkError(`compressed chunk ${index} decodes to ${out.length} bytes, the manifest says ${length}`)
  return out
}
