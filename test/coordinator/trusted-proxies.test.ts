import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serve, type ServerType } from '@hono/node-server'
import { Hono } from 'hono'
import { createTrustedProxies } from '../../coordinator/trusted-proxies.ts'

/** A real server on 127.0.0.1 answering what the proxies make of each request (getConnInfo needs a socket). */
async function listen (list: string[]): Promise<{ url: string, server: ServerType }> {
  const proxies = createTrustedProxies(list)
  const app = new Hono()
  app.get('/', (c) => c.json({ client: proxies.clientAddress(c), https: proxies.isHttps(c) }))
  return await new Promise(resolve => {
    const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info: AddressInfo) => { resolve({ url: `http://127.0.0.1:${info.port}`, server }) })
  })
}

describe('trusted proxies', () => {
  let trusted: { url: string, server: ServerType }
  let untrusted: { url: string, server: ServerType }
  beforeAll(async () => {
    trusted = await listen(['127.0.0.0/8', '10.0.0.0/8'])
    untrusted = await listen(['192.168.1.1', 'fd00::/8'])
  })
  afterAll(() => {
    trusted.server.close()
    untrusted.server.close()
  })
  const ask = async (url: string, headers: Record<string, string> = {}): Promise<{ client: string, https: boolean }> => await (await fetch(url, { headers })).json()

  it('believes X-Forwarded-For and -Proto only from a trusted peer, taking the nearest untrusted hop', async () => {
    expect(await ask(trusted.url)).toEqual({ client: '127.0.0.1', https: false })
    expect(await ask(trusted.url, { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' })).toEqual({ client: '203.0.113.9', https: true })
    // a client's own forged entry sits left of what our proxies appended: the rightmost untrusted hop wins
    expect((await ask(trusted.url, { 'x-forwarded-for': '1.2.3.4, 203.0.113.9, 10.1.2.3' })).client).toBe('203.0.113.9')
    expect((await ask(trusted.url, { 'x-forwarded-for': 'garbage' })).client).toBe('127.0.0.1')
    expect(await ask(untrusted.url, { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' })).toEqual({ client: '127.0.0.1', https: false })
  })

  it('refuses entries that are not an IP or CIDR', () => {
    for (const bad of ['10.0.0.0/33', 'example.org', '10.0.0.0/8/1', 'fd00::/129', '10.0.0.0/x', '']) {
      expect(() => createTrustedProxies([bad]), bad).toThrow(/trustedProxies: .* is not an IP address or CIDR/)
    }
    expect(createTrustedProxies(['::1', '2001:db8::/32']).isTrusted('2001:db8::5')).toBe(true)
    expect(createTrustedProxies(['10.0.0.0/8']).isTrusted('::ffff:10.2.3.4')).toBe(true)
  })
})
