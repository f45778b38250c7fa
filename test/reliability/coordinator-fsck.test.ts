/**
 * Promise: a bit flipped in a chunk stored on the coordinator is never served
 * (verify on read), `trimswarm coordinator fsck` finds it, repairs it from the
 * source image, and without a source marks the version incomplete so the
 * origin refuses it and never offers it as `latest`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { zstdDecompressSync } from 'node:zlib'
import { api } from '../../protocol/index.ts'
import { chunkCid, toHex } from '../../protocol/block-id.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { decodeManifest } from '../../protocol/manifest.ts'
import { decodeEnvelope } from '../../protocol/signed-manifest.ts'
import { BLOCKS_DIR } from '../../coordinator/constants.ts'
import { createDirectoryBlockStore } from '../../coordinator/directory-block-store.ts'
import { storedVersions, type StoredVersion } from '../../coordinator/image-service.ts'
import { openMetaDb } from '../../coordinator/meta-db.ts'
import { startImageHarness, type ImageHarness } from '../coordinator/image-harness.ts'
import { b3sumBytes, flipBit, makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { recordCounts } from './counts.ts'
import { cli } from '../helpers/cli-process.ts'


describe('coordinator fsck: a flipped bit is never served, found, repaired or marked', () => {
  let dir: TempDir
  let h: ImageHarness | undefined
  let dataDir: string
  let v1: TestImage
  let v2: TestImage
  /** A chunk of version 2 that version 1 does not hold, its index and the bytes it should have. */
  let victim: { cid: string, index: number, offset: number, length: number, path: string }
  let faults = 0
  let checks = 0

  const start = async (): Promise<ImageHarness> => { h = await startImageHarness(dataDir, { buildDeltaPacks: false }); return h }
  const stop = async (): Promise<void> => { await h?.close(); h = undefined }

  beforeAll(async () => {
    dir = await tempDir()
    dataDir = join(dir.path, 'coord')
    v1 = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 81 })
    v2 = await makeUpdatedImage(dir.path, v1, { name: 'v2', seed: 82 })
    const hh = await start()
    const tokenFile = join(dir.path, 'admin.token')
    await writeFile(tokenFile, hh.tokens.admin + '\n')
    for (const [img, version] of [[v1, '1'], [v2, '2']] as const) {
      const r = await cli(['publish', img.path, '--image', 'desk', '--version', version, '--coordinator', hh.url, '--token-file', tokenFile])
      expect(r.code, r.stderr).toBe(0)
    }
    await stop()
    // Pick a chunk only version 2 holds, so version 1 must stay whole.
    const db = await openMetaDb(dataDir)
    try {
      const byVersion = new Map<string, StoredVersion>()
      for await (const v of storedVersions(db)) byVersion.set(v.version, v)
      const old = new Set(byVersion.get('1')!.manifest.chunks.map(c => toHex(c.digest)))
      const index = byVersion.get('2')!.manifest.chunks.findIndex(c => !old.has(toHex(c.digest)))
      expect(index).toBeGreaterThanOrEqual(0)
      const c = byVersion.get('2')!.manifest.chunks[index]
      const store = await createDirectoryBlockStore({}, { path: join(dataDir, BLOCKS_DIR) })
      victim = { cid: chunkCid(c.digest).toString(), index, offset: c.offset, length: c.length, path: store.pathOf(chunkCid(c.digest)) }
    } finally {
      await db.close()
    }
    await start()
  })

  afterAll(async () => {
    await stop()
    await dir?.cleanup()
    await recordCounts('coordinator-fsck', {
      promise: 'a damaged stored chunk is never served; fsck finds it, repairs it from the source image, or marks the version incomplete',
      faultsInjected: faults,
      cases: checks,
      bytesLost: 0
    })
  })

  it('never serves the damaged chunk: the chunk GET fails, a block batch over it carries zeros (unavailable) for its blocks, no bad bytes', async () => {
    const hh = h!
    const goodChunk = await hh.fetch(api.routes.chunk('desk', '2', victim.cid), hh.tokens.desk)
    expect(goodChunk.status).toBe(200)
    const good = new Uint8Array(await goodChunk.arrayBuffer())
    expect(good.length).toBe(victim.length)

    // Flip one bit in the middle of the stored file while the coordinator runs.
    await flipBit(victim.path)
    faults++

    const res = await hh.fetch(api.routes.chunk('desk', '2', victim.cid), hh.tokens.desk)
    checks++
    expect(res.status).toBeGreaterThanOrEqual(400)
    const body = await res.json()
    expect(body.error.name).toBe('HashMismatchError')

    // The batch stream carries the block before it and marks the damaged chunk's blocks unavailable (all zeros).
    const firstBlock = await blockIndexOf(hh, victim.cid)
    const blocks = victim.length / BLOCK_SIZE
    const start = firstBlock > 0 ? firstBlock - 1 : firstBlock
    const batch = await hh.fetch(api.routes.blocks('desk', '2'), hh.tokens.desk, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ranges: [[start, firstBlock - start + blocks]] })
    })
    checks++
    expect(batch.status).toBe(200)
    const raw = new Uint8Array(zstdDecompressSync(new Uint8Array(await batch.arrayBuffer())))
    expect(raw.length).toBe((firstBlock - start + blocks) * BLOCK_SIZE)
    expect(raw.subarray((firstBlock - start) * BLOCK_SIZE).every(b => b === 0)).toBe(true)
    if (firstBlock > start) expect(raw.subarray(0, BLOCK_SIZE).some(b => b !== 0)).toBe(true)
    expect(hh.images.stats().corruptChunkReads).toBe(2)
  })

  it('refuses to run while the coordinator holds the data dir', async () => {
    const r = await cli(['coordinator', 'fsck', '--data', dataDir])
    checks++
    expect(r.code).toBe(75) // EX_TEMPFAIL: data dir in use (docs/CONFIGURATION.md)
    expect(r.stderr).toMatch(/in use by another running coordinator.*stop it/)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('finds the damage and, without a source, marks version 2 incomplete: refused (503), never latest', async () => {
    await stop()
    const r = await cli(['coordinator', 'fsck', '--data', dataDir, '--json'])
    checks++
    expect(r.code).toBe(1)
    const report = JSON.parse(r.stdout)
    expect(report.damaged.map((d: { cid: string }) => d.cid)).toEqual([victim.cid])
    expect(report.missing).toEqual([victim.cid])
    const byVersion = Object.fromEntries(report.versions.map((v: { version: string }) => [v.version, v]))
    expect(byVersion['1'].complete).toBe(true)
    expect(byVersion['2']).toMatchObject({ complete: false, missing: [victim.cid], markChanged: true })

    const hh = await start()
    const info = await hh.fetch(api.routes.versionInfo('desk', '2'), hh.tokens.desk)
    expect(info.status).toBe(503)
    expect((await info.json()).error.name).toBe('UnavailableError')
    expect((await hh.fetch(api.routes.version('desk', '2'), hh.tokens.desk)).status).toBe(503)
    expect((await hh.fetch(api.routes.chunk('desk', '2', victim.cid), hh.tokens.desk)).status).toBe(503)
    const latest = await (await hh.fetch(api.routes.versionInfo('desk', 'latest'), hh.tokens.desk)).json()
    expect(latest.version).toBe('1')
    // A second fsck without a source keeps the mark and changes nothing.
    await stop()
    const again = JSON.parse((await cli(['coordinator', 'fsck', '--data', dataDir, '--json'])).stdout)
    expect(again.damaged).toEqual([])
    expect(again.versions.find((v: { version: string }) => v.version === '2')).toMatchObject({ complete: false, markChanged: false })
    checks += 2
  })

  it('--repair-from the source image restores the chunk and serves version 2 again, byte for byte', async () => {
    await stop()
    // A wrong image first: nothing to restore from it, still incomplete.
    const wrong = await cli(['coordinator', 'fsck', '--data', dataDir, '--repair-from', v1.path, '--json'])
    expect(wrong.code).toBe(1)
    expect(JSON.parse(wrong.stdout).repaired).toEqual([])
    const bad = await cli(['coordinator', 'fsck', '--data', dataDir, '--repair-from', join(dir.path, 'no-such.img')])
    expect(bad.code).toBe(1)
    expect(bad.stderr).not.toMatch(/\n\s+at /)

    const r = await cli(['coordinator', 'fsck', '--data', dataDir, '--repair-from', v1.path, '--repair-from', v2.path])
    checks += 3
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/desk 2: complete \(unmarked: served again\)/)
    expect(r.stdout).toMatch(/1 repaired/)

    const hh = await start()
    const res = await hh.fetch(api.routes.chunk('desk', '2', victim.cid), hh.tokens.desk)
    expect(res.status).toBe(200)
    const bytes = new Uint8Array(await res.arrayBuffer())
    const fh = await open(v2.path, 'r')
    const want = Buffer.alloc(victim.length)
    await fh.read(want, 0, victim.length, victim.offset)
    await fh.close()
    expect(await b3sumBytes(bytes)).toBe(await b3sumBytes(want))
    const latest = await (await hh.fetch(api.routes.versionInfo('desk', 'latest'), hh.tokens.desk)).json()
    expect(latest.version).toBe('2')
  })
})

/** Index of the chunk's first block among version 2's non-zero blocks, read back from the data dir's manifest. */
async function blockIndexOf (h: ImageHarness, cid: string): Promise<number> {
  const env = new Uint8Array(await (await h.fetch(api.routes.version('desk', '2'), h.tokens.desk)).arrayBuffer())
  const m = decodeManifest(decodeEnvelope(env).manifest)
  const c = m.chunks.find(c => chunkCid(c.digest).toString() === cid)
  if (c == null) throw new Error('chunk not in manifest')
  return c.firstBlock
}
