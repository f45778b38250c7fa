/**
 * The S3 block store against a real S3 server: Ceph's RADOS Gateway on a
 * one-node Ceph cluster, the run's shared stack of scripts/scale-out-stack.sh
 * (test/helpers/scale-out-stack.ts; this file under its own key prefixes). The shared BlockStore
 * compliance suite runs on it (each test under its own key prefix), then
 * S3-specific checks, then a real `trimswarm coordinator --config
 * DIR/coordinator.json` process serving a published image to a real agent
 * from the bucket. The stack's own restart is in scale-out-stack-restart.test.ts
 * (on a stack of its own: it would break every other file's requests here).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseCoordinatorConfig } from '../../coordinator/config.ts'
import { ConfigError } from '../../coordinator/errors.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { createS3BlockStore, type S3BlockStore, type S3BlockStoreInit } from '../../coordinator/s3-block-store.ts'
import { S3_BLOCK_STORE_MARKER_FILE } from '../../coordinator/constants.ts'
import { BLOCK_SIZE, MAX_CHUNK_BLOCKS } from '../../protocol/constants.ts'
import { HashMismatchError, UnavailableError } from '../../protocol/errors.ts'
import { blockStoreComplianceTests, testChunk } from './block-store-compliance.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'
import { cli, startCoordinatorProcess, type CoordinatorProcess } from '../helpers/cli-process.ts'
import { sharedScaleOutStack, type TestScaleOutStack } from '../helpers/scale-out-stack.ts'
import { freePort } from '../helpers/slapd.ts'
import { OPEN_POLICY, runAgent } from '../peer-agent/harness.ts'

let stack: TestScaleOutStack
let raw: S3Client

beforeAll(async () => {
  stack = await sharedScaleOutStack('s3_block_store')
  raw = new S3Client({ endpoint: stack.s3.endpoint, region: stack.s3.region, forcePathStyle: true, credentials: { accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
}, 300_000)
afterAll(async () => {
  raw?.destroy()
  await stack?.stop()
}, 120_000)

/** Every key under `prefix`, read straight from the bucket. */
async function keysUnder (prefix: string): Promise<string[]> {
  const keys: string[] = []
  let token: string | undefined
  do {
    const page = await raw.send(new ListObjectsV2Command({ Bucket: stack.s3.bucket, Prefix: prefix, ContinuationToken: token }))
    for (const o of page.Contents ?? []) keys.push(o.Key!)
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined
  } while (token != null)
  return keys
}

async function deleteUnder (prefix: string): Promise<void> {
  for (const key of await keysUnder(prefix)) await raw.send(new DeleteObjectCommand({ Bucket: stack.s3.bucket, Key: key }))
}

const freshPrefix = (): string => `${stack.s3.keyPrefix!}test-${randomBytes(6).toString('hex')}/`
const openStore = async (keyPrefix: string, extra: Partial<S3BlockStoreInit> = {}): Promise<S3BlockStore> =>
  await createS3BlockStore({}, { ...stack.s3, keyPrefix, ...extra })

blockStoreComplianceTests('S3 (Ceph RADOS Gateway)', async () => {
  const keyPrefix = freshPrefix()
  const store = await openStore(keyPrefix)
  const opened: S3BlockStore[] = [store]
  return {
    store,
    corrupt: async (cid) => {
      const key = store.keyOf(cid)
      const res = await raw.send(new GetObjectCommand({ Bucket: stack.s3.bucket, Key: key }))
      const bytes = await res.Body!.transformToByteArray()
      bytes[Math.floor(bytes.length / 2)] ^= 1
      await raw.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: bytes }))
    },
    reopen: async () => {
      const again = await openStore(keyPrefix)
      opened.push(again)
      return again
    },
    cleanup: async () => {
      await deleteUnder(keyPrefix)
      for (const s of opened) s.close()
    }
  }
})

describe('S3 block store: what S3 adds to the contract', () => {
  it('refuses at open, with one line naming the bucket: a wrong secret, a missing bucket, a bad key prefix', async () => {
    await expect(openStore('x/', { secretAccessKey: 'wrong-secret' })).rejects.toThrow(/cannot use bucket "trimswarm" at http:\/\/127\.0\.0\.1:\d+: the access key may not use it/)
    await expect(openStore('x/', { secretAccessKey: 'wrong-secret' })).rejects.toBeInstanceOf(ConfigError)
    await expect(openStore('x/', { bucket: 'no-such-bucket' })).rejects.toThrow(/cannot use bucket "no-such-bucket" .*: the bucket does not exist/)
    for (const bad of ['/abs/', 'a/../b/', 'a//b', 'sp ace/']) await expect(openStore(bad)).rejects.toBeInstanceOf(ConfigError)
  })

  it('an unreachable endpoint gives UnavailableError (HTTP 503 for clients), not a hang', async () => {
    const store = await openStore('x/', { endpoint: `http://127.0.0.1:${await freePort()}`, checkBucket: false })
    try {
      const c = testChunk(400)
      const started = Date.now()
      await expect(store.has(c.cid)).rejects.toBeInstanceOf(UnavailableError)
      await expect(store.get(c.cid)).rejects.toBeInstanceOf(UnavailableError)
      await expect(store.put(c.cid, c.bytes)).rejects.toBeInstanceOf(UnavailableError)
      expect(Date.now() - started).toBeLessThan(30_000)
    } finally {
      store.close()
    }
  })

  it('an object larger than the largest chunk (4 MiB) under a chunk key is reported corrupt, never read whole', async () => {
    const keyPrefix = freshPrefix()
    const store = await openStore(keyPrefix)
    try {
      const c = testChunk(401)
      await raw.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: store.keyOf(c.cid), Body: new Uint8Array(MAX_CHUNK_BLOCKS * BLOCK_SIZE + 1).fill(7) }))
      await expect(store.get(c.cid)).rejects.toBeInstanceOf(HashMismatchError)
      await expect(store.get(c.cid, { verify: false })).rejects.toThrow(/larger than the largest chunk, 4 MiB/)
    } finally {
      await deleteUnder(keyPrefix)
      store.close()
    }
  })

  it('list yields only chunk keys under its own prefix: other keys in the bucket are not chunks', async () => {
    const keyPrefix = freshPrefix()
    const other = freshPrefix()
    const store = await openStore(keyPrefix)
    const neighbour = await openStore(other)
    try {
      const mine = testChunk(402)
      const theirs = testChunk(403)
      await store.put(mine.cid, mine.bytes)
      await neighbour.put(theirs.cid, theirs.bytes)
      for (const key of [`${keyPrefix}README`, `${keyPrefix}${'ab'.repeat(32)}/deeper`, `${keyPrefix}${'AB'.repeat(32)}`]) {
        await raw.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: 'x' }))
      }
      const listed: string[] = []
      for await (const cid of store.list()) listed.push(cid.toString())
      expect(listed).toEqual([mine.cid.toString()])
      expect(await store.has(theirs.cid)).toBe(false)
    } finally {
      await deleteUnder(keyPrefix)
      await deleteUnder(other)
      store.close()
      neighbour.close()
    }
  })

  it('the config file\'s blockStore.s3 is checked strictly; a relative secret file is relative to the config file', () => {
    const s3 = { endpoint: 'http://127.0.0.1:7480', bucket: 'trimswarm', accessKeyId: 'AKIA1', secretAccessKeyFile: 's3-secret', forcePathStyle: true }
    expect(parseCoordinatorConfig({ blockStore: { s3 } }, '/etc/trimswarm').blockStore?.s3?.secretAccessKeyFile).toBe('/etc/trimswarm/s3-secret')
    expect(() => parseCoordinatorConfig({ blockStore: { s3: { ...s3, secretAccessKey: 'inline' } } })).toThrow(/secretAccessKey/)
    expect(() => parseCoordinatorConfig({ blockStore: { s3: { ...s3, endpoint: 'ftp://x' } } })).toThrow(/endpoint/)
    expect(() => parseCoordinatorConfig({ blockStore: { s3: { ...s3, bucket: 'Bad_Bucket' } } })).toThrow(/bucket/)
    expect(() => parseCoordinatorConfig({ blockStore: { directory: {} } })).toThrow(/directory/)
    expect(() => parseCoordinatorConfig({ blockStore: {} })).toThrow(/s3/)
  })
})

describe('a coordinator process on the stack\'s coordinator.json: chunks in the bucket, agents get identical bytes', () => {
  let tmp: TempDir
  let proc: CoordinatorProcess | undefined
  let scratch: string
  let imagePath: string

  afterAll(async () => {
    if (proc != null && proc.child.exitCode == null) {
      proc.child.kill('SIGTERM')
      await proc.exited
    }
    await tmp?.cleanup()
  })

  it('publishes into the bucket (none in --data) and an agent syncs a byte-identical image', async () => {
    tmp = await tempDir('trimswarm-s3-e2e-')
    scratch = join(tmp.path, 'scratch')
    const port = await freePort()
    const chunks = stack.s3.keyPrefix!
    await deleteUnder(chunks)
    // The stack's admin token, shared by every coordinator on the stack (docs/OPERATIONS.md "Object storage (S3)").
    await mkdir(scratch, { mode: 0o700 })
    await copyFile(join(stack.dir, 'admin.token'), join(scratch, 'admin.token'))
    const adminToken = (await readFile(join(stack.dir, 'admin.token'), 'utf8')).trim()
    proc = await startCoordinatorProcess(scratch, port, ['--config', stack.configFile])
    const url = proc.url

    const admin = async (method: string, path: string, body?: unknown): Promise<any> => {
      const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
      return await res.json()
    }
    await admin('PUT', '/v1/policies/branch', OPEN_POLICY)
    const agentToken = (await admin('POST', '/v1/tokens', { group: 'branch', name: 's3-e2e' })).token
    await writeFile(join(tmp.path, 'agent.token'), agentToken + '\n', { mode: 0o600 })
    const image = await makeTestImage(tmp.path, { name: 'ws', sizeMiB: 4, seed: 171 })
    imagePath = image.path
    await createPublishClient({ coordinator: url, token: adminToken }).publish(image.path, { image: 'ws', version: 'v1' })

    // The chunks are objects in the bucket, and nothing in the data dir, which records the bucket (for fsck).
    expect(JSON.parse(await readFile(join(scratch, S3_BLOCK_STORE_MARKER_FILE), 'utf8'))).toMatchObject({ bucket: 'trimswarm', keyPrefix: chunks })
    const objects = await keysUnder(chunks)
    expect(objects.length).toBeGreaterThan(10)
    expect(await readdir(join(scratch, 'blocks')).catch(() => [])).toEqual([])

    const out = join(tmp.path, 'synced.img') // not the image file itself (ws.img): the agent never replaces a file it did not install
    const sync = await runAgent(['sync', 'ws', '--coordinator', url, '--token-file', join(tmp.path, 'agent.token'), '--data', join(tmp.path, 'agent'),
      '--out', out, '--no-index', '--no-lan', '--linger', '0', '--json'])
    expect(sync.code, sync.stderr).toBe(0)
    expect(Buffer.compare(await readFile(out), await readFile(image.path))).toBe(0)
  })

  it('fsck refuses the data dir without the config (its chunks are in the bucket), checks and repairs the bucket with it', async () => {
    proc!.child.kill('SIGTERM')
    await proc!.exited
    const fsck = async (...args: string[]): ReturnType<typeof cli> => await cli(['coordinator', 'fsck', '--data', scratch, ...args])
    // Without the config DATA/blocks is empty: fsck must not mark every version incomplete.
    const refused = await fsck()
    expect(refused.code).toBe(78)
    expect(refused.stderr).toMatch(/in S3 bucket "trimswarm" at http:\/\/127\.0\.0\.1:\d+: run fsck with --config/)

    const ok = await fsck('--config', stack.configFile, '--json')
    expect(ok.code, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ damaged: [], incompleteVersions: 0, ok: true })

    // One object damaged behind the coordinator's back: found, deleted, the version marked, then repaired.
    const [key] = await keysUnder(stack.s3.keyPrefix!)
    const res = await raw.send(new GetObjectCommand({ Bucket: stack.s3.bucket, Key: key }))
    const bytes = await res.Body!.transformToByteArray()
    bytes[0] ^= 1
    await raw.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: bytes }))
    const bad = await fsck('--config', stack.configFile, '--json')
    expect(bad.code).toBe(1)
    const report = JSON.parse(bad.stdout)
    expect(report.damaged.map((d: { path: string }) => d.path)).toEqual([`s3://trimswarm/${key}`])
    expect(report.incompleteVersions).toBe(1)
    expect(await keysUnder(key)).toEqual([])
    const repaired = await fsck('--config', stack.configFile, '--repair-from', imagePath, '--json')
    expect(repaired.code, repaired.stderr).toBe(0)
    expect(JSON.parse(repaired.stdout)).toMatchObject({ repaired: [expect.any(String)], ok: true })
    expect(await keysUnder(key)).toEqual([key])
  })
})

describe('the stack of scripts/scale-out-stack.sh', () => {
  const exec = promisify(execFile)

  it('PostgreSQL: the user of postgres.json logs in over TCP with its password file; a wrong password and the superuser over TCP are refused', async () => {
    const pg = JSON.parse(await readFile(join(stack.dir, 'postgres.json'), 'utf8'))
    expect(pg).toMatchObject({ host: '127.0.0.1', database: 'trimswarm', user: 'trimswarm' })
    const psql = async (user: string, password: string): Promise<string> =>
      (await exec('psql', ['-h', pg.host, '-p', String(pg.port), '-U', user, '-d', pg.database, '-Atc', 'select current_user'], { env: { ...process.env, PGPASSWORD: password }, timeout: 30_000 })).stdout.trim()
    expect(await psql(pg.user, (await readFile(pg.passwordFile, 'utf8')).trim())).toBe('trimswarm')
    await expect(psql(pg.user, 'wrong')).rejects.toThrow(/password authentication failed/)
    await expect(psql('postgres', '')).rejects.toThrow(/no pg_hba.conf entry/)
    expect((await stat(pg.passwordFile)).mode & 0o777).toBe(0o600)
    expect((await stat(join(stack.dir, 's3-secret'))).mode & 0o777).toBe(0o600)
    expect((await stat(join(stack.dir, 'admin.token'))).mode & 0o777).toBe(0o600)
  })

  it('every daemon of the stack listens on 127.0.0.1 only', async () => {
    const pids = [
      ...(await readFile(join(stack.dir, 'pg', 'data', 'postmaster.pid'), 'utf8')).split('\n').slice(0, 1),
      ...await Promise.all(['mon.a', 'osd.0', 'client.rgw'].map(async n => (await readFile(join(stack.dir, 'ceph', 'run', `${n}.pid`), 'utf8')).trim()))
    ]
    const { stdout } = await exec('ss', ['-Htlnp'])
    const listening = stdout.split('\n').filter(line => pids.some(pid => line.includes(`pid=${pid},`)))
    // the monitor (2 ports), the OSD (several), radosgw and PostgreSQL at least
    expect(listening.length).toBeGreaterThanOrEqual(5)
    for (const line of listening) expect(line.split(/\s+/)[3]).toMatch(/^127\.0\.0\.1:\d+$/)
  })
})
