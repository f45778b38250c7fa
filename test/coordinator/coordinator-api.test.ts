/**
 * The coordinator's own API in-process (`app.request()`, no socket): auth,
 * tokens, policies, events and reports, bad input, OpenAPI, metrics, and
 * what the data dir keeps across a restart. Real level database and files
 * in a temp dir.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { routes, type AgentEvent, type Policy } from '../../protocol/api.ts'
import { importPublicKey, openSignedManifest } from '../../protocol/signed-manifest.ts'
import { buildManifest } from '../../chunker/build-manifest.ts'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { DataDirLockedError } from '../../coordinator/errors.ts'
import { createManifestSigner } from '../../coordinator/manifest-signer.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'
import { publishZeroVersion } from '../helpers/zero-version.ts'

/** package.json's version, read here rather than from protocol/version.ts so a stale constant fails. */
const PACKAGE_VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version

const deskPolicy: Policy = { ...DEFAULT_POLICY, images: ['desk'], wanLimitBps: 2_500_000 }

describe('coordinator API (in-process)', () => {
  let dir: TempDir
  let dataDir: string
  let coord: Coordinator
  let admin: Record<string, string>
  const req = async (path: string, init: RequestInit & { token?: string } = {}): Promise<Response> => {
    const headers = new Headers(init.headers)
    if (init.token != null) headers.set('authorization', `Bearer ${init.token}`)
    return await coord.app.request(path, { ...init, headers })
  }
  const json = (method: string, body: unknown, token?: string): RequestInit & { token?: string } =>
    ({ method, body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' }, token })

  beforeAll(async () => {
    dir = await tempDir()
    dataDir = join(dir.path, 'coordinator')
    coord = createCoordinator({ dataDir, serve: false, logLevel: 'silent', config: { limits: { maxJsonBodyBytes: 64 * 1024 } } })
    await coord.start()
    admin = { authorization: `Bearer ${coord.adminToken}` }
  })
  afterAll(async () => {
    await coord?.stop()
    await dir?.cleanup()
  })

  it('creates the data dir with secrets of mode 0600 on first start', async () => {
    expect(coord.adminTokenCreated).toBe(true)
    expect(coord.adminToken).toMatch(/^tsa_[A-Za-z0-9_-]{40,}$/)
    for (const f of ['admin.token', 'signing-key.pem', 'session.key']) expect((await stat(join(dataDir, f))).mode & 0o777).toBe(0o600)
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700)
  })

  it('answers /healthz (with the package version and its uptime) and /v1/key without a token', async () => {
    const health = await (await req('/healthz')).json()
    expect(health).toEqual({ ok: true, version: PACKAGE_VERSION, uptimeSeconds: expect.any(Number) })
    expect(health.uptimeSeconds).toBeGreaterThanOrEqual(0)
    expect(health.uptimeSeconds).toBeLessThan(600)
    const key = await (await req(routes.key)).json()
    expect(key.algorithm).toBe('Ed25519')
    expect(Buffer.from(key.publicKey, 'base64')).toEqual(Buffer.from(coord.publicKey))
  })

  it('refuses every other /v1 route without a valid token, with one 401 body', async () => {
    const none = await req(routes.me)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/)
    expect((await none.json()).error.name).toBe('UnauthorizedError')
    const bodies = new Set<string>()
    for (const token of ['tsa_wrong', 'tsm_0000000000000000_x', 'tss_e30.AAAA', 'nonsense', coord.adminToken + 'x']) {
      const r = await req(routes.me, { token })
      expect(r.status).toBe(401)
      bodies.add(await r.text())
    }
    expect(bodies.size).toBe(1)
    expect((await req(routes.images, { headers: { authorization: 'Basic abc' } })).status).toBe(401)
  })

  it('stores, lists and deletes group policies (admin only), validating every field', async () => {
    expect((await req(routes.policy('desk'), json('PUT', deskPolicy, coord.adminToken))).status).toBe(200)
    expect(await (await req(routes.policy('desk'), { token: coord.adminToken })).json()).toEqual(deskPolicy)
    expect(await (await req(routes.policies, { token: coord.adminToken })).json()).toEqual({ desk: deskPolicy })

    for (const bad of [{ ...deskPolicy, extra: 1 }, { ...deskPolicy, maxPeers: -1 }, { ...deskPolicy, images: ['../etc'] }, { ...deskPolicy, updateWindow: { start: '25:00', end: '01:00' } }, { images: ['x'] }]) {
      const r = await req(routes.policy('lab'), json('PUT', bad, coord.adminToken))
      expect(r.status).toBe(400)
      expect((await r.json()).error.name).toBe('ValidationError')
    }
    for (const path of ['/v1/policies/..%2Fetc', '/v1/policies/a%00b', `/v1/policies/${'x'.repeat(200)}`, '/v1/policies/.hidden']) {
      const r = await req(path, json('PUT', deskPolicy, coord.adminToken))
      expect(r.status, path).toBe(400)
    }
    expect(Object.keys(await (await req(routes.policies, { token: coord.adminToken })).json())).toEqual(['desk']) // nothing stored by the bad requests

    expect((await req(routes.policy('lab'), json('PUT', { ...deskPolicy, images: ['lab'] }, coord.adminToken))).status).toBe(200)
    expect((await req(routes.policy('lab'), { method: 'DELETE', token: coord.adminToken })).status).toBe(204)
    expect((await req(routes.policy('lab'), { method: 'DELETE', token: coord.adminToken })).status).toBe(404)
    expect((await req(routes.policy('lab'), { token: coord.adminToken })).status).toBe(404)
  })

  it('machine tokens: created for a group, get its policy, no admin routes, revoked at once', async () => {
    const created = await req(routes.tokens, json('POST', { group: 'desk', name: 'paris-pc1' }, coord.adminToken))
    expect(created.status).toBe(201)
    const t = await created.json()
    expect(t).toMatchObject({ group: 'desk', name: 'paris-pc1', revoked: false })
    expect(t.token).toMatch(/^tsm_[0-9a-f]{16}_/)

    const me = await (await req(routes.me, { token: t.token })).json()
    expect(me).toMatchObject({ kind: 'machine', user: t.id, groups: ['desk'] })
    expect(me.policy).toMatchObject({ images: ['desk'], wanLimitBps: 2_500_000 })
    expect((await req(routes.versions('lab'), { token: t.token })).status).toBe(403)
    for (const [path, init] of [[routes.tokens, {}], [routes.policies, {}], [routes.policy('desk'), json('PUT', deskPolicy)], [routes.reports, {}], [routes.events, {}]] as const) {
      const r = await req(path, { ...init, token: t.token })
      expect(r.status, path).toBe(403)
      expect((await r.json()).error.name).toBe('ForbiddenError')
    }

    const list = await (await req(routes.tokens, { token: coord.adminToken })).json()
    expect(list.tokens.map((x: { id: string }) => x.id)).toContain(t.id)
    expect(JSON.stringify(list)).not.toContain(t.token.slice(22)) // no secret in the list

    expect((await req(routes.token(t.id), { method: 'DELETE', token: coord.adminToken })).status).toBe(200)
    expect((await req(routes.me, { token: t.token })).status).toBe(401)
    expect((await req(routes.token('0123456789abcdef'), { method: 'DELETE', token: coord.adminToken })).status).toBe(404)
    expect((await req(routes.token('../x'), { method: 'DELETE', token: coord.adminToken })).status).toBe(400)
    expect((await req(routes.tokens, json('POST', { group: 'desk', admin: true }, coord.adminToken))).status).toBe(400)
  })

  it('answers malformed, oversized and unknown-field bodies with JSON 400/413', async () => {
    const malformed = await req(routes.tokens, json('POST', '{"group": "desk"', coord.adminToken))
    expect(malformed.status).toBe(400)
    expect((await malformed.json()).error.message).toMatch(/not valid JSON/)
    expect((await req(routes.tokens, json('POST', '', coord.adminToken))).status).toBe(400)
    expect((await req(routes.tokens, json('POST', '[]', coord.adminToken))).status).toBe(400)

    const big = JSON.stringify({ group: 'desk', name: 'x'.repeat(100 * 1024) })
    const declared = await req(routes.tokens, json('POST', big, coord.adminToken))
    expect(declared.status).toBe(413)
    expect((await declared.json()).error.name).toBe('TooLargeError')
    // no Content-Length: the limit is enforced while reading the stream
    const stream = new ReadableStream({ start (c) { c.enqueue(new TextEncoder().encode(big)); c.close() } })
    const streamed = await coord.app.request(routes.tokens, { method: 'POST', body: stream, headers: admin, duplex: 'half' } as RequestInit)
    expect(streamed.status).toBe(413)
    const tokens = await (await req(routes.tokens, { token: coord.adminToken })).json()
    expect(tokens.tokens.every((x: { name: string }) => x.name.length < 100)).toBe(true)

    const unknown = await req('/v1/nope', { token: coord.adminToken })
    expect(unknown.status).toBe(404)
    expect((await unknown.json()).error.name).toBe('NotFoundError')
  })

  it('takes event batches idempotently and reports per image, version and site', async () => {
    await publishZeroVersion(coord.images, dir.path, 'desk', 'v1')
    const t = await (await req(routes.tokens, json('POST', { group: 'desk' }, coord.adminToken))).json()
    const events: AgentEvent[] = [
      { id: 'e-0001-started', type: 'sync.started', time: '2026-11-25T10:00:00.000Z', agent: 'pc1', site: 'paris', image: 'desk', version: 'v1' },
      { id: 'e-0001-done', type: 'sync.completed', time: '2026-11-25T10:01:00.000Z', agent: 'pc1', site: 'paris', image: 'desk', version: 'v1', bytes: { local: 700, peers: 200, origin: 100 }, seconds: 60 },
      { id: 'e-0002-started', type: 'sync.started', time: '2026-11-25T10:00:00.000Z', agent: 'pc2', site: 'lyon', image: 'desk', version: 'v1' }
    ]
    const first = await req(routes.events, json('POST', { events }, t.token))
    expect(await first.json()).toEqual({ accepted: 3, duplicates: 0 })
    expect(await (await req(routes.events, json('POST', { events }, t.token))).json()).toEqual({ accepted: 0, duplicates: 3 })

    for (const bad of [{ events: [] }, { events: [{ ...events[0], id: 'e-9', extra: 1 }] }, { events: [{ ...events[0], id: 'bad id!' }] }, { events: [{ ...events[0], id: 'e-0009-x', site: '../x' }] }]) {
      expect((await req(routes.events, json('POST', bad, t.token))).status).toBe(400)
    }

    const report = await (await req(`${routes.reports}?image=desk`, { token: coord.adminToken })).json()
    expect(report.rows).toEqual([
      { image: 'desk', version: 'v1', site: 'lyon', clients: 0, inProgress: 1, failed: 0, bytes: { local: 0, peers: 0, origin: 0 }, wanSavedPercent: 0 },
      { image: 'desk', version: 'v1', site: 'paris', clients: 1, inProgress: 0, failed: 0, bytes: { local: 700, peers: 200, origin: 100 }, wanSavedPercent: 90 }
    ])
    expect((await (await req(`${routes.reports}?site=paris`, { token: coord.adminToken })).json()).rows).toHaveLength(1)
    expect((await req(`${routes.reports}?site=..%2Fx`, { token: coord.adminToken })).status).toBe(400)
    expect((await req(`${routes.reports}?sort=x`, { token: coord.adminToken })).status).toBe(400)

    const page = await (await req(`${routes.events}?site=paris&limit=1`, { token: coord.adminToken })).json()
    expect(page.events).toHaveLength(1)
    expect(page.events[0].postedBy).toBe(t.id)
    const page2 = await (await req(`${routes.events}?site=paris&limit=1&before=${encodeURIComponent(page.next)}`, { token: coord.adminToken })).json()
    expect(page2.events).toHaveLength(1)
    expect(page2.events[0].event.id).not.toBe(page.events[0].event.id)
    expect((await req(`${routes.events}?type=sync.exploded`, { token: coord.adminToken })).status).toBe(400)

    const agents = await (await req('/v1/agents?site=paris', { token: coord.adminToken })).json()
    expect(agents.agents).toEqual([expect.objectContaining({ agent: `t:${t.id}/pc1`, owner: `t:${t.id}`, site: 'paris', images: { desk: expect.objectContaining({ completed: { version: 'v1', site: 'paris', time: '2026-11-25T10:01:00.000Z' } }) } })])
    expect((await (await req('/v1/agents', { token: coord.adminToken })).json()).agents).toHaveLength(2)
    expect((await req('/v1/agents', { token: t.token })).status).toBe(403)
    expect((await req(`${routes.events}?limit=0`, { token: coord.adminToken })).status).toBe(400)
  })

  it('serves an OpenAPI 3.1 document covering every route, with resolvable schema refs', async () => {
    const doc = await (await req(routes.openapi)).json()
    expect(doc.openapi).toBe('3.1.0')
    expect(doc.info.version).toBe(PACKAGE_VERSION)
    const paths = Object.keys(doc.paths)
    for (const p of ['/healthz', '/metrics', '/v1/key', '/v1/auth/login', '/v1/auth/me', '/v1/tokens', '/v1/tokens/{id}', '/v1/policies/{group}', '/v1/images/{image}/versions/{version}', '/v1/images/{image}/versions/{version}/blocks', '/v1/chunks/missing', '/v1/events', '/v1/reports']) {
      expect(paths, p).toContain(p)
    }
    const text = JSON.stringify(doc)
    for (const m of text.matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) expect(doc.components.schemas[m[1]], m[1]).toBeDefined()
    expect(doc.components.schemas.Policy.additionalProperties).toBe(false)
    expect(doc.paths['/v1/policies/{group}'].put.requestBody.content['application/json'].schema.$ref).toBe('#/components/schemas/Policy')
  })

  it('serves Prometheus metrics to the admin: requests by route and status, latency, events, image stats', async () => {
    const text = await (await req(routes.metrics, { token: coord.adminToken })).text()
    expect(text).toMatch(/trimswarm_http_requests_total\{method="PUT",route="\/v1\/policies\/:group",status="400"\} \d+/)
    expect(text).toMatch(/trimswarm_http_request_duration_seconds_bucket\{le="\+Inf",route="\/v1\/auth\/me"\} \d+/)
    expect(text).toMatch(/trimswarm_events_total\{type="sync.started"\} 2/)
    expect(text).toMatch(/trimswarm_events_duplicate_total 3/)
    expect(text).toMatch(/trimswarm_versions_committed_total \d+/)
    expect(text).toMatch(/trimswarm_origin_sent_bytes_total\{kind="manifest"\} \d+/)
  })

  it('answers login with 503 "no directory configured" when there is no ldap section', async () => {
    const r = await req(routes.login, json('POST', { user: 'alice', password: 'x' }))
    expect(r.status).toBe(503)
    expect((await r.json()).error.message).toMatch(/no directory configured/)
  })

  it('signs with the key it serves, and keeps key, admin token, policies and tokens across restarts', async () => {
    const t = await (await req(routes.tokens, json('POST', { group: 'desk' }, coord.adminToken))).json()
    await req(routes.token(t.id), { method: 'DELETE', token: coord.adminToken })
    const keep = await (await req(routes.tokens, json('POST', { group: 'desk' }, coord.adminToken))).json()
    const adminToken = coord.adminToken
    const publicKey = coord.publicKey
    await expect(createCoordinator({ dataDir, serve: false, logLevel: 'silent' }).start()).rejects.toThrow(DataDirLockedError)
    await coord.stop()

    coord = createCoordinator({ dataDir, serve: false, logLevel: 'silent' })
    await coord.start()
    expect(coord.adminTokenCreated).toBe(false)
    expect(coord.adminToken).toBe(adminToken)
    expect(coord.publicKey).toEqual(publicKey)
    expect(await (await req(routes.policy('desk'), { token: adminToken })).json()).toEqual(deskPolicy)
    expect((await req(routes.me, { token: t.token })).status).toBe(401)
    expect((await req(routes.me, { token: keep.token })).status).toBe(200)

    // the signer of this data dir signs manifests that verify with the key served at /v1/key
    const img = join(dir.path, 'small.img')
    await writeFile(img, seededBytes(7, 256 * 1024))
    const built = await buildManifest(img, { name: 'desk', version: 'v1' })
    await coord.stop()
    const signer = await createManifestSigner(dataDir)
    expect(signer.created).toBe(false)
    const envelope = await signer.sign(built.manifestBytes)
    coord = createCoordinator({ dataDir, serve: false, logLevel: 'silent' })
    await coord.start()
    const key = await (await req(routes.key)).json()
    const opened = await openSignedManifest(envelope, await importPublicKey(new Uint8Array(Buffer.from(key.publicKey, 'base64'))))
    expect(opened.manifest.name).toBe('desk')
  })
})
