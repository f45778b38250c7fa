/**
 * The sources that read runs of blocks, over a real sync context and partial
 * file: the two of an update (issue 21, update scenario), the older version at
 * the output (self-seed) and the origin's delta pack (from a real coordinator),
 * and the host index's reads of host files (the trim). A chunk that comes all in
 * one read or one decoded piece is checked once against its full digest
 * (offerChunkBlocks) instead of block by block; what the sources read is still
 * never trusted.
 */
import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout } from 'node:timers/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import type { Manifest } from '../../protocol/manifest.ts'
import type { BlockSource, SyncContext } from '../../peer-agent/block-source.ts'
import { createImageSync } from '../../peer-agent/image-sync.ts'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { createDeltaPackSource, deltaPackBlocks, packIndices } from '../../peer-agent/delta-pack-source.ts'
import { silentLogger } from '../../peer-agent/interface.ts'
import { openPartialImage, type PartialImage } from '../../peer-agent/partial-file.ts'
import { createSelfSeedSource } from '../../peer-agent/self-seed-source.ts'
import { HOST_INDEX_SOURCE, readPlannedBlocks, type HostReadPlan } from '../../peer-agent/local-sources.ts'
import { createSyncContext } from '../../peer-agent/sync-context.ts'
import { createSyncLedger, type SyncLedger } from '../../peer-agent/sync-ledger.ts'
import { makeTestImage, makeUpdatedImage, tempDir, type TempDir } from '../helpers/images.ts'
import { fetchManifest } from '../helpers/hostile-peer.ts'
import { startTestCoordinator, type TestCoordinator } from './harness.ts'
import { block, manifestOf } from './sync-fixtures.ts'

/** What a source asked of the context: blocks offered one by one, chunks offered whole as blocks (and how many taken). */
interface Calls { blocks: number, chunks: number, chunksTaken: number }

let partial: PartialImage | undefined
afterEach(() => { partial?.close(); partial = undefined })

/** A real sync context over a fresh partial file in `dir`, and the calls its sources make. */
function contextFor (dir: string, manifest: Manifest): { ctx: SyncContext, ledger: SyncLedger, calls: Calls } {
  partial = openPartialImage(join(dir, '.out.img.trimswarm-partial'), undefined, manifest.size)
  const ledger = createSyncLedger(manifest)
  const inner = createSyncContext({ ledger, partial, logger: silentLogger, originBytes: () => 0 },
    { checkpointPath: join(dir, 'checkpoint.json'), manifestCid: 'cid', checkpointIntervalMs: 60_000 })
  const calls: Calls = { blocks: 0, chunks: 0, chunksTaken: 0 }
  const ctx: SyncContext = {
    ...inner,
    offerBlock: (index, bytes, kind, source) => { calls.blocks++; return inner.offerBlock(index, bytes, kind, source) },
    offerChunkBlocks: (chunk, bytes, kind, source) => {
      calls.chunks++
      const taken = inner.offerChunkBlocks(chunk, bytes, kind, source)
      if (taken) calls.chunksTaken++
      return taken
    }
  }
  return { ctx, ledger, calls }
}

/** The image file of a fixture manifest built from `chunks` (zeros in the gaps, as manifestOf lays them out). */
function imageOf (manifest: Manifest, chunks: Uint8Array[][]): Uint8Array {
  const image = new Uint8Array(manifest.size)
  chunks.forEach((blocks, c) => blocks.forEach((b, k) => image.set(b, manifest.chunks[c].offset + k * BLOCK_SIZE)))
  return image
}

describe('self-seed from the older version', () => {
  let tmp: TempDir
  beforeEach(async () => { tmp = await tempDir('trimswarm-self-seed-') })
  afterEach(async () => { await tmp.cleanup() })

  const [A, B, C, D, E, F, G] = [1, 2, 3, 4, 5, 6, 7].map(block)
  const oldChunks = [[A, B, C, D], [E, F]]
  const newChunks = [[A, B, C, D], [G, F], [E]]

  /** Runs the self-seed of `newChunks` from an old file holding `oldImage`. */
  async function selfSeed (oldImage: Uint8Array): Promise<ReturnType<typeof contextFor> & { image: Uint8Array }> {
    const old = { ...manifestOf(oldChunks), version: 'v1' }
    const next = { ...manifestOf(newChunks), version: 'v2' }
    const oldPath = join(tmp.path, 'out.img')
    writeFileSync(oldPath, oldImage)
    const run = contextFor(tmp.path, next)
    const fd = openSync(oldPath, 'r')
    try {
      await createSelfSeedSource({ fd, manifest: old }).fill(run.ctx, {})
    } finally {
      closeSync(fd)
    }
    partial!.flush()
    return { ...run, image: readFileSync(partial!.path) }
  }

  it('a chunk the update kept is read in one go and checked once against its digest; the other blocks one by one', async () => {
    const old = manifestOf(oldChunks)
    const { ledger, calls, image } = await selfSeed(imageOf(old, oldChunks))
    const next = manifestOf(newChunks)
    // chunk 0 (A B C D) whole, with one hash; F and E by their prefixes; G is not in the old version
    expect(calls.chunksTaken).toBe(1)
    expect(calls.blocks).toBe(2)
    expect(ledger.isVerified(0)).toBe(true)
    expect(ledger.isVerified(2)).toBe(true)
    expect(ledger.isVerified(1)).toBe(false)
    expect(ledger.isMissing(4)).toBe(true) // G
    expect(ledger.tally.bytes.local).toBe(6 * BLOCK_SIZE)
    const want = imageOf(next, newChunks)
    for (const c of [0, 2]) {
      const { offset, length } = next.chunks[c]
      expect(Buffer.from(image.subarray(offset, offset + length)).equals(Buffer.from(want.subarray(offset, offset + length)))).toBe(true)
    }
  })

  it('an old file changed by someone else (a local user): the chunk fails its digest, only the blocks that still match are used', async () => {
    const old = manifestOf(oldChunks)
    const changed = imageOf(old, oldChunks)
    changed[old.chunks[0].offset + BLOCK_SIZE + 100] ^= 0xff // B is no longer B
    const { ledger, calls, image } = await selfSeed(changed)
    expect(calls.chunksTaken).toBe(0)
    expect(ledger.tally.discardedBlocks).toBe(1)
    expect(ledger.isVerified(0)).toBe(false)
    expect(ledger.isMissing(1)).toBe(true) // B: asked of the next source
    expect(ledger.isMissing(0)).toBe(false) // A, C, D and the rest were placed from their own checks
    expect(ledger.isMissing(2)).toBe(false)
    // nothing unchecked was written: B's place is still zeros
    const at = manifestOf(newChunks).chunks[0].offset + BLOCK_SIZE
    expect(image.subarray(at, at + BLOCK_SIZE).every(b => b === 0)).toBe(true)
  })
})

describe('host index reads (the trim)', () => {
  let tmp: TempDir
  beforeEach(async () => { tmp = await tempDir('trimswarm-host-reads-') })
  afterEach(async () => { await tmp.cleanup() })

  const [A, B, C, D, E, F, G, X] = [1, 2, 3, 4, 5, 6, 7, 8].map(block)
  // the image: chunk 0 is A B C D, chunk 1 G F, chunk 2 E (blocks 0-6); G is in no host file
  const chunks = [[A, B, C, D], [G, F], [E]]

  /** A host file of `blocks` in a row. */
  function hostFile (name: string, blocks: Uint8Array[]): string {
    const path = join(tmp.path, name)
    writeFileSync(path, Buffer.concat(blocks))
    return path
  }

  /** Reads `plan` (the image block indices with their candidates, as the host index found them) into a fresh context. */
  async function read (plan: Array<[number, Array<[string, number]>]>): Promise<ReturnType<typeof contextFor> & { image: Uint8Array }> {
    const run = contextFor(tmp.path, manifestOf(chunks))
    const hostPlan: HostReadPlan = {
      blocks: plan.map(([b]) => b),
      found: plan.map(([, c]) => c.map(([path, k]) => ({ path, offset: k * BLOCK_SIZE, size: 8 * BLOCK_SIZE })))
    }
    await readPlannedBlocks(run.ctx, hostPlan, {})
    partial!.flush()
    return { ...run, image: readFileSync(partial!.path) }
  }

  it('a chunk whose blocks follow each other in a host file is checked once against its digest, and counts as host index blocks', async () => {
    // usr/a: X A B C D E F: A-D one run (chunk 0 whole), then F and E each a run of one
    const a = hostFile('a', [X, A, B, C, D, E, F])
    const { ledger, calls, image } = await read([[0, [[a, 1]]], [1, [[a, 2]]], [2, [[a, 3]]], [3, [[a, 4]]], [5, [[a, 6]]], [6, [[a, 5]]]])
    expect(calls.chunksTaken).toBe(1)
    expect(calls.blocks).toBe(2) // F and E, by their prefixes
    expect(ledger.tally.blocksBySource).toEqual({ [HOST_INDEX_SOURCE]: 6 })
    expect(ledger.tally.bytes.local).toBe(6 * BLOCK_SIZE)
    expect(ledger.isVerified(0)).toBe(true)
    expect(ledger.isVerified(2)).toBe(true)
    expect(ledger.isMissing(4)).toBe(true) // G
    const want = imageOf(manifestOf(chunks), chunks)
    const { offset, length } = manifestOf(chunks).chunks[0]
    expect(Buffer.from(image.subarray(offset, offset + length)).equals(Buffer.from(want.subarray(offset, offset + length)))).toBe(true)
  })

  it('a host file changed since indexing (a local user): the chunk fails its digest, its good blocks are kept, the bad one comes from its other candidate', async () => {
    const a = hostFile('a', [X, A, X, C, D])
    const b = hostFile('b', [B])
    const { ledger, calls, image } = await read([[0, [[a, 1]]], [1, [[a, 2], [b, 0]]], [2, [[a, 3]]], [3, [[a, 4]]]])
    expect(calls.chunksTaken).toBe(0)
    expect(ledger.tally.discardedBlocks).toBe(1) // X where B was
    expect(ledger.isVerified(0)).toBe(true) // B from b, then the chunk assembled and checked
    expect(ledger.tally.blocksBySource).toEqual({ [HOST_INDEX_SOURCE]: 4 })
    const at = manifestOf(chunks).chunks[0].offset + BLOCK_SIZE
    expect(Buffer.from(image.subarray(at, at + BLOCK_SIZE)).equals(Buffer.from(B))).toBe(true)
  })

  it('a host file cut short since indexing: the chunk is not taken whole from the zeros past its end', async () => {
    const a = hostFile('a', [X, A, B, C]) // D was at block 4
    const { ledger, calls } = await read([[0, [[a, 1]]], [1, [[a, 2]]], [2, [[a, 3]]], [3, [[a, 4]]]])
    expect(calls.chunks).toBe(0) // the run's last block was not read: no whole-chunk hash of zeros
    expect(ledger.isVerified(0)).toBe(false)
    expect(ledger.isMissing(3)).toBe(true)
    expect(ledger.tally.blocksBySource).toEqual({ [HOST_INDEX_SOURCE]: 3 })
  })
})

describe('delta pack', () => {
  let tmp: TempDir
  let coord: TestCoordinator
  let nextPath: string
  let m1: Manifest
  let m2: Manifest
  let token: string

  beforeAll(async () => {
    tmp = await tempDir('trimswarm-delta-apply-')
    const base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, files: 24, seed: 11 })
    const next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 12 })
    nextPath = next.path
    coord = await startTestCoordinator(tmp.path)
    await coord.publish('ws', 'v1', base.path)
    await coord.publish('ws', 'v2', next.path)
    token = (await readFile(coord.tokenFile, 'utf8')).trim()
    ;[m1, m2] = await Promise.all([fetchManifest(coord.url, token, 'ws', 'v1'), fetchManifest(coord.url, token, 'ws', 'v2')])
  })

  /** The coordinator's answer to a request the proxy forwarded. */
  interface Upstream { status: number, headers: Record<string, string>, body: Uint8Array }

  /**
   * Applies the v1 -> v2 delta pack into `ctx` through a proxy in front of the coordinator: each request goes on with
   * its authorization and `forward` headers, the answer keeps its `keep` headers; `answer` answers the n-th delta pack
   * request (1-based) itself, or returns false to pass it on. Returns the Range header of each delta pack request.
   */
  async function applyPackThrough (ctx: SyncContext, init: {
    dir: string
    forward: string[]
    keep: string[]
    retry?: { attempts: number, baseMs: number, maxMs: number }
    answer: (n: number, res: ServerResponse, up: Upstream) => Promise<boolean>
  }): Promise<Array<string | undefined>> {
    const asked: Array<string | undefined> = []
    const proxy = createServer((req, res) => {
      const delta = /\/delta\//.test(req.url ?? '')
      if (delta) asked.push(req.headers.range)
      const headers: Record<string, string> = {}
      for (const k of ['authorization', ...init.forward]) if (typeof req.headers[k] === 'string') headers[k] = req.headers[k]
      fetch(coord.url + (req.url ?? ''), { method: req.method, headers }).then(async (up) => {
        const body = new Uint8Array(await up.arrayBuffer())
        const out: Record<string, string> = {}
        up.headers.forEach((v, k) => { if (init.keep.includes(k)) out[k] = v })
        if (delta && await init.answer(asked.length, res, { status: up.status, headers: out, body })) return
        res.writeHead(up.status, out)
        res.end(body)
      }).catch(() => res.destroy())
    })
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
      const client = createCoordinatorClient({ logger: silentLogger }, { url, auth: { token }, ...(init.retry != null ? { retry: init.retry } : {}) })
      const pack = createDeltaPackSource({ client, logger: silentLogger }, { image: 'ws', version: 'v2', from: m1, path: join(init.dir, 'v1-v2.pack') })
      await pack.fill(ctx, {})
    } finally {
      await new Promise(resolve => proxy.close(resolve))
    }
    return asked
  }

  /** Sends two thirds of `up`'s body with `status`, pauses for the apply to use them, then drops the connection. */
  async function dropAfterTwoThirds (res: ServerResponse, status: number, up: Upstream): Promise<boolean> {
    res.writeHead(status, { ...up.headers, 'content-length': String(up.body.length) })
    res.write(up.body.subarray(0, Math.floor(up.body.length * 2 / 3)))
    await setTimeout(500)
    res.destroy()
    return true
  }
  afterAll(async () => {
    await coord?.stop()
    await tmp?.cleanup()
  })

  it('is decoded in pieces and a chunk all in one piece is checked once against its digest; every pack block lands verified', async () => {
    const { ctx, ledger, calls } = contextFor(tmp.path, m2)
    const client = createCoordinatorClient({ logger: silentLogger }, { url: coord.url, auth: { token } })
    const pack = createDeltaPackSource({ client, logger: silentLogger }, { image: 'ws', version: 'v2', from: m1, path: join(tmp.path, 'data', 'v1-v2.pack') })
    await pack.fill(ctx, {})
    expect(pack.used()).toBe(true)
    const blocks = deltaPackBlocks(m2.blockPrefixes, m1.blockPrefixes)
    expect(blocks.length).toBeGreaterThan(50)
    for (const b of blocks) expect(ctx.isMissing(b)).toBe(false)
    expect(ledger.tally.discardedBlocks).toBe(0)
    // chunks the pack holds whole came as such: fewer calls than blocks (one per block before)
    expect(calls.chunksTaken).toBeGreaterThan(0)
    expect(calls.blocks + calls.chunksTaken).toBeLessThan(blocks.length)
    // and the chunks it completed hold the new version's bytes
    partial!.flush()
    const written = readFileSync(partial!.path)
    const want = readFileSync(nextPath)
    let verified = 0
    for (let c = 0; c < m2.chunks.length; c++) {
      if (!ledger.isVerified(c)) continue
      verified++
      const { offset, length } = m2.chunks[c]
      expect(Buffer.compare(written.subarray(offset, offset + length), want.subarray(offset, offset + length))).toBe(0)
    }
    expect(verified).toBeGreaterThan(0)
  })

  it('is applied while it downloads: blocks are in place before its last byte has arrived', async () => {
    const { ctx, calls } = contextFor(tmp.path, m2)
    const missingAtStart = ctx.missingCount()
    let placedDuringPause = -1
    // a proxy that sends the pack's first half, waits, then the rest (what a slow link does)
    await applyPackThrough(ctx, {
      dir: join(tmp.path, 'data2'),
      forward: ['range', 'if-range'],
      keep: ['etag', 'content-type', 'content-range'],
      answer: async (_n, res, up) => {
        res.writeHead(up.status, up.headers)
        const half = Math.floor(up.body.length / 2)
        res.write(up.body.subarray(0, half))
        await setTimeout(1500)
        placedDuringPause = missingAtStart - ctx.missingCount()
        res.end(up.body.subarray(half))
        return true
      }
    })
    expect(placedDuringPause).toBeGreaterThan(0)
    for (const b of deltaPackBlocks(m2.blockPrefixes, m1.blockPrefixes)) expect(ctx.isMissing(b)).toBe(false)
    expect(calls.chunksTaken).toBeGreaterThan(0)
  })

  for (const resume of [true, false]) {
    it(`a download that breaks mid-pack is ${resume ? 'resumed (Range) under the apply' : 'started afresh (no Range) and the apply starts over'}: every pack block lands verified`, async () => {
      const { ctx, ledger } = contextFor(tmp.path, m2)
      // the first pack request: two thirds of the body, a pause for the apply to use them, then the connection drops
      const asked = await applyPackThrough(ctx, {
        dir: join(tmp.path, `data-${String(resume)}`),
        forward: resume ? ['range', 'if-range'] : [],
        keep: ['etag', 'content-type', 'content-range'],
        retry: { attempts: 3, baseMs: 20, maxMs: 50 },
        answer: async (n, res, up) => n === 1 && await dropAfterTwoThirds(res, up.status, up)
      })
      expect(asked.length).toBe(2)
      expect(asked[1] != null).toBe(true) // the client asked to resume; without Range the proxy answered the whole pack again
      for (const b of deltaPackBlocks(m2.blockPrefixes, m1.blockPrefixes)) expect(ctx.isMissing(b)).toBe(false)
      expect(ledger.tally.discardedBlocks).toBe(0)
    })
  }

  it('a resumed download answered 206 from another byte than asked (a broken cache) is started afresh, not appended', async () => {
    const { ctx, ledger } = contextFor(tmp.path, m2)
    const asked = await applyPackThrough(ctx, {
      dir: join(tmp.path, 'data-wrong-range'),
      forward: [],
      keep: ['etag', 'content-type'],
      retry: { attempts: 4, baseMs: 20, maxMs: 50 },
      answer: async (n, res, up) => {
        if (n === 1) return await dropAfterTwoThirds(res, 200, up)
        if (n > 2) return false
        // the resume: the whole pack again, but as a 206 that claims to start at byte 0
        res.writeHead(206, { ...up.headers, 'content-range': `bytes 0-${up.body.length - 1}/${up.body.length}` })
        res.end(up.body)
        return true
      }
    })
    expect(asked.length).toBe(3)
    expect(asked[1] != null).toBe(true)
    expect(asked[2]).toBeUndefined() // the third asks for the whole pack
    for (const b of deltaPackBlocks(m2.blockPrefixes, m1.blockPrefixes)) expect(ctx.isMissing(b)).toBe(false)
    expect(ledger.tally.discardedBlocks).toBe(0)
  })

  it('the LAN peers source is prepared (joins, waits for the site) before the self-seed runs, and filled after it', async () => {
    const client = createCoordinatorClient({ logger: silentLogger }, { url: coord.url, auth: { token } })
    const events: string[] = []
    const peers: BlockSource = {
      name: 'peers',
      kind: 'peers',
      prepare: () => { events.push('peers prepared') },
      fill: async () => { events.push('peers filled') }
    }
    const sync = createImageSync({
      client,
      logger: silentLogger,
      extraSources: (m, info) => m.version === 'v2' && info.fromVersion === 'v1' ? [peers] : [],
      onProgress: (p) => { if (events.at(-1) !== `phase ${p.phase}`) events.push(`phase ${p.phase}`) }
    }, { dataDir: join(tmp.path, 'prep-data') })
    const out = join(tmp.path, 'prep', 'ws.img')
    await sync.sync({ image: 'ws', version: 'v1', out })
    events.length = 0
    const s = await sync.sync({ image: 'ws', version: 'v2', out })
    expect(s.fromVersion).toBe('v1')
    const at = (e: string): number => events.indexOf(e)
    expect(at('peers prepared')).toBeGreaterThanOrEqual(0)
    expect(at('peers prepared')).toBeLessThan(at('phase older version v1'))
    expect(at('phase older version v1')).toBeLessThan(at('peers filled'))
    expect(readFileSync(out).equals(readFileSync(nextPath))).toBe(true)
  })

  it('a header naming blocks past the manifest is refused before anything is allocated for them', () => {
    expect(() => packIndices([[0, 2], [10, 2 ** 31]], 2 ** 31 + 2, 1000)).toThrow(/past the 1000 of the manifest/)
    expect(() => packIndices([[998, 3]], 3, 1000)).toThrow(/past the 1000/)
    expect([...packIndices([[0, 2], [5, 3]], 5, 1000)]).toEqual([0, 1, 5, 6, 7])
  })
})
