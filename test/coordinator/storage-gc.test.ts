/**
 * Storage gc (coordinator/storage-gc.ts) on a real coordinator: it deletes
 * exactly the chunks and delta packs no live version uses, never a live one,
 * is re-runnable, reports what it freed, and keeps the chunks of a publish in
 * progress (grace period by stored time, refreshed when a publish finds a
 * chunk present; claims while a run is deleting).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readdir, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { api } from '../../protocol/index.ts'
import type { GcReport, AdminImageList } from '../../protocol/api-admin.ts'
import { chunkCid, parseChunkCid, toHex } from '../../protocol/block-id.ts'
import { decodeManifest } from '../../protocol/manifest.ts'
import { decodeEnvelope } from '../../protocol/signed-manifest.ts'
import { chunkVerdict } from '../../coordinator/storage-gc.ts'
import { BLOCKS_DIR, DELTA_PACK_PIECE_BYTES } from '../../coordinator/constants.ts'
import { chunkCidOf } from '../../chunker/blake3.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startImageHarness, type ImageHarness } from './image-harness.ts'

/** CID strings of a version's chunks. */
async function chunksOf (h: ImageHarness, image: string, version: string): Promise<Set<string>> {
  const { bytes } = await h.images.getEnvelope(image, version)
  return new Set(decodeManifest(decodeEnvelope(bytes).manifest).chunks.map(c => chunkCid(c.digest).toString()))
}

/** Every chunk file in the directory store, as hex names. */
async function storedHex (dataDir: string): Promise<Set<string>> {
  const out = new Set<string>()
  const root = join(dataDir, BLOCKS_DIR)
  for (const a of await readdir(root)) for (const b of await readdir(join(root, a))) for (const f of await readdir(join(root, a, b))) out.add(f)
  return out
}

/** The store names a chunk file by the hex of its BLAKE3 digest. */
function hexSet (cids: Iterable<string>): Set<string> {
  const out = new Set<string>()
  for (const c of cids) out.add(toHex(parseChunkCid(c).multihash.digest))
  return out
}

const union = <T>(...sets: Array<Set<T>>): Set<T> => new Set(sets.flatMap(s => [...s]))
const minus = <T>(a: Set<T>, b: Set<T>): Set<T> => new Set([...a].filter(x => !b.has(x)))

async function gc (h: ImageHarness, dryRun = false): Promise<GcReport> {
  const r = await h.fetch(api.routes.gc, h.tokens.admin, { method: 'POST', body: JSON.stringify({ dryRun }), headers: { 'content-type': 'application/json' } })
  expect(r.status).toBe(200)
  return await r.json() as GcReport
}

async function retire (h: ImageHarness, image: string, version: string): Promise<void> {
  const r = await h.fetch(api.routes.retire(image, version), h.tokens.admin, { method: 'POST' })
  expect(r.status).toBe(200)
}

/** A delta pack's bytes, as served. */
async function packBytes (h: ImageHarness, version: string, from: string): Promise<Uint8Array> {
  const r = await h.fetch(api.routes.delta('desk', version, from), h.tokens.desk)
  expect(r.status).toBe(200)
  return new Uint8Array(await r.arrayBuffer())
}

/** The names (hex) of a pack's stored pieces: each piece is stored under the BLAKE3 of its bytes. */
function pieceHex (pack: Uint8Array): Set<string> {
  const out = new Set<string>()
  for (let at = 0; at < pack.length; at += DELTA_PACK_PIECE_BYTES) out.add(toHex(chunkCidOf(pack.subarray(at, at + DELTA_PACK_PIECE_BYTES)).multihash.digest))
  return out
}

async function bytesOfHex (dataDir: string, hex: Iterable<string>): Promise<number> {
  let n = 0
  for (const x of hex) n += (await stat(join(dataDir, BLOCKS_DIR, x.slice(0, 2), x.slice(2, 4), x))).size
  return n
}

describe('chunkVerdict', () => {
  it('keeps live, claimed and young chunks; deletes only old unclaimed unused ones', () => {
    const ctx = { live: new Set(['a']), claimed: (c: string) => c === 'b', cutoff: 1000 }
    expect(chunkVerdict('a', 0, ctx)).toBe('live')
    expect(chunkVerdict('b', 0, ctx)).toBe('kept')
    expect(chunkVerdict('c', 1001, ctx)).toBe('kept')
    expect(chunkVerdict('c', undefined, ctx)).toBe('kept')
    expect(chunkVerdict('c', 1000, ctx)).toBe('delete')
  })
})

describe('storage gc', () => {
  let dir: TempDir
  let imgs: TestImage[]

  beforeAll(async () => {
    dir = await tempDir()
    const a = await makeTestImage(dir.path, { name: 'a', sizeMiB: 8, seed: 61 })
    const b = await makeUpdatedImage(dir.path, a, { name: 'b', seed: 62 })
    const c = await makeUpdatedImage(dir.path, b, { name: 'c', seed: 63 })
    imgs = [a, b, c]
  })
  afterAll(async () => { await dir?.cleanup() })

  let h: ImageHarness | undefined
  afterEach(async () => { await h?.close(); h = undefined })

  const publish = async (hh: ImageHarness, img: TestImage, version: string, image = 'desk'): Promise<void> => {
    await createPublishClient({ coordinator: hh.url, token: hh.tokens.admin }).publish(img.path, { image, version })
  }

  it('frees exactly the chunks and delta packs of retired versions that no live version shares, reports them, and is re-runnable', async () => {
    h = await startImageHarness(join(dir.path, 'c1'), {}, { segments: { build: false }, storageGc: { intervalSeconds: 0, graceSeconds: 0 } })
    for (const [i, img] of imgs.entries()) await publish(h, img, String(i + 1))
    await h.images.whenIdle()
    const v = [await chunksOf(h, 'desk', '1'), await chunksOf(h, 'desk', '2'), await chunksOf(h, 'desk', '3')]
    // the delta packs of 2 (from 1) and 3 (from 2) are stored beside the chunks, as pieces named by their content
    const [pack2, pack3] = [await packBytes(h, '2', '1'), await packBytes(h, '3', '2')]
    const [pieces2, pieces3] = [pieceHex(pack2), pieceHex(pack3)]
    expect(await storedHex(h.dataDir)).toEqual(union(hexSet(union(...v)), pieces2, pieces3))
    expect(minus(v[0], union(v[1], v[2])).size).toBeGreaterThan(0)

    // nothing retired: nothing to free
    const none = await gc(h)
    expect(none.chunks).toMatchObject({ deleted: 0, deletedBytes: 0, kept: 0, scanned: union(...v).size + pieces2.size + pieces3.size })

    await retire(h, 'desk', '1')
    const gone1 = hexSet(minus(v[0], union(v[1], v[2])))
    const dry = await gc(h, true)
    expect(dry).toMatchObject({ dryRun: true, versionsCollected: 1, chunks: { deleted: gone1.size, deletedBytes: await bytesOfHex(h.dataDir, gone1) } })
    expect(await storedHex(h.dataDir)).toEqual(union(hexSet(union(...v)), pieces2, pieces3)) // a dry run deletes nothing

    const run1 = await gc(h)
    expect(run1).toMatchObject({ dryRun: false, versionsCollected: 1, chunks: { deleted: gone1.size, deletedBytes: dry.chunks.deletedBytes, live: union(v[1], v[2]).size + pieces2.size + pieces3.size, kept: 0 }, packs: { deleted: 0 } })
    expect(await storedHex(h.dataDir)).toEqual(union(hexSet(union(v[1], v[2])), pieces2, pieces3))
    // the collected version is no longer served; the live ones are, chunk by chunk
    expect((await h.fetch(api.routes.version('desk', '1'), h.tokens.desk)).status).toBe(404)
    for (const cid of v[1]) expect((await h.fetch(api.routes.chunk('desk', '2', cid), h.tokens.desk)).status).toBe(200)
    const list = await (await h.fetch(api.routes.adminImages, h.tokens.admin)).json() as AdminImageList
    expect(list.images[0].versions.map(x => [x.version, x.state, x.latest])).toEqual([['1', 'collected', false], ['2', 'live', false], ['3', 'live', true]])

    // retiring 2: its chunks not in 3 go, and so does its delta pack (from 1); the pack of 3 (from 2) stays
    await retire(h, 'desk', '2')
    const run2 = await gc(h)
    expect(run2).toMatchObject({ versionsCollected: 1, chunks: { deleted: minus(v[1], v[2]).size }, packs: { deleted: 1, deletedBytes: pack2.length } })
    expect(await packBytes(h, '3', '2')).toEqual(pack3)
    expect(await storedHex(h.dataDir)).toEqual(union(hexSet(v[2]), pieces3))

    // re-runnable: nothing left to do
    const again = await gc(h)
    expect(again).toMatchObject({ versionsCollected: 0, chunks: { deleted: 0, live: v[2].size + pieces3.size }, packs: { deleted: 0 } })
  })

  it('keeps unused chunks younger than the grace period (a publish in progress has uploaded them but not committed)', async () => {
    h = await startImageHarness(join(dir.path, 'c2'), {}, { segments: { build: false }, storageGc: { intervalSeconds: 0, graceSeconds: 3600 } })
    await publish(h, imgs[0], '1')
    await retire(h, 'desk', '1')
    const v1 = await chunksOf(h, 'desk', '1')
    const r = await gc(h)
    expect(r.chunks).toMatchObject({ deleted: 0, kept: v1.size })
    expect(await storedHex(h.dataDir)).toEqual(hexSet(v1))
    // once older than the grace period, they go
    const old = new Date(Date.now() - 7200_000)
    for (const x of hexSet(v1)) await utimes(join(h.dataDir, BLOCKS_DIR, x.slice(0, 2), x.slice(2, 4), x), old, old)
    expect((await gc(h)).chunks).toMatchObject({ deleted: v1.size, kept: 0 })
    expect((await storedHex(h.dataDir)).size).toBe(0)
  })

  it('a publish that re-uses old unused chunks while gc runs over and over commits whole, and gc never deletes its chunks', async () => {
    h = await startImageHarness(join(dir.path, 'c3'), {}, { segments: { build: false }, storageGc: { intervalSeconds: 0, graceSeconds: 3600 } })
    await publish(h, imgs[0], '1')
    await retire(h, 'desk', '1')
    const v1 = await chunksOf(h, 'desk', '1')
    // every chunk of the retired version is old: the next gc would take them all
    const old = new Date(Date.now() - 7200_000)
    for (const x of hexSet(v1)) await utimes(join(h.dataDir, BLOCKS_DIR, x.slice(0, 2), x.slice(2, 4), x), old, old)
    // a new image whose content is version 1's: its publish finds every chunk already stored
    const hh = h
    let stop = false
    let runs = 0
    const loop = (async () => {
      while (!stop) {
        await gc(hh)
        runs++
      }
    })()
    try {
      await publish(hh, imgs[0], '1', 'desk2')
    } finally {
      stop = true
      await loop
    }
    expect(runs).toBeGreaterThan(0)
    const desk2 = await chunksOf(hh, 'desk2', '1')
    expect(desk2).toEqual(v1)
    const final = await gc(hh)
    expect(final.chunks).toMatchObject({ deleted: 0, live: v1.size })
    expect(await storedHex(hh.dataDir)).toEqual(hexSet(v1))
  })

  it('refuses a gc body with unknown fields or without dryRun (400); a machine token gets 403 from gc and the admin image list', async () => {
    h = await startImageHarness(join(dir.path, 'c4'), {}, { segments: { build: false }, storageGc: { intervalSeconds: 0, graceSeconds: 0 } })
    for (const body of ['{}', JSON.stringify({ dryRun: true, force: 1 }), JSON.stringify({ dryRun: 'no' })]) {
      expect((await h.fetch(api.routes.gc, h.tokens.admin, { method: 'POST', body, headers: { 'content-type': 'application/json' } })).status).toBe(400)
    }
    expect((await h.fetch(api.routes.gc, h.tokens.desk, { method: 'POST', body: '{"dryRun":false}', headers: { 'content-type': 'application/json' } })).status).toBe(403)
    expect((await h.fetch(api.routes.adminImages, h.tokens.desk)).status).toBe(403)
  })
})
