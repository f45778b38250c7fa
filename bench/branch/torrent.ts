/**
 * The BitTorrent baseline's metainfo: bencoding (BEP 3) and a single-file
 * private torrent (BEP 27) with SHA-1 pieces. Small enough to own, so the
 * benchmark needs no torrent-making package; encode/decode are pure.
 */
import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync } from 'node:fs'
import { basename } from 'node:path'
import { readFullSync } from '../../utils/read-full.ts'

/** A bencoded value: byte strings stay bytes (info dicts carry binary SHA-1s). */
export type BValue = number | Uint8Array | BValue[] | { [key: string]: BValue }

/** What bencode takes: a BValue, or JS strings (encoded as UTF-8) anywhere a byte string goes. */
export type BInput = number | string | Uint8Array | BInput[] | { [key: string]: BInput }

/** Malformed bencoding (a tracker's answer we cannot read). */
export class BencodeError extends Error {
  static override name = 'BencodeError'
  override name = 'BencodeError'
}

/** Deepest nesting decode accepts: a hostile answer cannot exhaust the stack. */
const MAX_DEPTH = 64

const text = new TextEncoder()

/** Bencodes a value; dictionary keys are sorted by their bytes, as BEP 3 requires (the info hash depends on it). */
export function bencode (value: BInput): Uint8Array {
  const parts: Uint8Array[] = []
  const put = (v: BInput): void => {
    if (typeof v === 'string') v = text.encode(v)
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new BencodeError(`bencode: ${v} is not an integer`)
      parts.push(text.encode(`i${v}e`))
    } else if (v instanceof Uint8Array) {
      parts.push(text.encode(`${v.length}:`), v)
    } else if (Array.isArray(v)) {
      parts.push(text.encode('l'))
      for (const x of v) put(x)
      parts.push(text.encode('e'))
    } else {
      parts.push(text.encode('d'))
      const keys = Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      for (const k of keys) { put(k); put(v[k]) }
      parts.push(text.encode('e'))
    }
  }
  put(value)
  return Buffer.concat(parts)
}

/** Decodes one bencoded value that must fill `bytes` exactly. */
export function bdecode (bytes: Uint8Array): BValue {
  let pos = 0
  const fail = (why: string): never => { throw new BencodeError(`bdecode: ${why} at byte ${pos}`) }
  const digits = (end: number): number => {
    const s = Buffer.from(bytes.subarray(pos, end)).toString('latin1')
    if (!/^(0|-?[1-9]\d*)$/.test(s) || s === '-0') fail(`bad integer ${JSON.stringify(s.slice(0, 20))}`)
    const n = Number(s)
    if (!Number.isSafeInteger(n)) fail('integer out of range')
    return n
  }
  const value = (depth: number): BValue => {
    if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH}`)
    if (pos >= bytes.length) fail('unexpected end')
    const c = bytes[pos]
    if (c === 0x69) { // i<int>e
      const end = bytes.indexOf(0x65, pos + 1)
      if (end < 0) fail('unterminated integer')
      pos++
      const n = digits(end)
      pos = end + 1
      return n
    }
    if (c === 0x6c) { // l...e
      pos++
      const list: BValue[] = []
      while (bytes[pos] !== 0x65) list.push(value(depth + 1))
      pos++
      return list
    }
    if (c === 0x64) { // d...e
      pos++
      const dict: Record<string, BValue> = {}
      while (bytes[pos] !== 0x65) {
        const key = value(depth + 1)
        if (!(key instanceof Uint8Array)) fail('dictionary key is not a string')
        // latin1 keeps every byte of a binary key (a scrape's info hashes); our own keys are ASCII.
        dict[Buffer.from(key as Uint8Array).toString('latin1')] = value(depth + 1)
      }
      pos++
      return dict
    }
    if (c >= 0x30 && c <= 0x39) { // <len>:<bytes>
      const colon = bytes.indexOf(0x3a, pos)
      if (colon < 0) fail('string without a length')
      const len = digits(colon)
      if (len < 0 || colon + 1 + len > bytes.length) fail('string longer than the input')
      pos = colon + 1 + len
      return bytes.subarray(colon + 1, pos)
    }
    return fail(`unexpected byte 0x${c.toString(16)}`)
  }
  const v = value(0)
  if (pos !== bytes.length) fail('trailing bytes')
  return v
}

/** A torrent made by makeTorrent. */
export interface Torrent {
  /** The .torrent file's bytes. */
  bytes: Uint8Array
  /** SHA-1 of the bencoded info dict, lower-case hex (what trackers whitelist and announce). */
  infoHash: string
  pieces: number
  length: number
}

/**
 * Makes a private single-file torrent of `file` with `pieceLength`-byte
 * SHA-1 pieces, announced to `announce`. Reads the file once, one piece at a time.
 */
export function makeTorrent (file: string, init: { announce: string, pieceLength: number, name?: string }): Torrent {
  if (!Number.isSafeInteger(init.pieceLength) || init.pieceLength < 16384) throw new RangeError(`piece length must be an integer of at least 16 KiB, not ${init.pieceLength}`)
  const fd = openSync(file, 'r')
  try {
    const length = fstatSync(fd).size
    const buf = Buffer.alloc(init.pieceLength)
    const hashes: Buffer[] = []
    for (let offset = 0; offset < length; offset += init.pieceLength) {
      const want = Math.min(init.pieceLength, length - offset)
      if (readFullSync(fd, buf.subarray(0, want), offset) < want) throw new Error(`${file} shrank while making its torrent`)
      hashes.push(createHash('sha1').update(buf.subarray(0, want)).digest())
    }
    const info = { length, name: init.name ?? basename(file), 'piece length': init.pieceLength, pieces: Buffer.concat(hashes), private: 1 }
    const infoBytes = bencode(info)
    return {
      bytes: bencode({ announce: init.announce, info }),
      infoHash: createHash('sha1').update(infoBytes).digest('hex'),
      pieces: hashes.length,
      length
    }
  } finally {
    closeSync(fd)
  }
}

/** Seeds ("complete") a tracker's bencoded scrape answer reports for `infoHash` (hex); 0 if absent. */
export function scrapeSeeds (answer: Uint8Array, infoHash: string): number {
  const d = bdecode(answer)
  if (typeof d !== 'object' || d instanceof Uint8Array || Array.isArray(d)) throw new BencodeError('scrape answer is not a dictionary')
  const files = d.files
  if (files == null || typeof files !== 'object' || files instanceof Uint8Array || Array.isArray(files)) return 0
  // Keys are the raw 20-byte hashes (decoded byte for byte as latin1).
  for (const [k, v] of Object.entries(files)) {
    if (Buffer.from(k, 'latin1').toString('hex') !== infoHash) continue
    if (typeof v === 'object' && !(v instanceof Uint8Array) && !Array.isArray(v) && typeof v.complete === 'number') return v.complete
  }
  return 0
}
