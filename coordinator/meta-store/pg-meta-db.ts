/**
 * The metadata store on PostgreSQL, for several coordinators sharing one
 * database: every key space is the rows of one `space` in `meta_kv`
 * (migrations.ts), keys compared bytewise like level's, values stored as the
 * bytes level would store. A root batch is one transaction; `lock` is a
 * session advisory lock, and every write made under it goes through the session
 * that holds it (fenced: if that session ends, PostgreSQL releases the lock and
 * another coordinator may take it, so those writes fail instead of racing it). Iterators read in pages (PG_ITERATOR_PAGE rows, cut
 * short at PG_ITERATOR_PAGE_BYTES of values) so a large space never sits in memory; unlike a level iterator they see writes
 * made while they run (no snapshot), which no store relies on.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import pg from 'pg'
import { PG_CONNECT_TIMEOUT_MS, PG_ITERATOR_PAGE, PG_ITERATOR_PAGE_BYTES, PG_MAX_CONNECTIONS, PG_STATEMENT_TIMEOUT_MS } from './constants.ts'
import type { Logger } from '../interface.ts'
import { UnavailableError } from '../../protocol/errors.ts'
import { LockLostError, MetaStoreUnavailableError } from './errors.ts'
import type { MetaBatchOp, MetaDb, MetaIterator, MetaRange, MetaSpace, MetaSpaceOp, MetaValueEncoding } from './interface.ts'
import { createKeyedMutex, createSemaphore } from './keyed-mutex.ts'
import { checkMigrations, MIGRATIONS, pendingMigrations, type Migration } from './migrations.ts'

/** How to reach the database (the config's `metadata.postgres`, password read from its file). */
export interface PgMetaDbInit {
  host: string
  port: number
  database: string
  user: string
  password: string
  /** TLS to the server: true verifies it against the system's CAs; `{ ca }` against this PEM. */
  ssl?: boolean | { ca: string }
  /** Pool size (PG_MAX_CONNECTIONS). */
  maxConnections?: number
  /** The schema steps to apply (MIGRATIONS; tests pass others). */
  migrations?: readonly Migration[]
}

/** A lock held by this store: its session, through which every write under it goes, one after another. */
interface HeldLock {
  name: string
  client: pg.PoolClient
  /** The writes queued on the session, in order. */
  queue: Promise<void>
  /** What broke the session: the lock is gone in the server, and every later write under it is refused. */
  lost?: Error
  /** Past the lock's end: a write from a callback that outlived it goes through the pool. */
  released: boolean
}

/** A PostgreSQL metadata store. */
export interface PgMetaDb extends MetaDb {
  /** The pool, for tests and the bench (row counts). */
  readonly pool: pg.Pool
}

// one advisory lock key space for trimswarm: hashtextextended(text, seed) gives a bigint per name
const MIGRATION_LOCK = 'trimswarm:migrations'
const LOCK_PREFIX = 'trimswarm:lock:'

interface Space<V> extends MetaSpace<V> {
  readonly spaceName: string
  readonly encode: (v: V) => Buffer
}

function encoder (encoding: MetaValueEncoding): { encode: (v: any) => Buffer, decode: (b: Buffer) => any } {
  switch (encoding) {
    case 'json': return { encode: v => Buffer.from(JSON.stringify(v), 'utf8'), decode: b => JSON.parse(b.toString('utf8')) }
    case 'utf8': return { encode: v => Buffer.from(String(v), 'utf8'), decode: b => b.toString('utf8') }
    case 'view': return {
      encode: (v: Uint8Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength),
      decode: b => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
    }
  }
}

const keyBytes = (key: string): Buffer => Buffer.from(key, 'utf8')

/** The WHERE clause (after `space = $1`) and parameters of a range; `after` moves the scan's start past a key already read. */
export function rangeSql (range: MetaRange, after?: string): { where: string, params: Buffer[] } {
  const parts: string[] = []
  const params: Buffer[] = []
  const add = (op: string, key: string): void => { params.push(keyBytes(key)); parts.push(`key ${op} $${params.length + 1}`) }
  if (range.gt != null) add('>', range.gt)
  if (range.gte != null) add('>=', range.gte)
  if (range.lt != null) add('<', range.lt)
  if (range.lte != null) add('<=', range.lte)
  if (after != null) add(range.reverse === true ? '<' : '>', after)
  return { where: parts.map(p => ` AND ${p}`).join(''), params }
}

/** One row write: `value` for a put. */
export interface RowOp { type: 'put' | 'del', space: string, key: string, value?: Buffer }

/** Collapses ops to the last one per (space, key), as applying them in order would leave it. */
export function lastOpPerKey (ops: RowOp[]): { puts: Array<{ space: string, key: string, value: Buffer }>, dels: Array<{ space: string, key: string }> } {
  const last = new Map<string, RowOp>()
  for (const op of ops) last.set(`${op.space}\x00${op.key}`, op)
  const puts: Array<{ space: string, key: string, value: Buffer }> = []
  const dels: Array<{ space: string, key: string }> = []
  for (const op of last.values()) {
    if (op.type === 'put') puts.push({ space: op.space, key: op.key, value: op.value! })
    else dels.push({ space: op.space, key: op.key })
  }
  return { puts, dels }
}

// errors that mean the database cannot be reached now (not a bad query): Node's network codes,
// SQLSTATE class 08 (connection exception), 57P01-57P03 (shutting down, cannot connect now), 53300 (too many connections)
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])
const UNAVAILABLE_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/

/**
 * SQLSTATEs of a database that is going away or too busy: admin/crash shutdown, cannot connect now,
 * too many connections, and a statement cancelled at the statement timeout (e.g. a lock waited
 * for longer, held by another coordinator).
 */
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '57014'])

/** Whether a pg error says the database is unreachable, going away or too busy (a request may be retried later). */
export function isUnavailable (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('08') || UNAVAILABLE_CODES.has(code))) return true
  return UNAVAILABLE_MESSAGES.test((err as Error).message ?? '')
}

/** Runs a database call; an unreachable database becomes UnavailableError (HTTP 503, agents retry). */
async function guarded<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (isUnavailable(err)) throw new UnavailableError(`the metadata database is unavailable: ${(err as Error).message}`, { cause: err })
    throw err
  }
}

function toIterator<T> (gen: AsyncGenerator<T>): MetaIterator<T> {
  return {
    [Symbol.asyncIterator]: () => gen,
    close: async () => { await gen.return(undefined) }
  }
}

/** Connects, applies pending migrations under an advisory lock, and returns the store. Throws MetaStoreUnavailableError, SchemaTooNewError. */
export async function openPgMetaDb (init: PgMetaDbInit, components: { logger?: Logger } = {}): Promise<PgMetaDb> {
  const pool = new pg.Pool({
    host: init.host,
    port: init.port,
    database: init.database,
    user: init.user,
    password: init.password,
    ssl: init.ssl === true ? { rejectUnauthorized: true } : init.ssl != null && init.ssl !== false ? { ca: init.ssl.ca, rejectUnauthorized: true } : undefined,
    max: init.maxConnections ?? PG_MAX_CONNECTIONS,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    statement_timeout: PG_STATEMENT_TIMEOUT_MS,
    application_name: 'trimswarm-coordinator'
  })
  // an idle connection that dies (server restart) must not crash the process; the pool replaces it
  pool.on('error', (err) => { components.logger?.warn('metadata database connection lost', { error: err.message }) })
  const where = `PostgreSQL ${init.user}@${init.host}:${init.port}/${init.database}`
  try {
    await migrate(pool, init.migrations ?? MIGRATIONS, components.logger)
  } catch (err) {
    await pool.end().catch(() => {})
    if ((err as Error).name === 'SchemaTooNewError') throw err
    throw new MetaStoreUnavailableError(`cannot use the metadata database (${where}): ${(err as Error).message}`, { cause: err })
  }
  return createPgMetaDb(pool, init.maxConnections ?? PG_MAX_CONNECTIONS)
}

async function migrate (pool: pg.Pool, migrations: readonly Migration[], logger?: Logger): Promise<void> {
  checkMigrations(migrations)
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [MIGRATION_LOCK])
    try {
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations ' +
        '(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())')
      const applied = (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(r => r.version)
      for (const m of pendingMigrations(migrations, applied)) {
        await client.query('BEGIN')
        try {
          await client.query(m.sql)
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {})
          throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err })
        }
        logger?.info('metadata database migrated', { version: m.version, name: m.name })
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [MIGRATION_LOCK])
    }
  } catch (err) {
    broken = err as Error
    throw err
  } finally {
    client.release(broken)
  }
}

/** The store over a pool whose database is migrated. */
function createPgMetaDb (pool: pg.Pool, maxConnections: number): PgMetaDb {
  // the lock the current async context holds: writes under it go through its session (underLock)
  const held = new AsyncLocalStorage<HeldLock>()
  const mutex = createKeyedMutex()
  // Each held lock keeps a connection and its function needs others: at most half the pool holds locks,
  // so locked sections under different names can never take every connection and wait on each other.
  const lockSlots = createSemaphore(Math.max(1, Math.floor(maxConnections / 2)))
  const query = async <R extends pg.QueryResultRow = any>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> =>
    await guarded(async () => await pool.query<R>(text, values))

  async function * scan<V> (space: string, decode: (b: Buffer) => V, range: MetaRange): AsyncGenerator<[string, V]> {
    let remaining = range.limit == null || range.limit < 0 ? Infinity : range.limit
    let after: string | undefined
    const order = range.reverse === true ? 'DESC' : 'ASC'
    while (remaining > 0) {
      const { where, params } = rangeSql(range, after)
      const n = Math.min(PG_ITERATOR_PAGE, remaining)
      // a page ends at PG_ITERATOR_PAGE rows or at the row that reaches PG_ITERATOR_PAGE_BYTES of values, whichever is first
      // (always at least one row): a space of large values (pack records, digests) never lands in memory 500 at a time
      const res = await query<{ key: Buffer, value: Buffer, upto: string }>(
        `SELECT key, value, upto FROM (SELECT key, value, sum(octet_length(value)) OVER (ORDER BY key ${order} ROWS UNBOUNDED PRECEDING) AS upto ` +
        `FROM meta_kv WHERE space = $1${where} ORDER BY key ${order} LIMIT ${n}) page ` +
        `WHERE upto - octet_length(value) < $${params.length + 2} ORDER BY key ${order}`,
        [space, ...params, PG_ITERATOR_PAGE_BYTES])
      for (const row of res.rows) {
        const key = row.key.toString('utf8')
        after = key
        remaining--
        yield [key, decode(row.value)]
      }
      const cutByBytes = res.rows.length > 0 && Number(res.rows[res.rows.length - 1].upto) >= PG_ITERATOR_PAGE_BYTES
      if (res.rows.length < n && !cutByBytes) return
    }
  }

  /**
   * `fn` and the spaces' generation bump in one transaction on `client`. `state.broken` is set when the
   * connection broke (the caller destroys it); an unreachable database is thrown as UnavailableError.
   */
  async function inTransaction (
    client: pg.PoolClient, spaces: string[], fn: (client: pg.PoolClient) => Promise<void>, state: { broken?: Error }
  ): Promise<void> {
    await guarded(async () => await client.query('BEGIN')).catch((err: Error) => { state.broken = err; throw err })
    try {
      await fn(client)
      // sorted: two transactions bumping the same spaces lock their rows in one order (no deadlock)
      await client.query('INSERT INTO meta_space_gen (space, gen) SELECT s, 1 FROM unnest($1::text[]) AS s ' +
        'ON CONFLICT (space) DO UPDATE SET gen = meta_space_gen.gen + 1',
        [[...new Set(spaces)].sort()])
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => { state.broken = e })
      if (isUnavailable(err)) {
        state.broken = err as Error
        throw new UnavailableError(`the metadata database is unavailable: ${(err as Error).message}`, { cause: err })
      }
      throw err
    }
  }

  /** Runs `fn` in one transaction that also bumps the generation of `spaces` (under a held lock: on the lock's session). */
  async function transaction (spaces: string[], fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const hold = held.getStore()
    if (hold != null && !hold.released) { await underLock(hold, spaces, fn); return }
    const client = await guarded(async () => await pool.connect())
    const state: { broken?: Error } = {}
    // between its queries the connection's end is an 'error' event: unheard, it would end the process
    const onError = (err: Error): void => { state.broken ??= err }
    client.on('error', onError)
    try {
      await inTransaction(client, spaces, fn, state)
    } finally {
      client.removeListener('error', onError)
      client.release(state.broken)
    }
  }

  /** A write under a held lock: on the lock's own session, after the writes queued before it there; refused once the session broke. */
  async function underLock (hold: HeldLock, spaces: string[], fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const lost = (): LockLostError => new LockLostError(
      `the metadata database lock "${hold.name}" was lost (${hold.lost?.message ?? 'its session ended'}): the write was not made`, { cause: hold.lost })
    const run = async (): Promise<void> => {
      if (hold.lost != null) throw lost()
      const state: { broken?: Error } = {}
      try {
        await inTransaction(hold.client, spaces, fn, state)
      } catch (err) {
        if (state.broken == null) throw err
        hold.lost = state.broken
        throw lost()
      }
    }
    const done = hold.queue.then(run, run)
    hold.queue = done.catch(() => {})
    await done
  }

  async function write (ops: Array<{ type: 'put' | 'del', space: string, key: string, value?: Buffer }>): Promise<void> {
    if (ops.length === 0) return
    const { puts, dels } = lastOpPerKey(ops)
    await transaction(ops.map(op => op.space), async (client) => {
      if (dels.length > 0) {
        await client.query('DELETE FROM meta_kv m USING unnest($1::text[], $2::bytea[]) AS d(space, key) WHERE m.space = d.space AND m.key = d.key',
          [dels.map(d => d.space), dels.map(d => keyBytes(d.key))])
      }
      if (puts.length > 0) {
        await client.query('INSERT INTO meta_kv (space, key, value) SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) ' +
          'ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value',
          [puts.map(p => p.space), puts.map(p => keyBytes(p.key)), puts.map(p => p.value)])
      }
    })
  }

  function space<V> (name: string, encoding: MetaValueEncoding): Space<V> {
    const { encode, decode } = encoder(encoding)
    const self: Space<V> = {
      spaceName: name,
      encode,
      async get (key) {
        const res = await query<{ value: Buffer }>('SELECT value FROM meta_kv WHERE space = $1 AND key = $2', [name, keyBytes(key)])
        return res.rows.length === 0 ? undefined : decode(res.rows[0].value)
      },
      async getMany (keys) {
        if (keys.length === 0) return []
        const res = await query<{ key: Buffer, value: Buffer }>('SELECT key, value FROM meta_kv WHERE space = $1 AND key = ANY($2::bytea[])',
          [name, keys.map(keyBytes)])
        const found = new Map(res.rows.map(r => [r.key.toString('utf8'), r.value]))
        return keys.map(k => { const v = found.get(k); return v == null ? undefined : decode(v) })
      },
      async put (key, value) {
        await write([{ type: 'put', space: name, key, value: encode(value) }])
      },
      async del (key) {
        await write([{ type: 'del', space: name, key }])
      },
      async batch (ops: Array<MetaSpaceOp<V>>) {
        await write(ops.map(op => op.type === 'put'
          ? { type: 'put', space: name, key: op.key, value: encode(op.value) }
          : { type: 'del', space: name, key: op.key }))
      },
      iterator: (range = {}) => toIterator(scan(name, decode, range)),
      keys: (range = {}) => toIterator((async function * () { for await (const [k] of scan(name, b => b, range)) yield k })()),
      values: (range = {}) => toIterator((async function * () { for await (const [, v] of scan(name, decode, range)) yield v })()),
      async clear (range = {}) {
        const { where, params } = rangeSql({ ...range, reverse: false })
        const sql = range.limit != null && range.limit >= 0
          ? `DELETE FROM meta_kv WHERE space = $1 AND key IN (SELECT key FROM meta_kv WHERE space = $1${where} ` +
            `ORDER BY key ${range.reverse === true ? 'DESC' : 'ASC'} LIMIT ${Math.floor(range.limit)})`
          : `DELETE FROM meta_kv WHERE space = $1${where}`
        await transaction([name], async (client) => { await client.query(sql, [name, ...params]) })
      }
    }
    return self
  }

  return {
    shared: true,
    pool,
    sublevel: <K extends string = string, V = any>(name: string, options: { valueEncoding?: MetaValueEncoding } = {}) =>
      space<V>(name, options.valueEncoding ?? 'json'),
    async batch (ops: MetaBatchOp[]) {
      await write(ops.map(op => {
        const s = op.sublevel as Space<unknown>
        if (typeof s?.spaceName !== 'string') throw new TypeError('a batch op names no space of this database')
        return op.type === 'put'
          ? { type: 'put', space: s.spaceName, key: op.key, value: s.encode(op.value) }
          : { type: 'del', space: s.spaceName, key: op.key }
      }))
    },
    async lock (name, fn) {
      // one waiter per name per process: waiters blocked in PostgreSQL would each hold a pool connection that `fn` needs
      return await mutex.run(name, async () => await lockSlots.run(async () => {
        const client = await guarded(async () => await pool.connect())
        let broken: Error | undefined
        let hold: HeldLock | undefined
        // the session ending while fn runs (the lock is then released in the server) is an 'error' event between queries
        const onError = (err: Error): void => { broken ??= err; if (hold != null) hold.lost ??= err }
        client.on('error', onError)
        try {
          await guarded(async () => await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [LOCK_PREFIX + name]))
            .catch((err: Error) => { broken = err; throw err })
          hold = { name, client, queue: Promise.resolve(), released: false }
          try {
            return await held.run(hold, fn)
          } finally {
            await hold.queue // a write fn started and did not wait for
            hold.released = true
            broken ??= hold.lost
            await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [LOCK_PREFIX + name]).catch((err: Error) => { broken = err })
          }
        } finally {
          // a connection whose unlock failed is destroyed, which releases the lock in the server
          client.removeListener('error', onError)
          client.release(broken)
        }
      }))
    },
    async generations (spaces) {
      const res = await query<{ g: string | null }>(
        "SELECT string_agg(space || ':' || gen, ',' ORDER BY space) AS g FROM meta_space_gen WHERE space = ANY($1::text[])", [spaces])
      return res.rows[0]?.g ?? ''
    },
    async close () {
      await pool.end()
    }
  }
}
