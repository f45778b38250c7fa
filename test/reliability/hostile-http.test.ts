/**
 * Promise: no request, however malformed, makes the coordinator fail (5xx),
 * answer without a JSON error, or store anything. Every route comes from the
 * coordinator's own OpenAPI document (GET /v1/openapi.json), so a new route is
 * covered the day it is documented. Requests go through node:http so paths
 * reach the server exactly as written (`..`, `%00`, no URL normalisation).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'node:http'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chunkCid } from '../../protocol/block-id.ts'
import { BLOCKS_DIR, DEFAULT_MAX_BODY_BYTES, MAX_BLOCK_BATCH_REQUEST_BYTES } from '../../coordinator/constants.ts'
import { hashBytes } from '../../chunker/blake3.ts'
import { startImageHarness, type ImageHarness } from '../coordinator/image-harness.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'
import { cli } from '../helpers/cli-process.ts'
import { recordCounts } from './counts.ts'


interface Route { method: string, path: string, bodyTypes: string[], params: string[], query: string[], secured: boolean }
interface Answer { status: number, contentType: string, body: string }
interface Hostile { route: Route, what: string, method: string, path: string, headers: Record<string, string>, body?: Uint8Array | (() => AsyncIterable<Uint8Array>) }

/** One raw HTTP request; `reset` when the server closed the connection without an answer. */
async function send (base: URL, h: Hostile): Promise<Answer | 'reset'> {
  return await new Promise((resolve, reject) => {
    let answered = false
    const req = request({ host: base.hostname, port: base.port, method: h.method, path: h.path, headers: h.headers }, (res) => {
      answered = true
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(parts).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (answered) return
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') resolve('reset')
      else reject(err)
    })
    const body = h.body
    if (body == null) req.end()
    else if (body instanceof Uint8Array) req.end(body)
    else {
      void (async () => {
        for await (const part of body()) {
          if (req.destroyed || answered) break
          if (!req.write(part)) await new Promise<void>(resolve => { req.once('drain', resolve); req.once('close', resolve) })
        }
        req.end()
      })()
    }
  })
}

const enc = new TextEncoder()
const LONG = 'a'.repeat(300)

/** Valid-looking values for path parameters, so the mutation under test is the only thing wrong. */
function goodParam (name: string, cid: string): string {
  if (name === 'cid') return cid
  if (name === 'group' || name === 'image') return 'desk'
  if (name === 'version' || name === 'from') return '1'
  return 'x'
}

/** Everything hostile we send to one route. */
function mutations (route: Route, token: string, cid: string): Hostile[] {
  const fill = (values: Record<string, string>): string => route.path.replace(/\{(\w+)\}/g, (_, p: string) => values[p] ?? goodParam(p, cid))
  const auth = { authorization: `Bearer ${token}` }
  const base = fill({})
  const out: Hostile[] = []
  const add = (what: string, o: Partial<Hostile>): void => { out.push({ route, what, method: route.method, path: base, headers: { ...auth }, ...o }) }

  if (route.bodyTypes.length > 0) {
    const type = route.bodyTypes[0]
    const ct = { ...auth, 'content-type': type }
    if (type === 'application/json') {
      add('malformed JSON', { headers: ct, body: enc.encode('{"a": [1, 2,') })
      add('JSON null', { headers: ct, body: enc.encode('null') })
      add('JSON array', { headers: ct, body: enc.encode('[1,2,3]') })
      add('JSON string', { headers: ct, body: enc.encode('"x"') })
      add('unknown fields only', { headers: ct, body: enc.encode('{"zzz":1,"__proto__":{"admin":true}}') })
      add('deeply nested', { headers: ct, body: enc.encode('['.repeat(100_000) + ']'.repeat(100_000)) })
      add('not UTF-8', { headers: ct, body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) })
      add('empty body', { headers: ct, body: new Uint8Array(0) })
      add('wrong content type (text/plain, {})', { headers: { ...auth, 'content-type': 'text/plain' }, body: enc.encode('{}') })
      add('oversized JSON, streamed without length', {
        headers: { ...ct, 'transfer-encoding': 'chunked' },
        body: async function * () {
          yield enc.encode('{"x":"')
          const part = enc.encode('a'.repeat(1 << 20))
          for (let i = 0; i < MAX_BLOCK_BATCH_REQUEST_BYTES / (1 << 20) + 2; i++) yield part
          yield enc.encode('"}')
        }
      })
    } else {
      add('garbage bytes', { headers: ct, body: new Uint8Array([0xff, 0x00, 0x13, 0x37, 0xde, 0xad]) })
      add('empty body', { headers: ct, body: new Uint8Array(0) })
      add('wrong content type (JSON)', { headers: { ...auth, 'content-type': 'application/json' }, body: enc.encode('{"a":1}') })
      add('oversized, streamed without length', {
        headers: { ...ct, 'transfer-encoding': 'chunked' },
        body: async function * () {
          const part = new Uint8Array(1 << 20).fill(7)
          for (let i = 0; i < DEFAULT_MAX_BODY_BYTES / (1 << 20) + 2; i++) yield part
        }
      })
    }
  }
  for (const p of route.params) {
    for (const [what, v] of [['..', '..'], ['%2e%2e', '%2e%2e'], ['%00', 'a%00b'], ['300-char name', LONG], ['%2F', 'a%2Fb'], ['backslash', 'a%5C..%5Cb'], ['control char', 'a%0Ab'], ['bad %-escape', '%zz']]) {
      add(`path ${p}=${what}`, { path: fill({ [p]: v }) })
    }
  }
  for (const q of route.query) {
    const numeric = q === 'limit' || q === 'before'
    const tricks = numeric ? [['negative', '-1'], ['huge number', '1e309'], ['not a number', 'abc'], ['%00', '1%00']] : [['300-char', LONG], ['%00', 'a%00'], ['..', '..'], ['control char', 'a%0Ab']]
    for (const [what, v] of tricks) {
      add(`query ${q}=${what}`, { path: `${base}?${q}=${v}` })
    }
  }
  if (route.secured) {
    add('no authorization', { headers: {} })
    add('garbage bearer', { headers: { authorization: 'Bearer ' + '!'.repeat(50) } })
    add('10 KiB bearer', { headers: { authorization: 'Bearer ' + 'A'.repeat(10_240) } })
    add('basic auth', { headers: { authorization: 'Basic ' + Buffer.from('admin:admin').toString('base64') } })
    add('token with a flipped char', { headers: { authorization: `Bearer ${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}` } })
    add('empty bearer', { headers: { authorization: 'Bearer ' } })
  }
  // Stray hostile headers on a request that is otherwise fine for a public route, unauthenticated for a secured one.
  add('bogus range / if-none-match / accept-encoding / content-length', { headers: { range: 'bytes=99999999999-1,-', 'if-none-match': '"' + LONG, 'accept-encoding': 'zstd;q=bogus, *;q=-1', 'x-forwarded-for': '127.0.0.1, ' + LONG } })
  return out
}

describe('hostile input on every route of the OpenAPI document: 4xx with a JSON error, never 5xx, nothing stored', () => {
  let dir: TempDir
  let h: ImageHarness
  let routes: Route[] = []
  let cases = 0
  let resets = 0

  const snapshot = async (): Promise<unknown> => {
    const get = async (path: string): Promise<unknown> => {
      const r = await h.fetch(path, h.tokens.admin)
      const body = await r.json()
      // Last-used times move with every authenticated request; what is stored is the rest.
      return JSON.parse(JSON.stringify(body, (k, v) => k === 'lastUsedAt' || k === 'lastSeenAt' ? undefined : v))
    }
    const files: string[] = []
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(d, e.name))
        else files.push(e.name)
      }
    }
    await walk(join(h.dataDir, BLOCKS_DIR))
    return {
      tokens: await get('/v1/tokens'),
      policies: await get('/v1/policies'),
      images: await get('/v1/images'),
      versions: await get('/v1/images/desk/versions'),
      events: await get('/v1/events'),
      peers: await get('/v1/peers'),
      blockFiles: files.sort()
    }
  }

  beforeAll(async () => {
    dir = await tempDir()
    const img = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 4, seed: 91 })
    h = await startImageHarness(join(dir.path, 'coord'), { buildDeltaPacks: false })
    const tokenFile = join(dir.path, 'admin.token')
    await writeFile(tokenFile, h.tokens.admin + '\n')
    const r = await cli(['publish', img.path, '--image', 'desk', '--version', '1', '--coordinator', h.url, '--token-file', tokenFile])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).not.toMatch(/error/i)
    await h.settled() // the version's segments are stored in the background after publish: before the snapshots
    const doc = await (await fetch(h.url + '/v1/openapi.json')).json()
    for (const [path, ops] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        const params: any[] = op.parameters ?? []
        routes.push({
          method: method.toUpperCase(),
          path,
          bodyTypes: Object.keys(op.requestBody?.content ?? {}),
          params: params.filter(p => p.in === 'path').map(p => p.name),
          query: params.filter(p => p.in === 'query').map(p => p.name),
          secured: (op.security ?? doc.security ?? []).length > 0
        })
      }
    }
  })

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
    await recordCounts('hostile-http', {
      promise: 'malformed bodies, headers and paths on every documented route get a 4xx JSON error, never a 5xx, and store nothing',
      routes: routes.length,
      cases,
      faultsInjected: cases,
      connectionResets: resets,
      bytesLost: 0
    })
  })

  it('covers every documented route, including the write routes', () => {
    expect(routes.length).toBeGreaterThanOrEqual(25)
    for (const must of ['POST /v1/images/{image}/versions', 'PUT /v1/chunks/{cid}', 'PUT /v1/policies/{group}', 'POST /v1/tokens', 'POST /v1/events', 'POST /v1/peers']) {
      expect(routes.map(r => `${r.method} ${r.path}`)).toContain(must)
    }
  })

  it('answers every hostile request with a 4xx JSON error and stores nothing', async () => {
    const before = await snapshot()
    const cid = chunkCid(hashBytes(enc.encode('not stored anywhere'))).toString()
    const base = new URL(h.url)
    const failures: string[] = []
    for (const route of routes) {
      for (const m of mutations(route, h.tokens.admin, cid)) {
        cases++
        const a = await send(base, m)
        const label = `${m.method} ${m.path.slice(0, 120)} [${m.what}]`
        if (a === 'reset') {
          // Only an over-limit body may be cut off, and only after the server refused it.
          resets++
          if (!m.what.startsWith('oversized')) failures.push(`${label}: connection reset without an answer`)
          continue
        }
        if (a.status < 400 || a.status > 499) {
          // Public, parameterless reads may rightly ignore stray headers.
          if (!(a.status < 500 && !m.route.secured && m.what.startsWith('bogus range'))) failures.push(`${label}: status ${a.status} ${a.body.slice(0, 200)}`)
          continue
        }
        let parsed: any
        try {
          parsed = JSON.parse(a.body)
        } catch {
          failures.push(`${label}: ${a.status} with a non-JSON body ${JSON.stringify(a.body.slice(0, 100))} (${a.contentType})`)
          continue
        }
        if (typeof parsed?.error?.name !== 'string' || typeof parsed?.error?.message !== 'string' || !a.contentType.includes('application/json')) {
          failures.push(`${label}: ${a.status} body is not a JSON error: ${a.body.slice(0, 200)}`)
        }
      }
    }
    expect(failures).toEqual([])
    expect(await snapshot()).toEqual(before)
    expect((await fetch(h.url + '/healthz')).status).toBe(200)
  })
})
