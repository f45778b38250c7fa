/**
 * The metadata stores: the compliance suite on level (a temp dir) and on
 * PostgreSQL (the run's shared stack of scripts/scale-out-stack.sh, this file
 * in a database of its own: test/helpers/scale-out-stack.ts), PostgreSQL's
 * migrations, leases raced by two stores, the config section, and two
 * coordinators on PostgreSQL + RGW serving the same images, tokens, reports
 * and delta packs. Those two use a PostgreSQL cluster of this file's own
 * (and the shared bucket under this file's key prefix): their last test stops
 * it, which must not fail the other files' requests on the shared one.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCoordinator, type Coordinator } from '../../../coordinator/coordinator.ts'
import { loadCoordinatorConfig, parseCoordinatorConfig } from '../../../coordinator/config.ts'
import { ConfigError } from '../../../coordinator/errors.ts'
import { openMetaStore } from '../../../coordinator/meta-db.ts'
import { LockLostError, MetaStoreUnavailableError, SchemaTooNewError } from '../../../coordinator/meta-store/errors.ts'
import type { MetaDb } from '../../../coordinator/meta-store/interface.ts'
import { createLeases } from '../../../coordinator/meta-store/leases.ts'
import { PG_ITERATOR_PAGE_BYTES } from '../../../coordinator/meta-store/constants.ts'
import { whenChanged } from '../../../coordinator/meta-store/shared-refresh.ts'
import { openLevelMetaDb } from '../../../coordinator/meta-store/level-meta-db.ts'
import { MIGRATIONS, pendingMigrations } from '../../../coordinator/meta-store/migrations.ts'
import { openPgMetaDb, type PgMetaDb, type PgMetaDbInit } from '../../../coordinator/meta-store/pg-meta-db.ts'
import { createPublishClient } from '../../../client/publish-client.ts'
import { createSessionTokens } from '../../../coordinator/session-tokens.ts'
import { cli } from '../../helpers/cli-process.ts'
import { makeTestImage, tempDir, type TempDir } from '../../helpers/images.ts'
import { sharedScaleOutStack, startTestPostgres, type TestScaleOutStack } from '../../helpers/scale-out-stack.ts'
import { OPEN_POLICY, runAgent } from '../../peer-agent/harness.ts'
import { metaStoreComplianceTests } from './meta-store-compliance.ts'

const exec = promisify(execFile)
let tmp: TempDir
let stack: TestScaleOutStack
let pgInit: PgMetaDbInit
let levelDb: MetaDb
let pgDb: PgMetaDb

beforeAll(async () => {
  tmp = await tempDir('trimswarm-meta-store-')
  levelDb = await openLevelMetaDb(join(tmp.path, 'level'))
  stack = await sharedScaleOutStack('meta_store')
  pgInit = stack.postgres
  pgDb = await openPgMetaDb(pgInit)
}, 300_000)

afterAll(async () => {
  await levelDb?.close()
  await pgDb?.close()
  await stack?.stop()
  await tmp?.cleanup()
}, 120_000)

metaStoreComplianceTests('level', () => levelDb)
metaStoreComplianceTests('PostgreSQL', () => pgDb)

describe('PostgreSQL store', () => {
  it('applies each migration once, under a lock, when coordinators start together', async () => {
    // the database already holds the schema (beforeAll): three more starts at once apply nothing again
    const dbs = await Promise.all([1, 2, 3].map(async () => await openPgMetaDb(pgInit)))
    await Promise.all(dbs.map(async d => { await d.close() }))
    const rows = (await pgDb.pool.query<{ version: number, name: string }>('SELECT version, name FROM schema_migrations ORDER BY version')).rows
    expect(rows).toEqual(MIGRATIONS.map(m => ({ version: m.version, name: m.name })))
    const index = (await pgDb.pool.query<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE tablename = 'meta_kv'")).rows.map(r => r.indexdef)
    expect(index.join('\n')).toMatch(/btree \(space, key\)/)
  })

  it('a new migration is applied by the next start and recorded; a database with a newer schema is refused', async () => {
    const extra = [...MIGRATIONS, { version: MIGRATIONS.length + 1, name: 'test_extra', sql: 'CREATE TABLE test_extra_migration (x integer)' }]
    const db = await openPgMetaDb({ ...pgInit, migrations: extra })
    await db.close()
    const versions = (await pgDb.pool.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map(r => r.version)
    expect(versions).toEqual(extra.map(m => m.version))
    // this coordinator's code (MIGRATIONS) now meets a newer schema
    await expect(openPgMetaDb(pgInit)).rejects.toThrow(SchemaTooNewError)
    await expect(openPgMetaDb(pgInit)).rejects.toThrow(`schema version ${extra.length}, this coordinator knows up to ${MIGRATIONS.length}: a newer coordinator upgraded it`)
    await pgDb.pool.query('DROP TABLE test_extra_migration')
    await pgDb.pool.query('DELETE FROM schema_migrations WHERE version = $1', [extra.length])
    expect(() => pendingMigrations(MIGRATIONS, [1, 70])).toThrow(SchemaTooNewError)
  })

  it('generations move with every write to a space (put, del, batch, clear) in any coordinator, not with writes to others; a mirror reloads only then', async () => {
    const other = await openPgMetaDb(pgInit)
    try {
      const [a, b] = ['a', 'b'].map(x => `gen-${x}-${randomBytes(4).toString('hex')}`)
      const sa = pgDb.sublevel<string, number>(a)
      const sb = pgDb.sublevel<string, number>(b)
      const gen = async (): Promise<string> => await pgDb.generations!([a])
      const seen = [await gen()]
      const moved = async (): Promise<boolean> => { const g = await gen(); const m = g !== seen.at(-1); seen.push(g); return m }
      await sa.put('k', 1)
      expect(await moved()).toBe(true)
      await sb.put('k', 1)
      await pgDb.batch([{ type: 'put', sublevel: sb, key: 'j', value: 2 }])
      expect(await moved()).toBe(false)
      await sa.del('k')
      expect(await moved()).toBe(true)
      await pgDb.batch([{ type: 'put', sublevel: sb, key: 'x', value: 1 }, { type: 'put', sublevel: sa, key: 'x', value: 1 }])
      expect(await moved()).toBe(true)
      await sa.clear({ gte: 'x' })
      expect(await moved()).toBe(true)

      let loads = 0
      const refresh = whenChanged(pgDb, [a], () => { loads++ })
      await refresh()
      await refresh()
      expect(loads).toBe(1)
      await other.sublevel<string, number>(a).put('from-another-coordinator', 1)
      await refresh()
      expect(loads).toBe(2)
      // level has no generations: every tick reloads (and level is never shared, so none runs)
      let levelLoads = 0
      const levelRefresh = whenChanged(levelDb, ['tokens'], () => { levelLoads++ })
      await levelRefresh()
      await levelRefresh()
      expect(levelLoads).toBe(2)
    } finally {
      await other.close()
    }
  })

  it('an iterator over large values reads pages of at most 4 MiB (plus one value), not 500 values at once, and still yields every key in order', async () => {
    const space = pgDb.sublevel<string, Uint8Array>(`big-values-${randomBytes(4).toString('hex')}`, { valueEncoding: 'view' })
    const value = (i: number): Uint8Array => new Uint8Array(1024 * 1024).fill(i + 1)
    const keys = Array.from({ length: 12 }, (_, i) => `k${String(i).padStart(2, '0')}`)
    for (const [i, k] of keys.entries()) await space.put(k, value(i))
    const pages: number[] = []
    const query = pgDb.pool.query.bind(pgDb.pool)
    pgDb.pool.query = (async (...args: unknown[]) => {
      const res = await (query as (...a: unknown[]) => Promise<{ rows: Array<{ value?: Buffer }> }>)(...args)
      if (res.rows[0]?.value instanceof Buffer) pages.push(res.rows.reduce((n, r) => n + (r.value?.length ?? 0), 0))
      return res
    }) as typeof pgDb.pool.query
    try {
      const seen: string[] = []
      for await (const [k, v] of space.iterator()) { seen.push(k); expect(v[0]).toBe(keys.indexOf(k) + 1) }
      expect(seen).toEqual(keys)
      const back: string[] = []
      for await (const k of space.keys({ reverse: true, lt: 'k10', limit: 7 })) back.push(k)
      expect(back).toEqual(keys.slice(3, 10).reverse())
    } finally {
      pgDb.pool.query = query
    }
    expect(pages.length).toBeGreaterThan(2)
    expect(Math.max(...pages)).toBeLessThanOrEqual(PG_ITERATOR_PAGE_BYTES + 1024 * 1024)
  })

  it('a wrong password or a closed port is one clear error, not a hang', async () => {
    await expect(openPgMetaDb({ ...pgInit, password: 'wrong' })).rejects.toThrow(MetaStoreUnavailableError)
    await expect(openPgMetaDb({ ...pgInit, password: 'wrong' })).rejects.toThrow(/cannot use the metadata database \(PostgreSQL trimswarm@127\.0\.0\.1:\d+\/ts_meta_store\): password authentication failed/)
    const started = Date.now()
    await expect(openPgMetaDb({ ...pgInit, port: 1 })).rejects.toThrow(/ECONNREFUSED/)
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('the lock excludes holders in different coordinators (two pools on one database)', async () => {
    const other = await openPgMetaDb(pgInit)
    try {
      const space = `lock2-${randomBytes(4).toString('hex')}`
      const s = pgDb.sublevel<string, number>(space)
      const s2 = other.sublevel<string, number>(space)
      const bump = async (db: MetaDb, space: typeof s): Promise<void> => {
        await db.lock('two-coordinators', async () => {
          const n = (await space.get('n')) ?? 0
          await new Promise(resolve => setTimeout(resolve, 3))
          await space.put('n', n + 1)
        })
      }
      await Promise.all(Array.from({ length: 30 }, async (_, i) => { await (i % 2 === 0 ? bump(pgDb, s) : bump(other, s2)) }))
      expect(await s.get('n')).toBe(30)
    } finally {
      await other.close()
    }
  })

  it('writes under a lock whose session ended are refused, not raced with the next holder; the store goes on', async () => {
    const other = await openPgMetaDb(pgInit)
    try {
      const space = `fenced-${randomBytes(4).toString('hex')}`
      const s = pgDb.sublevel<string, number>(space)
      const s2 = other.sublevel<string, number>(space)
      /** Ends the PostgreSQL session holding advisory lock `name` (as a network failure or an admin would); its pid. */
      const endHolder = async (name: string): Promise<number> => {
        const key = `trimswarm:lock:${name}`
        const { rows } = await pgDb.pool.query<{ pid: number }>('SELECT pid FROM pg_locks WHERE locktype = \'advisory\' AND granted ' +
          'AND classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295 AND objid::bigint = hashtextextended($1, 0) & 4294967295', [key])
        expect(rows).toHaveLength(1)
        await pgDb.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid])
        return rows[0].pid
      }
      let otherWrote = false
      const attempt = pgDb.lock('fenced', async () => {
        await s.put('n', 1) // on the lock's session: made
        await endHolder('fenced')
        // the server released the lock: another coordinator takes it and writes while we still think we hold it
        await other.lock('fenced', async () => { await s2.put('n', 10); otherWrote = true })
        await s.put('n', 2) // refused: it would overwrite the other holder's write
      })
      await expect(attempt).rejects.toThrow(LockLostError)
      await expect(attempt).rejects.toThrow(/the metadata database lock "fenced" was lost .*: the write was not made/)
      expect(otherWrote).toBe(true)
      expect(await s.get('n')).toBe(10)
      // the broken session is not reused: the next lock and its writes work
      await pgDb.lock('fenced', async () => { await s.put('n', ((await s.get('n')) ?? 0) + 1) })
      expect(await s2.get('n')).toBe(11)
    } finally {
      await other.close()
    }
  })

  it('a session revoked (logout) through one coordinator is refused by another once it reloads; overflow revokes everything before it on both', async () => {
    const other = await openPgMetaDb(pgInit)
    try {
      const secret = randomBytes(32)
      let t = Date.now()
      const a = createSessionTokens({ secret, ttlSeconds: 3600, maxRevoked: 2, now: () => t }, { db: pgDb })
      const b = createSessionTokens({ secret, ttlSeconds: 3600, maxRevoked: 2, now: () => t }, { db: other })
      await a.start()
      await b.start()
      const s1 = a.issue('alice', ['desk'])
      expect(b.verify(s1.token)?.user).toBe('alice')
      expect(await a.revoke(s1.token)).toBe(true)
      expect(a.verify(s1.token)).toBeUndefined()
      await b.refresh()
      expect(b.verify(s1.token)).toBeUndefined()
      // a full list revokes every session issued before now, on both
      const s2 = b.issue('bob', ['desk'])
      const s3 = b.issue('carol', ['desk'])
      t += 2000
      expect(await a.revoke(s2.token)).toBe(true)
      expect(await a.revoke(s3.token)).toBe(true) // the list is full: everything issued before this second is revoked
      await b.refresh()
      expect(b.verify(s2.token)).toBeUndefined()
      expect(b.verify(s3.token)).toBeUndefined()
      t += 1000
      expect(b.verify(b.issue('dave', ['desk']).token)?.user).toBe('dave')
    } finally {
      // the coordinators of the tests below share this database: leave them no revocations
      await pgDb.pool.query("DELETE FROM meta_kv WHERE space IN ('revoked-sessions', 'revoked-sessions-meta')")
      await other.close()
    }
  })

  it('two coordinators racing for the same delta pack build it once; a dead holder\'s lease is taken over', async () => {
    const other = await openPgMetaDb(pgInit)
    try {
      const name = `pack:img/v2/from-v1-${randomBytes(4).toString('hex')}`
      const packs = pgDb.sublevel<string, { builtBy: string }>('test-packs')
      const builds: string[] = []
      const coordinator = (db: MetaDb, id: string): Promise<unknown> => {
        const leases = createLeases({ db }, { holder: id, ttlMs: 2000, renewMs: 300 })
        const space = db.sublevel<string, { builtBy: string }>('test-packs')
        return leases.runExclusive(name, async () => {
          builds.push(id)
          await new Promise(resolve => setTimeout(resolve, 1500)) // longer than several renewals
          await space.put(name, { builtBy: id })
        }, { done: async () => (await space.get(name)) != null, pollMs: 100 })
      }
      const outcomes = await Promise.all([coordinator(pgDb, 'a'), coordinator(other, 'b'), coordinator(pgDb, 'c'), coordinator(other, 'd')])
      expect(builds).toHaveLength(1)
      expect(outcomes.filter(o => (o as { ran: boolean }).ran)).toHaveLength(1)
      expect((await packs.get(name))?.builtBy).toBe(builds[0])

      // a holder that dies (never renews nor releases): the work is taken over once its lease expires
      const name2 = `${name}-takeover`
      const dead = createLeases({ db: other }, { holder: 'dead', ttlMs: 1000 })
      expect(await dead.tryAcquire(name2)).toBe(true)
      const started = Date.now()
      const live = createLeases({ db: pgDb }, { holder: 'live', ttlMs: 1000, renewMs: 300 })
      const outcome = await live.runExclusive(name2, async () => 'built', { done: async () => false, pollMs: 100 })
      expect(outcome).toEqual({ ran: true, value: 'built' })
      expect(Date.now() - started).toBeGreaterThan(700)
    } finally {
      await other.close()
    }
  })
})

describe('config: metadata.postgres', () => {
  const base = { host: 'db.example', database: 'trimswarm', user: 'trimswarm', passwordFile: 'pg-password' }

  it('is validated with clear errors; relative files are relative to the config file', () => {
    expect(parseCoordinatorConfig({ metadata: { postgres: base } }, '/etc/trimswarm').metadata?.postgres).toEqual({ ...base, passwordFile: '/etc/trimswarm/pg-password' })
    expect(parseCoordinatorConfig({ metadata: { postgres: { ...base, caFile: 'ca.pem', ssl: true, port: 6432 } } }, '/etc/t').metadata?.postgres).toMatchObject({ caFile: '/etc/t/ca.pem', port: 6432 })
    expect(() => parseCoordinatorConfig({ metadata: { postgres: { ...base, password: 'inline' } } })).toThrow(/invalid coordinator config: metadata\.postgres: unknown field password|password/)
    expect(() => parseCoordinatorConfig({ metadata: { postgres: { ...base, port: 70000 } } })).toThrow(/metadata\.postgres\.port/)
    expect(() => parseCoordinatorConfig({ metadata: { postgres: { host: 'h', database: 'd', user: 'u' } } })).toThrow(/passwordFile/)
    expect(() => parseCoordinatorConfig({ metadata: { mysql: {} } })).toThrow(/mysql/)
    expect(() => parseCoordinatorConfig({ metadata: { postgres: { ...base, database: 'x; drop' } } })).toThrow(/metadata\.postgres\.database/)
  })

  it('a missing or empty password file stops the start with a ConfigError naming it', async () => {
    const dir = join(tmp.path, 'cfg')
    await mkdir(dir, { recursive: true })
    const postgres = { ...base, passwordFile: join(dir, 'none') }
    await expect(openMetaStore({ dataDir: join(dir, 'data'), postgres })).rejects.toThrow(ConfigError)
    await expect(openMetaStore({ dataDir: join(dir, 'data'), postgres })).rejects.toThrow(`metadata.postgres.passwordFile: cannot read ${join(dir, 'none')}`)
    await writeFile(join(dir, 'empty'), '\n')
    await expect(openMetaStore({ dataDir: join(dir, 'data'), postgres: { ...postgres, passwordFile: join(dir, 'empty') } })).rejects.toThrow(/is empty/)
  })
})

describe('trimswarm coordinator with metadata.postgres', () => {
  it('an unreachable database stops the start with one line and exit code 5; a wrong password likewise', async () => {
    const dir = join(tmp.path, 'cli')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'pw'), 'secret\n', { mode: 0o600 })
    const closed = { metadata: { postgres: { host: '127.0.0.1', port: 1, database: 'trimswarm', user: 'trimswarm', passwordFile: 'pw' } } }
    await writeFile(join(dir, 'closed.json'), JSON.stringify(closed))
    await writeFile(join(dir, 'wrong.json'), JSON.stringify({ metadata: { postgres: { ...closed.metadata.postgres, port: pgInit.port } } }))
    for (const [config, message] of [['closed.json', /cannot use the metadata database \(PostgreSQL trimswarm@127\.0\.0\.1:1\/trimswarm\): connect ECONNREFUSED/], ['wrong.json', /password authentication failed for user "trimswarm"/]] as const) {
      const r = await cli(['coordinator', '--data', join(dir, `data-${config}`), '--config', join(dir, config), '--log-format', 'text'])
      expect(r.code, r.stderr).toBe(5)
      expect(r.stderr).toMatch(message)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    }
  })
})

describe('two coordinators on the stack\'s coordinator.json (PostgreSQL + RGW)', () => {
  /** The coordinators started, in order (the tests below share them). */
  const started: Coordinator[] = []
  let pg: Awaited<ReturnType<typeof startTestPostgres>>
  let configFile: string
  beforeAll(async () => {
    pg = await startTestPostgres()
    const config = JSON.parse(await readFile(stack.configFile, 'utf8'))
    config.metadata.postgres = JSON.parse(await readFile(pg.postgresJson, 'utf8'))
    // delta packs at a fast zstd level: the tests check who builds and serves them, not the ratio (level 19 takes a minute under load)
    config.images = { deltaPackZstd: { level: 3 } }
    configFile = join(tmp.path, 'two-coordinators.json')
    await writeFile(configFile, JSON.stringify(config))
  }, 120_000)
  afterAll(async () => {
    for (const c of started) await c.stop()
    await pg?.stop()
  }, 120_000)

  /** A coordinator with its own scratch dir; the config names the shared signing key, session key and admin token files. */
  const start = async (name: string): Promise<{ c: Coordinator, dir: string }> => {
    const dir = join(tmp.path, name)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const c = createCoordinator({ dataDir: dir, listen: '127.0.0.1:0', logLevel: 'error', config: await loadCoordinatorConfig(configFile) })
    await c.start()
    started.push(c)
    return { c, dir }
  }

  it('publish via one, sync via the other; both report the same events, counted from both; a token revoked on one is refused by the other', async () => {
    const one = await start('coord-1')
    const two = await start('coord-2')
    const adminToken = one.c.adminToken
    expect(two.c.adminToken).toBe(adminToken)
    const call = async (c: Coordinator, method: string, path: string, token = adminToken, body?: unknown): Promise<Response> =>
      await fetch(c.url + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
    const json = async (res: Response): Promise<any> => { if (!res.ok) throw new Error(`${res.status} ${await res.text()}`); return await res.json() }

    await json(await call(one.c, 'PUT', '/v1/policies/branch', adminToken, OPEN_POLICY))
    const agent = await json(await call(one.c, 'POST', '/v1/tokens', adminToken, { group: 'branch', name: 'pg-e2e' }))
    await writeFile(join(tmp.path, 'agent.token'), agent.token + '\n', { mode: 0o600 })
    const image = await makeTestImage(tmp.path, { name: 'pgws', sizeMiB: 4, seed: 1717 })
    await createPublishClient({ coordinator: one.c.url, token: adminToken }).publish(image.path, { image: 'pgws', version: 'v1' })

    // the other coordinator knows the version, the policy and the token (within the refresh time)
    await expect.poll(async () => (await call(two.c, 'GET', '/v1/images/pgws/versions/latest/info', agent.token)).status, { timeout: 5000, interval: 200 }).toBe(200)
    const out = join(tmp.path, 'pg-synced.img')
    const sync = await runAgent(['sync', 'pgws', '--coordinator', two.c.url, '--token-file', join(tmp.path, 'agent.token'), '--data', join(tmp.path, 'agent'),
      '--out', out, '--no-index', '--no-lan', '--linger', '0', '--json'])
    expect(sync.code, sync.stderr).toBe(0)
    expect(Buffer.compare(await readFile(out), await readFile(image.path))).toBe(0)

    // the agent's events went to the second coordinator; reports and the event log agree on both
    const report = async (c: Coordinator): Promise<unknown> => (await json(await call(c, 'GET', '/v1/reports?image=pgws'))).rows
    await expect.poll(async () => JSON.stringify(await report(two.c)), { timeout: 5000, interval: 200 }).toMatch(/"clients":1/)
    await expect.poll(async () => JSON.stringify(await report(one.c)), { timeout: 5000, interval: 200 }).toBe(JSON.stringify(await report(two.c)))
    const events = async (c: Coordinator): Promise<string[]> => (await json(await call(c, 'GET', '/v1/events?image=pgws&limit=100'))).events.map((e: any) => `${e.event.type}:${e.event.id}`)
    expect((await events(one.c)).length).toBeGreaterThanOrEqual(2)
    expect(await events(one.c)).toEqual(await events(two.c))

    // events posted to both at once (each coordinator changes the same aggregate): no update is lost
    const [row] = await report(two.c) as Array<{ site: string, clients: number, bytes: { origin: number } }>
    const n = 12
    const posted = await Promise.all(Array.from({ length: n }, async (_, i) => await json(await call(i % 2 === 0 ? one.c : two.c, 'POST', '/v1/events', agent.token, {
      events: [{ id: `pgevent-${i}-${randomBytes(4).toString('hex')}`, type: 'sync.completed', time: new Date().toISOString(), agent: `branch-pc-${i}`, site: row.site, image: 'pgws', version: 'v1', bytes: { local: 0, peers: 0, origin: 1000 } }]
    }))))
    expect(posted.map(p => p.accepted)).toEqual(Array(n).fill(1))
    const want = { clients: row.clients + n, origin: row.bytes.origin + n * 1000 }
    for (const c of [one.c, two.c]) {
      await expect.poll(async () => { const [r] = await report(c) as Array<typeof row>; return { clients: r.clients, origin: r.bytes.origin } }, { timeout: 5000, interval: 200 }).toEqual(want)
    }

    // a token revoked on one coordinator is refused by the other within the refresh time
    expect((await call(two.c, 'GET', '/v1/images', agent.token)).status).toBe(200)
    await json(await call(one.c, 'DELETE', `/v1/tokens/${agent.id as string}`))
    const revokedAt = Date.now()
    await expect.poll(async () => (await call(two.c, 'GET', '/v1/images', agent.token)).status, { timeout: 5000, interval: 100 }).toBe(401)
    expect(Date.now() - revokedAt).toBeLessThan(3000)
  })

  it('a version published on one is built into a delta pack once, though both coordinators are asked to build it, and both serve it from the bucket', async () => {
    const [one, two] = started
    const image = await makeTestImage(tmp.path, { name: 'pgws2', sizeMiB: 4, seed: 1718 })
    await createPublishClient({ coordinator: one.url, token: one.adminToken }).publish(image.path, { image: 'pgws', version: 'v2' })
    // the first is building it now (every publish queues its pack); the second is asked too, at once
    two.images.refresh()
    await two.images.rebuildDeltaPack('pgws', 'v2')
    await Promise.all([one.images.whenIdle(), two.images.whenIdle()])
    const built = [one, two].map(c => c.images.stats().deltaPacksBuilt)
    expect(built[0] + built[1]).toBe(1)
    expect(one.images.stats().deltaPackBuildFailures + two.images.stats().deltaPackBuildFailures).toBe(0)
    for (const c of [one, two]) {
      await expect.poll(async () => (await (await fetch(`${c.url}/v1/images/pgws/versions/v2/info`, { headers: { authorization: `Bearer ${c.adminToken}` } })).json()).deltaPackBytes, { timeout: 5000, interval: 200 }).toBeGreaterThan(0)
    }
    // the pack is in the bucket: the coordinator that did not build it serves it, byte-identical, with the same ETag and ranges
    const builder = built[0] === 1 ? one : two
    const other = builder === one ? two : one
    const get = async (c: Coordinator, headers: Record<string, string> = {}): Promise<Response> =>
      await fetch(`${c.url}/v1/images/pgws/versions/v2/delta/v1`, { headers: { authorization: `Bearer ${c.adminToken}`, ...headers } })
    const [fromBuilder, fromOther] = [await get(builder), await get(other)]
    expect([fromBuilder.status, fromOther.status]).toEqual([200, 200])
    expect(fromOther.headers.get('etag')).toBe(fromBuilder.headers.get('etag'))
    const pack = new Uint8Array(await fromBuilder.arrayBuffer())
    expect(new Uint8Array(await fromOther.arrayBuffer())).toEqual(pack)
    const cut = Math.floor(pack.length / 3)
    const tail = await get(other, { range: `bytes=${cut}-`, 'if-range': fromBuilder.headers.get('etag')! })
    expect(tail.status).toBe(206)
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(pack.subarray(cut))
  })

  it('PostgreSQL stopped: requests that need it answer 503 JSON (agents retry), the coordinators keep running and recover when it is back', async () => {
    const [one, two] = started
    const events = async (c: Coordinator): Promise<Response> => await fetch(`${c.url}/v1/events?limit=1`, { headers: { authorization: `Bearer ${c.adminToken}` } })
    expect((await events(one)).status).toBe(200)
    const pgData = join(pg.dir, 'pg', 'data')
    const pgCtl = async (...args: string[]): Promise<void> => {
      const bin = (await exec('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1'])).stdout.trim()
      const cmd = [`${bin}/pg_ctl`, '-D', pgData, ...args]
      if (process.getuid?.() === 0) await exec('runuser', ['-u', 'postgres', '--', ...cmd], { timeout: 60_000 })
      else await exec(cmd[0], cmd.slice(1), { timeout: 60_000 })
    }
    await pgCtl('-m', 'fast', '-w', 'stop')
    try {
      for (const c of [one, two]) {
        const res = await events(c)
        expect(res.status).toBe(503)
        expect((await res.json()).error.name).toBe('UnavailableError')
      }
    } finally {
      await exec(new URL('../../../scripts/scale-out-stack.sh', import.meta.url).pathname, ['postgres', pg.dir], { timeout: 120_000 })
    }
    for (const c of [one, two]) await expect.poll(async () => (await events(c)).status, { timeout: 15_000, interval: 250 }).toBe(200)
  })
})
