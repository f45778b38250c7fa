/**
 * Starts the scale-out back-ends (PostgreSQL and Ceph's RADOS Gateway) once for
 * a test file through scripts/scale-out-stack.sh, as an operator would, and
 * stops them afterwards. Heavy: ~25 s to create, so a file starts it in
 * beforeAll and shares it between its tests (each test takes its own key
 * prefix in the bucket).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { S3BlockStoreInit } from '../../coordinator/s3-block-store.ts'

const run = promisify(execFile)
const SCRIPT = new URL('../../scripts/scale-out-stack.sh', import.meta.url).pathname

/** A running stack. */
export interface TestScaleOutStack {
  /** The stack's DIR (coordinator.json, admin.token, s3-secret, postgres.json). */
  dir: string
  /** DIR/coordinator.json as written by the script. */
  configFile: string
  /** What createS3BlockStore needs to reach the stack's bucket (secret read from DIR/s3-secret). */
  s3: S3BlockStoreInit
  /** How long `up` took, in ms. */
  upMs: number
  /** Stops every daemon and deletes DIR; safe to call twice. */
  stop: () => Promise<void>
}

/** Runs `scale-out-stack.sh up` in a fresh temp dir. */
export async function startTestScaleOutStack (): Promise<TestScaleOutStack> {
  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-stack-'))
  const down = async (): Promise<void> => { await run(SCRIPT, ['down', dir], { timeout: 120_000 }) }
  const started = Date.now()
  try {
    await run(SCRIPT, ['up', dir], { timeout: 300_000 })
  } catch (err: any) {
    await down().catch(() => {})
    await rm(dir, { recursive: true, force: true })
    throw new Error(`scripts/scale-out-stack.sh up failed: ${String(err.stderr ?? err.message)}`, { cause: err })
  }
  const upMs = Date.now() - started
  const configFile = join(dir, 'coordinator.json')
  const s3 = JSON.parse(await readFile(configFile, 'utf8')).blockStore.s3
  const secretAccessKey = (await readFile(s3.secretAccessKeyFile, 'utf8')).trim()
  let stopped = false
  return {
    dir,
    configFile,
    upMs,
    s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey, forcePathStyle: s3.forcePathStyle },
    stop: async () => {
      if (stopped) return
      stopped = true
      try {
        await down()
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }
  }
}
