/**
 * A sync with a ready host index (a refresh of it completed) looks blocks up in it
 * as of that refresh and refreshes it once the image is in place, not before: a
 * file added since is missed by this sync and found by the next; a file changed
 * since fails its re-hash and is not used. Real coordinator and agent processes.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeHostFolder, makeTestImage, tempDir, type HostFolder, type TempDir, type TestImage } from '../helpers/images.ts'
import { runAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let base: TestImage
let host: HostFolder
let baseSum: string

beforeAll(async () => {
  tmp = await tempDir('trimswarm-refresh-behind-')
  base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, files: 24, seed: 31 })
  host = await makeHostFolder(tmp.path, base)
  baseSum = await b3sumFile(base.path)
  coord = await startTestCoordinator(tmp.path)
  await coord.publish('ws', 'v1', base.path)
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
})

function common (data: string, out: string): string[] {
  return ['--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--no-lan', '--index', host.path, '--retries', '2']
}

describe('host index refreshed after the image is in place', () => {
  it('uses the index as of its last refresh, then refreshes it for the next sync', async () => {
    // half of the shared files are kept out of the folder while the index is built
    const later = host.shared.filter((_, i) => i % 2 === 1)
    expect(later.length).toBeGreaterThan(0)
    const aside = join(tmp.path, 'aside')
    for (const f of later) {
      await mkdir(dirname(join(aside, f.hostPath)), { recursive: true })
      await rename(join(host.path, f.hostPath), join(aside, f.hostPath))
    }
    const data = join(tmp.path, 'data')
    const built = await runAgent(['index', '--data', data, '--index', host.path, '--json'])
    expect(built.code, built.stderr).toBe(0)
    for (const f of later) await rename(join(aside, f.hostPath), join(host.path, f.hostPath))
    // a file the index knows changes its bytes (same size): its blocks fail the re-hash
    const changed = host.shared.find((_, i) => i % 2 === 0)!
    const changedPath = join(host.path, changed.hostPath)
    const bytes = await readFile(changedPath)
    await writeFile(changedPath, bytes.map(b => b ^ 0x5a))

    const first = await runAgent(['sync', 'ws@v1', ...common(data, join(tmp.path, 'out1', 'ws.img')), '--verbose'])
    expect(first.code, first.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, 'out1', 'ws.img'))).toBe(baseSum)
    // no refresh before the lookups: it ran once the image was in place, and found the added and the changed files
    const refreshLine = first.stderr.split('\n').find(l => l.includes('host index:')) ?? ''
    expect(refreshLine).toMatch(new RegExp(`${later.length + 1} new or changed hashed`))

    const second = await runAgent(['sync', 'ws@v1', ...common(data, join(tmp.path, 'out2', 'ws.img'))])
    expect(second.code, second.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, 'out2', 'ws.img'))).toBe(baseSum)
    // the next sync takes the files added before the first from the host
    expect(second.summary.bytes.local).toBeGreaterThan(first.summary.bytes.local)
    expect(second.summary.bytes.origin).toBeLessThan(first.summary.bytes.origin)
  })

  it('reads runs of blocks from one host file, and a block whose first copy changed comes from its next copy', async () => {
    // the image's largest file of random bytes twice: a.bin (indexed first: files of a folder before its subfolders) and sub/b.bin
    const big = [...base.files].filter(f => f.kind === 'random').sort((x, y) => y.size - x.size)[0]
    const root = join(tmp.path, 'copies')
    await mkdir(join(root, 'sub'), { recursive: true })
    const bytes = await readFile(join(base.tree, big.path))
    await writeFile(join(root, 'a.bin'), bytes)
    await writeFile(join(root, 'sub', 'b.bin'), bytes)
    const data = join(tmp.path, 'data-copies')
    expect((await runAgent(['index', '--data', data, '--index', root])).code).toBe(0)
    const args = (out: string): string[] => ['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data,
      '--out', join(tmp.path, out, 'ws.img'), '--json', '--no-lan', '--index', root, '--retries', '2']
    const whole = await runAgent(args('copies1'))
    expect(whole.code, whole.stderr).toBe(0)
    expect(whole.summary.bytes.local).toBeGreaterThanOrEqual(Math.floor(big.size / 4096) * 4096)
    expect(whole.summary.discardedBlocks).toBe(0)
    // a.bin's second half changes in place, size kept: its blocks there fail the re-hash, b.bin's copies are used
    const changed = Buffer.from(bytes)
    const half = Math.floor(changed.length / 8192) * 4096
    for (let k = half; k < changed.length; k++) changed[k] ^= 0xa5
    await writeFile(join(root, 'a.bin'), changed)
    const again = await runAgent(args('copies2'))
    expect(again.code, again.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, 'copies2', 'ws.img'))).toBe(baseSum)
    expect(again.summary.bytes.local).toBe(whole.summary.bytes.local)
    expect(again.summary.discardedBlocks).toBeGreaterThan(0)
  })

  it('a local user who swaps an indexed file for a FIFO or a symlink neither stalls the sync nor has it read through the link', async () => {
    const big = [...base.files].filter(f => f.kind === 'random').sort((x, y) => y.size - x.size)[0]
    const root = join(tmp.path, 'swapped')
    await mkdir(root, { recursive: true })
    const bytes = await readFile(join(base.tree, big.path))
    await writeFile(join(root, 'fifo.bin'), bytes)
    await writeFile(join(root, 'link.bin'), bytes)
    const data = join(tmp.path, 'data-swapped')
    expect((await runAgent(['index', '--data', data, '--index', root])).code).toBe(0)
    // the index is ready and not refreshed before this sync: it still names both files as regular files
    await rm(join(root, 'fifo.bin'))
    execFileSync('mkfifo', [join(root, 'fifo.bin')]) // opening it for reading would wait for a writer that never comes
    await writeFile(join(tmp.path, 'elsewhere.bin'), bytes)
    await rm(join(root, 'link.bin'))
    await symlink(join(tmp.path, 'elsewhere.bin'), join(root, 'link.bin'))
    const r = await runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data,
      '--out', join(tmp.path, 'swapped-out', 'ws.img'), '--json', '--no-lan', '--index', root, '--retries', '2'])
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, 'swapped-out', 'ws.img'))).toBe(baseSum)
    expect(r.summary.bytes.local).toBe(0) // neither the FIFO nor the file behind the link was read
  }, 60_000)
})
