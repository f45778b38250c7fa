/**
 * The coordinator's metadata database. Embedded default: one `level` database
 * under DIR/meta, each part in its own sublevel (`tokens`, `policies`,
 * `events`, `agents`, the image service's `img...`), so a backup is one
 * directory. With `metadata.postgres` in the config: the same spaces in a
 * PostgreSQL database every coordinator shares (meta-store/pg-meta-db.ts).
 */
import { readFile } from 'node:fs/promises'
import { ConfigError } from './errors.ts'
import type { Logger } from './interface.ts'
import type { MetaDb } from './meta-store/interface.ts'
import { openLevelMetaDb } from './meta-store/level-meta-db.ts'
import { openPgMetaDb } from './meta-store/pg-meta-db.ts'
import type { PostgresConfig } from './meta-store/postgres-config.ts'

export type { MetaDb, MetaSpace } from './meta-store/interface.ts'

/** Opens DIR/meta (level); throws DataDirLockedError when another coordinator holds it. */
export async function openMetaDb (dataDir: string): Promise<MetaDb> {
  return await openLevelMetaDb(dataDir)
}

/**
 * The store the config names: PostgreSQL with `postgres`, else DIR/meta. With
 * PostgreSQL, DIR/meta is still opened (and stays empty) as the data dir's lock:
 * two coordinators must not share one scratch dir either. Throws ConfigError (unreadable password file),
 * MetaStoreUnavailableError, SchemaTooNewError, DataDirLockedError.
 */
export async function openMetaStore (init: { dataDir: string, postgres?: PostgresConfig }, components: { logger?: Logger } = {}): Promise<MetaDb> {
  const pgc = init.postgres
  if (pgc == null) return await openLevelMetaDb(init.dataDir)
  let password: string
  try {
    password = (await readFile(pgc.passwordFile, 'utf8')).split('\n', 1)[0]
  } catch (err) {
    throw new ConfigError(`metadata.postgres.passwordFile: cannot read ${pgc.passwordFile}: ${(err as Error).message}`, { cause: err })
  }
  if (password === '') throw new ConfigError(`metadata.postgres.passwordFile: ${pgc.passwordFile} is empty (its first line is the password)`)
  const dirLock = await openLevelMetaDb(init.dataDir)
  try {
    const db = await openPg(pgc, password, components)
    const close = db.close
    return Object.assign(db, { close: async () => { try { await close() } finally { await dirLock.close() } } })
  } catch (err) {
    await dirLock.close()
    throw err
  }
}

async function openPg (pgc: PostgresConfig, password: string, components: { logger?: Logger }): Promise<MetaDb> {
  let ssl: boolean | { ca: string } | undefined = pgc.ssl === true ? true : undefined
  if (pgc.caFile != null) {
    try {
      ssl = { ca: await readFile(pgc.caFile, 'utf8') }
    } catch (err) {
      throw new ConfigError(`metadata.postgres.caFile: cannot read ${pgc.caFile}: ${(err as Error).message}`, { cause: err })
    }
  }
  const { host, port, database, user, maxConnections } = pgc
  return await openPgMetaDb({ host, port: port ?? 5432, database, user, password, ssl, maxConnections }, components)
}
