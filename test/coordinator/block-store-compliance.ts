/**
 * The BlockStore contract as tests. Every implementation (directory today; S3,
 * PostgreSQL large objects later) runs this suite from its own test file:
 *
 *   blockStoreComplianceTests('my store', async () => ({ store, corrupt, cleanup }))
 *
 * The harness gives a fresh, empty store per test, a way to damage one stored
 * chunk behind the store's back (to prove `verify` catches it), and cleanup.
 */
import type { CID } from 'multiformats/cid'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chunkCidOf, hashBytes, manifestCidOf } from '../../chunker/blake3.ts'
import { toHex } from '../../protocol/block-id.ts'
import { BLOCK_SIZE, MAX_CHUNK_BLOCKS } from '../../protocol/constants.ts'
import { HashMismatchError, InvalidCidError, NotFoundError, ValidationError } from '../../protocol/errors.ts'
import type { BlockStore } from '../../coordinator/interface.ts'
import { CID as CIDClass } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { b3sumBytes, seededBytes } from '../helpers/images.ts'

/** What an implementation's test file provides to the suite. */
export interface BlockStoreHarness {
  /** A fresh, empty store. */
  store: BlockStore
  /** Changes the stored bytes of `cid` in place (e.g. flips one bit), bypassing the store. */
  corrupt: (cid: CID) => Promise<void>
  /** Opens the same storage again as a new store instance (persistence check); omit if not meaningful. */
  reopen?: () => Promise<BlockStore>
  /** Removes everything the harness created. */
  cleanup: () => Promise<void>
}

/** A chunk: its bytes and CID. Seeded, so every run uses the same data. */
export function testChunk (seed: number, blocks = 4): { cid: CID, bytes: Uint8Array } {
  const bytes = seededBytes(seed, blocks * BLOCK_SIZE)
  return { cid: chunkCidOf(bytes), bytes }
}

async function collect (it: AsyncIterable<CID>): Promise<string[]> {
  const out: string[] = []
  for await (const c of it) out.push(c.toString())
  return out.sort()
}

/** Registers the shared BlockStore suite under `describe(name)`. */
export function blockStoreComplianceTests (name: string, createHarness: () => Promise<BlockStoreHarness>): void {
  describe(`BlockStore compliance: ${name}`, () => {
    let h: BlockStoreHarness
    let store: BlockStore

    beforeEach(async () => {
      h = await createHarness()
      store = h.store
    })
    afterEach(async () => { await h.cleanup() })

    it('stores and returns a chunk; has/list see it', async () => {
      const c = testChunk(1)
      expect(await store.has(c.cid)).toBe(false)
      await store.put(c.cid, c.bytes)
      expect(await store.has(c.cid)).toBe(true)
      expect(await store.get(c.cid)).toEqual(c.bytes)
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
      expect(await collect(store.list())).toEqual([c.cid.toString()])
    })

    it('returns bytes whose b3sum is the CID digest, for a chunk of the largest size', async () => {
      const c = testChunk(2, MAX_CHUNK_BLOCKS)
      await store.put(c.cid, c.bytes)
      const got = await store.get(c.cid, { verify: true })
      expect(got.length).toBe(MAX_CHUNK_BLOCKS * BLOCK_SIZE)
      expect(await b3sumBytes(got)).toBe(toHex(c.cid.multihash.digest))
    })

    it('a one-byte chunk and a chunk that is not a multiple of the block size round-trip', async () => {
      for (const bytes of [new Uint8Array([7]), seededBytes(3, BLOCK_SIZE + 13)]) {
        const cid = chunkCidOf(bytes)
        await store.put(cid, bytes)
        expect(await store.get(cid, { verify: true })).toEqual(bytes)
      }
    })

    it('get of an absent chunk throws NotFoundError; has is false', async () => {
      const c = testChunk(4)
      await expect(store.get(c.cid)).rejects.toBeInstanceOf(NotFoundError)
      await expect(store.get(c.cid, { verify: true })).rejects.toBeInstanceOf(NotFoundError)
      expect(await store.has(c.cid)).toBe(false)
    })

    it('put is idempotent', async () => {
      const c = testChunk(5)
      await store.put(c.cid, c.bytes)
      await store.put(c.cid, c.bytes)
      await store.put(c.cid, c.bytes.slice())
      expect(await store.get(c.cid)).toEqual(c.bytes)
      expect(await collect(store.list())).toEqual([c.cid.toString()])
    })

    it('rejects bytes that do not hash to the CID and stores nothing', async () => {
      const a = testChunk(6)
      const b = testChunk(7)
      await expect(store.put(a.cid, b.bytes)).rejects.toBeInstanceOf(HashMismatchError)
      const flipped = a.bytes.slice()
      flipped[100] ^= 1
      await expect(store.put(a.cid, flipped)).rejects.toBeInstanceOf(HashMismatchError)
      await expect(store.put(a.cid, a.bytes.subarray(0, a.bytes.length - 1))).rejects.toBeInstanceOf(HashMismatchError)
      expect(await store.has(a.cid)).toBe(false)
      expect(await store.has(b.cid)).toBe(false)
      expect(await collect(store.list())).toEqual([])
    })

    it('rejects an all-zero chunk and empty bytes (ValidationError) and stores nothing', async () => {
      for (const len of [1, BLOCK_SIZE, 16 * BLOCK_SIZE]) {
        const zeros = new Uint8Array(len)
        await expect(store.put(chunkCidOf(zeros), zeros)).rejects.toBeInstanceOf(ValidationError)
      }
      const empty = new Uint8Array(0)
      await expect(store.put(chunkCidOf(empty), empty)).rejects.toBeInstanceOf(ValidationError)
      expect(await collect(store.list())).toEqual([])
    })

    it('rejects CIDs that are not chunk CIDs (manifest codec, other hash)', async () => {
      const c = testChunk(8)
      const manifest = manifestCidOf(c.bytes)
      const shaCid = CIDClass.createV1(0x55, await sha256.digest(c.bytes))
      for (const bad of [manifest, shaCid]) {
        await expect(store.put(bad, c.bytes)).rejects.toBeInstanceOf(InvalidCidError)
        await expect(store.get(bad)).rejects.toBeInstanceOf(InvalidCidError)
        await expect(store.has(bad)).rejects.toBeInstanceOf(InvalidCidError)
      }
      expect(await collect(store.list())).toEqual([])
    })

    it('delete removes a chunk; deleting an absent chunk is a no-op', async () => {
      const a = testChunk(9)
      const b = testChunk(10)
      await store.put(a.cid, a.bytes)
      await store.put(b.cid, b.bytes)
      await store.delete(a.cid)
      expect(await store.has(a.cid)).toBe(false)
      await expect(store.get(a.cid)).rejects.toBeInstanceOf(NotFoundError)
      await store.delete(a.cid)
      expect(await collect(store.list())).toEqual([b.cid.toString()])
      expect(await store.get(b.cid)).toEqual(b.bytes)
      // A deleted chunk can be stored again.
      await store.put(a.cid, a.bytes)
      expect(await store.get(a.cid, { verify: true })).toEqual(a.bytes)
    })

    it('stat gives size and stored time; touch and a repeated put move the stored time forward; both throw NotFoundError when absent', async () => {
      const a = testChunk(11, 3)
      const before = Date.now()
      await store.put(a.cid, a.bytes)
      const first = await store.stat(a.cid)
      expect(first.bytes).toBe(a.bytes.length)
      expect(first.storedAt).toBeGreaterThanOrEqual(before - 2000)
      expect(first.storedAt).toBeLessThanOrEqual(Date.now() + 2000)
      await new Promise(resolve => setTimeout(resolve, 30))
      await store.touch(a.cid)
      const touched = await store.stat(a.cid)
      expect(touched.storedAt).toBeGreaterThan(first.storedAt)
      await new Promise(resolve => setTimeout(resolve, 30))
      await store.put(a.cid, a.bytes)
      expect((await store.stat(a.cid)).storedAt).toBeGreaterThan(touched.storedAt)
      await store.delete(a.cid)
      await expect(store.stat(a.cid)).rejects.toBeInstanceOf(NotFoundError)
      await expect(store.touch(a.cid)).rejects.toBeInstanceOf(NotFoundError)
    })

    it('list yields every stored CID exactly once', async () => {
      const chunks = Array.from({ length: 40 }, (_, i) => testChunk(100 + i, 1 + (i % 3)))
      for (const c of chunks) await store.put(c.cid, c.bytes)
      expect(await collect(store.list())).toEqual(chunks.map(c => c.cid.toString()).sort())
    })

    it('concurrent puts of the same chunk all succeed and store it once', async () => {
      const c = testChunk(11, 64)
      await Promise.all(Array.from({ length: 16 }, async () => { await store.put(c.cid, c.bytes) }))
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
      expect(await collect(store.list())).toEqual([c.cid.toString()])
    })

    it('concurrent puts of different chunks all land intact', async () => {
      const chunks = Array.from({ length: 32 }, (_, i) => testChunk(200 + i, 1 + (i % 8)))
      await Promise.all(chunks.map(async c => { await store.put(c.cid, c.bytes) }))
      await Promise.all(chunks.map(async c => { expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes) }))
      expect(await collect(store.list())).toEqual(chunks.map(c => c.cid.toString()).sort())
    })

    it('a concurrent good put and bad put of one CID: the good bytes win, the bad put fails', async () => {
      const c = testChunk(12)
      const bad = c.bytes.slice()
      bad[0] ^= 0x80
      const results = await Promise.allSettled([store.put(c.cid, bad), store.put(c.cid, c.bytes), store.put(c.cid, bad)])
      expect(results.map(r => r.status)).toEqual(['rejected', 'fulfilled', 'rejected'])
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
    })

    it('detects a corrupted stored chunk when asked to verify', async () => {
      const c = testChunk(13)
      const other = testChunk(14)
      await store.put(c.cid, c.bytes)
      await store.put(other.cid, other.bytes)
      await h.corrupt(c.cid)
      await expect(store.get(c.cid, { verify: true })).rejects.toBeInstanceOf(HashMismatchError)
      // Only the damaged chunk is affected.
      expect(await store.get(other.cid, { verify: true })).toEqual(other.bytes)
      // Re-storing the good bytes after deleting the bad copy repairs it (what fsck does).
      await store.delete(c.cid)
      await store.put(c.cid, c.bytes)
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
    })

    it('an already-aborted signal rejects and stores nothing', async () => {
      const c = testChunk(15)
      const signal = AbortSignal.abort()
      await expect(store.put(c.cid, c.bytes, { signal })).rejects.toThrow()
      expect(await store.has(c.cid)).toBe(false)
      await store.put(c.cid, c.bytes)
      await expect(store.get(c.cid, { signal })).rejects.toThrow()
      await expect(store.has(c.cid, { signal })).rejects.toThrow()
    })

    it('aborting one caller does not fail another caller\'s put of the same chunk', async () => {
      const c = testChunk(17, 32)
      const ac = new AbortController()
      const first = store.put(c.cid, c.bytes, { signal: ac.signal })
      const second = store.put(c.cid, c.bytes)
      ac.abort()
      await Promise.allSettled([first])
      await second
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
    })

    it('the returned bytes are the caller\'s own: changing them does not change the store', async () => {
      const c = testChunk(16)
      const input = c.bytes.slice()
      await store.put(c.cid, input)
      input[0] ^= 1
      const got = await store.get(c.cid)
      got[1] ^= 1
      expect(await store.get(c.cid, { verify: true })).toEqual(c.bytes)
    })

    it('chunks persist when the storage is opened again', async (ctx) => {
      if (h.reopen == null) { ctx.skip(); return }
      const chunks = Array.from({ length: 5 }, (_, i) => testChunk(300 + i))
      for (const c of chunks) await store.put(c.cid, c.bytes)
      const again = await h.reopen()
      expect(await collect(again.list())).toEqual(chunks.map(c => c.cid.toString()).sort())
      for (const c of chunks) expect(toHex(hashBytes(await again.get(c.cid)))).toBe(toHex(c.cid.multihash.digest))
    })
  })
}
