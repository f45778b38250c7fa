/**
 * The coordinator's metadata database: one `level` database under DIR/meta.
 * Each part keeps its own sublevel (`tokens`, `policies`, `events`, `agents`,
 * and the image service's `img...`), so a backup is one directory.
 */
import { Level } from 'level'
import { join } from 'node:path'
import { META_DB_DIR } from './constants.ts'
import { DataDirLockedError } from './errors.ts'

/** The root metadata database (string keys, JSON values unless a sublevel says otherwise). */
export type MetaDb = Level<string, any>

/** Opens DIR/meta; throws DataDirLockedError when another coordinator holds it. */
export async function openMetaDb (dataDir: string): Promise<MetaDb> {
  const db: MetaDb = new Level<string, any>(join(dataDir, META_DB_DIR), { keyEncoding: 'utf8', valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw new DataDirLockedError(`data dir ${dataDir} is in use by another running coordinator process (the lock on ${join(dataDir, META_DB_DIR, 'LOCK')} is held)`, { cause: err })
    throw err
  }
  return db
}
