/**
 * The agent prunes its data dir: after a sync (and when a sync finds the
 * image up to date) the delta packs and manifests of the image that no
 * install or resume needs are deleted and a log line says what that freed;
 * the installed manifest (and the agent's other state files, e.g. latest-seen.json) stays, and a planted symbolic link is removed as a
 * link without touching its target.
 */
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { planPrune } from '../../peer-agent/data-dir-prune.ts'
import { makeTestImage, makeUpdatedImage, tempDir, type TempDir } from '../helpers/images.ts'
import { runAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'

describe('planPrune', () => {
  it('deletes every pack and manifest but the installed manifest and the resumable pack; other names are left alone', () => {
    const plan = planPrune(
      { packs: ['1..2.pack', '1..2.pack.etag', '0..1.pack', '0..1.pack.etag', 'notes.txt'], manifests: ['2.manifest', '1.manifest', 'installed.json', 'latest-seen.json'] },
      { manifest: '2.manifest', pack: '1..2.pack' })
    expect(plan).toEqual({ packs: ['0..1.pack', '0..1.pack.etag'], manifests: ['1.manifest'] })
    expect(planPrune({ packs: ['a..b.pack'], manifests: ['b.manifest'] }, {})).toEqual({ packs: ['a..b.pack'], manifests: ['b.manifest'] })
  })
})

describe('agent data dir pruning', () => {
  let tmp: TempDir
  let coord: TestCoordinator

  beforeAll(async () => {
    tmp = await tempDir('trimswarm-prune-')
    const base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, seed: 81 })
    const next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 82 })
    coord = await startTestCoordinator(tmp.path)
    await coord.publish('ws', 'v1', base.path)
    await coord.publish('ws', 'v2', next.path)
  })
  afterAll(async () => {
    await coord?.stop()
    await tmp?.cleanup()
  })

  it('removes packs and manifests no install or resume needs, logs what it freed, keeps the installed manifest', async () => {
    const data = join(tmp.path, 'data')
    const out = join(tmp.path, 'out', 'ws.img')
    const common = ['--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '2', '--retry-delay', '50']
    const first = await runAgent(['sync', 'ws@v1', ...common])
    expect(first.code, first.stderr).toBe(0)
    expect(first.stderr).not.toMatch(/data dir: removed/)

    // leftovers of abandoned updates and an interrupted version switch, and a planted link
    const packs = join(data, 'packs', 'ws')
    const manifests = join(data, 'manifests', 'ws')
    await mkdir(packs, { recursive: true })
    await writeFile(join(packs, 'v0..v1.pack'), new Uint8Array(1024 * 1024))
    await writeFile(join(packs, 'v1..v9.pack'), new Uint8Array(512 * 1024))
    await writeFile(join(manifests, 'v0.manifest'), new Uint8Array(1000))
    const outside = join(tmp.path, 'precious.txt')
    await writeFile(outside, 'keep me')
    await symlink(outside, join(manifests, 'evil.manifest'))

    const second = await runAgent(['sync', 'ws@v2', ...common, '--verbose'])
    expect(second.code, second.stderr).toBe(0)
    expect(second.summary.version).toBe('v2')
    expect(second.stderr).toMatch(/data dir: removed 2 delta packs and 2 manifests of ws no longer needed \(1\.5 MiB freed\)/)
    expect(await readdir(packs)).toEqual([])
    expect((await readdir(manifests)).sort()).toEqual(['installed.json', 'latest-seen.json', 'v2.manifest'])
    expect(await readFile(outside, 'utf8')).toBe('keep me')

    // up to date: leftovers still go
    await writeFile(join(packs, 'v1..v2.pack'), new Uint8Array(4096))
    const third = await runAgent(['sync', 'ws@v2', ...common, '--verbose'])
    expect(third.code, third.stderr).toBe(0)
    expect(third.summary.upToDate).toBe(true)
    expect(third.stderr).toMatch(/data dir: removed 1 delta pack and 0 manifests of ws no longer needed \(4 KiB freed\)/)
    expect(await readdir(packs)).toEqual([])
    expect((await readdir(manifests)).sort()).toEqual(['installed.json', 'latest-seen.json', 'v2.manifest'])
  })
})
