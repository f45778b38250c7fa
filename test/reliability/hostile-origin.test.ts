/**
 * Hostile clients against the origin (issue 13 items 1 and 2), each attack
 * run against a coordinator in its own process:
 * - unauthenticated memory exhaustion: large chunked bodies without a token
 *   are never held in memory (401 before any body is buffered), and the bytes
 *   of bodies held at once have one budget (503 past it);
 * - one group stalling the origin: block batch streams that are never read
 *   hold at most their token's and group's share of the slots, and a stream
 *   that makes no write progress is aborted and its slot freed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'node:http'
import { join } from 'node:path'
import { api } from '../../protocol/index.ts'
import { startCoordinatorProcess, processMemory, type CoordinatorProcess } from '../helpers/coordinator-process.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'
import { recordCounts } from './counts.ts'

const MiB = 1024 * 1024

/** POSTs `bytes` of chunked body (no Content-Length) in 1 MiB writes, honouring backpressure; resolves to the status and body. */
async function chunkedPost (url: string, path: string, bytes: number, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  const piece = Buffer.alloc(MiB, 0x61)
  return await new Promise((resolve, reject) => {
    const req = request(url + path, { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', ...headers } }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    let sent = 0
    const write = (): void => {
      while (sent < bytes) {
        sent += piece.length
        if (!req.write(piece)) { req.once('drain', write); return }
      }
      req.end()
    }
    write()
  })
}

let dir: TempDir
const counts: Record<string, number> = {}

beforeAll(async () => { dir = await tempDir('trimswarm-hostile-origin-') })
afterAll(async () => {
  await dir?.cleanup()
  await recordCounts('hostile-origin', {
    promise: 'no token: no body held in memory; one global body budget; one token or group cannot hold every block batch slot; a stalled stream is aborted',
    bytesLost: 0,
    ...counts
  })
})

describe('unauthenticated memory exhaustion', () => {
  let c: CoordinatorProcess
  beforeAll(async () => { c = await startCoordinatorProcess(join(dir.path, 'mem')) })
  afterAll(async () => { await c?.stop() })

  it('4 x 48 MiB chunked bodies without a token get 401 and cost the coordinator < 64 MiB of RSS', async () => {
    const pid = c.child.pid!
    // warm up: the first requests load code and fill caches
    for (let i = 0; i < 3; i++) expect((await chunkedPost(c.url, api.routes.blocks('x', '1'), MiB)).status).toBe(401)
    const before = await processMemory(pid)
    const results = await Promise.all([0, 1, 2, 3].map(async () => await chunkedPost(c.url, api.routes.blocks('x', '1'), 48 * MiB)))
    const after = await processMemory(pid)
    for (const r of results) {
      expect(r.status).toBe(401)
      expect(JSON.parse(r.body).error.name).toBe('UnauthorizedError')
    }
    const grown = after.peak - before.rss
    counts.unauthenticatedBodyMiB = 4 * 48
    counts.rssGrowthMiB = Math.round(grown / MiB)
    expect(grown, `peak RSS grew by ${Math.round(grown / MiB)} MiB`).toBeLessThan(64 * MiB)
  })
})

describe('global body budget', () => {
  let c: CoordinatorProcess
  beforeAll(async () => { c = await startCoordinatorProcess(join(dir.path, 'budget'), { config: { limits: { maxBufferedBodyBytes: MiB } } }) })
  afterAll(async () => { await c?.stop() })

  it('a body past the bytes held in memory by all requests is answered 503 with a clear JSON error', async () => {
    const token = await c.adminToken()
    const r = await chunkedPost(c.url, '/v1/images/desk/versions', 3 * MiB, { authorization: `Bearer ${token}` })
    expect(r.status).toBe(503)
    const body = JSON.parse(r.body)
    expect(body.error.name).toBe('UnavailableError')
    expect(body.error.message).toMatch(/1\.0 MiB of request bodies/)
    // the budget is given back: a small body is read again
    const small = await chunkedPost(c.url, '/v1/images/desk/versions', 1, { authorization: `Bearer ${token}` })
    expect(small.status).toBe(400)
  })
})
