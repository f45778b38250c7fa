/**
 * `trimswarm image list|retire|gc` as a user runs them, against a real
 * coordinator: usage mistakes exit 2 with the usage, coordinator refusals
 * exit non-zero with the coordinator's message, and the output reads in
 * values and units.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createPublishClient } from '../../client/publish-client.ts'
import { startImageHarness, type ImageHarness } from '../coordinator/image-harness.ts'
import { cli } from '../helpers/cli-process.ts'
import { makeTestImage, tempDir, type TempDir } from '../helpers/images.ts'

describe('trimswarm image', () => {
  let dir: TempDir
  let h: ImageHarness
  let admin: string[]
  let machine: string[]

  beforeAll(async () => {
    dir = await tempDir()
    const img = await makeTestImage(dir.path, { name: 'a', sizeMiB: 4, seed: 91 })
    h = await startImageHarness(join(dir.path, 'coord'), { buildDeltaPacks: false }, { storageGc: { intervalSeconds: 0, graceSeconds: 0 } })
    await writeFile(join(dir.path, 'admin.token'), h.tokens.admin + '\n')
    await writeFile(join(dir.path, 'desk.token'), h.tokens.desk + '\n')
    admin = ['--coordinator', h.url, '--token-file', join(dir.path, 'admin.token')]
    machine = ['--coordinator', h.url, '--token-file', join(dir.path, 'desk.token')]
    const empty = await cli(['image', 'list', ...admin])
    expect(empty).toMatchObject({ code: 0, stdout: 'no images\n' })
    for (const v of ['1', '2']) await createPublishClient({ coordinator: h.url, token: h.tokens.admin }).publish(img.path, { image: 'desk', version: v })
  })
  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  it('refuses usage mistakes with exit code 2 and the usage', async () => {
    for (const args of [['image', 'retire', 'desk'], ['image', 'retire', 'desk', '1', 'extra'], ['image', 'retire', 'bad name', '1'], ['image', 'list', 'x'], ['image', 'gc', '--force'], ['image', 'nope']]) {
      const r = await cli([...args, ...admin])
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(/Usage: trimswarm image/)
    }
    const noUrl = await cli(['image', 'gc', '--token-file', join(dir.path, 'admin.token')])
    expect(noUrl.code).toBe(2)
    expect(noUrl.stderr).toMatch(/--coordinator URL \(or TRIMSWARM_COORDINATOR\) is required/)
  })

  it('passes on the coordinator\'s refusals as one line: unknown version, latest, a machine token', async () => {
    const unknown = await cli(['image', 'retire', 'desk', '9', ...admin])
    expect(unknown.code).not.toBe(0)
    expect(unknown.stderr).toMatch(/image desk has no version 9/)
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1)
    const latest = await cli(['image', 'retire', 'desk', 'latest', ...admin])
    expect(latest.code).not.toBe(0)
    expect(latest.stderr).toMatch(/name the version to retire, not "latest"/)
    for (const args of [['image', 'list'], ['image', 'gc'], ['image', 'retire', 'desk', '1']]) {
      const r = await cli([...args, ...machine])
      expect(r.code, args.join(' ')).not.toBe(0)
      expect(r.stderr, args.join(' ')).not.toMatch(/at .*\.ts:\d+/) // no stack trace
    }
    expect((await cli(['image', 'list', '--json', ...admin])).stdout).toMatch(/"state": "live"/)
  })

  it('lists, retires, counts with --dry-run and frees with gc, in values and units', async () => {
    const list = await cli(['image', 'list', ...admin])
    expect(list.code).toBe(0)
    expect(list.stdout).toMatch(/^IMAGE\s+VERSION\s+STATE\s+SIZE\s+DATA\s+CHUNKS\s+DELTA PACK\s+PUBLISHED\n/)
    expect(list.stdout).toMatch(/\ndesk\s+1\s+live\s+4\.0 MiB\s+\d+(\.\d)? (KiB|MiB)\s+\d+\s+-\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n/)
    expect(list.stdout).toMatch(/\ndesk\s+2\s+live, latest\s+4\.0 MiB/)
    expect(await cli(['image', 'retire', 'desk', '2', ...admin])).toMatchObject({ code: 0, stdout: 'retired desk version 2; `trimswarm image gc` frees its unshared chunks\n' })
    // both versions hold the same image: retiring 2 frees nothing
    const dry = await cli(['image', 'gc', '--dry-run', ...admin])
    expect(dry.stdout).toMatch(/^would free 0 B: 0 chunks \(0 B\) and 0 delta packs \(0 B\); would collect 1 retired version; kept \d+ live chunks and 0 unused chunks/)
    expect(await cli(['image', 'retire', 'desk', '1', ...admin])).toMatchObject({ code: 0 })
    const gc = await cli(['image', 'gc', ...admin])
    expect(gc.stdout).toMatch(/^freed \d+(\.\d)? (KiB|MiB): \d+ chunks \(\d+(\.\d)? (KiB|MiB)\) and 0 delta packs \(0 B\); collected 2 retired versions; kept 0 live chunks and 0 unused chunks of a publish in progress or stored within the grace period; took \d+(\.\d)? s\n$/)
    expect((await cli(['image', 'list', ...admin])).stdout).toMatch(/desk\s+1\s+collected[\s\S]*desk\s+2\s+collected/)
  })
})
