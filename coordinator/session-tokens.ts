/**
 * User session tokens: `tss_<payload>.<mac>`, the payload base64url JSON
 * `{ u, g, a?, iat, exp, j }` (`a`: an admin), the MAC HMAC-SHA256 with a secret kept in the data dir.
 * Checking one costs one HMAC and a set lookup; they expire after
 * sessionTtlSeconds (DEFAULT_SESSION_TTL_SECONDS) and carry the groups read
 * from the directory at login, while policies are applied at each request.
 * `j` is a random id, so one session can be revoked (logout) before it
 * expires. The console's admin-token login gets an admin session too
 * (user `admin`, `a: true`), so the raw admin token never sits in a cookie.
 *
 * Revocations are kept until the token would have expired anyway, in memory
 * and in the metadata database (sublevel `revoked-sessions`), so a logout
 * survives a restart. The list holds at most `maxRevoked` entries: when it is
 * full, every session issued until then is revoked at once (a `notBefore`
 * time, also persisted) and the list starts empty, so memory stays bounded
 * and no revoked token ever becomes valid again. With a shared store (several
 * coordinators) the list and `notBefore` are reloaded every SHARED_REFRESH_MS
 * (`refresh`), so a logout on one coordinator is refused by all within that time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { DEFAULT_MAX_REVOKED_SESSIONS } from './constants.ts'
import type { MetaDb } from './meta-db.ts'

/** The claims of a valid session token. */
export interface SessionClaims {
  user: string
  groups: string[]
  /** An admin: decided at login from the user's group DNs (Auth.isAdmin), or the console's admin-token login. */
  admin: boolean
  expiresAt: Date
}

/** Issues, checks and revokes session tokens. */
export interface SessionTokens {
  /** Loads the revocations from the database (a no-op without one). */
  start: () => Promise<void>
  /** Reloads the revocations from the database (what other coordinators wrote). */
  refresh: () => Promise<void>
  issue: (user: string, groups: string[], admin?: boolean) => { token: string, expiresAt: Date }
  /** The claims, or undefined for a malformed, forged, expired or revoked token. */
  verify: (token: string) => SessionClaims | undefined
  /** Revokes a session token until it expires; false when it is not a valid session token (nothing to revoke). */
  revoke: (token: string) => Promise<boolean>
}

/** Prefix of every session token. */
export const SESSION_TOKEN_PREFIX = 'tss_'

/** Options of createSessionTokens. */
export interface SessionTokensInit {
  secret: Uint8Array
  ttlSeconds: number
  now?: () => number
  /** Most revocations remembered one by one (DEFAULT_MAX_REVOKED_SESSIONS); past it, all older sessions are revoked at once. */
  maxRevoked?: number
}

interface Payload { u: string, g: string[], iat: number, exp: number, j?: string, a?: boolean }

/** The fields every signed payload must carry, with their types (the optional ones are checked where used). */
function hasPayloadShape (claims: Partial<Payload>): claims is Payload {
  return typeof claims.u === 'string' && Array.isArray(claims.g) && claims.g.every(g => typeof g === 'string') &&
    typeof claims.exp === 'number' && typeof claims.iat === 'number'
}

const NOT_BEFORE = 'notBefore'

/** Session tokens signed with `secret`; with `db`, revocations persist. */
export function createSessionTokens (init: SessionTokensInit, components: { db?: MetaDb } = {}): SessionTokens {
  if (init.secret.length < 32) throw new Error('session secret must have at least 32 bytes')
  const now = init.now ?? Date.now
  const maxRevoked = init.maxRevoked ?? DEFAULT_MAX_REVOKED_SESSIONS
  const mac = (payload: string): Buffer => createHmac('sha256', init.secret).update(payload).digest()
  const revokedDb = components.db?.sublevel<string, number>('revoked-sessions', { valueEncoding: 'json' })
  const metaDb = components.db?.sublevel<string, number>('revoked-sessions-meta', { valueEncoding: 'json' })
  /** Revoked session id -> its expiry (unix seconds). */
  let revoked = new Map<string, number>()
  /** Sessions issued before this (unix seconds) are all revoked. */
  let notBefore = 0
  // bumped by every local revoke: a reload that read before it must not replace what it wrote
  let writes = 0

  const parse = (token: string): Payload | undefined => {
    if (!token.startsWith(SESSION_TOKEN_PREFIX) || token.length > 8192) return undefined
    const [payload, sig, extra] = token.slice(SESSION_TOKEN_PREFIX.length).split('.')
    if (payload == null || sig == null || extra != null) return undefined
    const given = Buffer.from(sig, 'base64url')
    const expected = mac(payload)
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
    let claims: Partial<Payload>
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    } catch {
      return undefined
    }
    if (!hasPayloadShape(claims)) return undefined
    if (claims.exp * 1000 <= now()) return undefined
    return claims
  }

  const prune = (): void => {
    const t = now() / 1000
    for (const [id, exp] of revoked) if (exp <= t) revoked.delete(id)
  }

  const load = async (): Promise<void> => {
    if (revokedDb == null || metaDb == null) return
    const before = writes
    const storedNotBefore = (await metaDb.get(NOT_BEFORE)) ?? 0
    const t = now() / 1000
    const expired: string[] = []
    const next = new Map<string, number>()
    for await (const [id, exp] of revokedDb.iterator()) {
      if (exp <= t) expired.push(id)
      else next.set(id, exp)
    }
    if (writes === before) {
      revoked = next
      notBefore = Math.max(notBefore, storedNotBefore)
    }
    if (expired.length > 0) await revokedDb.batch(expired.map(key => ({ type: 'del' as const, key })))
  }

  return {
    async start () {
      revoked = new Map()
      await load()
    },
    refresh: load,
    issue (user, groups, admin = false) {
      const iat = Math.floor(now() / 1000)
      const exp = iat + init.ttlSeconds
      const body: Payload = { u: user, g: groups, ...(admin ? { a: true } : {}), iat, exp, j: randomBytes(16).toString('base64url') }
      const payload = Buffer.from(JSON.stringify(body)).toString('base64url')
      return { token: `${SESSION_TOKEN_PREFIX}${payload}.${mac(payload).toString('base64url')}`, expiresAt: new Date(exp * 1000) }
    },
    verify (token) {
      const claims = parse(token)
      if (claims == null) return undefined
      if (claims.iat < notBefore) return undefined
      if (claims.j == null || revoked.has(claims.j)) return undefined // tokens without an id (older versions) cannot be revoked one by one: refused
      return { user: claims.u, groups: claims.g, expiresAt: new Date(claims.exp * 1000), admin: claims.a === true }
    },
    async revoke (token) {
      const claims = parse(token)
      if (claims?.j == null || claims.iat < notBefore) return false
      writes++
      if (revoked.size >= maxRevoked) prune()
      if (revoked.size >= maxRevoked) {
        // full of live revocations: revoke every session issued before this second instead (users log in again)
        notBefore = Math.floor(now() / 1000)
        revoked.clear()
        if (metaDb != null && revokedDb != null) {
          await metaDb.put(NOT_BEFORE, notBefore)
          await revokedDb.clear()
        }
      }
      revoked.set(claims.j, claims.exp)
      await revokedDb?.put(claims.j, claims.exp)
      return true
    }
  }
}
