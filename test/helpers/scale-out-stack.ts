/**
 * The scale-out back-ends (PostgreSQL and Ceph's RADOS Gateway) of
 * scripts/scale-out-stack.sh, for tests, started as an operator would.
 *
 * Shared: one stack per vitest run (test/scale-out-global-setup.ts names its
 * directory). The first test file that asks for it starts it (~25 s); every
 * other file finds it running. Each file gets its own database in the
 * stack's PostgreSQL and its own key prefix in the bucket
 * (sharedScaleOutStack), so files running in parallel never see each
 * other's data; the global teardown stops the stack. A run whose files never
 * ask starts nothing.
 *
 * A file that restarts the stack's daemons takes it exclusively (it waits
 * for the files using it to finish; files arriving meanwhile wait for it).
 * A test that stops only its database uses a PostgreSQL cluster of its own
 * (startTestPostgres: a few seconds). startTestScaleOutStack gives a whole
 * stack of the caller's own (~25 s).
 */
import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { inject } from 'vitest'
import type { S3BlockStoreInit } from '../../coordinator/s3-block-store.ts'
import type { PgMetaDbInit } from '../../coordinator/meta-store/pg-meta-db.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The directory of this run's shared stack (not started until a file asks for it). */
    scaleOutStackDir: string
  }
}

const run = promisify(execFile)
const SCRIPT = new URL('../../scripts/scale-out-stack.sh', import.meta.url).pathname

/** A running stack. */
export interface TestScaleOutStack {
  /** The stack's DIR (coordinator.json, admin.token, s3-secret, postgres.json). */
  dir: string
  /** A coordinator config on the stack (for a shared stack: this file's database and key prefix). */
  configFile: string
  /** What createS3BlockStore needs to reach the stack's bucket (secret read from DIR/s3-secret; with this file's key prefix). */
  s3: S3BlockStoreInit
  /** What openPgMetaDb needs to reach this file's database. */
  postgres: PgMetaDbInit
  /** The admin token every coordinator on the config accepts (its file is the config's adminTokenFile). */
  adminTokenFile: string
  /** How long `up` took, in ms. */
  upMs: number
  /** Private stack: stops every daemon and deletes DIR; shared stack: releases this file's hold on it (the run's teardown stops it). Safe to call twice. */
  stop: () => Promise<void>
}

/** Runs the script under the stack's lock: test files of one run start and extend the shared stack one at a time. */
async function script (dir: string, args: string[], timeout: number): Promise<string> {
  try {
    // -o: the daemons `up` starts must not inherit (and so hold) the lock
    return (await run('flock', ['-o', `${dir}.lock`, SCRIPT, ...args], { timeout })).stdout
  } catch (err: any) {
    throw new Error(`scripts/scale-out-stack.sh ${args.join(' ')} failed: ${String(err.stderr ?? err.message)}`, { cause: err })
  }
}

/** The stack's coordinator.json read into the parts tests use. */
async function readStack (dir: string, database: string, keyPrefix: string): Promise<Omit<TestScaleOutStack, 'configFile' | 'upMs' | 'stop'>> {
  const conf = JSON.parse(await readFile(join(dir, 'coordinator.json'), 'utf8'))
  const s3 = conf.blockStore.s3
  const secretAccessKey = (await readFile(s3.secretAccessKeyFile, 'utf8')).trim()
  const pg = conf.metadata.postgres
  const password = (await readFile(pg.passwordFile, 'utf8')).split('\n')[0]
  return {
    dir,
    s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey, forcePathStyle: s3.forcePathStyle, keyPrefix },
    postgres: { host: pg.host, port: pg.port, database, user: pg.user, password },
    adminTokenFile: join(dir, 'admin.token')
  }
}

/**
 * Holds the stack's users lock (`DIR.users`, flock) until release: shared by
 * every file using the stack, exclusive for one that restarts it (which so
 * waits for the others to finish, and makes later ones wait for it). The
 * holder is a `flock ... cat` child: if this process dies, its stdin closes
 * and the lock goes with it.
 */
async function holdUsersLock (dir: string, mode: 'shared' | 'exclusive'): Promise<() => Promise<void>> {
  const child = spawn('flock', [mode === 'shared' ? '-s' : '-x', `${dir}.users`, '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>(resolve => child.on('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve())
    void exited.then(() => reject(new Error(`flock ${dir}.users ended before taking the lock`)))
  })
  return async () => {
    child.stdin.end()
    await exited
  }
}

/**
 * This file's part of the run's shared stack (see the module comment): starts
 * the stack if no file has yet, creates database `ts_<name>`, and writes a
 * coordinator.json on it with key prefix `<name>/chunks/`, and with shared key
 * files, so every coordinator started on that config signs with the same key.
 * With `exclusive` (a file that stops the stack's daemons) it first waits until
 * no other file uses the stack, and others wait for it until stop().
 */
export async function sharedScaleOutStack (name: string, options: { exclusive?: boolean } = {}): Promise<TestScaleOutStack> {
  if (!/^[a-z][a-z0-9_]{0,40}$/.test(name)) throw new Error(`stack user name ${name}: lower-case letters, digits and _`)
  const dir = inject('scaleOutStackDir')
  if (dir == null) throw new Error('no shared stack: run vitest with vitest.config.ts (its globalSetup names the stack\'s directory)')
  const release = await holdUsersLock(dir, options.exclusive === true ? 'exclusive' : 'shared')
  try {
    const started = Date.now()
    await script(dir, ['up', dir], 300_000)
    const upMs = Date.now() - started
    const database = `ts_${name}`
    await script(dir, ['database', dir, database], 60_000)
    const parts = await readStack(dir, database, `${name}/chunks/`)
    const own = await mkdtemp(join(tmpdir(), `trimswarm-stack-${name}-`))
    await mkdir(join(own, 'keys'), { mode: 0o700 })
    const config = JSON.parse(await readFile(join(dir, 'coordinator.json'), 'utf8'))
    config.metadata.postgres.database = database
    config.blockStore.s3.keyPrefix = parts.s3.keyPrefix
    Object.assign(config, { signingKeyFile: join(own, 'keys', 'signing-key.pem'), sessionKeyFile: join(own, 'keys', 'session.key'), adminTokenFile: parts.adminTokenFile })
    const configFile = join(own, 'coordinator.json')
    await writeFile(configFile, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 })
    let stopped = false
    return {
      ...parts,
      configFile,
      upMs,
      stop: async () => {
        if (stopped) return
        stopped = true
        await rm(own, { recursive: true, force: true })
        await release()
      }
    }
  } catch (err) {
    await release()
    throw err
  }
}

/** `scale-out-stack.sh` run on the stack under its start lock (for a file holding the exclusive lock: down, up). */
export async function stackScript (dir: string, args: string[]): Promise<void> {
  await script(dir, args, 300_000)
}

/** Runs `scale-out-stack.sh up` in a fresh temp dir: a stack of the caller's own (~25 s). */
export async function startTestScaleOutStack (): Promise<TestScaleOutStack> {
  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-stack-'))
  const started = Date.now()
  try {
    await script(dir, ['up', dir], 300_000)
  } catch (err) {
    await stopStack(dir)
    throw err
  }
  const upMs = Date.now() - started
  const parts = await readStack(dir, 'trimswarm', 'chunks/')
  let stopped = false
  return {
    ...parts,
    configFile: join(dir, 'coordinator.json'),
    upMs,
    stop: async () => {
      if (stopped) return
      stopped = true
      await stopStack(dir)
    }
  }
}

/** A PostgreSQL cluster of the caller's own (`scale-out-stack.sh postgres`, a few seconds): its dir, how to reach it, and how to stop it. */
export async function startTestPostgres (): Promise<{ dir: string, postgresJson: string, postgres: PgMetaDbInit, stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-pg-'))
  try {
    await script(dir, ['postgres', dir], 120_000)
  } catch (err) {
    await stopStack(dir)
    throw err
  }
  const postgresJson = join(dir, 'postgres.json')
  const pg = JSON.parse(await readFile(postgresJson, 'utf8'))
  const password = (await readFile(pg.passwordFile, 'utf8')).split('\n')[0]
  return { dir, postgresJson, postgres: { host: pg.host, port: pg.port, database: pg.database, user: pg.user, password }, stop: async () => { await stopStack(dir) } }
}

/** `scale-out-stack.sh down DIR`, then deletes DIR (also after a failed `down`). */
export async function stopStack (dir: string): Promise<void> {
  try {
    await run(SCRIPT, ['down', dir], { timeout: 120_000 })
  } finally {
    await rm(dir, { recursive: true, force: true })
    await rm(`${dir}.lock`, { force: true })
    await rm(`${dir}.users`, { force: true })
  }
}
