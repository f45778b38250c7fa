/**
 * Who is calling: the auth middleware turns `Authorization: Bearer <token>`
 * into a Principal (`c.get('principal')`) with the policy in force. Three
 * kinds of token, told apart by prefix: the admin token (`tsa_`, compared in
 * constant time), machine tokens (`tsm_`, TokenStore) and user session
 * tokens (`tss_`, SessionTokens). Every failure is the same 401, so a caller
 * learns nothing about which tokens exist.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import { UnauthorizedError } from '../protocol/errors.ts'
import type { CoordinatorEnv, Principal } from './interface.ts'
import type { PolicyEngine } from './policy-engine.ts'
import type { SessionTokens } from './session-tokens.ts'
import type { TokenStore } from './token-store.ts'
import { DEFAULT_ADMIN_GROUPS } from './constants.ts'

/** Prefix of the admin token. */
export const ADMIN_TOKEN_PREFIX = 'tsa_'

/** What the auth middleware depends on. */
export interface AuthComponents {
  tokens: TokenStore
  sessions: SessionTokens
  policy: PolicyEngine
}

/** Options of createAuth. */
export interface AuthInit {
  adminToken: string
  /** Directory groups whose users are admins (e.g. `trimswarm-admins`). */
  adminGroups?: readonly string[]
}

/** Resolves tokens to principals. */
export interface Auth {
  /** The principal for a bearer token, or undefined. */
  principalFor: (token: string) => Principal | undefined
  /** The principal for a user who just logged in. */
  userPrincipal: (user: string, groups: string[]) => Principal
  /** Hono middleware: sets `principal` or throws UnauthorizedError. */
  middleware: MiddlewareHandler<CoordinatorEnv>
}

const INVALID = 'invalid, expired or revoked token'

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** A check of a given secret against `expected` that takes the same time whatever the guess (digests compared). */
export function secretMatcher (expected: string): (given: string) => boolean {
  const digest = sha256(expected)
  return (given) => timingSafeEqual(sha256(given), digest)
}

/** The token of an `Authorization: Bearer <token>` header; throws UnauthorizedError when absent or malformed. */
export function bearerToken (header: string | undefined): string {
  if (header == null) throw new UnauthorizedError('missing Authorization: Bearer <token> header')
  const m = /^Bearer\s+(\S{1,8192})\s*$/i.exec(header)
  if (m == null) throw new UnauthorizedError('the Authorization header must be "Bearer <token>"')
  return m[1]
}

/** Creates the Auth of a coordinator. */
export function createAuth (components: AuthComponents, init: AuthInit): Auth {
  // compare digests, so the comparison takes the same time whatever the length of the guess
  const isAdminToken = secretMatcher(init.adminToken)
  const adminGroups = new Set(init.adminGroups ?? DEFAULT_ADMIN_GROUPS)
  const { tokens, sessions, policy } = components

  const userPrincipal = (user: string, groups: string[]): Principal => {
    if (groups.some(g => adminGroups.has(g))) return { kind: 'admin', user, groups, policy: policy.admin() }
    return { kind: 'user', user, groups, policy: policy.effective(groups) }
  }

  const principalFor = (token: string): Principal | undefined => {
    if (token.startsWith(ADMIN_TOKEN_PREFIX)) {
      return isAdminToken(token) ? { kind: 'admin', user: 'admin', groups: [], policy: policy.admin() } : undefined
    }
    const machine = tokens.verify(token)
    if (machine != null) return { kind: 'machine', user: machine.id, groups: [machine.group], policy: policy.effective([machine.group]), ...(machine.site != null ? { site: machine.site } : {}) }
    const claims = sessions.verify(token)
    // a session opened with the admin token (console login) is the admin, without the raw token in the cookie
    if (claims?.admin === true) return { kind: 'admin', user: 'admin', groups: [], policy: policy.admin() }
    if (claims != null) return userPrincipal(claims.user, claims.groups)
    return undefined
  }

  return {
    principalFor,
    userPrincipal,
    middleware: async (c, next) => {
      const principal = principalFor(bearerToken(c.req.header('authorization')))
      if (principal == null) throw new UnauthorizedError(INVALID)
      c.set('principal', principal)
      await next()
    }
  }
}
