/**
 * The delta pack file: the blocks of version `version` whose BLAKE3 digest is
 * not among the blocks of version `from` (first occurrence only, image order),
 * precomputed once by the coordinator and served at
 * GET /v1/images/:name/versions/:version/delta/:from.
 *
 * Layout (byte for byte in docs/PROTOCOL.md, "Delta pack file"):
 *
 *   magic        8 bytes  ASCII "TSWDPACK"
 *   headerBytes  varint   length of the header that follows
 *   header:
 *     format     varint   DELTA_PACK_FORMAT
 *     name       varint length + UTF-8
 *     version    varint length + UTF-8
 *     from       varint length + UTF-8
 *     blocks     varint   number of blocks in the pack
 *     ranges     varint   number of ranges, then per range:
 *       gap      varint   start minus the end of the previous range (first: minus 0)
 *       count    varint   >= 1
 *   body         one zstd stream (to end of file): the blocks' bytes,
 *                BLOCK_SIZE each, in ascending block index order
 *
 * Block indices are indices among `version`'s non-zero blocks (the manifest's
 * `blockPrefixes` order). A block that repeats later in the image is in the
 * pack once; a client fills the repeats by their (equal) digest prefix and
 * the chunk digest verifies the result.
 */
import { InvalidManifestError } from './errors.ts'
import { isValidName } from './manifest.ts'
import { pushVarint, readVarint } from './varint.ts'

/** First 8 bytes of every delta pack file. */
export const DELTA_PACK_MAGIC = new Uint8Array([0x54, 0x53, 0x57, 0x44, 0x50, 0x41, 0x43, 0x4b]) // "TSWDPACK"

/** Delta pack header format version (field `format`). */
export const DELTA_PACK_FORMAT = 1

/** Largest header a decoder accepts (a range list for tens of millions of blocks fits). */
export const MAX_DELTA_PACK_HEADER_BYTES = 64 * 1024 * 1024

/** A run of consecutive block indices: `[start, count]`, count >= 1. */
export type BlockRange = [start: number, count: number]

/** The decoded header of a delta pack. */
export interface DeltaPackHeader {
  /** Image name. */
  name: string
  /** The version whose blocks the pack holds. */
  version: string
  /** The version the pack updates from. */
  from: string
  /** Ascending, non-overlapping, non-adjacent block index ranges. */
  ranges: BlockRange[]
  /** Total number of blocks (sum of the range counts). */
  blocks: number
}

/** A header plus where the zstd body starts in the file. */
export interface DecodedDeltaPackHeader {
  header: DeltaPackHeader
  /** Byte offset of the zstd body. */
  bodyOffset: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function fail (why: string): never {
  throw new InvalidManifestError(`invalid delta pack: ${why}`)
}

/** Merges a list of ascending block indices into compact ranges. */
export function rangesFromIndices (indices: Iterable<number>): BlockRange[] {
  const ranges: BlockRange[] = []
  let prev = -1
  for (const i of indices) {
    if (!Number.isSafeInteger(i) || i <= prev) throw new RangeError(`block indices must be ascending integers (${i} after ${prev})`)
    const last = ranges[ranges.length - 1]
    if (last != null && last[0] + last[1] === i) last[1]++
    else ranges.push([i, 1])
    prev = i
  }
  return ranges
}

/** Every block index the ranges name, in order. */
export function * indicesOfRanges (ranges: readonly BlockRange[]): Generator<number> {
  for (const [start, count] of ranges) {
    for (let i = 0; i < count; i++) yield start + i
  }
}

/** Sum of the range counts. */
export function countRangeBlocks (ranges: readonly BlockRange[]): number {
  let n = 0
  for (const [, count] of ranges) n += count
  return n
}

function pushString (out: number[], s: string): void {
  const bytes = encoder.encode(s)
  pushVarint(out, bytes.length)
  for (const b of bytes) out.push(b)
}

function checkHeader (h: DeltaPackHeader): void {
  for (const f of ['name', 'version', 'from'] as const) {
    if (!isValidName(h[f])) fail(`bad ${f} ${JSON.stringify(String(h[f]).slice(0, 140))}`)
  }
  let end = 0
  let blocks = 0
  for (const [i, r] of h.ranges.entries()) {
    const [start, count] = r
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || count < 1) fail(`range ${i} is not [start, count >= 1]`)
    if (start < end || (i > 0 && start === end)) fail(`range ${i} overlaps, touches or is out of order`)
    end = start + count
    blocks += count
  }
  if (blocks !== h.blocks) fail(`ranges hold ${blocks} blocks, header says ${h.blocks}`)
}

/** The bytes that precede the zstd body: magic, header length, header. */
export function encodeDeltaPackHeader (h: DeltaPackHeader): Uint8Array {
  checkHeader(h)
  const body: number[] = []
  pushVarint(body, DELTA_PACK_FORMAT)
  pushString(body, h.name)
  pushString(body, h.version)
  pushString(body, h.from)
  pushVarint(body, h.blocks)
  pushVarint(body, h.ranges.length)
  let end = 0
  for (const [start, count] of h.ranges) {
    pushVarint(body, start - end)
    pushVarint(body, count)
    end = start + count
  }
  const len: number[] = []
  pushVarint(len, body.length)
  const out = new Uint8Array(DELTA_PACK_MAGIC.length + len.length + body.length)
  out.set(DELTA_PACK_MAGIC)
  out.set(len, DELTA_PACK_MAGIC.length)
  out.set(body, DELTA_PACK_MAGIC.length + len.length)
  return out
}

/**
 * How many leading bytes of the file hold magic + header (the body offset),
 * or undefined when `prefix` is too short to tell yet. Lets a reader fetch
 * just enough of the file before decoding the header.
 */
export function deltaPackHeaderLength (prefix: Uint8Array): number | undefined {
  const m = DELTA_PACK_MAGIC.length
  if (prefix.length < m) return undefined
  for (let i = 0; i < m; i++) if (prefix[i] !== DELTA_PACK_MAGIC[i]) fail('bad magic (not a trimswarm delta pack)')
  let len: number
  let next: number
  try {
    [len, next] = readVarint(prefix, m)
  } catch {
    if (prefix.length >= m + 8) fail('corrupt header length')
    return undefined
  }
  if (len > MAX_DELTA_PACK_HEADER_BYTES) fail(`header is ${len} bytes, over the ${MAX_DELTA_PACK_HEADER_BYTES} limit`)
  return next + len
}

/**
 * Decodes the header at the start of `bytes` (the whole file or any prefix
 * at least `deltaPackHeaderLength` long). Throws InvalidManifestError.
 */
export function decodeDeltaPackHeader (bytes: Uint8Array): DecodedDeltaPackHeader {
  const bodyOffset = deltaPackHeaderLength(bytes)
  if (bodyOffset == null || bytes.length < bodyOffset) fail('truncated header')
  let pos = readVarint(bytes, DELTA_PACK_MAGIC.length)[1]
  const head = bytes.subarray(0, bodyOffset)
  const num = (): number => {
    try {
      const [v, p] = readVarint(head, pos)
      pos = p
      return v
    } catch (err) {
      fail(`corrupt header: ${(err as Error).message}`)
    }
  }
  const str = (): string => {
    const n = num()
    if (pos + n > head.length) fail('truncated string in header')
    let s: string
    try {
      s = decoder.decode(head.subarray(pos, pos + n))
    } catch {
      fail('header string is not UTF-8')
    }
    pos += n
    return s
  }
  const format = num()
  if (format !== DELTA_PACK_FORMAT) fail(`unsupported format ${format}`)
  const name = str()
  const version = str()
  const from = str()
  const blocks = num()
  const nRanges = num()
  if (nRanges > head.length) fail('range count larger than the header')
  const ranges: BlockRange[] = []
  let end = 0
  for (let i = 0; i < nRanges; i++) {
    const start = end + num()
    const count = num()
    ranges.push([start, count])
    end = start + count
  }
  if (pos !== head.length) fail('header has trailing bytes')
  const header: DeltaPackHeader = { name, version, from, ranges, blocks }
  checkHeader(header)
  return { header, bodyOffset }
}

/** Media type of a delta pack file (GET .../delta/:from). */
export const DELTA_PACK_MEDIA_TYPE = 'application/vnd.trimswarm.delta-pack'
