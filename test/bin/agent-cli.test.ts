/**
 * The agent and admin CLIs as a user runs them (real processes against a real coordinator):
 * exit codes per kind of failure, the TRIMSWARM_COORDINATOR / TRIMSWARM_TOKEN_FILE
 * environment, `agent sync --out` refusing to replace what it did not install, a wrong
 * coordinator URL failing at once, and the lines a successful sync prints.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeHostFolder, makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { cli } from '../helpers/cli-process.ts'
import { freePort } from '../helpers/slapd.ts'
import { CLI, listAsKilled, runAgent, spawnAgent, startTestCoordinator, type TestCoordinator } from '../peer-agent/harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let base: TestImage
let baseSum: string
let adminTokenFile: string

beforeAll(async () => {
  tmp = await tempDir('trimswarm-agent-cli-')
  base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, files: 24, seed: 41 })
  baseSum = await b3sumFile(base.path)
  coord = await startTestCoordinator(tmp.path)
  await coord.publish('ws', 'v1', base.path)
  adminTokenFile = join(tmp.path, 'admin.token')
  await writeFile(adminTokenFile, coord.coordinator.adminToken + '\n')
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
})

function syncArgs (name: string, extra: string[] = []): string[] {
  return ['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, `${name}-data`), '--out', join(tmp.path, name, 'ws.img'),
    '--no-index', '--no-lan', '--retries', '2', '--retry-delay', '50', ...extra]
}

describe('exit codes', () => {
  it('bad token 3, unknown image 4, missing version 4, unreachable coordinator 5, bad usage 2: each its own, one line, no stack', async () => {
    const bogus = join(tmp.path, 'bogus.token')
    await writeFile(bogus, 'tsm_not-a-token\n')
    const down = `http://127.0.0.1:${await freePort()}`
    const data = (n: string): string[] => ['--data', join(tmp.path, `${n}-data`), '--out', join(tmp.path, n, 'x.img'), '--no-index', '--no-lan']
    const [badToken, noImage, noVersion, unreachable, usage, adminBadToken, adminNoPolicy, adminDown] = await Promise.all([
      runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', bogus, ...data('e1')]),
      runAgent(['sync', 'nosuch@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, ...data('e2')]),
      runAgent(['sync', 'ws@v9', '--coordinator', coord.url, '--token-file', coord.tokenFile, ...data('e3')]),
      runAgent(['sync', 'ws@v1', '--coordinator', down, '--token-file', coord.tokenFile, ...data('e4')]),
      runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, ...data('e5'), '--retries', 'many']),
      cli(['token', 'list', '--coordinator', coord.url, '--token-file', bogus]),
      cli(['policy', 'show', 'nosuch', '--coordinator', coord.url, '--token-file', adminTokenFile]),
      cli(['policy', 'list', '--coordinator', down, '--token-file', adminTokenFile])
    ])
    const all = { badToken, noImage, noVersion, unreachable, usage, adminBadToken, adminNoPolicy, adminDown }
    expect(Object.fromEntries(Object.entries(all).map(([k, r]) => [k, r.code])), JSON.stringify(Object.values(all).map(r => r.stderr))).toEqual({
      badToken: 3, noImage: 4, noVersion: 4, unreachable: 5, usage: 2, adminBadToken: 3, adminNoPolicy: 4, adminDown: 5
    })
    for (const r of Object.values(all)) expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(unreachable.stderr).toMatch(/cannot reach the coordinator at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/)
  }, 60_000)

  it('a wrong coordinator URL fails at once with one line (no rounds of retries)', async () => {
    const down = `http://127.0.0.1:${await freePort()}`
    const started = performance.now()
    // the default retries (6 tries from 0.5 s, doubled) would take about 8 s per round
    const r = await runAgent(['sync', 'ws@v1', '--coordinator', down, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'fast-data'), '--out', join(tmp.path, 'fast', 'ws.img'), '--no-index'])
    const seconds = (performance.now() - started) / 1000
    expect(r.code).toBe(5)
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1)
    expect(r.stderr).toMatch(/^trimswarm agent sync: cannot reach the coordinator at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/)
    expect(seconds).toBeLessThan(5)
  }, 30_000)

  it('trimswarm --help documents every exit code', async () => {
    const r = await cli(['--help'])
    for (const code of ['0', '1', '2', '3', '4', '5', '6', '7', '65', '70', '75', '78']) expect(r.stdout).toMatch(new RegExp(`^\\s+${code}\\s+\\S`, 'm'))
  })
})

describe('environment', () => {
  it('TRIMSWARM_COORDINATOR and TRIMSWARM_TOKEN_FILE stand for --coordinator and --token-file (agent sync, publish, token, policy, image)', async () => {
    const out = join(tmp.path, 'env', 'ws.img')
    const sync = await runAgent(['sync', 'ws@v1', '--data', join(tmp.path, 'env-data'), '--out', out, '--no-index', '--no-lan', '--json'],
      { TRIMSWARM_COORDINATOR: coord.url, TRIMSWARM_TOKEN_FILE: coord.tokenFile })
    expect(sync.code, sync.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(baseSum)
    const adminEnv = { TRIMSWARM_COORDINATOR: coord.url, TRIMSWARM_TOKEN_FILE: adminTokenFile }
    const pub = await cli(['publish', base.path, '--image', 'envpub', '--version', '1', '--json'], { env: adminEnv })
    expect(pub.code, pub.stderr).toBe(0)
    expect(JSON.parse(pub.stdout)).toMatchObject({ image: 'envpub', version: '1' })
    const tokens = await cli(['token', 'list', '--json'], { env: adminEnv })
    expect(tokens.code, tokens.stderr).toBe(0)
    const policy = await cli(['policy', 'show', 'branch', '--json'], { env: adminEnv })
    expect(policy.code, policy.stderr).toBe(0)
    const images = await cli(['image', 'list', '--json'], { env: adminEnv })
    expect(images.code, images.stderr).toBe(0)
    expect(images.stdout).toContain('envpub')
    // a flag still wins over the environment
    const flagWins = await cli(['policy', 'show', 'branch', '--coordinator', `http://127.0.0.1:${await freePort()}`], { env: adminEnv })
    expect(flagWins.code).toBe(5)
    // and without either, the usage error names both
    const neither = await runAgent(['sync', 'ws@v1', '--data', join(tmp.path, 'env2-data'), '--out', join(tmp.path, 'env2', 'ws.img')], { TRIMSWARM_COORDINATOR: '', TRIMSWARM_TOKEN_FILE: '' })
    expect(neither.code).toBe(2)
    expect(neither.stderr).toMatch(/--coordinator URL \(or TRIMSWARM_COORDINATOR\) is required/)
  }, 60_000)
})

describe('agent sync --out', () => {
  it('refuses to replace a file it did not install unless --force; a directory before any download', async () => {
    const dir = join(tmp.path, 'user')
    await mkdir(dir, { recursive: true })
    const notes = join(dir, 'notes.txt')
    await writeFile(notes, 'my notes\n')
    const refused = await runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'user-data'), '--out', notes, '--no-index', '--no-lan'])
    expect(refused.code).toBe(7)
    expect(refused.stderr).toMatch(/the output .*notes\.txt exists and was not installed by this agent .*give --force to replace it/)
    expect(await readFile(notes, 'utf8')).toBe('my notes\n')
    expect(await readdir(dir)).toEqual(['notes.txt'])

    const folder = join(tmp.path, 'user', 'images')
    await mkdir(folder)
    const isDir = await runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'user-data'), '--out', folder, '--no-index', '--no-lan', '--json'])
    expect(isDir.code).toBe(7)
    expect(isDir.stderr).toMatch(/the output .*images is a directory; name the image file to write/)
    expect((await readdir(dir)).sort()).toEqual(['images', 'notes.txt']) // no partial file beside it
    expect(await readdir(folder)).toEqual([])

    const forced = await runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'user-data'), '--out', notes, '--no-index', '--no-lan', '--force', '--json'])
    expect(forced.code, forced.stderr).toBe(0)
    expect(await b3sumFile(notes)).toBe(baseSum)
    // what it installed it may bring up to date again without --force
    const again = await runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'user-data'), '--out', notes, '--no-index', '--no-lan', '--json'])
    expect(again.code, again.stderr).toBe(0)
    expect(again.summary.upToDate).toBe(true)
    // another data dir did not install it
    const otherAgent = await runAgent(['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, 'other-data'), '--out', notes, '--no-index', '--no-lan'])
    expect(otherAgent.code).toBe(7)
  }, 60_000)

  it('a sync that fails names the partial file it leaves', async () => {
    // 800 kbit/s: the 8 MiB image takes long enough to be interrupted half way
    const { child, done } = spawnAgent(syncArgs('slow', ['--wan-limit', '800kbit']))
    const partial = join(tmp.path, 'slow', '.ws.img.trimswarm-partial')
    const until = Date.now() + 20_000
    while (!(await readdir(join(tmp.path, 'slow')).catch(() => [] as string[])).includes('.ws.img.trimswarm-partial')) {
      if (Date.now() > until) throw new Error('no partial file appeared')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    child.kill('SIGINT')
    const r = await done
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toContain(`interrupted; run the same command again to resume; the partial file ${partial} is kept`)
    expect(await readdir(join(tmp.path, 'slow'))).not.toContain('ws.img')
  }, 60_000)
})

describe('lines of a successful sync', () => {
  it('the host index line after a build in the child process says what it found, not "0 hashed"', async () => {
    const host = await makeHostFolder(tmp.path, base)
    const r = await runAgent(syncArgs('idx', ['--index', host.path]).filter(a => a !== '--no-index'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/host index: \d+ files, all unchanged since the last build/)
    expect(r.stderr).not.toMatch(/0 hashed/)
    expect(r.stdout).toMatch(/is now ws@v1 in \d+\.\d s: local .*, peers .*, origin .*\(of .* data\)\n$/)
  }, 60_000)

  it('a peer that left is not a warning: its refused dial is counted in the summary, shown with --verbose', async () => {
    const lan = (name: string): string[] => ['sync', 'ws@v1', '--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', join(tmp.path, `${name}-data`),
      '--out', join(tmp.path, name, 'ws.img'), '--no-index', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--site', 'left', '--retries', '2', '--retry-delay', '50']
    // the first agent syncs and exits (taking itself off the rendezvous)
    const first = await runAgent([...lan('left1'), '--linger', '0', '--json'])
    expect(first.code, first.stderr).toBe(0)
    expect(first.summary.routinePeerEvents).toBeTypeOf('number')
    // as if it had been killed instead: still listed at the rendezvous
    await listAsKilled(coord, join(tmp.path, 'left1-data'), { site: 'left', image: 'ws', version: 'v1' })
    const second = await runAgent([...lan('left2'), '--linger', '0'])
    expect(second.code, second.stderr).toBe(0)
    expect(second.stderr).not.toMatch(/ECONNREFUSED|StreamResetError/)
    expect(second.stderr).not.toMatch(/warning/)
    expect(second.stdout).toMatch(/; \d+ routine peer events? \(a peer that left, a reset stream; --verbose shows them\)\n$/)
    const verbose = await runAgent([...lan('left3'), '--linger', '0', '--verbose'])
    expect(verbose.code, verbose.stderr).toBe(0)
    expect(verbose.stderr).toMatch(/debug: swarm: .*ECONNREFUSED/)
  }, 90_000)
})
