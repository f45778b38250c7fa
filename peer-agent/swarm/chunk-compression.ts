/**
 * zstd of single chunks on BLOCKS_PROTOCOL_ZSTD. The receiver decodes a peer's frame with hard
 * bounds (output: the chunk's length in the manifest; window: the largest chunk) before it
 * hashes the result, so a frame that inflates past the chunk (a decompression bomb), asks for a
 * huge window, is cut short or decodes to other bytes costs at most one chunk's memory and is a
 * bad chunk like any other.
 *
 * Synchronous on purpose: node:zlib's callback forms cost 1.6x (compress) and 1.6-3.4x
 * (decompress) the CPU of the synchronous ones per 64 KiB chunk here (thread-pool hops, one per
 * 16 KiB of output unless chunkSize is raised), and on a machine whose cores are all busy the
 * thread pool gains nothing; one chunk blocks the event loop for well under a millisecond.
 */
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { MAX_BLOCK_BYTES } from '../../protocol/block-exchange.ts'
import { LAN_ZSTD_LEVEL, LAN_ZSTD_MAX_RATIO } from './constants.ts'
import { BadChunkError } from './errors.ts'

/** Largest window (log2 bytes) a frame may ask for: the largest chunk, so a frame cannot make us allocate more. */
const WINDOW_LOG_MAX = Math.ceil(Math.log2(MAX_BLOCK_BYTES))

/**
 * The chunk as a zstd frame at LAN_ZSTD_LEVEL, or null when that is not at most LAN_ZSTD_MAX_RATIO
 * of its length. The frame is a view of zlib's output buffer (of that largest length): whoever
 * keeps it keeps a copy (compressed-cache.ts).
 */
export function compressChunk (bytes: Uint8Array, level = LAN_ZSTD_LEVEL): Uint8Array | null {
  const largest = Math.floor(bytes.length * LAN_ZSTD_MAX_RATIO)
  try {
    return zstdCompressSync(bytes, {
      pledgedSrcSize: bytes.length,
      // one output buffer of the largest frame worth sending; past it zlib stops (an incompressible chunk costs no more)
      chunkSize: Math.max(64, largest),
      maxOutputLength: Math.max(1, largest),
      params: {
        [constants.ZSTD_c_compressionLevel]: level,
        [constants.ZSTD_c_windowLog]: Math.min(WINDOW_LOG_MAX, Math.max(10, Math.ceil(Math.log2(bytes.length))))
      }
    })
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return null
    throw err
  }
}

/** Decodes chunk `index`'s frame to exactly `length` bytes; BadChunkError otherwise, with no more than `length` bytes ever held. */
export function decompressChunk (index: number, frame: Uint8Array, length: number): Uint8Array {
  let out: Uint8Array
  try {
    // chunkSize: one output buffer of the chunk's length (zlib's default is 16 KiB pieces joined)
    out = zstdDecompressSync(frame, { maxOutputLength: length, chunkSize: Math.max(64, length), params: { [constants.ZSTD_d_windowLogMax]: WINDOW_LOG_MAX } })
  } catch (err) {
    const code = (err as { code?: string }).code
    const why = code === 'ERR_BUFFER_TOO_LARGE' ? `decodes to more than its ${length} bytes` : `is not a valid zstd frame (${(err as Error).message})`
    throw new BadChunkError(`compressed chunk ${index} ${why}`, { cause: err })
  }
  if (out.length !== length) throw new BadChunkError(`compressed chunk ${index} decodes to ${out.length} bytes, the manifest says ${length}`)
  return out
}
