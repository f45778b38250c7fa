/**
 * The origin's block stream: blocks of one manifest, named by [start, count]
 * ranges of non-zero block indices, read chunk by chunk from the block store
 * and compressed as ONE zstd stream (compressing what is missing as a stream
 * is what reaches the WAN budget, ../shared/FACTS.md). Pull-driven end to end:
 * a block is read only when the compressor wants input and the compressor
 * runs only when the HTTP response wants output, so a batch is never held in
 * memory whole. Used by POST .../blocks and by the delta pack builder.
 */
import { Readable, pipeline } from 'node:stream'
import { constants as zlibConstants, createZstdCompress, type ZstdCompress } from 'node:zlib'
import { chunkCid } from '../protocol/block-id.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { BlockRange } from '../protocol/delta-pack.ts'
import { HashMismatchError, NotFoundError } from '../protocol/errors.ts'
import type { Manifest } from '../protocol/manifest.ts'
import type { AbortOptions, BlockStore } from './interface.ts'
import { toWebStream } from './web-stream.ts'

/** zstd settings of one stream. */
export interface ZstdSettings {
  level: number
  /** log2 of the match window; with it, long-distance matching is on. 0 = zstd's default for the level. */
  windowLog: number
}

/** Index into `manifest.chunks` of the chunk holding non-zero block `block`. */
export function chunkIndexOfBlock (manifest: Pick<Manifest, 'chunks'>, block: number): number {
  const chunks = manifest.chunks
  let lo = 0
  let hi = chunks.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (chunks[mid].firstBlock <= block) lo = mid
    else hi = mid - 1
  }
  return lo
}

/** Options of blockBytes. */
export interface BlockBytesOptions extends AbortOptions {
  /**
   * Called for a chunk the block store cannot give (it failed its digest, or is gone); its blocks then come as
   * zeros, the block batch format's "unavailable" (docs/PROTOCOL.md). Without it, that failure ends the stream.
   */
  onUnavailable?: (cid: string, err: Error) => void
}

/** A chunk's bytes from the store, or zeros when it is unreadable and the caller takes that (see BlockBytesOptions). */
async function readChunk (blockStore: BlockStore, chunk: Manifest['chunks'][number], options: BlockBytesOptions): Promise<Uint8Array> {
  const cid = chunkCid(chunk.digest)
  try {
    return await blockStore.get(cid, { signal: options.signal })
  } catch (err) {
    if (options.onUnavailable == null || !(err instanceof HashMismatchError || err instanceof NotFoundError)) throw err
    options.onUnavailable(cid.toString(), err)
    return new Uint8Array(chunk.length)
  }
}

/**
 * The bytes of the named blocks, in range order, as pieces of whole blocks
 * (one piece per chunk a range touches). The chunk last read is kept, so
 * neighbouring ranges in one chunk read it once.
 */
export async function * blockBytes (blockStore: BlockStore, manifest: Manifest, ranges: Iterable<BlockRange>,
  options: BlockBytesOptions = {}): AsyncGenerator<Uint8Array> {
  let cachedIndex = -1
  let cached: Uint8Array = new Uint8Array(0)
  for (const [start, count] of ranges) {
    const end = start + count
    let b = start
    while (b < end) {
      options.signal?.throwIfAborted()
      const ci = chunkIndexOfBlock(manifest, b)
      const chunk = manifest.chunks[ci]
      if (ci !== cachedIndex) {
        cached = await readChunk(blockStore, chunk, options)
        cachedIndex = ci
      }
      const first = b - chunk.firstBlock
      const n = Math.min(end - b, chunk.length / BLOCK_SIZE - first)
      yield cached.subarray(first * BLOCK_SIZE, (first + n) * BLOCK_SIZE)
      b += n
    }
  }
}

/** A zstd compressor with our settings; `pledgedBytes` lets zstd size its window to the input and record the size. */
export function createZstdEncoder (settings: ZstdSettings, pledgedBytes?: number): ZstdCompress {
  const params: Record<number, number> = { [zlibConstants.ZSTD_c_compressionLevel]: settings.level }
  if (settings.windowLog > 0) {
    params[zlibConstants.ZSTD_c_windowLog] = settings.windowLog
    params[zlibConstants.ZSTD_c_enableLongDistanceMatching] = 1
  }
  return createZstdCompress({ params, ...(pledgedBytes != null ? { pledgedSrcSize: pledgedBytes } : {}) })
}

/** Options of createBlockBatchStream. */
export interface BlockBatchStreamOptions extends AbortOptions {
  zstd: ZstdSettings
  /** Total blocks the ranges name (pledged to zstd). */
  blocks: number
  /** Called with each compressed piece's length as it is handed to the consumer. */
  onWireBytes?: (n: number) => void
  /** Called once when the stream ends, fails or is cancelled. */
  onDone?: (err?: Error) => void
  /** See BlockBytesOptions. */
  onUnavailable?: (cid: string, err: Error) => void
  /** Abort the stream when the client takes no byte for this long (see toWebStream). */
  stallMs?: number
  /** Called after such an abort. */
  onStall?: () => void
}

/**
 * The named blocks as one zstd stream, as a web ReadableStream (an HTTP
 * response body). Cancelling it (client gone) stops reading and compressing.
 */
export function createBlockBatchStream (blockStore: BlockStore, manifest: Manifest, ranges: readonly BlockRange[],
  options: BlockBatchStreamOptions): ReadableStream<Uint8Array> {
  const source = Readable.from(blockBytes(blockStore, manifest, ranges, { signal: options.signal, onUnavailable: options.onUnavailable }),
    { objectMode: false, highWaterMark: 1 << 20 })
  const zstd = createZstdEncoder(options.zstd, options.blocks * BLOCK_SIZE)
  let finished = false
  const done = (err?: Error): void => {
    if (finished) return
    finished = true
    options.onDone?.(err)
  }
  pipeline(source, zstd, (err) => { if (err != null) done(err) })
  return toWebStream(zstd, {
    onBytes: options.onWireBytes,
    onDone: done,
    onCancel: () => { source.destroy(); zstd.destroy() },
    stallMs: options.stallMs,
    onStall: options.onStall
  })
}
