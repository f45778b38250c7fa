/**
 * Blocks out of a zstd byte stream, as the origin sends them (POST .../blocks
 * batches, delta packs): decompression with the coordinator's window, then
 * fixed-size blocks however the stream is cut into pieces.
 */
import { Readable } from 'node:stream'
import { constants as zlibConstants, createZstdDecompress, zstdDecompressSync } from 'node:zlib'
import { BLOCK_SIZE } from '../protocol/constants.ts'

/**
 * Splits a byte stream into runs of whole BLOCK_SIZE blocks, however it is cut into pieces: each
 * piece's whole blocks as one run, a block straddling two pieces on its own (a yielded run is valid
 * until the next one is asked for). A caller that walks each run's blocks in a plain loop pays one
 * async step per piece, not per block.
 */
export async function * blockRunsOf (stream: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const carry = new Uint8Array(BLOCK_SIZE)
  let carried = 0
  for await (const piece of stream) {
    let at = 0
    if (carried > 0) {
      const take = Math.min(BLOCK_SIZE - carried, piece.length)
      carry.set(piece.subarray(0, take), carried)
      carried += take
      at = take
      if (carried === BLOCK_SIZE) { yield carry; carried = 0 }
    }
    const whole = piece.length - at - (piece.length - at) % BLOCK_SIZE
    if (whole > 0) {
      yield piece.subarray(at, at + whole)
      at += whole
    }
    if (at < piece.length) {
      carry.set(piece.subarray(at), 0)
      carried = piece.length - at
    }
  }
  if (carried !== 0) throw new Error(`block stream ended mid-block (${carried} extra bytes)`)
}

/** Splits a byte stream into BLOCK_SIZE blocks (a yielded block is valid until the next one is asked for). */
export async function * blocksOf (stream: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const run of blockRunsOf(stream)) {
    for (let at = 0; at < run.length; at += BLOCK_SIZE) yield run.subarray(at, at + BLOCK_SIZE)
  }
}

/** Options of unzstd. */
export interface UnzstdInit {
  /** Largest window the stream may ask for, as a power of two (default 31). */
  windowLogMax?: number
  /** Bytes per decoded piece (zlib's default 16 KiB); fewer, larger pieces cost less CPU per block. */
  chunkSize?: number
}

/**
 * Decompresses a zstd byte stream (windows up to 2^31, as the coordinator may use
 * long-distance matching). The decoder holds a window of up to the frame's size, so
 * callers close it as soon as they are done instead of waiting for GC (peak RSS).
 */
export function unzstd (input: AsyncIterable<Uint8Array>, init: UnzstdInit = {}): AsyncIterable<Uint8Array> & { close: () => void } {
  const decoder = createZstdDecompress({ chunkSize: init.chunkSize, params: { [zlibConstants.ZSTD_d_windowLogMax]: init.windowLogMax ?? 31 } })
  const source = Readable.from(input, { objectMode: false })
  source.on('error', (err) => decoder.destroy(err))
  source.pipe(decoder)
  return {
    [Symbol.asyncIterator]: () => decoder[Symbol.asyncIterator](),
    close: () => { source.destroy(); decoder.destroy() } // destroy frees the native decoder context now
  }
}

/**
 * Decodes a whole zstd frame (a segment, already downloaded) in one call into one buffer of its
 * own, instead of a stream's pieces: less CPU per decoded byte and no per-piece async steps
 * (docs/BENCHMARKS.md "### agent CPU", round 4). Decoding stops past `maxBytes` (zlib's
 * ERR_BUFFER_TOO_LARGE, see isDecodedTooLarge): a hostile frame never makes it hold more than
 * `maxBytes` + 64 bytes. The result's memory may be freed with releaseBytes once done with.
 */
export function unzstdWhole (frame: Uint8Array, maxBytes: number, windowLogMax: number): Uint8Array {
  // one output buffer a little larger than the bound: zlib allocates a second one when the first is
  // filled exactly, and decodes past the bound only as far as it needs to notice it
  return zstdDecompressSync(frame, { maxOutputLength: maxBytes, chunkSize: maxBytes + 64, params: { [zlibConstants.ZSTD_d_windowLogMax]: windowLogMax } })
}

/** Whether unzstdWhole stopped because the frame decodes to more than its bound. */
export function isDecodedTooLarge (err: unknown): boolean {
  return (err as { code?: string } | undefined)?.code === 'ERR_BUFFER_TOO_LARGE'
}
