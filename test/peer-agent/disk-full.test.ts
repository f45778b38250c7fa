/**
 * Disk full: the output lives on a small tmpfs (mounted for the test; needs root,
 * skipped otherwise). The sync stops with a clear error, the old image is intact,
 * the partial file is removed; with room again, the same command completes.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, type TempDir, type TestImage } from '../helpers/images.ts'
import { runAgent, type TestCoordinator, startPublishedTestImage } from './harness.ts'

const canMount = process.getuid?.() === 0
let tmp: TempDir
let coord: TestCoordinator
let img: TestImage
let mnt: string
let mounted = false

beforeAll(async () => {
  ;({ tmp, img, coord } = await startPublishedTestImage('trimswarm-agent-full-', { name: 'img', sizeMiB: 8, seed: 51 })) // about 2 MiB of data: more than the 1 MiB disk
  mnt = join(tmp.path, 'small-disk')
  await mkdir(mnt)
})
afterAll(async () => {
  if (mounted) execFileSync('umount', [mnt])
  await coord?.stop()
  await tmp?.cleanup()
})

describe('agent sync on a full disk', () => {
  it.skipIf(!canMount)('stops with a clear error, keeps the old image, removes the partial file; completes once there is room', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt])
    mounted = true
    const out = join(mnt, 'ws.img')
    await writeFile(out, 'the old image\n')
    const args = ['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'data'), '--out', out, '--no-index', '--retries', '2', '--retry-delay', '50', '--force']
    const r = await runAgent(args)
    expect(r.code).toBe(7)
    expect(r.stderr).toMatch(/no space left.*old image is intact/)
    expect(r.stderr).toContain(`the partial file ${join(mnt, '.ws.img.trimswarm-partial')} was removed`)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stderr).not.toMatch(/asking again|resuming/) // a full disk is final: no stream is asked for again
    expect(await readFile(out, 'utf8')).toBe('the old image\n')
    expect(await readdir(mnt)).toEqual(['ws.img'])

    execFileSync('mount', ['-o', 'remount,size=32m', mnt])
    const again = await runAgent(args)
    expect(again.code, again.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(await b3sumFile(img.path))
  })
})
