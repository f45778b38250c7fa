/**
 * One streaming pass over an image to its (unsigned) manifest: the chunks,
 * each non-zero block's digest prefix, the dag-cbor bytes and their CID.
 */
import type { CID } from 'multiformats/cid'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { ValidationError } from '../protocol/errors.ts'
import { createManifest, encodeManifest, isValidName, type Manifest } from '../protocol/manifest.ts'
import { manifestCidOf } from './blake3.ts'
import { resolveChunking, type ChunkingInit } from './block-chunker.ts'
import { checkImage, scanImage, type ScannedChunk } from './image-scan.ts'

/** What to build a manifest from, besides the image path. */
export interface BuildManifestInit {
  name: string
  version: string
  chunking?: ChunkingInit
  /** Bytes per read of the scan (see ScanInit). */
  readBufferBytes?: number
  /** Called for every chunk as it is scanned (e.g. to upload it); awaited before the scan goes on. `chunk.bytes` is valid only during the call. */
  onChunk?: (chunk: ScannedChunk) => void | Promise<void>
  signal?: AbortSignal
}

/** Figures of one build. */
export interface ManifestStats {
  /** Image size in bytes. */
  size: number
  /** Bytes in non-zero blocks (what the chunks hold). */
  nonZeroBytes: number
  chunks: number
  /** Non-zero blocks. */
  blocks: number
  /** Wall-clock seconds of the scan and encoding. */
  seconds: number
}

/** A built manifest, its canonical bytes and CID. */
export interface BuiltManifest {
  manifest: Manifest
  manifestBytes: Uint8Array
  cid: CID
  stats: ManifestStats
}

/** Scans the image at `path` once and builds its manifest; throws InvalidImageError for a bad image. */
export async function buildManifest (path: string, init: BuildManifestInit): Promise<BuiltManifest> {
  const started = performance.now()
  // Fail on bad names or parameters before reading gigabytes.
  if (!isValidName(init.name)) {
    throw new ValidationError(`bad image name ${JSON.stringify(init.name)}: use letters, digits and . _ + - (up to 128, not starting with a symbol)`)
  }
  if (!isValidName(init.version)) {
    throw new ValidationError(`bad version ${JSON.stringify(init.version)}: use letters, digits and . _ + - (up to 128, not starting with a symbol)`)
  }
  const chunking = resolveChunking(init.chunking)
  const { size } = await checkImage(path)
  // Columns in growable typed arrays rather than one object per chunk: long-lived
  // small objects made during the scan would grow V8's young generation (RSS).
  const chunkCols = createColumns(1024)
  let prefixes = new Uint8Array(64 * BLOCK_PREFIX_BYTES)
  let blocks = 0
  for await (const c of scanImage(path, { ...chunking, readBufferBytes: init.readBufferBytes, signal: init.signal })) {
    chunkCols.push(c.offset, c.length, c.digest)
    const n = c.length / BLOCK_SIZE
    if ((blocks + n) * BLOCK_PREFIX_BYTES > prefixes.length) {
      const grown = new Uint8Array(Math.max(prefixes.length * 2, (blocks + n) * BLOCK_PREFIX_BYTES))
      grown.set(prefixes.subarray(0, blocks * BLOCK_PREFIX_BYTES))
      prefixes = grown
    }
    for (let i = 0; i < n; i++) {
      prefixes.set(c.blockDigests.subarray(i * DIGEST_BYTES, i * DIGEST_BYTES + BLOCK_PREFIX_BYTES), (blocks + i) * BLOCK_PREFIX_BYTES)
    }
    blocks += n
    if (init.onChunk != null) await init.onChunk(c)
  }
  const chunks = chunkCols.toChunks()
  const manifest = createManifest({
    name: init.name,
    version: init.version,
    size,
    chunking,
    chunks,
    blockPrefixes: prefixes.slice(0, blocks * BLOCK_PREFIX_BYTES)
  })
  const manifestBytes = encodeManifest(manifest)
  return {
    manifest,
    manifestBytes,
    cid: manifestCidOf(manifestBytes),
    stats: { size, nonZeroBytes: blocks * BLOCK_SIZE, chunks: chunks.length, blocks, seconds: (performance.now() - started) / 1000 }
  }
}

/** Chunk offsets, lengths and digests in growable typed arrays. */
function createColumns (initial: number): { push: (offset: number, length: number, digest: Uint8Array) => void,
  toChunks: () => Array<{ offset: number, length: number, digest: Uint8Array }> } {
  let offsets = new Float64Array(initial)
  let lengths = new Uint32Array(initial)
  let digests = new Uint8Array(initial * DIGEST_BYTES)
  let n = 0
  return {
    push (offset, length, digest) {
      if (n === offsets.length) {
        const o = new Float64Array(n * 2); o.set(offsets); offsets = o
        const l = new Uint32Array(n * 2); l.set(lengths); lengths = l
        const d = new Uint8Array(n * 2 * DIGEST_BYTES); d.set(digests); digests = d
      }
      offsets[n] = offset
      lengths[n] = length
      digests.set(digest, n * DIGEST_BYTES)
      n++
    },
    toChunks () {
      const all = digests.slice(0, n * DIGEST_BYTES)
      return Array.from({ length: n }, (_, i) => ({ offset: offsets[i], length: lengths[i], digest: all.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES) }))
    }
  }
}
