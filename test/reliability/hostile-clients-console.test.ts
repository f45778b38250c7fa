/**
 * Promise (issue 13 item 9): a console session ends when its user logs out,
 * for every copy of its cookie, on the console and on /v1, also across a
 * coordinator restart; the admin token never sits in a cookie; cookies are
 * Secure when the browser came over HTTPS, also through a TLS-terminating
 * proxy the config trusts (and only then). A real coordinator over HTTP on
 * 127.0.0.1, a cookie jar over fetch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { cookieHeader, keepCookies } from '../helpers/cookie-jar.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'
import { recordCounts } from './counts.ts'

/** A cookie jar over fetch, as a browser keeps one per origin. */
class Browser {
  cookies = new Map<string, string>()
  setCookies: string[] = []
  readonly base: string
  readonly headers: Record<string, string>
  constructor (base: string, headers: Record<string, string> = {}) {
    this.base = base
    this.headers = headers
  }
  async req (path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers({ ...this.headers, ...(init.headers as Record<string, string> | undefined) })
    const cookie = cookieHeader(this.cookies)
    if (cookie != null) headers.set('Cookie', cookie)
    const res = await fetch(this.base + path, { ...init, headers, redirect: 'manual' })
    this.setCookies.push(...keepCookies(this.cookies, res))
    return res
  }

  async post (path: string, fields: Record<string, string>): Promise<Response> {
    if (!this.cookies.has('trimswarm_csrf')) await this.req('/console/login')
    const body = new URLSearchParams({ ...fields, _csrf: this.cookies.get('trimswarm_csrf') as string })
    return await this.req(path, { method: 'POST', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })
  }
}

let tmp: TempDir
let coord: Coordinator
const started: Coordinator[] = []

async function start (name: string, config: Record<string, unknown> = {}): Promise<Coordinator> {
  const c = createCoordinator({ dataDir: join(tmp.path, name), listen: '127.0.0.1:0', logLevel: 'silent', config })
  await c.start()
  started.push(c)
  return c
}

beforeAll(async () => {
  tmp = await tempDir('trimswarm-hostile-console-')
  coord = await start('main')
})
afterAll(async () => {
  for (const c of started) await c.stop()
  await tmp?.cleanup()
})

describe('hostile clients: console sessions', () => {
  it('an admin-token login puts a session in the cookie, never the admin token', async () => {
    const b = new Browser(coord.url)
    expect((await b.post('/console/login', { token: coord.adminToken, next: '/console/images' })).status).toBe(303)
    const cookie = b.cookies.get('trimswarm_session') as string
    expect(cookie).toBeDefined()
    expect(cookie).not.toContain(coord.adminToken)
    expect(cookie.startsWith('tss_')).toBe(true)
    expect((await b.req('/console/api/versions')).status).toBe(200)
  })

  it('logout revokes the session server-side: a copy of the cookie no longer works on the console or /v1, also after a restart', async () => {
    const b = new Browser(coord.url)
    expect((await b.post('/console/login', { token: coord.adminToken, next: '/console/images' })).status).toBe(303)
    const stolen = b.cookies.get('trimswarm_session') as string
    // another browser with a copy of the cookie, and a script with it as a bearer token
    const thief = new Browser(coord.url)
    thief.cookies.set('trimswarm_session', stolen)
    expect((await thief.req('/console/api/versions')).status).toBe(200)
    expect((await fetch(`${coord.url}/v1/auth/me`, { headers: { authorization: `Bearer ${stolen}` } })).status).toBe(200)

    expect((await b.post('/console/logout', {})).status).toBe(303)
    expect(b.cookies.has('trimswarm_session')).toBe(false)
    const api = await thief.req('/console/api/versions')
    expect(api.status).toBe(401)
    expect((await api.json()).error.name).toBe('UnauthorizedError')
    expect((await thief.req('/console/images')).status).toBe(303) // back to the login page
    expect((await fetch(`${coord.url}/v1/auth/me`, { headers: { authorization: `Bearer ${stolen}` } })).status).toBe(401)

    // the revocation is in the metadata db: a restart does not bring the session back
    const dataDir = join(tmp.path, 'main')
    await coord.stop()
    started.splice(started.indexOf(coord), 1)
    coord = createCoordinator({ dataDir, listen: '127.0.0.1:0', logLevel: 'silent' })
    await coord.start()
    started.push(coord)
    expect((await fetch(`${coord.url}/v1/auth/me`, { headers: { authorization: `Bearer ${stolen}` } })).status).toBe(401)
    // a new login still works
    const again = new Browser(coord.url)
    expect((await again.post('/console/login', { token: coord.adminToken, next: '/console/images' })).status).toBe(303)
    expect((await again.req('/console/api/versions')).status).toBe(200)
  })

  it('cookies are Secure behind a TLS-terminating proxy the config trusts, and only then', async () => {
    const proxied = await start('proxied', { trustedProxies: ['127.0.0.1', '::1'] })
    const viaProxy = new Browser(proxied.url, { 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '203.0.113.7' })
    expect((await viaProxy.post('/console/login', { token: proxied.adminToken, next: '/console/images' })).status).toBe(303)
    const sessionLine = viaProxy.setCookies.find(l => l.startsWith('trimswarm_session='))
    expect(sessionLine).toMatch(/;\s*Secure/i)
    expect(viaProxy.setCookies.find(l => l.startsWith('trimswarm_csrf='))).toMatch(/;\s*Secure/i)

    // the same header from a client that is not a trusted proxy changes nothing
    const direct = new Browser(coord.url, { 'X-Forwarded-Proto': 'https' })
    expect((await direct.post('/console/login', { token: coord.adminToken, next: '/console/images' })).status).toBe(303)
    expect(direct.setCookies.find(l => l.startsWith('trimswarm_session='))).not.toMatch(/;\s*Secure/i)

    // a bad entry stops the coordinator with a message
    await expect(start('bad-proxy', { trustedProxies: ['10.0.0.0/33'] })).rejects.toThrow(/trustedProxies: "10.0.0.0\/33" is not an IP address or IP\/prefix/)
    await recordCounts('hostile-clients-console', { promise: 'logout revokes the session everywhere and across restarts; no admin token in cookies; Secure behind trusted proxies', cases: 3, bytesLost: 0 })
  })
})
