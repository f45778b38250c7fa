/**
 * The coordinator's secrets (admin token, session key, signing key) appear whole or not at all:
 * a full disk at first start leaves no empty file (an empty session key would let anyone sign
 * sessions), an empty file found is refused, and two starts at once get the same secret.
 * The full disk is a small tmpfs mounted for the test (needs root, skipped otherwise).
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../coordinator/errors.ts'
import { loadOrCreateSecret } from '../../coordinator/secret-files.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

const canMount = process.getuid?.() === 0
let tmp: TempDir
let mnt: string
let mounted = false

beforeAll(async () => {
  tmp = await tempDir('trimswarm-secrets-')
  mnt = join(tmp.path, 'small-disk')
  await mkdir(mnt)
})
afterAll(async () => {
  if (mounted) execFileSync('umount', [mnt])
  await tmp?.cleanup()
})

describe('loadOrCreateSecret', () => {
  it.skipIf(!canMount)('on a full disk fails and leaves no secret file; with room again, creates a whole one', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt])
    mounted = true
    await writeFile(join(mnt, 'filler'), Buffer.alloc(1 << 20)).catch(() => {}) // fills the disk (ENOSPC part way)
    const key = join(mnt, 'session.key')
    await expect(loadOrCreateSecret(key, () => Buffer.alloc(32, 7))).rejects.toMatchObject({ code: 'ENOSPC' })
    expect(await readdir(mnt)).toEqual(['filler'])
    await rm(join(mnt, 'filler'))
    const made = await loadOrCreateSecret(key, () => Buffer.alloc(32, 7))
    expect(made).toEqual({ value: Buffer.alloc(32, 7), created: true })
    expect(await loadOrCreateSecret(key, () => Buffer.alloc(32, 9))).toEqual({ value: Buffer.alloc(32, 7), created: false })
  })

  it('refuses an empty secret file with a message saying what to do', async () => {
    const key = join(tmp.path, 'empty.key')
    await writeFile(key, '')
    const err = await loadOrCreateSecret(key, () => 'never used').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toBe(`${key} is empty (a write cut short, e.g. by a full disk); restore it from a backup, or delete it to make a new one`)
  })

  it('gives two starts at once the same secret', async () => {
    const key = join(tmp.path, 'raced.key')
    let n = 0
    const [a, b] = await Promise.all([1, 2].map(async () => await loadOrCreateSecret(key, () => `secret-${++n}`)))
    expect(a.value).toEqual(b.value)
    expect([a.created, b.created].sort()).toEqual([false, true])
    expect((await readdir(tmp.path)).filter(f => f.startsWith('.raced'))).toEqual([])
  })
})
