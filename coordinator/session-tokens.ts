/**
 * User session tokens: `tss_<payload>.<mac>`, the payload base64url JSON
 * `{ u, g, a?, iat, exp }` (`a`: an admin), the MAC HMAC-SHA256 with a secret kept in the data dir.
 * Stateless, so checking one costs one HMAC; they expire after
 * sessionTtlSeconds (DEFAULT_SESSION_TTL_SECONDS) and carry the groups read
 * from the directory at login, while policies are applied at each request.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

/** The claims of a valid session token. */
export interface SessionClaims {
  user: string
  groups: string[]
  /** An admin, decided at login from the user's group DNs (Auth.isAdmin). */
  admin: boolean
  expiresAt: Date
}

/** Issues and checks session tokens. */
export interface SessionTokens {
  issue: (user: string, groups: string[], admin?: boolean) => { token: string, expiresAt: Date }
  /** The claims, or undefined for a malformed, forged or expired token. */
  verify: (token: string) => SessionClaims | undefined
}

/** Prefix of every session token. */
export const SESSION_TOKEN_PREFIX = 'tss_'

/** Options of createSessionTokens. */
export interface SessionTokensInit {
  secret: Uint8Array
  ttlSeconds: number
  now?: () => number
}

/** Session tokens signed with `secret`. */
export function createSessionTokens (init: SessionTokensInit): SessionTokens {
  if (init.secret.length < 32) throw new Error('session secret must have at least 32 bytes')
  const now = init.now ?? Date.now
  const mac = (payload: string): Buffer => createHmac('sha256', init.secret).update(payload).digest()
  return {
    issue (user, groups, admin = false) {
      const iat = Math.floor(now() / 1000)
      const exp = iat + init.ttlSeconds
      const payload = Buffer.from(JSON.stringify({ u: user, g: groups, ...(admin ? { a: true } : {}), iat, exp })).toString('base64url')
      return { token: `${SESSION_TOKEN_PREFIX}${payload}.${mac(payload).toString('base64url')}`, expiresAt: new Date(exp * 1000) }
    },
    verify (token) {
      if (!token.startsWith(SESSION_TOKEN_PREFIX) || token.length > 8192) return undefined
      const [payload, sig, extra] = token.slice(SESSION_TOKEN_PREFIX.length).split('.')
      if (payload == null || sig == null || extra != null) return undefined
      const given = Buffer.from(sig, 'base64url')
      const expected = mac(payload)
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
      let claims: { u?: unknown, g?: unknown, a?: unknown, exp?: unknown }
      try {
        claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
      } catch {
        return undefined
      }
      if (typeof claims.u !== 'string' || !Array.isArray(claims.g) || !claims.g.every(g => typeof g === 'string') || typeof claims.exp !== 'number') return undefined
      if (claims.exp * 1000 <= now()) return undefined
      return { user: claims.u, groups: claims.g, admin: claims.a === true, expiresAt: new Date(claims.exp * 1000) }
    }
  }
}
