/**
 * The image service's writes (commits, retirements, pack records) run one at
 * a time, in every coordinator sharing the metadata store: publish order (seq,
 * previous) and the duplicate-version check need it, and they are rare next to
 * reads. The lock is the store's (meta-store: in-process for level, an
 * advisory lock for PostgreSQL).
 */
import type { MetaDb } from './meta-db.ts'

/** Runs `fn` once every write before it has settled; its result or failure is the caller's alone. */
export type WriteLock = <T>(fn: () => Promise<T>) => Promise<T>

/** The images lock of `db`; with a shared store, `refresh` (drop cached records) runs first so the write reads them afresh. */
export function createWriteLock (db: Pick<MetaDb, 'lock' | 'shared'>, refresh: () => void): WriteLock {
  return async <T>(fn: () => Promise<T>): Promise<T> => await db.lock('images', async () => {
    if (db.shared) refresh()
    return await fn()
  })
}
