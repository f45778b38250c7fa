/**
 * Login and policy with a real slapd (test/helpers/slapd.ts), in-process:
 * alice (desk), bob (lab), carol (desk + lab), dave (trimswarm-admins).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { routes, type Policy } from '../../protocol/api.ts'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS as PW, type TestSlapd } from '../helpers/slapd.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

const policy = (images: string[]): Policy => ({ ...DEFAULT_POLICY, images })

describe('coordinator login against a real slapd', () => {
  let slapd: TestSlapd
  let dir: TempDir
  let coord: Coordinator
  const call = async (path: string, init: { method?: string, body?: unknown, token?: string } = {}): Promise<Response> =>
    await coord.app.request(path, {
      method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
      headers: { ...(init.token != null ? { authorization: `Bearer ${init.token}` } : {}), 'content-type': 'application/json' },
      body: init.body !== undefined ? JSON.stringify(init.body) : undefined
    })
  const login = async (user: string, password: string): Promise<Response> => await call(routes.login, { body: { user, password } })
  const session = async (user: keyof typeof PW): Promise<string> => {
    const r = await login(user, PW[user])
    expect(r.status, `${user} login`).toBe(200)
    return (await r.json()).token
  }

  beforeAll(async () => {
    ;[slapd, dir] = await Promise.all([startTestSlapd(), tempDir()])
    coord = createCoordinator({
      dataDir: join(dir.path, 'c'),
      serve: false,
      logLevel: 'silent',
      // admin groups by full DN (a short name would match any group of that name in the directory)
      config: { ldap: testLdapInit(slapd), adminGroups: [`cn=trimswarm-admins,${slapd.groupsDN}`], loginRateLimit: { maxFailuresPerUser: 3, maxPerIp: 1000 } }
    })
    await coord.start()
    for (const [group, images] of [['desk', ['desk']], ['lab', ['lab']]] as const) {
      expect((await call(routes.policy(group), { method: 'PUT', body: policy([...images]), token: coord.adminToken })).status).toBe(200)
    }
  })
  afterAll(async () => {
    await coord?.stop()
    await slapd?.stop()
    await dir?.cleanup()
  })

  it('logs alice in with a session token carrying her groups; policy gives her desk, not lab', async () => {
    const r = await login('alice', PW.alice)
    expect(r.status).toBe(200)
    const body = await r.json()
    expect(body).toMatchObject({ user: 'alice', groups: ['desk'] })
    expect(body.token).toMatch(/^tss_/)
    expect(Date.parse(body.expiresAt)).toBeGreaterThan(Date.now())
    const me = await (await call(routes.me, { token: body.token })).json()
    expect(me).toMatchObject({ kind: 'user', user: 'alice', groups: ['desk'], policy: { images: ['desk'] } })
    // desk passes the policy check (no version published here: 404), lab does not
    expect((await call(routes.version('desk', 'latest'), { token: body.token })).status).toBe(404)
    expect((await call(routes.version('lab', 'latest'), { token: body.token })).status).toBe(403)
    expect((await call(routes.tokens, { token: body.token })).status).toBe(403)
  })

  it('gives bob 403 for desk and carol the union of desk and lab', async () => {
    const bob = await session('bob')
    const r = await call(routes.version('desk', 'latest'), { token: bob })
    expect(r.status).toBe(403)
    expect((await r.json()).error.name).toBe('ForbiddenError')
    const carol = await session('carol')
    expect((await (await call(routes.me, { token: carol })).json()).policy.images).toEqual(['desk', 'lab'])
  })

  it('makes members of the default admin group admins when the config names none', async () => {
    const dave = await session('dave')
    expect((await (await call(routes.me, { token: dave })).json())).toMatchObject({ kind: 'admin', user: 'dave' })
    expect((await call(routes.tokens, { token: dave })).status).toBe(200)
  })

  it('answers a wrong password and an unknown user with the same 401 body', async () => {
    const wrong = await login('alice', 'not-her-password')
    const unknown = await login('mallory', 'whatever')
    expect(wrong.status).toBe(401)
    expect(unknown.status).toBe(401)
    expect(await wrong.text()).toBe(await unknown.text())
    expect((await call(routes.me, { token: 'tss_' + Buffer.from('{"u":"alice","g":["lab"],"exp":9999999999}').toString('base64url') + '.AAAA' })).status).toBe(401)
  })

  it('rate limits repeated failures on one user (429 with Retry-After), not other users', async () => {
    for (let i = 0; i < 3; i++) expect((await login('carol', 'guess-' + i)).status).toBe(401)
    const limited = await login('carol', PW.carol) // even the right password waits
    expect(limited.status).toBe(429)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    expect((await limited.json()).error.name).toBe('RateLimitedError')
    expect((await login('bob', PW.bob)).status).toBe(200)
    expect(await (await call(routes.metrics, { token: coord.adminToken })).text()).toMatch(/trimswarm_login_failures_total\{reason="rate_limited"\} 1/)
  })

  it('rate limits login attempts per client IP across user names, over a real socket', async () => {
    const other = createCoordinator({
      dataDir: join(dir.path, 'per-ip'),
      listen: '127.0.0.1:0',
      logLevel: 'silent',
      config: { ldap: testLdapInit(slapd), loginRateLimit: { maxPerIp: 3, windowSeconds: 60 } }
    })
    await other.start()
    try {
      const attempt = async (user: string, password: string): Promise<number> =>
        (await fetch(other.url + routes.login, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password }) })).status
      expect(await attempt('alice', PW.alice)).toBe(200)
      expect(await attempt('bob', 'x')).toBe(401)
      expect(await attempt('mallory', 'y')).toBe(401)
      expect(await attempt('carol', PW.carol)).toBe(429) // the fourth attempt from 127.0.0.1 in the window
    } finally {
      await other.stop()
    }
  })

  it('answers 503 while the directory is down, keeps serving tokens, and recovers', async () => {
    const alice = await session('alice')
    await slapd.pause()
    try {
      const r = await login('alice', PW.alice)
      expect(r.status).toBe(503)
      const err = (await r.json()).error
      expect(err.name).toBe('UnavailableError')
      expect(err.message).toMatch(/directory/i)
      expect(err.message).not.toContain(new URL(slapd.url).port) // internal hosts are logged, not told to anonymous callers
      expect((await call(routes.me, { token: alice })).status).toBe(200)
      expect((await call(routes.health)).status).toBe(200)
    } finally {
      await slapd.resume()
    }
    expect((await login('alice', PW.alice)).status).toBe(200)
  })
})
