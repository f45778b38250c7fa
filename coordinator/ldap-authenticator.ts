/**
 * Checks logins against LDAP or Active Directory with ldapts: bind as a
 * read-only service account, find the user's entry with a filter, bind as that
 * entry with the password, then read the user's groups from `memberOf` or with
 * a group search. Each attempt opens its own connection, so a directory that
 * went away and came back needs no reconnect logic and no state is shared.
 */
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Client, ResultCodeError } from 'ldapts'
import type { ConnectionOptions } from 'node:tls'
import { UnauthorizedError, UnavailableError, ValidationError } from '../protocol/errors.ts'
import { boolean, enumOf, integer, object, optional, string } from '../protocol/schema.ts'
import type { Infer } from '../protocol/schema.ts'
import {
  DEFAULT_LDAP_CONNECT_TIMEOUT_MS, DEFAULT_LDAP_GROUP_FILTER, DEFAULT_LDAP_GROUP_NAME_ATTRIBUTE, DEFAULT_LDAP_GROUP_SOURCE,
  DEFAULT_LDAP_MEMBER_OF_ATTRIBUTE, DEFAULT_LDAP_TIMEOUT_MS, DEFAULT_LDAP_USER_FILTER, DEFAULT_LDAP_USER_NAME_ATTRIBUTE,
  MAX_LDAP_PASSWORD_LENGTH, MAX_LDAP_USER_LENGTH
} from './constants.ts'
import type { AuthenticatedUser, AuthenticateOptions, Authenticator, Logger } from './interface.ts'

/** The one message for an unknown user and a wrong password, so a caller cannot tell which. */
export const BAD_CREDENTIALS_MESSAGE = 'wrong user name or password'

const dn = (description: string): ReturnType<typeof string> => string({ minLength: 1, maxLength: 1024, description })
const attribute = (description: string): ReturnType<typeof string> =>
  string({ minLength: 1, maxLength: 128, pattern: /^[A-Za-z][A-Za-z0-9-]*$/, description })
const filter = (description: string): ReturnType<typeof string> =>
  string({ minLength: 3, maxLength: 1024, pattern: /^\(.*\)$/, description })

/** Schema of the coordinator config file's `ldap` object (strict: unknown fields are an error). */
export const LdapConfigSchema = object({
  url: string({ minLength: 8, maxLength: 1024, pattern: /^ldaps?:\/\/[^/?#\s]+\/?$/, description: 'ldap://host:port or ldaps://host:port' }),
  bindDN: dn('DN of the read-only service account'),
  bindPassword: optional(string({ minLength: 1, maxLength: MAX_LDAP_PASSWORD_LENGTH, description: 'service account password (or bindPasswordFile)' })),
  bindPasswordFile: optional(string({ minLength: 1, maxLength: 4096, description: 'file holding the service account password, read at each login' })),
  userSearchBase: dn('where user entries are searched (subtree)'),
  userFilter: optional(filter('filter finding a user; {user} is the escaped login name')),
  userNameAttribute: optional(attribute('attribute holding the canonical user name')),
  groupSource: optional(enumOf(['memberOf', 'search'] as const)),
  memberOfAttribute: optional(attribute('attribute of the user entry listing group DNs')),
  groupSearchBase: optional(dn('where group entries are searched (subtree); required when groupSource is "search"')),
  groupFilter: optional(filter('filter finding the user\'s groups; {dn} and {user} are escaped')),
  groupNameAttribute: optional(attribute('attribute of a group entry that is its name')),
  startTLS: optional(boolean()),
  caFile: optional(string({ minLength: 1, maxLength: 4096, description: 'PEM file of the CA(s) trusted for ldaps:// and StartTLS' })),
  rejectUnauthorized: optional(boolean()),
  timeoutMs: optional(integer({ min: 1, max: 600_000 })),
  connectTimeoutMs: optional(integer({ min: 1, max: 600_000 }))
})

/** The coordinator config file's `ldap` object: how to reach the directory and read users and groups. Defaults in constants.ts. */
export type LdapInit = Infer<typeof LdapConfigSchema>

/**
 * Validates a parsed JSON `ldap` object; throws ValidationError naming the bad
 * field. With `baseDir` (the config file's folder), relative caFile and
 * bindPasswordFile paths are resolved against it.
 */
export function parseLdapConfig (json: unknown, opts: { path?: string, baseDir?: string } = {}): LdapInit {
  const path = opts.path ?? 'ldap'
  const init = LdapConfigSchema.parse(json, path)
  if (opts.baseDir != null) {
    if (init.caFile != null) init.caFile = resolve(opts.baseDir, init.caFile)
    if (init.bindPasswordFile != null) init.bindPasswordFile = resolve(opts.baseDir, init.bindPasswordFile)
  }
  const bad = (field: string, why: string): never => { throw new ValidationError(`${path}.${field}: ${why}`) }
  if ((init.bindPassword == null) === (init.bindPasswordFile == null)) bad('bindPassword', 'give exactly one of bindPassword and bindPasswordFile')
  if (init.url.startsWith('ldaps:') && init.startTLS === true) bad('startTLS', 'StartTLS is for ldap:// URLs; ldaps:// is already encrypted')
  if (init.userFilter != null && !init.userFilter.includes('{user}')) bad('userFilter', 'must contain {user}')
  if ((init.groupSource ?? DEFAULT_LDAP_GROUP_SOURCE) === 'search' && init.groupSearchBase == null) {
    bad('groupSearchBase', 'is required when groupSource is "search"')
  }
  if (init.groupFilter != null && !init.groupFilter.includes('{dn}') && !init.groupFilter.includes('{user}')) bad('groupFilter', 'must contain {dn} or {user}')
  return init
}

/** What the LDAP authenticator depends on. */
export interface LdapAuthenticatorComponents {
  logger?: Logger
}

/** Escapes a value for use inside an LDAP filter (RFC 4515 section 3): `*`, `(`, `)`, `\` and NUL become `\XX`. */
export function escapeFilterValue (value: string): string {
  return value.replace(/[*()\\\0]/g, c => '\\' + c.charCodeAt(0).toString(16).padStart(2, '0'))
}

/** The value of a DN's first RDN (`cn=desk,ou=groups,...` -> `desk`), with RFC 4514 escapes undone. */
export function firstRdnValue (dn: string): string {
  const eq = dn.indexOf('=')
  if (eq < 0) return dn
  const bytes: number[] = []
  const enc = new TextEncoder()
  for (let i = eq + 1; i < dn.length; i++) {
    const c = dn[i]
    if (c === ',' || c === '+') break
    if (c === '\\' && i + 1 < dn.length) {
      const hex = dn.slice(i + 1, i + 3)
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16))
        i += 2
      } else {
        bytes.push(...enc.encode(dn[i + 1]))
        i += 1
      }
      continue
    }
    bytes.push(...enc.encode(c))
  }
  return new TextDecoder().decode(new Uint8Array(bytes)).trim()
}

function fill (template: string, values: Record<string, string>): string {
  return template.replace(/\{(user|dn)\}/g, (_, k: string) => escapeFilterValue(values[k] ?? ''))
}

function firstString (v: unknown): string | undefined {
  if (Array.isArray(v)) return firstString(v[0])
  if (typeof v === 'string') return v
  if (Buffer.isBuffer(v)) return v.toString('utf8')
  return undefined
}

function strings (v: unknown): string[] {
  if (v == null) return []
  return (Array.isArray(v) ? v : [v]).map(firstString).filter((s): s is string => s != null && s !== '')
}

/** Result codes of a user bind that mean "these credentials do not log in" (not "the directory is broken"). */
const REFUSED_BIND_CODES = new Set([
  49, // invalidCredentials (AD adds sub-codes for locked, expired, disabled in the message)
  50, // insufficientAccessRights
  53, // unwillingToPerform (e.g. a disabled account, or ppolicy lockout)
  19 // constraintViolation (ppolicy: password expired / locked)
])

/** Creates an Authenticator backed by an LDAP or Active Directory server. Validates `init` at once (throws ValidationError). */
export function createLdapAuthenticator (components: LdapAuthenticatorComponents, init: LdapInit): Authenticator {
  const cfg = parseLdapConfig(init)
  const log = components.logger
  const userFilter = cfg.userFilter ?? DEFAULT_LDAP_USER_FILTER
  const userNameAttribute = cfg.userNameAttribute ?? DEFAULT_LDAP_USER_NAME_ATTRIBUTE
  const groupSource = cfg.groupSource ?? DEFAULT_LDAP_GROUP_SOURCE
  const memberOfAttribute = cfg.memberOfAttribute ?? DEFAULT_LDAP_MEMBER_OF_ATTRIBUTE
  const groupFilter = cfg.groupFilter ?? DEFAULT_LDAP_GROUP_FILTER
  const groupNameAttribute = cfg.groupNameAttribute ?? DEFAULT_LDAP_GROUP_NAME_ATTRIBUTE
  const timeout = cfg.timeoutMs ?? DEFAULT_LDAP_TIMEOUT_MS
  const connectTimeout = cfg.connectTimeoutMs ?? DEFAULT_LDAP_CONNECT_TIMEOUT_MS
  const rejectUnauthorized = cfg.rejectUnauthorized ?? true
  const ldaps = cfg.url.startsWith('ldaps:')
  const startTLS = cfg.startTLS ?? false

  const unavailable = (what: string, err: unknown): UnavailableError => {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err)
    log?.error('ldap unavailable', { url: cfg.url, step: what, error: why })
    return new UnavailableError(`the LDAP directory at ${cfg.url} is unavailable (${what}: ${why})`, { cause: err })
  }

  async function tlsOptions (): Promise<ConnectionOptions> {
    const ca = cfg.caFile != null ? await readFile(cfg.caFile) : undefined
    return { rejectUnauthorized, ...(ca != null ? { ca } : {}) }
  }

  async function servicePassword (): Promise<string> {
    if (cfg.bindPassword != null) return cfg.bindPassword
    // Read at each login so a rotated secret needs no restart; trailing newline from `echo` dropped.
    return (await readFile(cfg.bindPasswordFile as string, 'utf8')).replace(/\r?\n$/, '')
  }

  async function attempt (client: Client, tls: ConnectionOptions, user: string, password: string,
    admit?: (canonicalUser: string) => void): Promise<AuthenticatedUser> {
    if (startTLS) {
      try {
        await client.startTLS(tls)
      } catch (err) {
        throw unavailable('StartTLS', err)
      }
    }

    try {
      await client.bind(cfg.bindDN, await servicePassword())
    } catch (err) {
      if (err instanceof ResultCodeError && err.code === 49) {
        throw unavailable(`service account bind as ${cfg.bindDN}`, new Error('invalid credentials (check ldap.bindDN and ldap.bindPassword)'))
      }
      throw unavailable('service account bind', err)
    }

    const attributes = [userNameAttribute, ...(groupSource === 'memberOf' ? [memberOfAttribute] : [])]
    let entries
    try {
      ({ searchEntries: entries } = await client.search(cfg.userSearchBase, {
        scope: 'sub',
        filter: fill(userFilter, { user }),
        attributes,
        sizeLimit: 2,
        timeLimit: Math.ceil(timeout / 1000)
      }))
    } catch (err) {
      if (err instanceof ResultCodeError && err.code === 4) entries = [{ dn: '' }, { dn: '' }] // sizeLimitExceeded: ambiguous
      else throw unavailable('user search', err)
    }
    if (entries.length !== 1) {
      log?.info('ldap login refused', { user, reason: entries.length === 0 ? 'no such user' : 'filter matched more than one entry' })
      throw new UnauthorizedError(BAD_CREDENTIALS_MESSAGE)
    }
    const entry = entries[0]
    const canonical = firstString(entry[userNameAttribute]) ?? user
    admit?.(canonical) // before the password is tried: a limited user costs the directory no bind

    try {
      await client.bind(entry.dn, password)
    } catch (err) {
      if (err instanceof ResultCodeError && REFUSED_BIND_CODES.has(err.code)) {
        log?.info('ldap login refused', { user, reason: `bind result ${err.code}` })
        throw new UnauthorizedError(BAD_CREDENTIALS_MESSAGE)
      }
      throw unavailable('user bind', err)
    }

    let groups: string[]
    let groupDNs: string[]
    if (groupSource === 'memberOf') {
      groupDNs = strings(entry[memberOfAttribute])
      groups = groupDNs.map(firstRdnValue)
    } else {
      try {
        // Back to the service account: a user may not be allowed to read group entries.
        await client.bind(cfg.bindDN, await servicePassword())
        const { searchEntries } = await client.search(cfg.groupSearchBase as string, {
          scope: 'sub',
          filter: fill(groupFilter, { dn: entry.dn, user: canonical }),
          attributes: [groupNameAttribute],
          timeLimit: Math.ceil(timeout / 1000)
        })
        groups = searchEntries.flatMap(e => strings(e[groupNameAttribute]))
        groupDNs = searchEntries.map(e => e.dn)
      } catch (err) {
        throw unavailable('group search', err)
      }
    }
    groups = [...new Set(groups.filter(g => g !== ''))].sort()
    groupDNs = [...new Set(groupDNs.filter(g => g !== ''))].sort()
    log?.debug('ldap login', { user: canonical, groups, groupDNs })
    return { user: canonical, groups, groupDNs }
  }

  return {
    async authenticate (user: string, password: string, options: AuthenticateOptions = {}): Promise<AuthenticatedUser> {
      options.signal?.throwIfAborted()
      // An empty password would be an "unauthenticated bind" (RFC 4513 5.1.2), which many servers accept as success.
      if (typeof user !== 'string' || typeof password !== 'string' || user === '' || password === '' ||
          user.length > MAX_LDAP_USER_LENGTH || password.length > MAX_LDAP_PASSWORD_LENGTH || user.includes('\0')) {
        throw new UnauthorizedError(BAD_CREDENTIALS_MESSAGE)
      }
      let tls: ConnectionOptions = {}
      try {
        if (ldaps || startTLS) tls = await tlsOptions()
      } catch (err) {
        throw unavailable(`reading caFile ${String(cfg.caFile)}`, err)
      }
      // TLS options go to the Client only for ldaps://: ldapts opens TLS at once whenever they are set.
      const client = new Client({ url: cfg.url, timeout, connectTimeout, ...(ldaps ? { tlsOptions: tls } : {}) })
      let onAbort: (() => void) | undefined
      const aborted = new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(options.signal?.reason) }
        options.signal?.addEventListener('abort', onAbort, { once: true })
      })
      aborted.catch(() => {})
      try {
        return await Promise.race([attempt(client, tls, user, password, options.admit), aborted])
      } finally {
        if (onAbort != null) options.signal?.removeEventListener('abort', onAbort)
        // Not awaited past a hung server: unbind destroys the socket once the request is written.
        client.unbind().catch(() => {})
      }
    }
  }
}
