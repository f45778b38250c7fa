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
import { ConfigError } from './errors.ts'
import type { AuthenticatedUser, CoordinatorEnv, Principal } from './interface.ts'
import type { PolicyEngine } from './policy-engine.ts'
import type { SessionTokens } from './session-tokens.ts'
import type { TokenStore } from './token-store.ts'
import { DEFAULT_ADMIN_GROUPS, DEFAULT_ADMIN_GROUPS_BY_NAME } from './constants.ts'

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
  /** Directory groups whose users are admins, by full DN (e.g. `cn=trimswarm-admins,ou=groups,dc=example,dc=org`). */
  adminGroups?: readonly string[]
  /**
   * Also accept short group names (the group's cn) in adminGroups. Off by
   * default: any group with that cn anywhere in the directory, made by whoever
   * may create groups there, would grant admin.
   */
  adminGroupsByName?: boolean
}

/** Resolves tokens to principals. */
export interface Auth {
  /** The principal for a bearer token, or undefined. */
  principalFor: (token: string) => Principal | undefined
  /** Whether a user who just logged in is an admin: one of their groups is an admin group. */
  isAdmin: (who: Pick<AuthenticatedUser, 'groups' | 'groupDNs'>) => boolean
  /** The principal of a user session (`admin` as decided by isAdmin at login). */
  userPrincipal: (user: string, groups: string[], admin: boolean) => Principal
  /** Hono middleware: sets `principal` or throws UnauthorizedError. */
  middleware: MiddlewareHandler<CoordinatorEnv>
}

const INVALID = 'invalid, expired or revoked token'

/**
 * A DN as directories compare it, for the admin groups: attribute types and
 * values case-folded (cn, ou, dc and o compare ignoring case), spaces around
 * `,`, `+` and `=` dropped. Escaped separators (`\,`) stay inside their value.
 */
export function normalizeDn (dn: string): string {
  return dn.split(/(?<!\\),/).map(rdn => rdn.split(/(?<!\\)\+/).map((ava) => {
    const eq = ava.indexOf('=')
    return `${ava.slice(0, eq).trim().toLowerCase()}=${ava.slice(eq + 1).trim().toLowerCase()}`
  }).join('+')).join(',')
}

/** The admin groups of the config: DNs, and short names only when `byName` (else a ConfigError naming the entry). */
function adminGroupMatcher (groups: readonly string[], byName: boolean): (who: Pick<AuthenticatedUser, 'groups' | 'groupDNs'>) => boolean {
  const dns = new Set<string>()
  const names = new Set<string>()
  groups.forEach((g, i) => {
    if (g.includes('=')) dns.add(normalizeDn(g))
    else if (byName) names.add(g)
    else throw new ConfigError(`adminGroups[${i}]: ${JSON.stringify(g)} is a short group name, ` +
      'which any group of that name anywhere in the directory would match' +
      `; give the group's full DN (e.g. "cn=${g},ou=groups,dc=example,dc=org"), or set "adminGroupsByName": true to accept short names`)
  })
  return who => who.groupDNs.some(dn => dns.has(normalizeDn(dn))) || who.groups.some(g => names.has(g))
}

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
  const isAdmin = adminGroupMatcher(init.adminGroups ?? DEFAULT_ADMIN_GROUPS, init.adminGroupsByName ?? DEFAULT_ADMIN_GROUPS_BY_NAME)
  const { tokens, sessions, policy } = components

  const userPrincipal = (user: string, groups: string[], admin: boolean): Principal => {
    if (admin) return { kind: 'admin', user, groups, policy: policy.admin() }
    return { kind: 'user', user, groups, policy: policy.effective(groups) }
  }

  const principalFor = (token: string): Principal | undefined => {
    if (token.startsWith(ADMIN_TOKEN_PREFIX)) {
      return isAdminToken(token) ? { kind: 'admin', user: 'admin', groups: [], policy: policy.admin() } : undefined
    }
    const machine = tokens.verify(token)
    if (machine != null) {
      return { kind: 'machine', user: machine.id, groups: [machine.group],
        policy: policy.effective([machine.group]), ...(machine.site != null ? { site: machine.site } : {}) }
    }
    const claims = sessions.verify(token)
    // `admin`: decided at login (admin groups), or a session of the console's admin-token login
    if (claims != null) return userPrincipal(claims.user, claims.groups, claims.admin)
    return undefined
  }

  return {
    principalFor,
    isAdmin,
    userPrincipal,
    middleware: async (c, next) => {
      const principal = principalFor(bearerToken(c.req.header('authorization')))
      if (principal == null) throw new UnauthorizedError(INVALID)
      c.set('principal', principal)
      await next()
    }
  }
}
