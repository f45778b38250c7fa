/**
 * Machine (agent) tokens: `tsm_<id>_<secret>`, created by the admin for one
 * group. Only the SHA-256 of the whole token is stored; the records are also
 * held in memory so checking a token costs one hash and a map lookup, and a
 * revoke takes effect on the next request. With a shared store (several
 * coordinators) the mirror is reloaded every SHARED_REFRESH_MS (`refresh`), so
 * a revoke made on another coordinator takes effect here within that time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { NotFoundError } from '../protocol/errors.ts'
import type { TokenInfo } from '../protocol/api.ts'
import type { AbortOptions } from './interface.ts'
import type { MetaDb } from './meta-db.ts'

/** Prefix of every machine token. */
export const MACHINE_TOKEN_PREFIX = 'tsm_'

interface TokenRecord extends TokenInfo {
  /** SHA-256 of the token, hex. */
  hash: string
}

/** Creates, lists, revokes and checks machine tokens. */
export interface TokenStore {
  start: () => Promise<void>
  /** Reloads the in-memory mirror from the store (what other coordinators wrote). */
  refresh: () => Promise<void>
  /** `site`: the site the token's agents are at (absent: the config's `sites` map or the agent's hint decides). */
  create: (group: string, name: string | undefined, options?: AbortOptions & { site?: string }) => Promise<{ info: TokenInfo, token: string }>
  list: (options?: AbortOptions) => Promise<TokenInfo[]>
  /** Marks the token revoked; throws NotFoundError for an unknown id. */
  revoke: (id: string, options?: AbortOptions) => Promise<TokenInfo>
  /** The token's record when it is valid and not revoked. */
  verify: (token: string) => TokenInfo | undefined
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

function publicInfo (r: TokenRecord): TokenInfo {
  return { id: r.id, group: r.group, name: r.name, ...(r.site != null ? { site: r.site } : {}), createdAt: r.createdAt, revoked: r.revoked }
}

/** A TokenStore in the `tokens` sublevel of the metadata database. */
export function createTokenStore (components: { db: MetaDb }): TokenStore {
  const db = components.db.sublevel<string, TokenRecord>('tokens', { valueEncoding: 'json' })
  let byId = new Map<string, TokenRecord>()
  // bumped by every local write: a reload that read before it must not replace what it wrote
  let writes = 0
  const load = async (): Promise<void> => {
    const before = writes
    const next = new Map<string, TokenRecord>()
    for await (const [id, r] of db.iterator()) next.set(id, r)
    if (writes === before) byId = next
  }
  return {
    start: load,
    refresh: load,
    async create (group, name, options = {}) {
      const id = randomBytes(8).toString('hex')
      const token = `${MACHINE_TOKEN_PREFIX}${id}_${randomBytes(32).toString('base64url')}`
      const record: TokenRecord = {
        id,
        group,
        name: name ?? '',
        ...(options.site != null ? { site: options.site } : {}),
        createdAt: new Date().toISOString(),
        revoked: false,
        hash: sha256(token).toString('hex')
      }
      writes++
      await db.put(id, record)
      byId.set(id, record)
      return { info: publicInfo(record), token }
    },
    async list () {
      return [...byId.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id)).map(publicInfo)
    },
    async revoke (id) {
      const r = byId.get(id)
      if (r == null) throw new NotFoundError(`no token with id ${id}`)
      const revoked = { ...r, revoked: true }
      writes++
      await db.put(id, revoked)
      byId.set(id, revoked)
      return publicInfo(revoked)
    },
    verify (token) {
      if (!token.startsWith(MACHINE_TOKEN_PREFIX)) return undefined
      const id = token.slice(MACHINE_TOKEN_PREFIX.length).split('_', 1)[0]
      const r = byId.get(id)
      if (r == null || r.revoked) return undefined
      const expected = Buffer.from(r.hash, 'hex')
      return timingSafeEqual(sha256(token), expected) ? publicInfo(r) : undefined
    }
  }
}
