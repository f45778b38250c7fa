/**
 * bin/trimswarm.js keeps Node's compile cache in the user's own cache dir
 * (mode 0700), not in the shared temp dir, and runs without it when there is
 * no writable place for it.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileCacheDir } from '../../bin/compile-cache.ts'

const run = promisify(execFile)
const CLI = new URL('../../bin/trimswarm.js', import.meta.url).pathname
let dir: string

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'trimswarm-cc-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('compile cache', () => {
  it('lives in $XDG_CACHE_HOME/trimswarm/compile-cache, mode 0700, and is filled by a run', async () => {
    const { NODE_COMPILE_CACHE: _, NODE_DISABLE_COMPILE_CACHE: __, ...env } = process.env
    const { stdout } = await run(process.execPath, [CLI, 'manifest', '--help'], { env: { ...env, XDG_CACHE_HOME: join(dir, 'cache') } })
    expect(stdout).toMatch(/manifest/)
    const cache = join(dir, 'cache', 'trimswarm', 'compile-cache')
    expect((await stat(cache)).mode & 0o777).toBe(0o700)
    expect((await readdir(cache)).length).toBeGreaterThan(0)
  })

  it('is one rule for the CLI and the branch benchmark\'s warm-up: $XDG_CACHE_HOME, else ~/.cache', () => {
    expect(compileCacheDir({ XDG_CACHE_HOME: '/x/cache' })).toBe('/x/cache/trimswarm/compile-cache')
    expect(compileCacheDir({ XDG_CACHE_HOME: '' })).toBe(join(homedir(), '.cache', 'trimswarm', 'compile-cache'))
    expect(compileCacheDir({})).toBe(join(homedir(), '.cache', 'trimswarm', 'compile-cache'))
  })

  it('runs without it when the cache dir cannot be made', async () => {
    const blocked = join(dir, 'not-a-dir')
    await writeFile(blocked, 'a file where the cache dir would go')
    const { NODE_COMPILE_CACHE: _, NODE_DISABLE_COMPILE_CACHE: __, ...env } = process.env
    const { stdout } = await run(process.execPath, [CLI, 'manifest', '--help'], { env: { ...env, XDG_CACHE_HOME: blocked } })
    expect(stdout).toMatch(/manifest/)
  })
})
