/**
 * Files the coordinator derives from chunks (compressed segments, the pieces
 * of delta packs) kept through the block store under the CID of their own
 * bytes: in the bucket every coordinator reads on the scale-out stack, in
 * DATA/blocks in the embedded default. Content addressing makes a piece's
 * name its checksum (the store re-hashes on read) and lets two coordinators
 * write the same piece without harm. Reads go through a cache bounded by
 * bytes, and a crowd asking for one piece together shares one read.
 */
import { chunkCidOf } from '../chunker/blake3.ts'
import { parseChunkCid } from '../protocol/block-id.ts'
import type { AbortOptions, BlockStore } from './interface.ts'
import { createLruCache } from './lru-cache.ts'

/** What the stored files need. */
export interface StoredFilesComponents {
  blockStore: BlockStore
}

/** Settings of the stored files. */
export interface StoredFilesInit {
  /** Bytes of files kept in memory once read. */
  cacheBytes: number
}

/** One stored file: its CID (text) and size. */
export interface StoredFileRef {
  cid: string
  bytes: number
}

/** Files in the block store, named by their content (see the module comment). */
export interface StoredFiles {
  /** Stores `bytes` under the CID of their content; returns that name. Throws ValidationError for empty or all-zero bytes. */
  put: (bytes: Uint8Array, options?: AbortOptions) => Promise<StoredFileRef>
  /** The file's bytes, re-hashed by the store; NotFoundError when absent, HashMismatchError when damaged. */
  read: (cid: string, options?: AbortOptions) => Promise<Uint8Array>
}

/** Creates the stored files over a block store. */
export function createStoredFiles (components: StoredFilesComponents, init: StoredFilesInit): StoredFiles {
  const { blockStore } = components
  const cache = createLruCache<Uint8Array>({ maxEntries: 4096, maxWeight: init.cacheBytes, weigh: b => b.byteLength })
  const loads = new Map<string, Promise<Uint8Array>>()
  return {
    async put (bytes, options = {}) {
      const cid = chunkCidOf(bytes)
      await blockStore.put(cid, bytes, options)
      return { cid: cid.toString(), bytes: bytes.length }
    },
    async read (cidText, options = {}) {
      options.signal?.throwIfAborted()
      const hit = cache.get(cidText)
      if (hit != null) return hit
      let pending = loads.get(cidText)
      if (pending == null) {
        // one read for a crowd arriving together (without any one caller's signal: one leaving must not fail
        // the others; a read is at most one chunk); the store re-hashes it (verify on read)
        const load = blockStore.get(parseChunkCid(cidText))
          .then(bytes => { cache.set(cidText, bytes); return bytes })
          .finally(() => { loads.delete(cidText) })
        loads.set(cidText, pending = load)
      }
      return await pending
    }
  }
}
