/**
 * The host index's level keys (their layout is described in host-index.ts), the
 * hashing of one file into them, and what a refresh keeps of them for the
 * block table (index-block-table.ts).
 */
import { closeSync } from 'node:fs'
import { hashBlocks } from '../chunker/blake3.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../protocol/constants.ts'
import { openRegularFile, readFullSync } from '../utils/read-full.ts'
import { ENTRY_BYTES } from './index-block-table.ts'

export const TAG_FILE = 1
export const TAG_BLOCK = 2
export const TAG_FILE_BLOCKS = 3
const ZERO_DIGEST = hashBlocks(new Uint8Array(BLOCK_SIZE)).subarray(0, BLOCK_PREFIX_BYTES)

export function fileKey (tag: number, id: number): Uint8Array {
  const k = new Uint8Array(5)
  k[0] = tag
  new DataView(k.buffer).setUint32(1, id)
  return k
}

export function blockKey (prefix: Uint8Array, id: number, block: number): Uint8Array {
  const k = new Uint8Array(1 + BLOCK_PREFIX_BYTES + 8)
  k[0] = TAG_BLOCK
  k.set(prefix.subarray(0, BLOCK_PREFIX_BYTES), 1)
  const dv = new DataView(k.buffer)
  dv.setUint32(1 + BLOCK_PREFIX_BYTES, id)
  dv.setUint32(5 + BLOCK_PREFIX_BYTES, block)
  return k
}

function isZeroPrefix (digests: Uint8Array, at: number): boolean {
  for (let i = 0; i < BLOCK_PREFIX_BYTES; i++) if (digests[at + i] !== ZERO_DIGEST[i]) return false
  return true
}

export const BLOCK_KEY_BYTES = 1 + BLOCK_PREFIX_BYTES + 8
export const LIST_ENTRY_BYTES = BLOCK_PREFIX_BYTES + 4

/** What a refresh changed in the block entries, for the table: dropped file ids and added entries (undefined: too many to hold). */
export interface TableChange { dropped: Set<number>, added: Uint8Array[] | undefined, addedEntries: number }

/** Keeps `count` new block keys of a file (without their tag byte) for the table, up to `max` in all. */
export function noteAdded (change: TableChange, keys: Uint8Array, count: number, max: number): void {
  if (change.added == null) return
  change.addedEntries += count
  if (change.addedEntries > max) { change.added = undefined; return } // the table is rebuilt from level instead
  const piece = new Uint8Array(count * ENTRY_BYTES)
  for (let i = 0; i < count; i++) piece.set(keys.subarray(i * BLOCK_KEY_BYTES + 1, (i + 1) * BLOCK_KEY_BYTES), i * ENTRY_BYTES)
  change.added.push(piece)
}

/** One file's non-zero blocks as index entries: `count` block keys and entry-list entries, and the bytes read. */
export interface HashedFile { keys: Uint8Array, listBytes: Uint8Array, count: number, bytes: number }

/**
 * Reads and hashes the file at `path` (about `size` bytes; it may change while
 * being read: what was read is indexed) into the block keys of file `id`,
 * zero blocks left out. `scratch` is the caller's read buffer and digest space.
 */
export function hashFileBlocks (path: string, size: number, id: number, scratch: { buf: Uint8Array, digests: Uint8Array }): HashedFile {
  const { buf, digests } = scratch
  // one buffer per file for all its keys and its entry list: per-block allocations
  // (1.4M small buffers for /usr) bloated RSS through malloc, not the JS heap
  const maxBlocks = Math.ceil(size / BLOCK_SIZE) + 1
  let keys = new Uint8Array(maxBlocks * BLOCK_KEY_BYTES)
  let listBytes = new Uint8Array(maxBlocks * LIST_ENTRY_BYTES)
  let count = 0
  let pos = 0
  // sync reads: on page-cached trees the FileHandle round trips cost more than the reads (profiled)
  const fd = openRegularFile(path) // the file may have changed since the walk's lstat
  try {
    for (;;) {
      const bytesRead = readFullSync(fd, buf, pos)
      if (bytesRead === 0) break
      const padded = Math.ceil(bytesRead / BLOCK_SIZE) * BLOCK_SIZE
      buf.fill(0, bytesRead, padded)
      const nBlocks = padded / BLOCK_SIZE
      hashBlocks(buf.subarray(0, padded), digests)
      const firstBlock = pos / BLOCK_SIZE
      if ((count + nBlocks) * BLOCK_KEY_BYTES > keys.length) {
        // the file grew while being read
        const k2 = new Uint8Array((count + nBlocks) * 2 * BLOCK_KEY_BYTES); k2.set(keys); keys = k2
        const l2 = new Uint8Array((count + nBlocks) * 2 * LIST_ENTRY_BYTES); l2.set(listBytes); listBytes = l2
      }
      const kdv = new DataView(keys.buffer)
      const ldv = new DataView(listBytes.buffer)
      for (let b = 0; b < nBlocks; b++) {
        const at = b * DIGEST_BYTES
        if (isZeroPrefix(digests, at)) continue
        const k = count * BLOCK_KEY_BYTES
        keys[k] = TAG_BLOCK
        keys.set(digests.subarray(at, at + BLOCK_PREFIX_BYTES), k + 1)
        kdv.setUint32(k + 1 + BLOCK_PREFIX_BYTES, id)
        kdv.setUint32(k + 5 + BLOCK_PREFIX_BYTES, firstBlock + b)
        const l = count * LIST_ENTRY_BYTES
        listBytes.set(digests.subarray(at, at + BLOCK_PREFIX_BYTES), l)
        ldv.setUint32(l + BLOCK_PREFIX_BYTES, firstBlock + b)
        count++
      }
      pos += bytesRead
      if (bytesRead < buf.length) break // end of file (readFullSync reads short only there)
    }
  } finally {
    closeSync(fd)
  }
  return { keys, listBytes, count, bytes: pos }
}
