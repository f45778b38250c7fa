/**
 * Group policies in the `policies` sublevel, mirrored in memory (read on every
 * request, written rarely). With a shared store the mirror is reloaded every
 * SHARED_REFRESH_MS (`refresh`), so another coordinator's change applies here within that time.
 */
import { NotFoundError } from '../protocol/errors.ts'
import type { Policy } from '../protocol/api.ts'
import type { AbortOptions } from './interface.ts'
import type { MetaDb } from './meta-db.ts'

/** Stores one Policy per group name. */
export interface PolicyStore {
  start: () => Promise<void>
  /** Reloads the in-memory mirror from the store (what other coordinators wrote). */
  refresh: () => Promise<void>
  get: (group: string) => Policy | undefined
  all: () => Record<string, Policy>
  put: (group: string, policy: Policy, options?: AbortOptions) => Promise<void>
  /** Throws NotFoundError when the group has no policy. */
  delete: (group: string, options?: AbortOptions) => Promise<void>
}

/** A PolicyStore in the metadata database. */
export function createPolicyStore (components: { db: MetaDb }): PolicyStore {
  const db = components.db.sublevel<string, Policy>('policies', { valueEncoding: 'json' })
  let cache = new Map<string, Policy>()
  // bumped by every local write: a reload that read before it must not replace what it wrote
  let writes = 0
  const load = async (): Promise<void> => {
    const before = writes
    const next = new Map<string, Policy>()
    for await (const [group, p] of db.iterator()) next.set(group, p)
    if (writes === before) cache = next
  }
  return {
    start: load,
    refresh: load,
    get: (group) => cache.get(group),
    all: () => Object.fromEntries([...cache.entries()].sort(([a], [b]) => a.localeCompare(b))),
    async put (group, policy) {
      writes++
      await db.put(group, policy)
      cache.set(group, policy)
    },
    async delete (group) {
      if (!cache.has(group)) throw new NotFoundError(`no policy for group ${group}`)
      writes++
      await db.del(group)
      cache.delete(group)
    }
  }
}
