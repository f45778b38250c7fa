/**
 * The image manifest: what an image version is made of. Deterministic dag-cbor
 * (one byte string per column, so 50k blocks cost 0.4 MB, not 50k CBOR items).
 * Byte-level description and a worked example: docs/PROTOCOL.md.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { equals } from 'multiformats/bytes'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES, MANIFEST_FORMAT, MAX_CHUNK_BLOCKS, MAX_MANIFEST_BYTES, NAME_PATTERN } from './constants.ts'
import { InvalidManifestError } from './errors.ts'
import { pushVarint, readVarint } from './varint.ts'

/** How chunks were cut, in blocks (informative: decoders do not re-chunk). */
export interface ChunkingParams {
  minBlocks: number
  avgBlocks: number
  maxBlocks: number
}

/** One content-defined chunk: a run of non-zero blocks stored and exchanged as one piece. */
export interface ManifestChunk {
  /** Byte offset in the image (a multiple of the block size). */
  offset: number
  /** Byte length (a multiple of the block size). */
  length: number
  /** Index of the chunk's first block among the image's non-zero blocks (into `blockPrefixes`). */
  firstBlock: number
  /** BLAKE3-256 digest of the chunk's bytes; its CID is `chunkCid(digest)`. */
  digest: Uint8Array
}

/** A decoded, validated manifest. Regions not covered by a chunk are all zero. */
export interface Manifest {
  name: string
  version: string
  /** Image size in bytes, a multiple of `blockSize`. */
  size: number
  blockSize: number
  chunking: ChunkingParams
  /** Chunks in image order, never overlapping. */
  chunks: ManifestChunk[]
  /** The first BLOCK_PREFIX_BYTES of each non-zero block's BLAKE3 digest, in image order. */
  blockPrefixes: Uint8Array
}

/** What a manifest is built from (the chunker's output plus names). */
export interface ManifestInit {
  name: string
  version: string
  size: number
  blockSize?: number
  chunking: ChunkingParams
  chunks: Array<{ offset: number, length: number, digest: Uint8Array }>
  blockPrefixes: Uint8Array
}

interface EncodedManifest {
  format: number
  name: string
  version: string
  size: number
  blockSize: number
  chunking: { min: number, avg: number, max: number }
  layout: Uint8Array
  chunks: Uint8Array
  blocks: Uint8Array
}

const FIELDS = ['blockSize', 'blocks', 'chunking', 'chunks', 'format', 'layout', 'name', 'size', 'version']

/** Number of non-zero blocks the manifest names. */
export function blockCount (m: Pick<Manifest, 'blockPrefixes'>): number {
  return m.blockPrefixes.length / BLOCK_PREFIX_BYTES
}

/** Bytes of non-zero data (what would have to be sent with no reuse at all). */
export function nonZeroBytes (m: Manifest): number {
  return blockCount(m) * m.blockSize
}

/** The prefix of block `index` (a view, not a copy). */
export function blockPrefix (m: Pick<Manifest, 'blockPrefixes'>, index: number): Uint8Array {
  return m.blockPrefixes.subarray(index * BLOCK_PREFIX_BYTES, (index + 1) * BLOCK_PREFIX_BYTES)
}

/** Checks a name (image, version, group, site) is a safe path segment. */
export function isValidName (name: unknown): name is string {
  return typeof name === 'string' && NAME_PATTERN.test(name) && name !== '.' && name !== '..'
}

/** Builds and validates a manifest from the chunker's output. */
export function createManifest (init: ManifestInit): Manifest {
  const m: Manifest = {
    name: init.name,
    version: init.version,
    size: init.size,
    blockSize: init.blockSize ?? BLOCK_SIZE,
    chunking: { ...init.chunking },
    chunks: [],
    blockPrefixes: init.blockPrefixes
  }
  let firstBlock = 0
  for (const c of init.chunks) {
    m.chunks.push({ offset: c.offset, length: c.length, firstBlock, digest: c.digest })
    firstBlock += c.length / m.blockSize
  }
  validateManifest(m)
  return m
}

/** Throws InvalidManifestError unless `m` is internally consistent. */
export function validateManifest (m: Manifest): void {
  const fail = (why: string): never => { throw new InvalidManifestError(`invalid manifest: ${why}`) }
  if (!isValidName(m.name)) fail(`bad image name ${JSON.stringify(String(m.name).slice(0, 140))}`)
  if (!isValidName(m.version)) fail(`bad version ${JSON.stringify(String(m.version).slice(0, 140))}`)
  if (m.blockSize !== BLOCK_SIZE) fail(`block size must be ${BLOCK_SIZE}, got ${m.blockSize}`)
  if (!Number.isSafeInteger(m.size) || m.size <= 0 || m.size % m.blockSize !== 0) fail(`size ${m.size} is not a positive multiple of ${m.blockSize}`)
  const { minBlocks, avgBlocks, maxBlocks } = m.chunking
  if (![minBlocks, avgBlocks, maxBlocks].every(n => Number.isSafeInteger(n) && n >= 1 && n <= MAX_CHUNK_BLOCKS)
    || minBlocks > avgBlocks || avgBlocks > maxBlocks) {
    fail('chunking parameters out of range')
  }
  let end = 0
  let blocks = 0
  for (const [i, c] of m.chunks.entries()) {
    if (c.offset % m.blockSize !== 0 || c.length % m.blockSize !== 0 || c.length <= 0) fail(`chunk ${i} is not block aligned`)
    if (c.length / m.blockSize > MAX_CHUNK_BLOCKS) fail(`chunk ${i} is longer than ${MAX_CHUNK_BLOCKS} blocks`)
    if (c.offset < end) fail(`chunk ${i} overlaps or is out of order`)
    if (c.firstBlock !== blocks) fail(`chunk ${i} first block index is ${c.firstBlock}, expected ${blocks}`)
    if (c.digest.length !== DIGEST_BYTES) fail(`chunk ${i} digest has ${c.digest.length} bytes`)
    end = c.offset + c.length
    blocks += c.length / m.blockSize
  }
  if (end > m.size) fail(`chunks end at ${end}, past the image size ${m.size}`)
  if (m.blockPrefixes.length !== blocks * BLOCK_PREFIX_BYTES) {
    fail(`block prefixes cover ${m.blockPrefixes.length / BLOCK_PREFIX_BYTES} blocks, chunks hold ${blocks}`)
  }
}

/** Deterministic dag-cbor bytes of a manifest. */
export function encodeManifest (m: Manifest): Uint8Array {
  validateManifest(m)
  const layout: number[] = []
  const digests = new Uint8Array(m.chunks.length * DIGEST_BYTES)
  let end = 0
  for (const [i, c] of m.chunks.entries()) {
    pushVarint(layout, (c.offset - end) / m.blockSize)
    pushVarint(layout, c.length / m.blockSize)
    digests.set(c.digest, i * DIGEST_BYTES)
    end = c.offset + c.length
  }
  const encoded: EncodedManifest = {
    format: MANIFEST_FORMAT,
    name: m.name,
    version: m.version,
    size: m.size,
    blockSize: m.blockSize,
    chunking: { min: m.chunking.minBlocks, avg: m.chunking.avgBlocks, max: m.chunking.maxBlocks },
    layout: Uint8Array.from(layout),
    chunks: digests,
    blocks: m.blockPrefixes
  }
  return dagCbor.encode(encoded)
}

/** Decodes and validates manifest bytes; throws InvalidManifestError naming the problem. */
export function decodeManifest (bytes: Uint8Array): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new InvalidManifestError(`manifest is ${bytes.length} bytes, over the ${MAX_MANIFEST_BYTES} limit`)
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidManifestError(`manifest is not valid dag-cbor (truncated or corrupt): ${(err as Error).message}`, { cause: err })
  }
  const e = raw as EncodedManifest
  if (e == null || typeof e !== 'object' || Array.isArray(e)) throw new InvalidManifestError('manifest is not a map')
  const keys = Object.keys(e).sort()
  if (keys.join() !== FIELDS.join()) throw new InvalidManifestError(`manifest fields are [${keys.join(', ')}], expected [${FIELDS.join(', ')}]`)
  if (e.format !== MANIFEST_FORMAT) throw new InvalidManifestError(`unsupported manifest format ${String(e.format)}`)
  for (const f of ['layout', 'chunks', 'blocks'] as const) {
    if (!(e[f] instanceof Uint8Array)) throw new InvalidManifestError(`manifest field ${f} must be bytes`)
  }
  const ch = e.chunking
  if (ch == null || typeof ch !== 'object' || Object.keys(ch).sort().join() !== 'avg,max,min') {
    throw new InvalidManifestError('manifest field chunking must be {min, avg, max}')
  }
  if (typeof e.name !== 'string' || typeof e.version !== 'string' || typeof e.size !== 'number' || typeof e.blockSize !== 'number') {
    throw new InvalidManifestError('manifest name, version, size or blockSize has the wrong type')
  }
  if (e.chunks.length % DIGEST_BYTES !== 0) throw new InvalidManifestError('manifest chunk digests are not a multiple of 32 bytes')
  if (e.blockSize !== BLOCK_SIZE) throw new InvalidManifestError(`block size must be ${BLOCK_SIZE}, got ${e.blockSize}`)
  const chunks: ManifestChunk[] = []
  let pos = 0
  let end = 0
  let firstBlock = 0
  const n = e.chunks.length / DIGEST_BYTES
  try {
    for (let i = 0; i < n; i++) {
      const [gap, p1] = readVarint(e.layout, pos)
      const [len, p2] = readVarint(e.layout, p1)
      pos = p2
      const offset = end + gap * e.blockSize
      const length = len * e.blockSize
      chunks.push({ offset, length, firstBlock, digest: e.chunks.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES) })
      end = offset + length
      firstBlock += len
    }
  } catch (err) {
    throw new InvalidManifestError(`manifest layout is corrupt: ${(err as Error).message}`, { cause: err })
  }
  if (pos !== e.layout.length) throw new InvalidManifestError('manifest layout has trailing bytes')
  const m: Manifest = {
    name: e.name,
    version: e.version,
    size: e.size,
    blockSize: e.blockSize,
    chunking: { minBlocks: ch.min, avgBlocks: ch.avg, maxBlocks: ch.max },
    chunks,
    blockPrefixes: e.blocks
  }
  validateManifest(m)
  // Canonical form only: one manifest, one byte string, one CID.
  if (!equals(encodeManifest(m), bytes)) throw new InvalidManifestError('manifest is not in canonical dag-cbor form')
  return m
}
