import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { open, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { zstdDecompressSync } from 'node:zlib'
import { buildManifest, type BuiltManifest } from '../../chunker/build-manifest.ts'
import { chunkCidOf, hashBlocks } from '../../chunker/blake3.ts'
import { api } from '../../protocol/index.ts'
import { chunkCid, toHex } from '../../protocol/block-id.ts'
import { BLOCKS_DIR, DELTA_PACK_PIECE_BYTES, PACKS_DIR } from '../../coordinator/constants.ts'
import { BLOCK_SIZE, DIGEST_BYTES, MANIFEST_MEDIA_TYPE } from '../../protocol/constants.ts'
import { decodeDeltaPackHeader, indicesOfRanges } from '../../protocol/delta-pack.ts'
import { blockCount, createManifest, encodeManifest, type Manifest } from '../../protocol/manifest.ts'
import { importPublicKey, openSignedManifest } from '../../protocol/signed-manifest.ts'
import { openVersionPointer, VERSION_POINTER_MEDIA_TYPE } from '../../protocol/version-pointer.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage, type UpdatedImage } from '../helpers/images.ts'
import { startImageHarness, type HarnessTokens, type ImageHarness } from './image-harness.ts'

/** Bytes of non-zero block `index` of an image, read from the image file through the manifest's layout. */
async function imageBlocks (path: string, m: Manifest): Promise<Uint8Array[]> {
  const bytes = new Uint8Array(await readFile(path))
  const out: Uint8Array[] = []
  for (const c of m.chunks) {
    for (let off = c.offset; off < c.offset + c.length; off += BLOCK_SIZE) out.push(bytes.subarray(off, off + BLOCK_SIZE))
  }
  return out
}

function concat (parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

describe('images, origin and delta packs over HTTP', () => {
  let dir: TempDir
  let h: ImageHarness
  let v1: TestImage
  let v2: UpdatedImage
  let m1: BuiltManifest
  let m2: BuiltManifest
  let TOKENS: HarnessTokens

  beforeAll(async () => {
    dir = await tempDir()
    v1 = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 11 })
    v2 = await makeUpdatedImage(dir.path, v1, { name: 'v2', seed: 12 })
    m1 = await buildManifest(v1.path, { name: 'desk', version: '1' })
    m2 = await buildManifest(v2.path, { name: 'desk', version: '2' })
    h = await startImageHarness(join(dir.path, 'coord'))
    TOKENS = h.tokens
  })

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  const publisher = (): ReturnType<typeof createPublishClient> => createPublishClient({ coordinator: h.url, token: TOKENS.admin })

  it('publishes v1: uploads every distinct chunk, commits, and the envelope verifies against the coordinator key', async () => {
    const s = await publisher().publish(v1.path, { image: 'desk', version: '1' })
    const distinct = new Set(m1.manifest.chunks.map(c => chunkCid(c.digest).toString()))
    expect(s.chunks).toBe(m1.manifest.chunks.length)
    expect(s.chunksUploaded).toBe(distinct.size)
    expect(s.info.previous).toBeNull()
    expect(s.info.manifestCid).toBe(m1.cid.toString())

    const res = await h.fetch(api.routes.version('desk', '1'), TOKENS.desk)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe(MANIFEST_MEDIA_TYPE)
    const key = api.KeyResponse.parse(await (await fetch(h.url + api.routes.key)).json())
    const opened = await openSignedManifest(new Uint8Array(await res.arrayBuffer()), await importPublicKey(new Uint8Array(Buffer.from(key.publicKey, 'base64'))))
    expect(opened.manifestBytes).toEqual(m1.manifestBytes)

    const latest = await h.fetch(api.routes.version('desk', 'latest'), TOKENS.desk)
    expect(latest.headers.get('x-trimswarm-version')).toBe('1')
  })

  it('publishing the same image again uploads nothing', async () => {
    const s = await publisher().publish(v1.path, { image: 'desk', version: '1-again' })
    expect(s.chunksUploaded).toBe(0)
    expect(s.bytesUploaded).toBe(0)
    expect(s.info.previous).toBe('1')
    expect(s.info.reusedFromPreviousPercent).toBe(100)
  })

  it('publishing v2 uploads only the chunks no earlier version had', async () => {
    const before = new Set(m1.manifest.chunks.map(c => chunkCid(c.digest).toString()))
    const fresh = new Set(m2.manifest.chunks.map(c => chunkCid(c.digest).toString()).filter(c => !before.has(c)))
    expect(fresh.size).toBeGreaterThan(0)
    const s = await publisher().publish(v2.path, { image: 'desk', version: '2' })
    expect(s.chunksUploaded).toBe(fresh.size)
    expect(s.info.previous).toBe('1-again')
    expect(s.info.reusedFromPreviousPercent).toBeGreaterThan(10)
    expect(s.info.reusedFromPreviousPercent).toBeLessThan(100)
  })

  it('rejects a tampered upload (422) and does not store it', async () => {
    const bytes = new Uint8Array(BLOCK_SIZE * 2).fill(7)
    const cid = chunkCidOf(bytes).toString()
    const tampered = bytes.slice()
    tampered[5000] ^= 1
    const put = await h.fetch(api.routes.chunkUpload(cid), TOKENS.admin, { method: 'PUT', body: tampered })
    expect(put.status).toBe(422)
    expect((await put.json()).error.name).toBe('HashMismatchError')
    const missing = await h.fetch(api.routes.chunksMissing, TOKENS.admin, { method: 'POST', body: JSON.stringify({ cids: [cid] }) })
    expect((await missing.json()).missing).toEqual([cid])
    const ok = await h.fetch(api.routes.chunkUpload(cid), TOKENS.admin, { method: 'PUT', body: bytes })
    expect(ok.status).toBe(204)
    const big = await h.fetch(api.routes.chunkUpload(cid), TOKENS.admin, { method: 'PUT', body: new Uint8Array(1024 * BLOCK_SIZE + 1) })
    expect(big.status).toBe(413)
  })

  it('refuses a commit with a chunk missing (409) and shows no version', async () => {
    const lonely = new Uint8Array(BLOCK_SIZE).fill(0x5a)
    const digest = hashBlocks(lonely)
    const m = createManifest({
      name: 'desk',
      version: '3',
      size: BLOCK_SIZE * 4,
      chunking: m1.manifest.chunking,
      chunks: [{ offset: 0, length: BLOCK_SIZE, digest: chunkCidOf(lonely).multihash.digest }],
      blockPrefixes: digest.subarray(0, 8)
    })
    const res = await h.fetch(api.routes.versions('desk'), TOKENS.admin, { method: 'POST', body: encodeManifest(m) as BodyInit, headers: { 'content-type': 'application/cbor' } })
    expect(res.status).toBe(409)
    expect((await h.fetch(api.routes.versionInfo('desk', '3'), TOKENS.admin)).status).toBe(404)
    const list = api.VersionList.parse(await (await h.fetch(api.routes.versions('desk'), TOKENS.admin)).json())
    expect(list.versions.map(v => v.version)).toEqual(['1', '1-again', '2'])
  })

  it('refuses a duplicate version (409), a name mismatch and a lying block prefix (400)', async () => {
    const dup = await h.fetch(api.routes.versions('desk'), TOKENS.admin, { method: 'POST', body: m1.manifestBytes as BodyInit })
    expect(dup.status).toBe(409)
    const wrongName = await h.fetch(api.routes.versions('other'), TOKENS.admin, { method: 'POST', body: m1.manifestBytes as BodyInit })
    expect(wrongName.status).toBe(400)
    const prefixes = m1.manifest.blockPrefixes.slice()
    prefixes[0] ^= 0xff
    const liar = createManifest({ ...m1.manifest, version: '4', chunks: m1.manifest.chunks, blockPrefixes: prefixes })
    const res = await h.fetch(api.routes.versions('desk'), TOKENS.admin, { method: 'POST', body: encodeManifest(liar) as BodyInit })
    expect(res.status).toBe(400)
    expect((await res.json()).error.name).toBe('InvalidManifestError')
    expect((await h.fetch(api.routes.versionInfo('desk', '4'), TOKENS.admin)).status).toBe(404)
  })

  it('serves a block batch as one zstd stream of exactly the named blocks, in request order', async () => {
    const blocks = await imageBlocks(v2.path, m2.manifest)
    const n = blockCount(m2.manifest)
    const ranges: Array<[number, number]> = [[n - 3, 3], [0, 5], [Math.floor(n / 2), 40], [2, 1]]
    const res = await h.fetch(api.routes.blocks('desk', '2'), TOKENS.desk, { method: 'POST', body: JSON.stringify({ ranges }) })
    expect(res.status).toBe(200)
    const got = zstdDecompressSync(Buffer.from(await res.arrayBuffer()))
    const want = concat(ranges.flatMap(([s, c]) => blocks.slice(s, s + c)))
    expect(got.length).toBe(want.length)
    expect(new Uint8Array(got)).toEqual(want)

    const past = await h.fetch(api.routes.blocks('desk', '2'), TOKENS.desk, { method: 'POST', body: JSON.stringify({ ranges: [[n - 1, 2]] }) })
    expect(past.status).toBe(400)
    const extra = await h.fetch(api.routes.blocks('desk', '2'), TOKENS.desk, { method: 'POST', body: JSON.stringify({ ranges: [[0, 1]], more: 1 }) })
    expect(extra.status).toBe(400)
    expect(h.images.stats().bytesServed.blocks).toBeGreaterThan(0)
  })

  it('serves a single chunk of a version, and not a chunk the version lacks', async () => {
    const c = m2.manifest.chunks[3]
    const cid = chunkCid(c.digest).toString()
    const res = await h.fetch(api.routes.chunk('desk', '2', cid), TOKENS.desk)
    expect(res.status).toBe(200)
    const fh = await open(v2.path, 'r')
    const want = new Uint8Array(c.length)
    await fh.read(want, 0, c.length, c.offset)
    await fh.close()
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(want)
    const stray = chunkCidOf(new Uint8Array(BLOCK_SIZE * 2).fill(7)).toString()
    expect((await h.fetch(api.routes.chunk('desk', '2', stray), TOKENS.desk)).status).toBe(404)
  })

  it('builds the delta pack: it holds exactly the blocks v2 lacks from its previous version, and resumes by Range', async () => {
    await h.images.whenIdle()
    const info = api.VersionInfo.parse(await (await h.fetch(api.routes.versionInfo('desk', '2'), TOKENS.desk)).json())
    expect(info.deltaPackBytes).toBeGreaterThan(0)

    // Expected content, computed here from the image files: v2's blocks whose digest is not among v1's, first occurrence.
    const b1 = await imageBlocks(v1.path, m1.manifest)
    const b2 = await imageBlocks(v2.path, m2.manifest)
    const key = (b: Uint8Array): string => Buffer.from(hashBlocks(b)).toString('hex')
    const old = new Set(b1.map(key))
    const want: number[] = []
    for (const [i, b] of b2.entries()) {
      const k = key(b)
      if (!old.has(k)) { old.add(k); want.push(i) }
    }

    const res = await h.fetch(api.routes.delta('desk', '2', '1-again'), TOKENS.desk)
    expect(res.status).toBe(200)
    const etag = res.headers.get('etag')!
    const file = new Uint8Array(await res.arrayBuffer())
    expect(file.length).toBe(info.deltaPackBytes)
    const { header, bodyOffset } = decodeDeltaPackHeader(file)
    expect(header).toMatchObject({ name: 'desk', version: '2', from: '1-again', blocks: want.length })
    expect([...indicesOfRanges(header.ranges)]).toEqual(want)
    const body = new Uint8Array(zstdDecompressSync(file.subarray(bodyOffset)))
    expect(body).toEqual(concat(want.map(i => b2[i])))

    // Resume: the tail only, when the client's copy is this file.
    const cut = Math.floor(file.length / 3)
    const tail = await h.fetch(api.routes.delta('desk', '2', '1-again'), TOKENS.desk, { headers: { range: `bytes=${cut}-`, 'if-range': etag } })
    expect(tail.status).toBe(206)
    expect(tail.headers.get('content-range')).toBe(`bytes ${cut}-${file.length - 1}/${file.length}`)
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(file.subarray(cut))
    const stale = await h.fetch(api.routes.delta('desk', '2', '1-again'), TOKENS.desk, { headers: { range: `bytes=${cut}-`, 'if-range': '"other"' } })
    expect(stale.status).toBe(200)
    expect((await stale.arrayBuffer()).byteLength).toBe(file.length)
    const beyond = await h.fetch(api.routes.delta('desk', '2', '1-again'), TOKENS.desk, { headers: { range: `bytes=${file.length}-` } })
    expect(beyond.status).toBe(416)
    expect(beyond.headers.get('content-range')).toBe(`bytes */${file.length}`)

    // Only from the previous version; a pack of no blocks for the identical republish.
    expect((await h.fetch(api.routes.delta('desk', '2', '1'), TOKENS.desk)).status).toBe(404)
    const same = new Uint8Array(await (await h.fetch(api.routes.delta('desk', '1-again', '1'), TOKENS.desk)).arrayBuffer())
    const empty = decodeDeltaPackHeader(same)
    expect(empty.header.blocks).toBe(0)
    expect(zstdDecompressSync(same.subarray(empty.bodyOffset)).length).toBe(0)
  })

  it('keeps the delta pack in the block store, as pieces named by their content, and rebuilds a lost one on start', async () => {
    const before = new Uint8Array(await (await h.fetch(api.routes.delta('desk', '2', '1-again'), TOKENS.desk)).arrayBuffer())
    const pieceFiles: string[] = []
    for (let at = 0; at < before.length; at += DELTA_PACK_PIECE_BYTES) {
      const hex = toHex(chunkCidOf(before.subarray(at, at + DELTA_PACK_PIECE_BYTES)).multihash.digest)
      pieceFiles.push(join(dir.path, 'coord', BLOCKS_DIR, hex.slice(0, 2), hex.slice(2, 4), hex))
    }
    for (const f of pieceFiles) expect((await stat(f)).isFile()).toBe(true)
    await expect(stat(join(dir.path, 'coord', PACKS_DIR))).rejects.toThrow(/ENOENT/)
    for (const f of pieceFiles) await rm(f)
    await h.images.stop()
    await h.images.start()
    await h.images.whenIdle()
    for (const f of pieceFiles) expect((await stat(f)).isFile()).toBe(true)
    const after = new Uint8Array(await (await h.fetch(api.routes.delta('desk', '2', '1-again'), TOKENS.desk)).arrayBuffer())
    expect(after).toEqual(before)
  })

  it('retires a version: no longer latest, still fetchable by name', async () => {
    const r = await h.fetch(api.routes.retire('desk', '2'), TOKENS.admin, { method: 'POST' })
    expect(r.status).toBe(200)
    const list = api.VersionList.parse(await (await h.fetch(api.routes.versions('desk'), TOKENS.desk)).json())
    expect(list.latest).toBe('1-again')
    expect((await h.fetch(api.routes.version('desk', 'latest'), TOKENS.desk)).headers.get('x-trimswarm-version')).toBe('1-again')
    expect((await h.fetch(api.routes.version('desk', '2'), TOKENS.desk)).status).toBe(200)
    // the signed pointer follows: it names the newest version not retired, signed by the coordinator's key
    const pointer = await h.fetch(api.routes.latest('desk'), TOKENS.desk)
    expect(pointer.headers.get('content-type')).toBe(VERSION_POINTER_MEDIA_TYPE)
    const key = await importPublicKey(Uint8Array.from(Buffer.from(api.KeyResponse.parse(await (await h.fetch(api.routes.key, TOKENS.desk)).json()).publicKey, 'base64')))
    expect((await openVersionPointer(new Uint8Array(await pointer.arrayBuffer()), key, 'desk')).version).toBe('1-again')
    const images = api.ImageList.parse(await (await h.fetch(api.routes.images, TOKENS.desk)).json())
    expect(images.images).toEqual([{ name: 'desk', latest: '1-again', versions: 3 }])
    expect(api.ImageList.parse(await (await h.fetch(api.routes.images, TOKENS.other)).json()).images).toEqual([])
  })

  it('gives 403 on every image route to a caller whose policy lacks the image, and admin routes only to the admin', async () => {
    const cid = chunkCid(m2.manifest.chunks[0].digest).toString()
    const reads: Array<[string, RequestInit?]> = [
      [api.routes.versions('desk')],
      [api.routes.version('desk', '1')],
      [api.routes.version('desk', 'latest')],
      [api.routes.latest('desk')],
      [api.routes.versionInfo('desk', '1')],
      [api.routes.blocks('desk', '1'), { method: 'POST', body: JSON.stringify({ ranges: [[0, 1]] }) }],
      [api.routes.chunk('desk', '2', cid)],
      [api.routes.delta('desk', '2', '1-again')],
      [api.routes.versions('nonexistent')]
    ]
    for (const [path, init] of reads) {
      const res = await h.fetch(path, TOKENS.other, init)
      expect({ path, status: res.status }).toEqual({ path, status: 403 })
    }
    const admin: Array<[string, RequestInit]> = [
      [api.routes.chunksMissing, { method: 'POST', body: JSON.stringify({ cids: [cid] }) }],
      [api.routes.chunkUpload(cid), { method: 'PUT', body: new Uint8Array(BLOCK_SIZE) }],
      [api.routes.versions('desk'), { method: 'POST', body: m1.manifestBytes as BodyInit }],
      [api.routes.retire('desk', '1'), { method: 'POST' }]
    ]
    for (const [path, init] of admin) {
      const res = await h.fetch(path, TOKENS.desk, init)
      expect({ path, status: res.status }).toEqual({ path, status: 403 })
    }
    expect((await fetch(h.url + api.routes.versions('desk'))).status).toBe(401)
  })

  it('answers bad names and bodies with 400/413 and a JSON error', async () => {
    for (const bad of ['a%00b', 'x'.repeat(200), '..%2Fetc', '-leading', 'sp%20ace']) {
      const res = await h.fetch(`/v1/images/${bad}/versions`, TOKENS.admin)
      expect({ bad, status: res.status }).toEqual({ bad, status: 400 })
      expect((await res.json()).error.name).toBe('ValidationError')
    }
    const notJson = await h.fetch(api.routes.blocks('desk', '1'), TOKENS.desk, { method: 'POST', body: '{"ranges":' })
    expect(notJson.status).toBe(400)
    const garbage = await h.fetch(api.routes.versions('desk'), TOKENS.admin, { method: 'POST', body: new Uint8Array([1, 2, 3]) })
    expect(garbage.status).toBe(400)
    const huge = await h.fetch(api.routes.blocks('desk', '1'), TOKENS.desk, { method: 'POST', body: ' '.repeat(9 * 1024 * 1024) })
    expect(huge.status).toBe(413)
    expect(blockCount(m1.manifest) * DIGEST_BYTES).toBeGreaterThan(0)
  })
})

describe('block batch concurrency bound', () => {
  let dir: TempDir
  let h: ImageHarness

  beforeAll(async () => {
    dir = await tempDir()
    const img = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 31 })
    h = await startImageHarness(join(dir.path, 'coord'), { maxConcurrentBatches: 1, buildDeltaPacks: false })
    await createPublishClient({ coordinator: h.url, token: h.tokens.admin }).publish(img.path, { image: 'desk', version: '1' })
  })

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  it('queues a batch while the slots are taken, serves it when one frees, and drops a waiter whose client left', async () => {
    const first = await h.images.openBlockBatch('desk', '1', [[0, 8]])
    let secondOpened = false
    const second = h.images.openBlockBatch('desk', '1', [[0, 8]]).then(r => { secondOpened = true; return r })
    const gone = new AbortController()
    const third = h.images.openBlockBatch('desk', '1', [[0, 8]], { signal: gone.signal })
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(secondOpened).toBe(false)
    expect(h.images.stats().blockBatchesWaiting).toBe(2)
    gone.abort(new Error('client gone'))
    await expect(third).rejects.toThrow('client gone')
    // reading the first to its end frees its slot
    const one = new Uint8Array(await new Response(first.stream).arrayBuffer())
    const two = new Uint8Array(await new Response((await second).stream).arrayBuffer())
    expect(two).toEqual(one)
    expect(zstdDecompressSync(one).length).toBe(8 * BLOCK_SIZE)
    expect(h.images.stats().blockBatchesWaiting).toBe(0)
  })
})

describe('image service settings', () => {
  it('refuses bad `images` settings at start, naming the setting', async () => {
    const { createCoordinator } = await import('../../coordinator/coordinator.ts')
    const dir = await tempDir()
    try {
      for (const [images, why] of [
        [{ originZstd: { level: 40 } }, /originZstd.level/],
        [{ deltaPackZstd: { windowLog: 5 } }, /deltaPackZstd.windowLog/],
        [{ maxConcurrentBatches: 0 }, /maxConcurrentBatches/],
        [{ originLevel: 3 }, /images\.originLevel: unknown field/]
      ] as const) {
        const c = createCoordinator({ dataDir: join(dir.path, 'c'), listen: '127.0.0.1:0', logLevel: 'silent', config: { images } })
        await expect(c.start()).rejects.toThrow(why)
      }
    } finally {
      await dir.cleanup()
    }
  })
})
