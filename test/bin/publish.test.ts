import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startImageHarness, type ImageHarness } from '../coordinator/image-harness.ts'

const exec = promisify(execFile)
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'trimswarm.js')

/** Runs `trimswarm publish ...` as a real process; resolves to its exit code and output. */
async function publish (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, 'publish', ...args])
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describe('trimswarm publish', () => {
  let dir: TempDir
  let h: ImageHarness
  let v1: TestImage
  let v2: TestImage
  let adminFile: string
  let userFile: string

  beforeAll(async () => {
    dir = await tempDir()
    v1 = await makeTestImage(dir.path, { name: 'v1', sizeMiB: 8, seed: 21 })
    v2 = await makeUpdatedImage(dir.path, v1, { name: 'v2', seed: 22 })
    h = await startImageHarness(join(dir.path, 'coord'))
    adminFile = join(dir.path, 'admin.token')
    userFile = join(dir.path, 'user.token')
    await writeFile(adminFile, h.tokens.admin + '\n')
    await writeFile(userFile, h.tokens.desk + '\n')
  })

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  const common = (): string[] => ['--coordinator', h.url, '--token-file', adminFile]

  it('publishes, then uploads nothing for the same image and only new chunks for an update (--json)', async () => {
    const first = await publish([v1.path, '--image', 'desk', '--version', '1', ...common(), '--json'])
    expect(first.code).toBe(0)
    const s1 = JSON.parse(first.stdout)
    expect(s1.chunksUploaded).toBeGreaterThan(0)
    expect(s1.bytesUploaded).toBeGreaterThan(0)

    const again = JSON.parse((await publish([v1.path, '--image', 'desk', '--version', '1b', ...common(), '--json'])).stdout)
    expect(again.chunksUploaded).toBe(0)
    expect(again.bytesUploaded).toBe(0)

    const upd = await publish([v2.path, '--image', 'desk', '--version', '2', ...common()])
    expect(upd.code).toBe(0)
    const m = /chunks +(\d+) total, (\d+) uploaded/.exec(upd.stdout)
    expect(m).not.toBeNull()
    expect(Number(m![2])).toBeGreaterThan(0)
    expect(Number(m![2])).toBeLessThan(Number(m![1]))
  })

  it('checks names, admin rights and an existing version before it reads the image (preflight)', async () => {
    // the image path does not exist: a publish that scanned first would fail on it (exit 7) instead
    const missing = join(dir.path, 'never-scanned.img')
    const bogus = join(dir.path, 'bogus2.token')
    await writeFile(bogus, 'tsa_nope\n')
    const [dup, notAdmin, badToken, latest, ok] = await Promise.all([
      publish([missing, '--image', 'desk', '--version', '1', ...common()]),
      publish([missing, '--image', 'desk', '--version', '9', '--coordinator', h.url, '--token-file', userFile]),
      publish([missing, '--image', 'desk', '--version', '9', '--coordinator', h.url, '--token-file', bogus]),
      publish([missing, '--image', 'desk', '--version', 'latest', ...common()]),
      publish([missing, '--image', 'desk', '--version', 'fresh', ...common()])
    ])
    expect([dup.code, notAdmin.code, badToken.code, latest.code], [dup, notAdmin, badToken, latest].map(r => r.stderr).join('')).toEqual([1, 3, 3, 1])
    expect(dup.stderr).toMatch(/desk version 1 exists already; versions are immutable/)
    expect(latest.stderr).toMatch(/"latest" is reserved/)
    // only a publish the coordinator would take gets to the image
    expect(ok.code).toBe(7)
    expect(ok.stderr).toMatch(/never-scanned\.img/)
  })

  it('fails clearly: existing version, unreachable coordinator, refused token, bad image, bad usage', async () => {
    const bogus = join(dir.path, 'bogus.token')
    await writeFile(bogus, 'tsa_nope\n')
    // independent failures, run in parallel to keep the test short
    const [dup, down, notAdmin, badToken, noImage, usage] = await Promise.all([
      publish([v1.path, '--image', 'desk', '--version', '1', ...common()]),
      publish([v1.path, '--image', 'desk', '--version', '9', '--coordinator', 'http://127.0.0.1:9', '--token-file', adminFile]),
      publish([v1.path, '--image', 'desk', '--version', '9', '--coordinator', h.url, '--token-file', userFile]),
      publish([v1.path, '--image', 'desk', '--version', '9', '--coordinator', h.url, '--token-file', bogus]),
      publish([join(dir.path, 'nope.img'), '--image', 'desk', '--version', '9', ...common()]),
      publish([v1.path, '--image', 'desk', ...common()])
    ])
    expect(dup.code).toBe(1)
    expect(dup.stderr).toMatch(/desk version 1 exists already/)
    expect(down.code).toBe(5)
    expect(down.stderr).toMatch(/cannot reach the coordinator/)
    expect(notAdmin.code).toBe(3)
    expect(notAdmin.stderr).toMatch(/HTTP 403/)
    expect(badToken.code).toBe(3)
    expect(badToken.stderr).toMatch(/HTTP 401/)
    expect(noImage.code).toBe(7)
    expect(noImage.stderr).toMatch(/does not exist/)
    expect(usage.code).toBe(2)
    expect(usage.stderr).toMatch(/--version is required/)

    for (const r of [dup, down, notAdmin, badToken, noImage, usage]) expect(r.stderr).not.toMatch(/\n\s+at /)
    for (const r of [dup, down, notAdmin, badToken, noImage, usage]) expect(r.stderr).not.toMatch(/scanned/)
    const list = await (await h.fetch('/v1/images/desk/versions', h.tokens.admin)).json()
    expect(list.versions.map((v: { version: string }) => v.version)).toEqual(['1', '1b', '2'])
  })
})
