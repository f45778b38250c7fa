/**
 * The host index's block entries as one sorted file (host-index/blocks.table), a
 * cache of the level database's block keys in the same order: prefix(8) fileId(4)
 * block(4), 16 bytes each. A sync looks up every block of the manifest (50,181 for
 * base.img); one level seek each took 3.9 s and 3.4 CPU-s against a 1.6M-entry
 * index, a page read through a sparse in-memory index of this file takes
 * milliseconds (docs/BENCHMARKS.md "Trim at 100 mbit"). Only the first prefix of
 * each 4 KiB page is held in memory (8 bytes per 256 entries), so memory stays
 * small however much the indexed folders hold. A lookup of many prefixes (a sync's)
 * reads 64 pages at a time and binary-searches each page: 180-290 ms for base.img's
 * 47,611 distinct blocks against 1.64M entries became 115-160 ms (one page per read(2)
 * and a linear scan of it before; issue 21, docs/BENCHMARKS.md "Session 12").
 *
 * The header names the generation of the level database it mirrors: a refresh
 * that changes the index writes a new generation into level first, and the table
 * only after; a table of another generation (a refresh cut short) is not used, and
 * the next refresh writes it anew.
 *
 * Layout: magic 'TSBTAB01' (8), generation (16), entry count (8, big-endian), entries.
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync, constants as fsc } from 'node:fs'
import { BLOCK_PREFIX_BYTES } from '../protocol/constants.ts'
import { PRIVATE_FILE_MODE } from './constants.ts'
import { readFullSync } from '../utils/read-full.ts'

/** Bytes of one entry: prefix, file id, block number. */
export const ENTRY_BYTES = BLOCK_PREFIX_BYTES + 8
/** Bytes of the generation stamp. */
export const GENERATION_BYTES = 16
const MAGIC = new TextEncoder().encode('TSBTAB01')
const HEADER_BYTES = MAGIC.length + GENERATION_BYTES + 8
const PAGE_ENTRIES = 256
const PAGE_BYTES = PAGE_ENTRIES * ENTRY_BYTES
/** Pages per read when a lookup's prefixes are many (256 KiB): a sync's 50,000 lookups visit most pages in order. */
const TABLE_READ_PAGES = 64
/** Entries per read or write while streaming a whole table (1 MiB). */
const STREAM_ENTRIES = 65_536

/** An open block table. */
export interface BlockTable {
  readonly count: number
  readonly generation: Uint8Array
  /**
   * Calls `each(i, fileId, block)` for the entries of `prefixes[i]`, at most `limit` per prefix,
   * visiting the prefixes in `order` (ascending prefix order keeps page reads sequential).
   * `each` answers false to stop taking entries of this prefix.
   */
  lookup: (prefixes: Uint8Array[], order: number[], limit: number, each: (i: number, fileId: number, block: number) => boolean) => void
  /** The entries in order, STREAM_ENTRIES at a time (packed). */
  entries: () => Generator<Uint8Array>
  close: () => void
}

/**
 * Compares `length` bytes of `a` at `ai` with `b` at `bi` in byte order: entries (ENTRY_BYTES: prefix,
 * then file id, then block, big-endian) or prefixes (BLOCK_PREFIX_BYTES).
 */
export function compareBytesAt (a: Uint8Array, ai: number, b: Uint8Array, bi: number, length: number): number {
  for (let k = 0; k < length; k++) {
    const d = a[ai + k] - b[bi + k]
    if (d !== 0) return d
  }
  return 0
}

/** Sorts packed entries (a copy, in entry order). */
export function sortEntries (packed: Uint8Array): Uint8Array {
  const n = packed.length / ENTRY_BYTES
  const order = Array.from({ length: n }, (_, i) => i)
  order.sort((x, y) => compareBytesAt(packed, x * ENTRY_BYTES, packed, y * ENTRY_BYTES, ENTRY_BYTES))
  const out = new Uint8Array(packed.length)
  for (let i = 0; i < n; i++) out.set(packed.subarray(order[i] * ENTRY_BYTES, (order[i] + 1) * ENTRY_BYTES), i * ENTRY_BYTES)
  return out
}

/**
 * Merges `old` entries (in order), less those of `dropped` file ids, with `added`
 * (sorted): the entries of the index after a refresh, in order, in pieces.
 */
export function * mergeEntries (old: Iterable<Uint8Array>, dropped: ReadonlySet<number>, added: Uint8Array): Generator<Uint8Array> {
  const out = new Uint8Array(STREAM_ENTRIES * ENTRY_BYTES)
  let o = 0
  let a = 0
  for (const piece of old) {
    const dv = new DataView(piece.buffer, piece.byteOffset, piece.byteLength)
    for (let at = 0; at < piece.length; at += ENTRY_BYTES) {
      if (dropped.has(dv.getUint32(at + BLOCK_PREFIX_BYTES))) continue
      for (;;) {
        const fromAdded = a < added.length && compareBytesAt(added, a, piece, at, ENTRY_BYTES) < 0
        out.set(fromAdded ? added.subarray(a, a + ENTRY_BYTES) : piece.subarray(at, at + ENTRY_BYTES), o)
        o += ENTRY_BYTES
        if (o === out.length) { yield out.slice(); o = 0 }
        if (!fromAdded) break
        a += ENTRY_BYTES
      }
    }
  }
  for (; a < added.length; a += ENTRY_BYTES) {
    out.set(added.subarray(a, a + ENTRY_BYTES), o)
    o += ENTRY_BYTES
    if (o === out.length) { yield out.slice(); o = 0 }
  }
  if (o > 0) yield out.slice(0, o)
}

/**
 * Writes a table of `generation` with `pieces` (entries in order) to `path`
 * through a temporary file renamed over it once synced: a reader sees the old
 * table or the new one. Returns the entry count.
 */
export async function writeBlockTable (path: string, generation: Uint8Array, pieces: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<number> {
  const tmp = `${path}.tmp`
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, PRIVATE_FILE_MODE)
  let count = 0
  try {
    const header = new Uint8Array(HEADER_BYTES)
    header.set(MAGIC, 0)
    header.set(generation.subarray(0, GENERATION_BYTES), MAGIC.length)
    writeSync(fd, header, 0, header.length, 0)
    let pos = HEADER_BYTES
    for await (const piece of pieces) {
      writeAll(fd, piece, pos)
      pos += piece.length
      count += piece.length / ENTRY_BYTES
    }
    new DataView(header.buffer).setBigUint64(MAGIC.length + GENERATION_BYTES, BigInt(count))
    writeSync(fd, header, 0, header.length, 0)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  return count
}

function writeAll (fd: number, bytes: Uint8Array, pos: number): void {
  let done = 0
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, pos + done)
}

/**
 * Opens the table at `path` if it is whole and of `generation`; undefined when it
 * is missing, of another generation, or not a table (the caller falls back to level).
 */
export function openBlockTable (path: string, generation: Uint8Array | undefined): BlockTable | undefined {
  if (generation == null) return undefined
  let fd: number
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW)
  } catch {
    return undefined
  }
  try {
    const table = readTable(fd, generation)
    if (table == null) closeSync(fd)
    return table
  } catch {
    closeSync(fd)
    return undefined
  }
}

function readTable (fd: number, generation: Uint8Array): BlockTable | undefined {
  const header = new Uint8Array(HEADER_BYTES)
  if (readFullSync(fd, header, 0) !== HEADER_BYTES) return undefined
  for (let k = 0; k < MAGIC.length; k++) if (header[k] !== MAGIC[k]) return undefined
  for (let k = 0; k < GENERATION_BYTES; k++) if (header[MAGIC.length + k] !== generation[k]) return undefined
  const count = Number(new DataView(header.buffer).getBigUint64(MAGIC.length + GENERATION_BYTES))
  // first prefix of each page, read once front to back (the file must hold every entry it counts)
  const pages = Math.ceil(count / PAGE_ENTRIES)
  const firsts = new Uint8Array(pages * BLOCK_PREFIX_BYTES)
  const buf = new Uint8Array(STREAM_ENTRIES * ENTRY_BYTES)
  for (let at = 0; at < count; at += STREAM_ENTRIES) {
    const want = Math.min(STREAM_ENTRIES, count - at) * ENTRY_BYTES
    if (readFullSync(fd, buf.subarray(0, want), HEADER_BYTES + at * ENTRY_BYTES) !== want) return undefined
    for (let e = 0; e < want / ENTRY_BYTES; e += PAGE_ENTRIES) {
      firsts.set(buf.subarray(e * ENTRY_BYTES, e * ENTRY_BYTES + BLOCK_PREFIX_BYTES), ((at + e) / PAGE_ENTRIES) * BLOCK_PREFIX_BYTES)
    }
  }
  return createTable(fd, generation.slice(0, GENERATION_BYTES), count, firsts)
}

function createTable (fd: number, generation: Uint8Array, count: number, firsts: Uint8Array): BlockTable {
  const pages = firsts.length / BLOCK_PREFIX_BYTES
  // pages read so far: [windowStart, windowStart + windowPages), the last possibly short (the table's end)
  let window = new Uint8Array(PAGE_BYTES)
  let windowView = new DataView(window.buffer)
  let windowStart = -1
  let windowPages = 0
  let windowEntries = 0

  /** Reads `want` pages from page `p` into the window unless it holds `p` already. */
  function load (p: number, want: number): void {
    if (p >= windowStart && p < windowStart + windowPages) return
    const n = Math.min(want, pages - p)
    if (window.length < n * PAGE_BYTES) { window = new Uint8Array(n * PAGE_BYTES); windowView = new DataView(window.buffer) }
    const entries = Math.min(n * PAGE_ENTRIES, count - p * PAGE_ENTRIES)
    const got = readFullSync(fd, window.subarray(0, entries * ENTRY_BYTES), HEADER_BYTES + p * PAGE_BYTES)
    windowEntries = Math.floor(got / ENTRY_BYTES) // a table cut short since it was opened: only what is there
    windowStart = p
    windowPages = Math.ceil(windowEntries / PAGE_ENTRIES)
  }

  /** The page to start at: the last whose first prefix is below `prefix` (an equal first may continue from the page before). */
  function startPage (prefix: Uint8Array): number {
    let lo = 0
    let hi = pages - 1
    let found = 0
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (compareBytesAt(firsts, mid * BLOCK_PREFIX_BYTES, prefix, 0, BLOCK_PREFIX_BYTES) < 0) { found = mid; lo = mid + 1 } else hi = mid - 1
    }
    return found
  }

  /** The first entry of the window at or after `from` (before `end`) whose prefix is not below `prefix`. */
  function firstNotBelow (prefix: Uint8Array, from: number, end: number): number {
    let lo = from
    let hi = end
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareBytesAt(window, mid * ENTRY_BYTES, prefix, 0, BLOCK_PREFIX_BYTES) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  return {
    count,
    generation,
    lookup (prefixes, order, limit, each) {
      if (count === 0) return
      // many prefixes visit most pages in order: read TABLE_READ_PAGES at a time instead of one page per read
      const readPages = prefixes.length * 8 >= pages ? TABLE_READ_PAGES : 1
      for (const i of order) {
        const prefix = prefixes[i]
        let taken = 0
        let stop = false
        for (let p = startPage(prefix); p < pages && !stop; p++) {
          load(p, readPages)
          const pageFirst = (p - windowStart) * PAGE_ENTRIES
          const pageEnd = Math.min(pageFirst + PAGE_ENTRIES, windowEntries)
          for (let e = firstNotBelow(prefix, pageFirst, pageEnd); e < pageEnd; e++) {
            if (compareBytesAt(window, e * ENTRY_BYTES, prefix, 0, BLOCK_PREFIX_BYTES) > 0 || taken >= limit) { stop = true; break }
            taken++
            const at = e * ENTRY_BYTES + BLOCK_PREFIX_BYTES
            if (!each(i, windowView.getUint32(at), windowView.getUint32(at + 4))) { stop = true; break }
          }
          if (pageEnd - pageFirst < PAGE_ENTRIES) break
        }
      }
    },
    * entries () {
      const buf = new Uint8Array(STREAM_ENTRIES * ENTRY_BYTES)
      for (let at = 0; at < count; at += STREAM_ENTRIES) {
        const want = Math.min(STREAM_ENTRIES, count - at) * ENTRY_BYTES
        const got = readFullSync(fd, buf.subarray(0, want), HEADER_BYTES + at * ENTRY_BYTES)
        yield buf.subarray(0, got - (got % ENTRY_BYTES))
        if (got < want) return
      }
    },
    close () {
      try { closeSync(fd) } catch {}
    }
  }
}
