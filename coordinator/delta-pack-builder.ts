/**
 * Builds a delta pack (format: protocol/delta-pack.ts): the blocks of a new
 * version whose full BLAKE3 digest is not among the previous version's
 * blocks, first occurrence only, in image order, as one zstd stream at a high
 * level with a long window. Every client updating from the previous version
 * needs exactly these blocks, so they are compressed once, slowly and well
 * (docs/ARCHITECTURE.md "Origin compression"). The pack's bytes are stored
 * through the block store as pieces of DELTA_PACK_PIECE_BYTES, each under the
 * CID of its own bytes (stored-files.ts), so every coordinator sharing the
 * store serves the pack one of them built; its record (the piece list) is
 * written only after the last piece, so a reader never sees half a pack.
 */
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { Readable } from 'node:stream'
import { BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { countRangeBlocks, encodeDeltaPackHeader, rangesFromIndices, type BlockRange } from '../protocol/delta-pack.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { blockBytes, createZstdEncoder, type ZstdSettings } from './block-batch.ts'
import type { AbortOptions, BlockStore } from './interface.ts'
import type { StoredFileRef, StoredFiles } from './stored-files.ts'

/** The set of block digests in `digests` (32 bytes each, concatenated), as map keys. */
export function digestSet (digests: Uint8Array): Set<string> {
  const set = new Set<string>()
  const buf = Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength)
  for (let off = 0; off < buf.length; off += DIGEST_BYTES) set.add(buf.toString('latin1', off, off + DIGEST_BYTES))
  return set
}

/** How many of the blocks in `digests` have a digest in `previous`. */
export function countReusedBlocks (digests: Uint8Array, previous: Set<string>): number {
  const buf = Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength)
  let n = 0
  for (let off = 0; off < buf.length; off += DIGEST_BYTES) if (previous.has(buf.toString('latin1', off, off + DIGEST_BYTES))) n++
  return n
}

/** Block indices (as ranges) of the new version's blocks not in `previous`, first occurrence of each digest only. */
export function planDeltaPack (digests: Uint8Array, previous: Set<string>): BlockRange[] {
  const buf = Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength)
  const seen = new Set<string>()
  const picked: number[] = []
  for (let i = 0, off = 0; off < buf.length; i++, off += DIGEST_BYTES) {
    const key = buf.toString('latin1', off, off + DIGEST_BYTES)
    if (previous.has(key) || seen.has(key)) continue
    seen.add(key)
    picked.push(i)
  }
  return rangesFromIndices(picked)
}

/** A pack's bytes as stored: size, validator, pieces. */
export interface StoredPack {
  /** Size in bytes (header + zstd body). */
  bytes: number
  /** Strong validator for HTTP (ETag / If-Range): BLAKE3 of the whole pack, hex, first 128 bits. */
  etag: string
  /** The pieces in order; their sizes add up to `bytes`. */
  pieces: StoredFileRef[]
}

/** What was written. */
export interface BuiltDeltaPack extends StoredPack {
  blocks: number
}

/** Options of writeDeltaPack. */
export interface WriteDeltaPackOptions extends AbortOptions {
  manifest: Manifest
  from: string
  ranges: BlockRange[]
  zstd: ZstdSettings
  /** Bytes per stored piece (the last one may be shorter). */
  pieceBytes: number
}

/** Cuts a byte stream into pieces of exactly `size` bytes, the last one shorter (pure: no I/O of its own). */
export async function * cutPieces (source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let buf = Buffer.allocUnsafe(size)
  let at = 0
  for await (const part of source) {
    for (let off = 0; off < part.length;) {
      const n = Math.min(size - at, part.length - off)
      buf.set(part.subarray(off, off + n), at)
      at += n
      off += n
      if (at === size) {
        yield buf
        buf = Buffer.allocUnsafe(size)
        at = 0
      }
    }
  }
  if (at > 0) yield buf.subarray(0, at)
}

/**
 * Stores a pack's bytes as pieces of `pieceBytes` (a piece is all zeros only if
 * the pack holds that many zero bytes in a row, which neither its header nor a
 * zstd stream does; the store would refuse it and the build fail, logged).
 */
export async function storePackBytes (files: StoredFiles, source: AsyncIterable<Uint8Array>, pieceBytes: number,
  options: AbortOptions = {}): Promise<StoredPack> {
  const hasher = new Blake3Hasher()
  const pieces: StoredFileRef[] = []
  let bytes = 0
  for await (const piece of cutPieces(source, pieceBytes)) {
    options.signal?.throwIfAborted()
    hasher.update(piece)
    pieces.push(await files.put(piece, options))
    bytes += piece.length
  }
  return { bytes, etag: hasher.digest('hex').slice(0, 32), pieces }
}

/** Builds the pack and stores it through `files` (see the module comment). */
export async function writeDeltaPack (blockStore: BlockStore, files: StoredFiles, options: WriteDeltaPackOptions): Promise<BuiltDeltaPack> {
  const { manifest, ranges } = options
  const blocks = countRangeBlocks(ranges)
  const header = encodeDeltaPackHeader({ name: manifest.name, version: manifest.version, from: options.from, ranges, blocks })
  async function * packBytes (): AsyncGenerator<Uint8Array> {
    yield header
    // Always a zstd frame, even for no blocks, so readers have one code path.
    const source = Readable.from(blockBytes(blockStore, manifest, ranges, { signal: options.signal }), { objectMode: false, highWaterMark: 1 << 20 })
    const zstd = createZstdEncoder(options.zstd, blocks * BLOCK_SIZE)
    source.on('error', (err) => zstd.destroy(err))
    source.pipe(zstd)
    try {
      yield * (zstd as AsyncIterable<Buffer>)
    } finally {
      source.destroy()
    }
  }
  const stored = await storePackBytes(files, packBytes(), options.pieceBytes, { signal: options.signal })
  return { ...stored, blocks }
}
