/**
 * Sender-side pacing over HTTP (protocol/pace.ts, coordinator/pace.ts): a real
 * coordinator serves block batches, chunks and delta packs at the rate the
 * pace headers name, POST /v1/pace changes it while a stream runs, and bad
 * pace input gets a 400 JSON error before any work is done.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPublishClient } from '../../client/publish-client.ts'
import { createPaceUpdater } from '../../peer-agent/background-pacer.ts'
import { api } from '../../protocol/index.ts'
import { chunkCid } from '../../protocol/block-id.ts'
import { blockCount } from '../../protocol/manifest.ts'
import { PACE_MIN_RATE, PACE_RATE_HEADER, PACE_ROUTE, PACE_SESSION_HEADER } from '../../protocol/pace.ts'
import { buildManifest, type BuiltManifest } from '../../chunker/build-manifest.ts'
import { makeTestImage, makeUpdatedImage, tempDir, type TempDir } from '../helpers/images.ts'
import { startImageHarness, type ImageHarness } from './image-harness.ts'

const SESSION = 'paced-session-0123456789'

/** Reads a response whole; its length and the seconds it took from `t0`. */
async function timedBody (res: Response, t0: number): Promise<{ bytes: number, seconds: number }> {
  const bytes = (await res.arrayBuffer()).byteLength
  return { bytes, seconds: (performance.now() - t0) / 1000 }
}

describe('sender-side pacing of origin streams', () => {
  let dir: TempDir
  let h: ImageHarness
  let m2: BuiltManifest

  beforeAll(async () => {
    dir = await tempDir()
    const v1 = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 31 })
    const v2 = await makeUpdatedImage(dir.path, v1, { name: 'v2', seed: 32 })
    m2 = await buildManifest(v2.path, { name: 'desk', version: '2' })
    h = await startImageHarness(join(dir.path, 'coord'))
    const pub = createPublishClient({ coordinator: h.url, token: h.tokens.admin })
    await pub.publish(v1.path, { image: 'desk', version: '1' })
    await pub.publish(v2.path, { image: 'desk', version: '2' })
    for (let i = 0; i < 100 && (await h.images.getInfo('desk', '2')).deltaPackBytes == null; i++) await new Promise(resolve => setTimeout(resolve, 100))
  }, 60_000)

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  const blocks = async (headers: Record<string, string>): Promise<Response> => {
    const n = blockCount(m2.manifest)
    return await h.fetch(api.routes.blocks('desk', '2'), h.tokens.desk, { method: 'POST', body: JSON.stringify({ ranges: [[0, n]] }), headers })
  }

  it('serves a block batch at the named rate, the same bytes as unpaced, and says the rate it applied', async () => {
    const plain = await blocks({})
    expect(plain.headers.get(PACE_RATE_HEADER)).toBeNull()
    const want = new Uint8Array(await plain.arrayBuffer())
    // a rate that makes the batch take about 1.5 s
    const rate = Math.max(PACE_MIN_RATE, Math.round(want.length / 1.5))
    const t0 = performance.now()
    const res = await blocks({ [PACE_SESSION_HEADER]: SESSION, [PACE_RATE_HEADER]: String(rate) })
    expect(res.status).toBe(200)
    expect(res.headers.get(PACE_RATE_HEADER)).toBe(String(rate))
    const got = new Uint8Array(await res.arrayBuffer())
    const seconds = (performance.now() - t0) / 1000
    expect(got).toEqual(want)
    expect(seconds).toBeGreaterThan(want.length / rate * 0.85)
  })

  it('changes a running stream\'s rate with POST /v1/pace (clamped), for its owner only', async () => {
    const plain = await blocks({})
    const size = (await plain.arrayBuffer()).byteLength
    // at the floor the batch would take minutes; the update lets it finish at once
    const t0 = performance.now()
    const res = await blocks({ [PACE_SESSION_HEADER]: SESSION, [PACE_RATE_HEADER]: '0' })
    expect(res.headers.get(PACE_RATE_HEADER)).toBe(String(PACE_MIN_RATE))
    const body = timedBody(res, t0)
    const update = createPaceUpdater(h.url, async () => `Bearer ${h.tokens.desk}`)
    // another principal naming the same session id changes nothing of ours
    expect(await createPaceUpdater(h.url, async () => `Bearer ${h.tokens.other}`)({ session: SESSION, rate: 1 }, {})).toBe(PACE_MIN_RATE)
    expect(await update({ session: SESSION, rate: 1e15 }, {})).toBe(1_250_000_000)
    const { bytes, seconds } = await body
    expect(bytes).toBe(size)
    expect(seconds).toBeLessThan(Math.min(10, size / PACE_MIN_RATE / 4))
  })

  it('paces a single chunk and a delta pack (with Range) too', async () => {
    const c = m2.manifest.chunks.reduce((a, b) => (b.length > a.length ? b : a))
    const headers = { [PACE_SESSION_HEADER]: 'chunk-session-0123456789', [PACE_RATE_HEADER]: String(Math.round(c.length / 1.2)) }
    let t0 = performance.now()
    const chunk = await h.fetch(api.routes.chunk('desk', '2', chunkCid(c.digest).toString()), h.tokens.desk, { headers })
    expect(chunk.status).toBe(200)
    const got = await timedBody(chunk, t0)
    expect(got.bytes).toBe(c.length)
    expect(got.seconds).toBeGreaterThan(0.8)

    const info = await h.images.getInfo('desk', '2')
    expect(info.deltaPackBytes).toBeGreaterThan(0)
    const start = Math.floor(info.deltaPackBytes! / 2)
    const length = info.deltaPackBytes! - start
    t0 = performance.now()
    const delta = await h.fetch(api.routes.delta('desk', '2', '1'), h.tokens.desk, { headers: { range: `bytes=${start}-`, [PACE_SESSION_HEADER]: 'delta-session-0123456789', [PACE_RATE_HEADER]: String(Math.max(PACE_MIN_RATE, Math.round(length / 1.2))) } })
    expect(delta.status).toBe(206)
    const d = await timedBody(delta, t0)
    expect(d.bytes).toBe(length)
    expect(d.seconds).toBeGreaterThan(Math.min(0.8, length / PACE_MIN_RATE * 0.8))
  })

  it('answers bad pace input with 400 and a JSON error, before opening a stream', async () => {
    const before = h.images.stats().blockBatches
    for (const headers of [{ [PACE_SESSION_HEADER]: SESSION } as Record<string, string>, { [PACE_SESSION_HEADER]: 'x', [PACE_RATE_HEADER]: '100' }, { [PACE_SESSION_HEADER]: SESSION, [PACE_RATE_HEADER]: 'fast' }]) {
      const res = await blocks(headers)
      expect(res.status).toBe(400)
      expect(JSON.stringify(await res.json())).toMatch(/x-trimswarm-pace/)
    }
    expect(h.images.stats().blockBatches).toBe(before)
    for (const body of [{ session: 'x', rate: 1 }, { session: SESSION, rate: -1 }, { session: SESSION, rate: 1, more: 1 }, { session: SESSION }]) {
      const res = await h.fetch(PACE_ROUTE, h.tokens.desk, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
      expect(res.status).toBe(400)
    }
    expect((await fetch(h.url + PACE_ROUTE, { method: 'POST', body: JSON.stringify({ session: SESSION, rate: 1 }), headers: { 'content-type': 'application/json' } })).status).toBe(401)
  })

  it('the agent\'s updater says "no pacing" for a coordinator without /v1/pace', async () => {
    const server = createServer((req, res) => { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":"no route"}') })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const update = createPaceUpdater(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, async () => 'Bearer x')
      expect(await update({ session: SESSION, rate: 100_000 }, {})).toBeUndefined()
    } finally {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  })
})
