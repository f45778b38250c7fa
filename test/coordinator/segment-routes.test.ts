/**
 * Compressed segments on the coordinator (issue 19): the builder's frames
 * decode to the version's distinct blocks, the table and segment routes carry
 * strong validators (ETag, If-None-Match -> 304, Range / If-Range -> 206 / 416),
 * policy comes first (403), and storage gc keeps the segments of live versions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { zstdDecompressSync } from 'node:zlib'
import { buildManifest, type BuiltManifest } from '../../chunker/build-manifest.ts'
import { chunkCidOf } from '../../chunker/blake3.ts'
import { api } from '../../protocol/index.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { distinctBlocks, SegmentTable, segmentRoutes, segmentsOf } from '../../protocol/segments.ts'
import { PACE_MIN_RATE, PACE_RATE_HEADER, PACE_SESSION_HEADER } from '../../protocol/pace.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startImageHarness, type ImageHarness } from './image-harness.ts'

const SEGMENT_BLOCKS = 32

describe('segments over HTTP', () => {
  let dir: TempDir
  let h: ImageHarness
  let img: TestImage
  let built: BuiltManifest
  let table: SegmentTable

  beforeAll(async () => {
    dir = await tempDir()
    img = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 31 })
    built = await buildManifest(img.path, { name: 'desk', version: '1' })
    h = await startImageHarness(join(dir.path, 'coord'), {}, { segments: { zstdLevel: 3, segmentBlocks: SEGMENT_BLOCKS }, storageGc: { intervalSeconds: 0, graceSeconds: 0 } })
    await createPublishClient({ coordinator: h.url, token: h.tokens.admin }).publish(img.path, { image: 'desk', version: '1' })
    // built in the background after the commit
    for (let i = 0; i < 200; i++) {
      const res = await h.fetch(segmentRoutes.table('desk', '1'), h.tokens.desk)
      if (res.status === 200) { table = SegmentTable.parse(await res.json()); break }
      await res.arrayBuffer()
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  })

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  it('the table lists the manifest\'s distinct blocks in segments of the configured size, each named by the CID of its bytes', () => {
    expect(table).toBeDefined()
    const distinct = distinctBlocks(built.manifest.blockPrefixes)
    expect(table.manifestCid).toBe(built.cid.toString())
    expect(table.segmentBlocks).toBe(SEGMENT_BLOCKS)
    expect(table.segments.map(s => s.blocks)).toEqual(segmentsOf(distinct, SEGMENT_BLOCKS).map(s => s.length))
  })

  it('every segment is one zstd frame holding exactly its blocks\' bytes, in order, and hashes to its CID', async () => {
    const bytes = new Uint8Array(await readFile(img.path))
    const offsets: number[] = []
    for (const c of built.manifest.chunks) for (let off = c.offset; off < c.offset + c.length; off += BLOCK_SIZE) offsets.push(off)
    const segs = segmentsOf(distinctBlocks(built.manifest.blockPrefixes), SEGMENT_BLOCKS)
    for (const [i, entry] of table.segments.entries()) {
      const res = await h.fetch(segmentRoutes.segment('desk', '1', i), h.tokens.desk)
      expect(res.status).toBe(200)
      const frame = new Uint8Array(await res.arrayBuffer())
      expect(frame.length).toBe(entry.bytes)
      expect(chunkCidOf(frame).toString()).toBe(entry.cid)
      const raw = new Uint8Array(zstdDecompressSync(frame))
      const want = Buffer.concat([...segs[i]].map(b => bytes.subarray(offsets[b], offsets[b] + BLOCK_SIZE)))
      expect(Buffer.from(raw).equals(want)).toBe(true)
    }
  })

  it('ETag, If-None-Match (304), Range (206), a range past the end (416), If-Range with another tag (200, whole), cache headers', async () => {
    const path = segmentRoutes.segment('desk', '1', 0)
    const whole = await h.fetch(path, h.tokens.desk)
    const body = new Uint8Array(await whole.arrayBuffer())
    const etag = whole.headers.get('etag')!
    expect(etag).toBe(`"${table.segments[0].cid}"`)
    expect(whole.headers.get('accept-ranges')).toBe('bytes')
    expect(whole.headers.get('cache-control')).toBe('private, max-age=31536000, immutable')

    const nm = await h.fetch(path, h.tokens.desk, { headers: { 'if-none-match': etag } })
    expect(nm.status).toBe(304)
    expect((await nm.arrayBuffer()).byteLength).toBe(0)

    const part = await h.fetch(path, h.tokens.desk, { headers: { range: 'bytes=10-19' } })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe(`bytes 10-19/${body.length}`)
    expect(Buffer.from(await part.arrayBuffer()).equals(Buffer.from(body.subarray(10, 20)))).toBe(true)

    const tail = await h.fetch(path, h.tokens.desk, { headers: { range: `bytes=100-`, 'if-range': etag } })
    expect(tail.status).toBe(206)
    expect(Buffer.from(await tail.arrayBuffer()).equals(Buffer.from(body.subarray(100)))).toBe(true)

    const past = await h.fetch(path, h.tokens.desk, { headers: { range: `bytes=${body.length}-` } })
    expect(past.status).toBe(416)
    expect(past.headers.get('content-range')).toBe(`bytes */${body.length}`)
    await past.arrayBuffer()

    const stale = await h.fetch(path, h.tokens.desk, { headers: { range: 'bytes=10-19', 'if-range': '"bafkr4iother"' } })
    expect(stale.status).toBe(200)
    expect((await stale.arrayBuffer()).byteLength).toBe(body.length)

    const latest = await h.fetch(segmentRoutes.segment('desk', 'latest', 0), h.tokens.desk)
    expect(latest.headers.get('cache-control')).toBe('no-cache')
    await latest.arrayBuffer()

    const t = await h.fetch(segmentRoutes.table('desk', '1'), h.tokens.desk)
    const tag = t.headers.get('etag')!
    await t.arrayBuffer()
    const t304 = await h.fetch(segmentRoutes.table('desk', '1'), h.tokens.desk, { headers: { 'if-none-match': tag } })
    expect(t304.status).toBe(304)
  })

  it('paces segments that name a pace session (background mode), several at once sharing its one rate; bad pace headers get 400', async () => {
    const n = Math.min(3, table.segments.length)
    const paths = Array.from({ length: n }, (_, i) => segmentRoutes.segment('desk', '1', i))
    const plain = await Promise.all(paths.map(async p => new Uint8Array(await (await h.fetch(p, h.tokens.desk)).arrayBuffer())))
    const total = plain.reduce((a, b) => a + b.length, 0)
    // the session's rate makes all of them together take about 1.2 s: in parallel, each alone would take a third of that
    const rate = Math.max(PACE_MIN_RATE, Math.round(total / 1.2))
    const headers = { [PACE_SESSION_HEADER]: 'segment-session-0123456789', [PACE_RATE_HEADER]: String(rate) }
    const t0 = performance.now()
    const paced = await Promise.all(paths.map(async p => {
      const res = await h.fetch(p, h.tokens.desk, { headers })
      expect(res.status).toBe(200)
      expect(res.headers.get(PACE_RATE_HEADER)).toBe(String(rate))
      return new Uint8Array(await res.arrayBuffer())
    }))
    const seconds = (performance.now() - t0) / 1000
    expect(paced).toEqual(plain)
    expect(seconds).toBeGreaterThan(total / rate * 0.8)

    const start = Math.floor(plain[0].length / 2)
    const t1 = performance.now()
    const part = await h.fetch(paths[0], h.tokens.desk, { headers: { range: `bytes=${start}-`, [PACE_SESSION_HEADER]: 'segment-range-0123456789', [PACE_RATE_HEADER]: String(Math.max(PACE_MIN_RATE, Math.round((plain[0].length - start) / 1.0))) } })
    expect(part.status).toBe(206)
    expect(Buffer.from(await part.arrayBuffer()).equals(Buffer.from(plain[0].subarray(start)))).toBe(true)
    expect(performance.now() - t1).toBeGreaterThan(700)

    const bad = await h.fetch(paths[0], h.tokens.desk, { headers: { [PACE_SESSION_HEADER]: 'x', [PACE_RATE_HEADER]: '100' } })
    expect(bad.status).toBe(400)
    expect(JSON.stringify(await bad.json())).toMatch(/x-trimswarm-pace/)
  })

  it('policy first (403 for another group, even for an image that does not exist), then 404 past the last segment, 400 for a bad index', async () => {
    for (const path of [segmentRoutes.table('desk', '1'), segmentRoutes.segment('desk', '1', 0), segmentRoutes.segment('nosuch', '1', 0)]) {
      const res = await h.fetch(path, h.tokens.other)
      expect(res.status).toBe(403)
      await res.arrayBuffer()
    }
    const past = await h.fetch(segmentRoutes.segment('desk', '1', table.segments.length), h.tokens.desk)
    expect(past.status).toBe(404)
    expect((await past.json()).error.name).toBe('NotFoundError')
    for (const bad of ['abc', '-1', '01', '1e3', '99999999999']) {
      const res = await h.fetch(`/v1/images/desk/versions/1/segments/${bad}`, h.tokens.desk)
      expect(res.status, bad).toBe(400)
      expect((await res.json()).error.name).toBe('ValidationError')
    }
    const none = await h.fetch(segmentRoutes.table('desk', '9'), h.tokens.desk)
    expect(none.status).toBe(404)
    await none.arrayBuffer()
  })

  it('storage gc keeps the segments of a live version (they are not chunks of any manifest)', async () => {
    const gc = await h.fetch(api.routes.gc, h.tokens.admin, { method: 'POST', body: JSON.stringify({ dryRun: false }), headers: { 'content-type': 'application/json' } })
    expect(gc.status).toBe(200)
    const report = await gc.json()
    // the gc did delete what no version holds (the grace period is 0): it is the live set that keeps the segments
    expect(report.chunks.scanned).toBeGreaterThan(table.segments.length)
    for (let i = 0; i < table.segments.length; i++) {
      const res = await h.fetch(segmentRoutes.segment('desk', '1', i), h.tokens.desk)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
  })
})
