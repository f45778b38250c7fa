/**
 * Builds a delta pack file (format: protocol/delta-pack.ts): the blocks of a
 * new version whose full BLAKE3 digest is not among the previous version's
 * blocks, first occurrence only, in image order, as one zstd stream at a high
 * level with a long window. Every client updating from the previous version
 * needs exactly these blocks, so they are compressed once, slowly and well
 * (docs/ARCHITECTURE.md "Origin compression"). Written to a temporary file,
 * fsynced and renamed, so a reader never sees half a pack.
 */
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Readable } from 'node:stream'
import { BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { countRangeBlocks, encodeDeltaPackHeader, rangesFromIndices, type BlockRange } from '../protocol/delta-pack.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { blockBytes, createZstdEncoder, type ZstdSettings } from './block-batch.ts'
import type { AbortOptions, BlockStore } from './interface.ts'
import { writeAtomic } from '../utils/atomic-write.ts'

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

/** What was written. */
export interface BuiltDeltaPack {
  /** File size in bytes (header + zstd body). */
  bytes: number
  blocks: number
  /** Strong validator for HTTP (ETag / If-Range): BLAKE3 of the file, hex, first 128 bits. */
  etag: string
}

/** Options of writeDeltaPack. */
export interface WriteDeltaPackOptions extends AbortOptions {
  manifest: Manifest
  from: string
  ranges: BlockRange[]
  /** Final path of the pack file; a temporary sibling is written first. */
  path: string
  zstd: ZstdSettings
}

/** Writes the pack file atomically (utils/atomic-write.ts: temp file, fsync, rename, fsync of the directory). */
export async function writeDeltaPack (blockStore: BlockStore, options: WriteDeltaPackOptions): Promise<BuiltDeltaPack> {
  const { manifest, ranges, path } = options
  const blocks = countRangeBlocks(ranges)
  const header = encodeDeltaPackHeader({ name: manifest.name, version: manifest.version, from: options.from, ranges, blocks })
  await mkdir(dirname(path), { recursive: true })
  const hasher = new Blake3Hasher()
  let bytes = 0
  await writeAtomic(path, async (fh) => {
    await fh.write(header)
    hasher.update(header)
    bytes += header.length
    // Always a zstd frame, even for no blocks, so readers have one code path.
    const source = Readable.from(blockBytes(blockStore, manifest, ranges, { signal: options.signal }), { objectMode: false, highWaterMark: 1 << 20 })
    const zstd = createZstdEncoder(options.zstd, blocks * BLOCK_SIZE)
    source.on('error', (err) => zstd.destroy(err))
    source.pipe(zstd)
    for await (const piece of zstd as AsyncIterable<Buffer>) {
      options.signal?.throwIfAborted()
      hasher.update(piece)
      await fh.write(piece)
      bytes += piece.length
    }
  }, { mode: 0o644, signal: options.signal })
  return { bytes, blocks, etag: hasher.digest('hex').slice(0, 32) }
}
