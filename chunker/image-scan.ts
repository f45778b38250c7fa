/**
 * Streaming scan of a raw image: reads large buffers (never the whole image),
 * skips all-zero blocks, hashes the others in batches, cuts chunks with the
 * block chunker, and yields each chunk with its digest and block digests.
 * Memory: one read buffer plus at most one unfinished chunk carried over.
 */
import { open, stat, type FileHandle } from 'node:fs/promises'
import { BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { hashBlocks, hashBytes } from './blake3.ts'
import { createBlockChunker, type ChunkingInit } from './block-chunker.ts'
import { DEFAULT_READ_BUFFER_BYTES } from './constants.ts'
import { InvalidImageError } from './errors.ts'
import { readFull } from '../utils/read-full.ts'

/** Options of a scan. */
export interface ScanInit extends ChunkingInit {
  /** Bytes per read (rounded down to whole blocks, at least one); default DEFAULT_READ_BUFFER_BYTES. */
  readBufferBytes?: number
  signal?: AbortSignal
}

/** One chunk of the image, in image order. */
export interface ScannedChunk {
  /** Byte offset in the image (block aligned). */
  offset: number
  /** Byte length (whole blocks, all non-zero). */
  length: number
  /** BLAKE3-256 of the chunk's bytes (a fresh array). */
  digest: Uint8Array
  /** BLAKE3-256 of each of its blocks, concatenated, 32 bytes per block (a fresh array). */
  blockDigests: Uint8Array
  /**
   * The chunk's bytes: a VIEW into the scan's read buffer, valid only until the
   * consumer asks for the next chunk. Copy it to keep it.
   */
  bytes: Uint8Array
}

/** Checks that `path` is a chunkable image and returns its size; throws InvalidImageError naming the problem. */
export async function checkImage (path: string): Promise<{ size: number }> {
  let st
  try {
    st = await stat(path)
  } catch (err) {
    throw imageError(path, err)
  }
  if (st.isDirectory()) throw new InvalidImageError(`image ${path} is a directory, not an image file`)
  if (!st.isFile()) throw new InvalidImageError(`image ${path} is not a regular file`)
  if (st.size === 0) throw new InvalidImageError(`image ${path} is empty (0 bytes)`)
  if (st.size % BLOCK_SIZE !== 0) {
    throw new InvalidImageError(`image ${path} is ${st.size} bytes, not a multiple of the ${BLOCK_SIZE}-byte block size (${st.size % BLOCK_SIZE} bytes over)`)
  }
  return { size: st.size }
}

function imageError (path: string, err: unknown): InvalidImageError {
  const code = (err as NodeJS.ErrnoException)?.code
  const why = code === 'ENOENT'
    ? 'does not exist'
    : code === 'EACCES' || code === 'EPERM'
      ? 'is not readable (permission denied)'
      : code === 'EISDIR'
        ? 'is a directory, not an image file'
        : code === 'ENOTDIR'
          ? 'does not exist (a parent is not a directory)'
          : `cannot be read (${(err as Error)?.message ?? String(err)})`
  return new InvalidImageError(`image ${path} ${why}`, { cause: err })
}

/**
 * Scans the image at `path` and yields its chunks in order. Zero regions are
 * left out: the offsets show them. Throws InvalidImageError for a bad image.
 */
export async function * scanImage (path: string, init: ScanInit = {}): AsyncGenerator<ScannedChunk, void, undefined> {
  const chunker = createBlockChunker(init)
  const readBytes = Math.max(BLOCK_SIZE, Math.floor((init.readBufferBytes ?? DEFAULT_READ_BUFFER_BYTES) / BLOCK_SIZE) * BLOCK_SIZE)
  const { size } = await checkImage(path)
  init.signal?.throwIfAborted()
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err) {
    throw imageError(path, err)
  }
  try {
    // The carried unfinished chunk is under maxBlocks blocks, so it plus one read always fits.
    const capacity = readBytes + chunker.params.maxBlocks * BLOCK_SIZE
    const buf = Buffer.allocUnsafeSlow(capacity)
    const digests = new Uint8Array(capacity / BLOCK_SIZE * DIGEST_BYTES)
    const zero = new Uint8Array(capacity / BLOCK_SIZE) // 1 = all-zero block
    const ZERO = Buffer.alloc(BLOCK_SIZE)
    let base = 0 // image offset of buf[0]
    let carried = 0 // blocks of the unfinished chunk at the start of buf
    let pos = 0 // image offset of the next read
    while (pos < size) {
      init.signal?.throwIfAborted()
      const want = Math.min(readBytes, size - pos)
      let got: number
      try {
        got = await readFull(fh, buf.subarray(carried * BLOCK_SIZE, carried * BLOCK_SIZE + want), pos)
      } catch (err) {
        throw imageError(path, err)
      }
      if (got !== want) throw new InvalidImageError(`image ${path} changed while being read: ended at ${pos + got} bytes, expected ${size}`)
      pos += got
      const first = carried
      const end = carried + got / BLOCK_SIZE
      // Zero check first, then hash each run of non-zero blocks in one call.
      let runStart = -1
      for (let b = first; b < end; b++) {
        const isZero = buf.compare(ZERO, 0, BLOCK_SIZE, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE) === 0
        zero[b] = isZero ? 1 : 0
        if (!isZero && runStart < 0) runStart = b
        if ((isZero || b === end - 1) && runStart >= 0) {
          const runEnd = isZero ? b : b + 1
          hashBlocks(buf.subarray(runStart * BLOCK_SIZE, runEnd * BLOCK_SIZE), digests.subarray(runStart * DIGEST_BYTES))
          runStart = -1
        }
      }
      let chunkStart = carried > 0 ? 0 : -1
      for (let b = first; b < end; b++) {
        if (zero[b] === 1) {
          if (chunkStart >= 0) {
            chunker.flush()
            yield makeChunk(buf, digests, base, chunkStart, b)
            chunkStart = -1
          }
          continue
        }
        if (chunkStart < 0) chunkStart = b
        if (chunker.push(digests, b * DIGEST_BYTES)) {
          yield makeChunk(buf, digests, base, chunkStart, b + 1)
          chunkStart = -1
        }
      }
      if (chunkStart >= 0 && pos >= size) {
        chunker.flush()
        yield makeChunk(buf, digests, base, chunkStart, end)
        chunkStart = -1
      }
      // Move the unfinished chunk (bytes and digests) to the front for the next read.
      carried = chunkStart >= 0 ? end - chunkStart : 0
      if (carried > 0) {
        buf.copyWithin(0, chunkStart * BLOCK_SIZE, end * BLOCK_SIZE)
        digests.copyWithin(0, chunkStart * DIGEST_BYTES, end * DIGEST_BYTES)
      }
      base = pos - carried * BLOCK_SIZE
    }
  } finally {
    await fh.close()
  }
}

function makeChunk (buf: Uint8Array, digests: Uint8Array, base: number, startBlock: number, endBlock: number): ScannedChunk {
  const bytes = buf.subarray(startBlock * BLOCK_SIZE, endBlock * BLOCK_SIZE)
  return {
    offset: base + startBlock * BLOCK_SIZE,
    length: bytes.length,
    digest: hashBytes(bytes),
    blockDigests: digests.slice(startBlock * DIGEST_BYTES, endBlock * DIGEST_BYTES),
    bytes
  }
}
