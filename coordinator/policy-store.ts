/** Group policies in the `policies` sublevel, mirrored in memory (read on every request, written rarely). */
import { NotFoundError } from '../protocol/errors.ts'
import type { Policy } from '../protocol/api.ts'
import type { AbortOptions } from './interface.ts'
import type { MetaDb } from './meta-db.ts'

/** Stores one Policy per group name. */
export interface PolicyStore {
  start: () => Promise<void>
  get: (group: string) => Policy | undefined
  all: () => Record<string, Policy>
  put: (group: string, policy: Policy, options?: AbortOptions) => Promise<void>
  /** Throws NotFoundError when the group has no policy. */
  delete: (group: string, options?: AbortOptions) => Promise<void>
}

/** A PolicyStore in the metadata database. */
export function createPolicyStore (components: { db: MetaDb }): PolicyStore {
  const db = components.db.sublevel<string, Policy>('policies', { valueEncoding: 'json' })
  const cache = new Map<string, Policy>()
  return {
    async start () {
      cache.clear()
      for await (const [group, p] of db.iterator()) cache.set(group, p)
    },
    get: (group) => cache.get(group),
    all: () => Object.fromEntries([...cache.entries()].sort(([a], [b]) => a.localeCompare(b))),
    async put (group, policy) {
      await db.put(group, policy)
      cache.set(group, policy)
    },
    async delete (group) {
      if (!cache.has(group)) throw new NotFoundError(`no policy for group ${group}`)
      await db.del(group)
      cache.delete(group)
    }
  }
}
