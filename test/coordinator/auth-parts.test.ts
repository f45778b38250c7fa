import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { createAttemptLimiter } from '../../coordinator/rate-limiter.ts'
import { createSessionTokens } from '../../coordinator/session-tokens.ts'
import { createSiteMap } from '../../coordinator/sites.ts'
import { parseCoordinatorConfig, parseListen } from '../../coordinator/config.ts'
import { ConfigError } from '../../coordinator/errors.ts'

describe('session tokens', () => {
  it('round-trips user and groups until expiry', () => {
    let now = 1_800_000_000_000
    const s = createSessionTokens({ secret: randomBytes(32), ttlSeconds: 60, now: () => now })
    const { token, expiresAt } = s.issue('alice', ['desk'])
    expect(expiresAt.getTime()).toBe(now + 60_000)
    expect(s.verify(token)).toEqual({ user: 'alice', groups: ['desk'], admin: false, expiresAt })
    expect(s.verify(s.issue('dave', ['trimswarm-admins'], true).token)).toMatchObject({ user: 'dave', admin: true })
    now += 60_000
    expect(s.verify(token)).toBeUndefined()
  })

  it('rejects forged, altered and foreign tokens', () => {
    const s = createSessionTokens({ secret: randomBytes(32), ttlSeconds: 600 })
    const other = createSessionTokens({ secret: randomBytes(32), ttlSeconds: 600 })
    const { token } = s.issue('bob', ['lab'])
    const [payload, mac] = token.slice(4).split('.')
    const forgedPayload = Buffer.from(JSON.stringify({ u: 'bob', g: ['desk'], iat: 0, exp: 9e9 })).toString('base64url')
    expect(s.verify(`tss_${forgedPayload}.${mac}`)).toBeUndefined()
    expect(s.verify(other.issue('bob', ['lab']).token)).toBeUndefined()
    expect(s.verify(`tss_${payload}`)).toBeUndefined()
    expect(s.verify(`tss_${payload}.${mac}.x`)).toBeUndefined()
    expect(s.verify('garbage')).toBeUndefined()
    expect(s.verify(token)).not.toBeUndefined()
  })
})

describe('rate limiter', () => {
  it('limits after max hits in the window and frees the key as the window slides', () => {
    let now = 0
    const r = createAttemptLimiter({ windowMs: 10_000, max: 3, now: () => now })
    for (let i = 0; i < 3; i++) { expect(r.retryAfter('k')).toBe(0); r.hit('k'); now += 1000 }
    expect(r.retryAfter('k')).toBe(7) // the first hit (at 0 s) leaves the window at 10 s; now is 3 s
    expect(r.retryAfter('other')).toBe(0)
    now = 10_001
    expect(r.retryAfter('k')).toBe(0)
    r.hit('k'); r.reset('k')
    expect(r.retryAfter('k')).toBe(0)
  })

  it('forgets the least recently hit keys beyond maxKeys', () => {
    const r = createAttemptLimiter({ windowMs: 60_000, max: 1, maxKeys: 2 })
    r.hit('a'); r.hit('b'); r.hit('c')
    expect(r.retryAfter('a')).toBe(0)
    expect(r.retryAfter('c')).toBeGreaterThan(0)
  })
})

describe('config', () => {
  it('accepts every documented field and resolves tls paths against the file', () => {
    const c = parseCoordinatorConfig({
      listen: '0.0.0.0:8440', logLevel: 'warn', ldap: { url: 'ldap://x:389', bindDN: 'cn=svc', bindPasswordFile: 'ldap.pw', userSearchBase: 'ou=people' }, adminGroups: ['cn=trimswarm-admins,ou=groups,dc=example,dc=org'], adminGroupsByName: false,
      sessionTtlSeconds: 3600, eventRetentionDays: 30, sites: { '10.1.0.0/16': 'paris', '10.1.2.0/24': 'paris-lab' },
      tls: { cert: 'cert.pem', key: '/abs/key.pem' }, limits: { maxJsonBodyBytes: 65536, maxBodyBytes: 1 << 20 },
      loginRateLimit: { windowSeconds: 60, maxPerIp: 10, maxFailuresPerUser: 5 }, images: {}
    }, '/etc/trimswarm')
    expect(c.tls).toEqual({ cert: '/etc/trimswarm/cert.pem', key: '/abs/key.pem' })
    expect(c.ldap?.bindPasswordFile).toBe('/etc/trimswarm/ldap.pw')
  })

  it('refuses unknown fields, bad values and bad subnets with ConfigError', () => {
    expect(() => parseCoordinatorConfig({ lisen: '1.2.3.4:1' })).toThrow(/lisen: unknown field/)
    expect(() => parseCoordinatorConfig({ sessionTtlSeconds: 5 })).toThrow(ConfigError)
    expect(() => parseCoordinatorConfig({ ldap: { url: 'ldap://x' } })).toThrow(/ldap\.bindDN/)
    expect(() => parseCoordinatorConfig({ sites: { '10.1.0.0/33': 'x' } })).toThrow(/not an IPv4 subnet/)
    expect(() => parseCoordinatorConfig({ sites: { '10.1.0.0/16': '../x' } })).toThrow(ConfigError)
    expect(() => parseListen('nohostport')).toThrow(ConfigError)
    expect(parseListen('[::1]:8440')).toEqual({ host: '::1', port: 8440 })
  })

  it('maps addresses to sites, most specific subnet first', () => {
    const m = createSiteMap({ '10.1.0.0/16': 'paris', '10.1.2.0/24': 'paris-lab', '0.0.0.0/0': 'elsewhere' })
    expect(m.siteFor('10.1.2.3')).toBe('paris-lab')
    expect(m.siteFor('::ffff:10.1.9.9')).toBe('paris')
    expect(m.siteFor('192.168.0.1')).toBe('elsewhere')
    expect(m.siteFor('fe80::1')).toBeUndefined()
  })
})
