/**
 * The pure parts of the image service (coordinator/image-service.ts and the
 * modules behind it): which version `latest` is and what may be served, the
 * listings, the read-through cache, the write lock, the commit's block
 * checks, and the `images` section of the config.
 */
import { describe, expect, it } from 'vitest'
import type { api } from '../../protocol/index.ts'
import { BLOCK_PREFIX_BYTES, BLOCK_SIZE, DIGEST_BYTES } from '../../protocol/constants.ts'
import { InvalidManifestError, NotFoundError, UnavailableError } from '../../protocol/errors.ts'
import type { Manifest } from '../../protocol/manifest.ts'
import { hashBlocks, hashBytes } from '../../chunker/blake3.ts'
import { parseCoordinatorConfig } from '../../coordinator/config.ts'
import { createLruCache } from '../../coordinator/lru-cache.ts'
import { createReadThrough } from '../../coordinator/version-cache.ts'
import { checkChunkBlocks, reusedPercent } from '../../coordinator/version-commit.ts'
import { adminVersion, groupByImage, imageList, latestOf, pickServable } from '../../coordinator/version-records.ts'
import type { VersionRecord } from '../../coordinator/version-store.ts'
import { createWriteLock } from '../../coordinator/write-lock.ts'
import { openMetaDb } from '../../coordinator/meta-db.ts'
import { tempDir } from '../helpers/images.ts'

function rec (image: string, version: string, seq: number, flags: { retired?: boolean, incomplete?: boolean, collected?: boolean } = {}): VersionRecord {
  const info = { image, version, retired: flags.retired ?? false, previous: null, deltaPackBytes: null } as unknown as api.VersionInfo
  return { info, seq, ...(flags.incomplete === true ? { incomplete: true } : {}), ...(flags.collected === true ? { collected: true } : {}) }
}

describe('version records', () => {
  const recs = [rec('a', 'v1', 1), rec('a', 'v2', 2), rec('a', 'v3', 3, { incomplete: true }), rec('a', 'v4', 4, { retired: true })]

  it('latest is the newest version neither retired nor incomplete', () => {
    expect(latestOf(recs)?.info.version).toBe('v2')
    expect(latestOf([rec('a', 'v1', 1, { retired: true })])).toBeUndefined()
  })

  it('serves `latest` and named versions; refuses unknown, collected and incomplete ones with distinct errors', () => {
    expect(pickServable('a', 'latest', recs).info.version).toBe('v2')
    expect(pickServable('a', 'v4', recs).info.version).toBe('v4') // retired stays fetchable by name
    expect(() => pickServable('a', 'v9', recs)).toThrow(NotFoundError)
    expect(() => pickServable('a', 'v3', recs)).toThrow(UnavailableError)
    expect(() => pickServable('a', 'v1', [rec('a', 'v1', 1, { retired: true, collected: true })])).toThrow(/deleted by storage gc/)
    expect(() => pickServable('a', 'latest', [])).toThrow(/no current version/)
  })

  it('groups by image name, each in publish order, for the public and admin lists', () => {
    const grouped = groupByImage([rec('b', 'x', 5), rec('a', 'v2', 2), rec('b', 'w', 3), rec('a', 'v1', 1, { retired: true })])
    expect(grouped.map(([name, list]) => [name, list.map(r => r.info.version)])).toEqual([['a', ['v1', 'v2']], ['b', ['w', 'x']]])
    expect(imageList(grouped)).toEqual({ images: [{ name: 'a', latest: 'v2', versions: 2 }, { name: 'b', latest: 'x', versions: 2 }] })
    expect(adminVersion(rec('a', 'v1', 1, { retired: true, collected: true }), 'v2')).toMatchObject({ version: 'v1', state: 'collected', latest: false })
    expect(adminVersion(rec('a', 'v2', 2), 'v2')).toMatchObject({ state: 'live', latest: true })
  })
})

describe('createReadThrough', () => {
  it('loads a key once for a crowd of concurrent callers, then serves it from the cache', async () => {
    const rt = createReadThrough(createLruCache<number>({ maxEntries: 4 }))
    let loads = 0
    const load = async (): Promise<number> => { loads++; await new Promise(resolve => setTimeout(resolve, 5)); return 42 }
    expect(await Promise.all(Array.from({ length: 10 }, async () => await rt.get('k', load)))).toEqual(Array(10).fill(42))
    expect(await rt.get('k', load)).toBe(42)
    expect(loads).toBe(1)
  })

  it('does not keep a value whose load started before an invalidation', async () => {
    const rt = createReadThrough(createLruCache<string>({ maxEntries: 4 }))
    let release!: () => void
    const stale = rt.get('k', async () => { await new Promise<void>(resolve => { release = resolve }); return 'old' })
    rt.invalidate('k')
    release()
    expect(await stale).toBe('old') // its caller still gets what it read
    expect(await rt.get('k', async () => 'new')).toBe('new')
  })

  it('does not keep a failed load', async () => {
    const rt = createReadThrough(createLruCache<string>({ maxEntries: 4 }))
    await expect(rt.get('k', async () => { throw new NotFoundError('gone') })).rejects.toThrow(NotFoundError)
    expect(await rt.get('k', async () => 'back')).toBe('back')
  })
})

describe('createWriteLock', () => {
  it('runs writes one after another in call order on the store\'s lock; a failure is its caller\'s alone; no refresh on an unshared store', async () => {
    const dir = await tempDir()
    const db = await openMetaDb(dir.path)
    try {
      let refreshed = 0
      const lock = createWriteLock(db, () => { refreshed++ })
      const order: string[] = []
      const slow = lock(async () => { await new Promise(resolve => setTimeout(resolve, 10)); order.push('slow') })
      const bad = lock(async () => { order.push('bad'); throw new Error('no') })
      const fast = lock(async () => { order.push('fast'); return 7 })
      await slow
      await expect(bad).rejects.toThrow('no')
      expect(await fast).toBe(7)
      expect(order).toEqual(['slow', 'bad', 'fast'])
      expect(refreshed).toBe(0)
    } finally {
      await db.close()
      await dir.cleanup()
    }
  })
})

describe('commit checks', () => {
  /** A one-chunk manifest of `bytes` whose block prefixes are taken from `prefixOf` (default: the bytes themselves). */
  function manifestOf (bytes: Uint8Array, prefixOf = bytes): Manifest {
    const digests = hashBlocks(prefixOf)
    const blocks = bytes.length / BLOCK_SIZE
    const prefixes = new Uint8Array(blocks * BLOCK_PREFIX_BYTES)
    for (let b = 0; b < blocks; b++) prefixes.set(digests.subarray(b * DIGEST_BYTES, b * DIGEST_BYTES + BLOCK_PREFIX_BYTES), b * BLOCK_PREFIX_BYTES)
    const chunks = [{ offset: 0, length: bytes.length, firstBlock: 0, digest: hashBytes(bytes) }]
    return { name: 'a', version: 'v1', size: bytes.length, blockSize: BLOCK_SIZE, chunking: {} as Manifest['chunking'], chunks, blockPrefixes: prefixes }
  }
  const data = (seed: number): Uint8Array => Uint8Array.from({ length: 2 * BLOCK_SIZE }, (_, i) => (i * 31 + seed) % 251 + 1)

  it('fills the version\'s block digests from chunks true to the manifest', () => {
    const bytes = data(1)
    const digests = new Uint8Array(2 * DIGEST_BYTES)
    checkChunkBlocks(manifestOf(bytes), 0, bytes, digests)
    expect(digests).toEqual(hashBlocks(bytes))
  })

  it('refuses a chunk of the wrong length, a lying block prefix and an all-zero block', () => {
    const bytes = data(1)
    const out = new Uint8Array(2 * DIGEST_BYTES)
    expect(() => { checkChunkBlocks(manifestOf(bytes), 0, bytes.subarray(0, BLOCK_SIZE), out) }).toThrow(/is 8192 bytes in the manifest, 4096 stored/)
    expect(() => { checkChunkBlocks(manifestOf(bytes, data(2)), 0, bytes, out) }).toThrow(InvalidManifestError)
    const zero = data(1)
    zero.fill(0, BLOCK_SIZE)
    expect(() => { checkChunkBlocks(manifestOf(zero), 0, zero, out) }).toThrow(/block 1 is all zero/)
  })

  it('reuse is the percent of blocks whose digest the previous version has, 100 for no blocks', () => {
    const now = hashBlocks(data(1))
    const before = new Uint8Array([...now.subarray(0, DIGEST_BYTES), ...hashBlocks(data(3)).subarray(0, DIGEST_BYTES)])
    expect(reusedPercent(now, before, 2)).toBe(50)
    expect(reusedPercent(new Uint8Array(0), before, 0)).toBe(100)
  })
})

describe('config `images`', () => {
  it('is validated once, in the config, naming the setting', () => {
    expect(parseCoordinatorConfig({ images: { originZstd: { level: 9, windowLog: 0 }, deltaPackZstd: { windowLog: 27 }, batchStallMs: 100 } }).images)
      .toEqual({ originZstd: { level: 9, windowLog: 0 }, deltaPackZstd: { windowLog: 27 }, batchStallMs: 100 })
    for (const [images, why] of [
      [{ originZstd: { level: 23 } }, /images\.originZstd\.level/],
      [{ deltaPackZstd: { windowLog: 9 } }, /images\.deltaPackZstd\.windowLog: must be 0 \(zstd's default\) or an integer from 10 to 30/],
      [{ deltaPackZstd: { windowLog: 31 } }, /images\.deltaPackZstd\.windowLog/],
      [{ originZstd: { strategy: 1 } }, /images\.originZstd\.strategy: unknown field/],
      [{ buildDeltaPacks: 'yes' }, /images\.buildDeltaPacks/],
      [{ maxBatchesPerGroup: 0 }, /images\.maxBatchesPerGroup/],
      [{ batchStallMs: 99 }, /images\.batchStallMs/],
      [{ originLevel: 3 }, /images\.originLevel: unknown field/]
    ] as const) {
      expect(() => parseCoordinatorConfig({ images })).toThrow(why)
    }
  })
})
