/** The agent daemon: config parsing, update windows, and a real daemon process following new versions. */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inUpdateWindow, parseDaemonConfig } from '../../peer-agent/daemon.ts'
import { b3sumFile, makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { spawnAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'

describe('daemon config', () => {
  it('parses a full config, resolving relative paths against the config folder', () => {
    const c = parseDaemonConfig({
      coordinator: 'http://127.0.0.1:8440',
      tokenFile: 'agent.token',
      dataDir: 'data',
      images: { ws: 'out/ws.img' },
      indexFolders: ['/usr'],
      site: 'branch-1',
      pollSeconds: 60,
      wanLimit: '20mbit',
      nice: true,
      onUpdate: 'true'
    }, '/etc/trimswarm')
    expect(c).toMatchObject({
      auth: { tokenFile: '/etc/trimswarm/agent.token' },
      dataDir: '/etc/trimswarm/data',
      images: { ws: '/etc/trimswarm/out/ws.img' },
      site: 'branch-1',
      pollSeconds: 60,
      wanLimit: 2_500_000,
      nice: true
    })
  })

  it('rejects bad configs with a message naming the field', () => {
    const ok = { coordinator: 'http://x', tokenFile: 't', dataDir: 'd' }
    expect(() => parseDaemonConfig({ ...ok, pollSecond: 5 }, '/')).toThrow(/unknown field "pollSecond"/)
    expect(() => parseDaemonConfig({ coordinator: 'http://x', dataDir: 'd' }, '/')).toThrow(/tokenFile/)
    expect(() => parseDaemonConfig({ ...ok, user: 'u' }, '/')).toThrow(/either/)
    expect(() => parseDaemonConfig({ ...ok, images: { '../x': 'a' } }, '/')).toThrow(/bad image name/)
    expect(() => parseDaemonConfig({ ...ok, wanLimit: 'fast' }, '/')).toThrow(/rate/)
    expect(() => parseDaemonConfig({ ...ok, pollSeconds: 0 }, '/')).toThrow(/pollSeconds/)
    expect(() => parseDaemonConfig({ ...ok, transfer: 'fast' }, '/')).toThrow(/"transfer" must be "background" or "foreground"/)
  })

  it('takes a transfer mode; none leaves it to the policy (background when it names none)', () => {
    const ok = { coordinator: 'http://x', tokenFile: 't', dataDir: 'd' }
    expect(parseDaemonConfig(ok, '/').transfer).toBeUndefined()
    expect(parseDaemonConfig({ ...ok, transfer: 'foreground' }, '/').transfer).toBe('foreground')
    expect(parseDaemonConfig({ ...ok, transfer: 'background' }, '/').transfer).toBe('background')
  })

  it('checks update windows in local time, wrapping past midnight', () => {
    const at = (h: number, m: number): Date => new Date(2026, 0, 1, h, m)
    expect(inUpdateWindow([], at(12, 0))).toBe(true)
    expect(inUpdateWindow([{ start: '01:00', end: '05:00' }], at(3, 0))).toBe(true)
    expect(inUpdateWindow([{ start: '01:00', end: '05:00' }], at(5, 0))).toBe(false)
    expect(inUpdateWindow([{ start: '22:00', end: '06:00' }], at(23, 30))).toBe(true)
    expect(inUpdateWindow([{ start: '22:00', end: '06:00' }], at(5, 59))).toBe(true)
    expect(inUpdateWindow([{ start: '22:00', end: '06:00' }], at(12, 0))).toBe(false)
    expect(inUpdateWindow([{ start: '22:00', end: '06:00' }, { start: '12:00', end: '13:00' }], at(12, 30))).toBe(true)
  })
})

describe('agent run (daemon process)', () => {
  let tmp: TempDir
  let coord: TestCoordinator
  let base: TestImage
  let next: TestImage

  beforeAll(async () => {
    tmp = await tempDir('trimswarm-daemon-')
    base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, seed: 31 })
    next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 32 })
    coord = await startTestCoordinator(tmp.path)
    await coord.publish('ws', 'v1', base.path)
  })
  afterAll(async () => {
    await coord?.stop()
    await tmp?.cleanup()
  })

  it('installs the assigned image, follows a new version, runs the hook, stops on SIGTERM', async () => {
    const out = join(tmp.path, 'vm', 'ws.img')
    const hookLog = join(tmp.path, 'hook.log')
    const config = join(tmp.path, 'agent.json')
    await writeFile(config, JSON.stringify({
      coordinator: coord.url,
      tokenFile: coord.tokenFile,
      dataDir: 'agent-data',
      images: { ws: 'vm/ws.img' },
      indexFolders: [],
      pollSeconds: 0.5,
      onUpdate: `echo "$TRIMSWARM_VERSION" >> ${hookLog}`
    }))
    const { child, done } = spawnAgent(['run', '--config', config])
    const waitFor = async (what: () => Promise<boolean>, ms: number): Promise<void> => {
      const until = Date.now() + ms
      while (!await what().catch(() => false)) {
        if (Date.now() > until) throw new Error('timed out')
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
    const baseSum = await b3sumFile(base.path)
    await waitFor(async () => (await readFile(hookLog, 'utf8')).includes('v1'), 30_000)
    expect(await b3sumFile(out)).toBe(baseSum)

    await coord.publish('ws', 'v2', next.path)
    await waitFor(async () => (await readFile(hookLog, 'utf8')).includes('v2'), 30_000)
    expect(await b3sumFile(out)).toBe(await b3sumFile(next.path))
    expect((await readFile(hookLog, 'utf8')).trim().split('\n')).toEqual(['v1', 'v2']) // once per new version

    child.kill('SIGTERM')
    const r = await done
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('agent daemon stopped')
  })
})
