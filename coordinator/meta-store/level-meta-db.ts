/**
 * The embedded metadata store: one `level` database under DIR/meta, each part
 * in its own sublevel, so a backup is one directory. One process holds it
 * (level's lock), so `lock` is an in-process mutex and nothing is shared.
 */
import { Level } from 'level'
import { join } from 'node:path'
import { META_DB_DIR } from '../constants.ts'
import { DataDirLockedError } from '../errors.ts'
import { createKeyedMutex } from './keyed-mutex.ts'
import type { MetaDb } from './interface.ts'

/** Level itself (unchanged on disk) plus the MetaDb extras. */
export class LevelMetaDb extends Level<string, any> implements MetaDb {
  readonly shared = false
  readonly #mutex = createKeyedMutex()

  async lock<T> (name: string, fn: () => Promise<T>): Promise<T> {
    return await this.#mutex.run(name, fn)
  }
}

/** Opens DIR/meta; throws DataDirLockedError when another coordinator holds it. */
export async function openLevelMetaDb (dataDir: string): Promise<LevelMetaDb> {
  const db = new LevelMetaDb(join(dataDir, META_DB_DIR), { keyEncoding: 'utf8', valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    const lock = join(dataDir, META_DB_DIR, 'LOCK')
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new DataDirLockedError(`data dir ${dataDir} is in use by another running coordinator process (the lock on ${lock} is held)`, { cause: err })
    }
    throw err
  }
  return db
}
