/**
 * The coordinator's log lines: the client IP takes X-Forwarded-For only from
 * a proxy in config `trustedProxies` (coordinator/trusted-proxies.ts), every
 * request line has a request id (also the X-Request-Id header), each admin
 * change writes one audit line (who, what, before, after), and the text and
 * JSON formats. Real coordinators listening on 127.0.0.1, logs captured.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { ConfigError } from '../../coordinator/errors.ts'
import { createLogger, defaultLogFormat } from '../../coordinator/logger.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { createTrustedProxies } from '../../coordinator/trusted-proxies.ts'
import type { Policy } from '../../protocol/api.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'

describe('trusted proxies', () => {
  it('takes X-Forwarded-For only from a trusted proxy, walking from the right past trusted hops', () => {
    const p = createTrustedProxies(['10.0.0.0/8', '192.168.1.1', 'fd00::/8'])
    expect(p.isTrusted('10.1.2.3')).toBe(true)
    expect(p.isTrusted('::ffff:10.1.2.3')).toBe(true)
    expect(p.isTrusted('192.168.1.2')).toBe(false)
    expect(p.isTrusted('fd12::1')).toBe(true)
    expect(p.isTrusted('not an ip')).toBe(false)
    // from an untrusted peer the header is the client's own word
    expect(p.clientIp('203.0.113.7', '1.2.3.4')).toBe('203.0.113.7')
    expect(p.clientIp('10.0.0.5', '198.51.100.9')).toBe('198.51.100.9')
    // a client prepends a lie; the proxy appended the real address last
    expect(p.clientIp('10.0.0.5', '6.6.6.6, 198.51.100.9')).toBe('198.51.100.9')
    expect(p.clientIp('10.0.0.5', '6.6.6.6, 198.51.100.9, 192.168.1.1')).toBe('198.51.100.9')
    expect(p.clientIp('10.0.0.5', 'garbage')).toBe('10.0.0.5')
    expect(p.clientIp('10.0.0.5', undefined)).toBe('10.0.0.5')
    expect(createTrustedProxies([]).clientIp('10.0.0.5', '1.2.3.4')).toBe('10.0.0.5')
  })

  it('refuses a bad entry with a message naming it', () => {
    for (const bad of ['10.0.0.0/33', 'proxy.example', '10.0.0.1/8/1', '::1/129', '10.0.0.0/x']) {
      expect(() => createTrustedProxies([bad])).toThrow(ConfigError)
      expect(() => createTrustedProxies([bad])).toThrow(bad)
    }
  })
})

describe('log formats', () => {
  it('writes JSON or text lines, and picks JSON under systemd, text on a terminal', () => {
    const lines: string[] = []
    createLogger({ format: 'json', write: (l) => lines.push(l) }).info('request', { route: '/x', ms: 1.5 })
    createLogger({ format: 'text', write: (l) => lines.push(l) }).warn('disk low', { path: '/var/lib/a b', free: 3 })
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'info', msg: 'request', route: '/x', ms: 1.5 })
    expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z WARN disk low path="\/var\/lib\/a b" free=3\n$/)
    expect(defaultLogFormat({ INVOCATION_ID: 'abc' }, true)).toBe('json')
    expect(defaultLogFormat({ JOURNAL_STREAM: '8:123' }, true)).toBe('json')
    expect(defaultLogFormat({}, true)).toBe('text')
    expect(defaultLogFormat({}, false)).toBe('json')
  })
})

describe('request and audit lines', () => {
  let tmp: TempDir
  const started: Coordinator[] = []
  const start = async (name: string, config: Record<string, unknown>): Promise<{ coord: Coordinator, lines: any[] }> => {
    const lines: any[] = []
    const coord = createCoordinator({ dataDir: join(tmp.path, name), listen: '127.0.0.1:0', config, logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l)) }) })
    await coord.start()
    started.push(coord)
    return { coord, lines }
  }
  const call = async (coord: Coordinator, method: string, path: string, init: { body?: unknown, headers?: Record<string, string> } = {}): Promise<Response> =>
    await fetch(coord.url + path, {
      method,
      headers: { authorization: `Bearer ${coord.adminToken}`, 'content-type': 'application/json', ...init.headers },
      body: init.body == null ? undefined : JSON.stringify(init.body)
    })
  /** The log line of the request that got `res` (written just after the response). */
  const lineOf = async (lines: any[], res: Response): Promise<any> => {
    const id = res.headers.get('x-request-id')
    for (let i = 0; i < 50; i++) {
      const l = lines.find(l => l.msg === 'request' && l.requestId === id)
      if (l != null) return l
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    throw new Error(`no request line with id ${id}`)
  }

  beforeAll(async () => { tmp = await tempDir('trimswarm-reqlog-') })
  afterAll(async () => {
    for (const c of started) await c.stop()
    await tmp?.cleanup()
  })

  it('logs the client IP from X-Forwarded-For only when the peer is a trusted proxy, and a request id', async () => {
    const trusting = await start('trusting', { trustedProxies: ['127.0.0.1'] })
    const plain = await start('plain', {})
    const xff = { 'x-forwarded-for': '6.6.6.6, 198.51.100.9', 'x-request-id': 'from-proxy-1' }

    const viaProxy = await call(trusting.coord, 'GET', '/healthz', { headers: xff })
    expect(viaProxy.headers.get('x-request-id')).toBe('from-proxy-1') // a trusted proxy's id is kept, to follow a request across both logs
    expect(await lineOf(trusting.lines, viaProxy)).toMatchObject({ ip: '198.51.100.9', route: '/healthz', status: 200 })

    const direct = await call(plain.coord, 'GET', '/healthz', { headers: xff })
    const id = direct.headers.get('x-request-id')
    expect(id).toMatch(/^[0-9a-f-]{36}$/) // an untrusted client's id is replaced
    expect(await lineOf(plain.lines, direct)).toMatchObject({ ip: '127.0.0.1', requestId: id })

    // error answers carry the id too
    const denied = await fetch(plain.coord.url + '/v1/tokens')
    expect(denied.status).toBe(401)
    expect((await lineOf(plain.lines, denied)).status).toBe(401)
  })

  it('writes one audit line per admin change: who, what, before and after; never a token', async () => {
    const { coord, lines } = await start('audit', {})
    const audits = (): any[] => lines.filter(l => l.msg === 'audit')
    const policy: Policy = { ...DEFAULT_POLICY, images: ['ws'] }
    const changed: Policy = { ...policy, wanLimitBps: 1000 }

    expect((await call(coord, 'PUT', '/v1/policies/branch', { body: policy })).status).toBe(200)
    expect((await call(coord, 'PUT', '/v1/policies/branch', { body: changed })).status).toBe(200)
    expect((await call(coord, 'DELETE', '/v1/policies/branch')).status).toBe(204)
    const created = await (await call(coord, 'POST', '/v1/tokens', { body: { group: 'branch', name: 'a1' } })).json()
    expect((await call(coord, 'DELETE', `/v1/tokens/${created.id}`)).status).toBe(200)
    const image = await makeTestImage(tmp.path, { name: 'audit-ws', sizeMiB: 1, seed: 7 })
    await createPublishClient({ coordinator: coord.url, token: coord.adminToken }).publish(image.path, { image: 'ws', version: 'v1' })
    expect((await call(coord, 'POST', '/v1/images/ws/versions/v1/retire')).status).toBe(200)
    // refused changes are not audited
    expect((await call(coord, 'PUT', '/v1/policies/branch', { body: { images: 1 } })).status).toBe(400)

    const who = { kind: 'admin', user: 'admin' }
    const a = audits()
    expect(a.map(l => l.action)).toEqual(['policy.set', 'policy.set', 'policy.delete', 'token.create', 'token.revoke', 'version.publish', 'version.retire'])
    for (const l of a) {
      expect(l.who).toEqual(who)
      expect(l.ip).toBe('127.0.0.1')
      expect(l.requestId).toMatch(/^[0-9a-f-]{36}$/)
    }
    expect(a[0]).toMatchObject({ target: { group: 'branch' }, before: null, after: policy })
    expect(a[1]).toMatchObject({ before: policy, after: changed })
    expect(a[2]).toMatchObject({ before: changed, after: null })
    expect(a[3]).toMatchObject({ target: { tokenId: created.id }, before: null, after: { id: created.id, group: 'branch', name: 'a1', revoked: false } })
    expect(a[4]).toMatchObject({ before: { revoked: false }, after: { revoked: true } })
    expect(a[5]).toMatchObject({ target: { image: 'ws', version: 'v1' }, after: { version: 'v1', retired: false } })
    expect(a[6]).toMatchObject({ target: { image: 'ws', version: 'v1' }, before: { retired: false }, after: { retired: true } })
    expect(JSON.stringify(lines)).not.toContain(created.token)
    expect(JSON.stringify(lines)).not.toContain(coord.adminToken)
  })
})
