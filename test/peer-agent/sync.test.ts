/**
 * `trimswarm agent sync` end to end: real coordinator on 127.0.0.1, real agent
 * processes, small ext4 images; outputs checked with the real `b3sum`.
 */
import { appendFile, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeHostFolder, makeTestImage, makeUpdatedImage, tempDir, type HostFolder, type TempDir, type TestImage, type UpdatedImage } from '../helpers/images.ts'
import { runAgent, spawnAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { createImageSync } from '../../peer-agent/image-sync.ts'
import { silentLogger } from '../../peer-agent/interface.ts'

let tmp: TempDir
let coord: TestCoordinator
let base: TestImage
let next: UpdatedImage
let host: HostFolder
let baseSum: string
let nextSum: string

beforeAll(async () => {
  tmp = await tempDir('trimswarm-agent-')
  base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, files: 24, seed: 11 })
  next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 12 })
  host = await makeHostFolder(tmp.path, base)
  ;[baseSum, nextSum] = await Promise.all([b3sumFile(base.path), b3sumFile(next.path)])
  coord = await startTestCoordinator(tmp.path)
  await coord.publish('ws', 'v1', base.path)
  await coord.publish('ws', 'v2', next.path)
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
})

function common (data: string, out: string): string[] {
  return ['--coordinator', coord.url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '2', '--retry-delay', '50']
}

describe('agent sync', () => {
  it('first install reuses host files (local bytes > 0) and matches the published image', async () => {
    const data = join(tmp.path, 'a1-data')
    const out = join(tmp.path, 'a1', 'ws.img')
    const r = await runAgent(['sync', 'ws@v1', ...common(data, out), '--index', host.path])
    expect(r.code, r.stderr).toBe(0)
    expect(r.summary.version).toBe('v1')
    expect(r.summary.bytes.local).toBeGreaterThan(0)
    expect(r.summary.bytes.peers).toBe(0)
    expect(r.summary.bytes.origin).toBeGreaterThan(0)
    expect(typeof r.summary.seconds).toBe('number')
    expect(await b3sumFile(out)).toBe(baseSum)
    // sparse: the output allocates about its non-zero data, not its size
    const st = await stat(out)
    expect(st.size).toBe(base.size)
    expect(st.blocks * 512).toBeLessThan(base.size * 0.9)
    // no leftovers beside the output
    expect((await readdir(join(tmp.path, 'a1'))).filter(f => f !== 'ws.img')).toEqual([])

    // a second run with nothing new is a no-op
    const again = await runAgent(['sync', 'ws@v1', ...common(data, out), '--index', host.path])
    expect(again.code, again.stderr).toBe(0)
    expect(again.summary.upToDate).toBe(true)
    // ... that does not even download the manifest again (its CID matches the version info): less than its block prefixes
    expect(again.summary.bytes.origin).toBeLessThan(r.summary.nonZeroBytes / 4096 * 8)

    // update v1 -> v2: the old version at the output is a seed, the rest comes from the delta pack or blocks
    const hookLog = join(tmp.path, 'hook.log')
    const up = await runAgent(['sync', 'ws', ...common(data, out), '--no-index', '--on-update', `echo "$TRIMSWARM_IMAGE $TRIMSWARM_VERSION $TRIMSWARM_PATH" >> ${hookLog}`])
    expect(up.code, up.stderr).toBe(0)
    expect(up.summary.version).toBe('v2')
    expect(up.summary.fromVersion).toBe('v1')
    expect(up.summary.bytes.local).toBeGreaterThan(0)
    expect(await b3sumFile(out)).toBe(nextSum)
    expect((await readFile(hookLog, 'utf8')).trim()).toBe(`ws v2 ${out}`)

    // the coordinator got the events, with bytes by source
    const res = await fetch(`${coord.url}/v1/events?image=ws&type=sync.completed`, { headers: { authorization: `Bearer ${coord.coordinator.adminToken}` } })
    const events = JSON.stringify(await res.json())
    expect(events).toContain(`"origin":${up.summary.bytes.origin}`)
    expect(events).toContain(`"local":${r.summary.bytes.local}`)
  })

  it('without any local source, everything comes from the origin, compressed', async () => {
    const data = join(tmp.path, 'a2-data')
    const out = join(tmp.path, 'a2', 'ws.img')
    const r = await runAgent(['sync', 'ws@v2', ...common(data, out), '--no-index'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.summary.bytes.local).toBe(0)
    expect(r.summary.bytes.origin).toBeGreaterThan(0)
    expect(await b3sumFile(out)).toBe(nextSum)
  })

  it('applies the policy WAN cap when it is stricter than --wan-limit (token bucket on origin bytes)', async () => {
    const cap = 250_000 // bytes per second
    await coord.setPolicy({ wanLimitBps: cap })
    try {
      const data = join(tmp.path, 'a3-data')
      const out = join(tmp.path, 'a3', 'ws.img')
      const r = await runAgent(['sync', 'ws@v1', ...common(data, out), '--no-index', '--wan-limit', '1gbit'])
      const seconds = r.summary.seconds as number // the sync itself, without process start-up
      expect(r.code, r.stderr).toBe(0)
      expect(await b3sumFile(out)).toBe(baseSum)
      // the bucket starts with RATE_BURST_SECONDS of credit; the rest is paced
      expect(seconds).toBeGreaterThan(r.summary.bytes.origin / cap - 0.5)
      expect(r.summary.bytes.origin / cap).toBeGreaterThan(1)
    } finally {
      await coord.setPolicy({})
    }
  })

  it('--background paces origin bytes from delay probes, under the --wan-limit cap; --background with --foreground is a usage error', async () => {
    const cap = 250_000 // bytes per second
    const data = join(tmp.path, 'bg-data')
    const out = join(tmp.path, 'bg', 'ws.img')
    const r = await runAgent(['sync', 'ws@v1', ...common(data, out), '--no-index', '--no-lan', '--background', '--wan-limit', '2mbit', '--verbose'])
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(baseSum)
    // the status line of the pacer: it probed the coordinator and set a rate, and the coordinator paces the streams
    expect(r.stderr).toMatch(/background: [\d.]+ MB\/s allowed \((slow-start|avoidance|slowdown), sender-paced\), queueing delay \d+ ms over a base of \d+ ms/)
    expect(r.summary.seconds).toBeGreaterThan(r.summary.bytes.origin / cap - 0.5)
    const both = await runAgent(['sync', 'ws@v1', ...common(data, out), '--background', '--foreground'])
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/--background and --foreground exclude each other/)
  })

  it('tells an observer (the swarm) about the temp file, each verified chunk and the finished file', async () => {
    const client = createCoordinatorClient({ logger: silentLogger }, { url: coord.url, auth: { tokenFile: coord.tokenFile } })
    const seen: string[] = []
    let temp = ''
    let chunks = 0
    let verifiedWhileRunning = 0
    const sync = createImageSync({
      client,
      logger: silentLogger,
      observer: {
        started: (i) => { temp = i.tempPath; chunks = i.manifest.chunks.length; seen.push('started') },
        chunkVerified: () => { verifiedWhileRunning++ },
        finished: (i) => { seen.push(`finished ${i.manifest.version} ${i.out}`) }
      }
    }, { dataDir: join(tmp.path, 'obs-data') })
    const out = join(tmp.path, 'obs', 'ws.img')
    const s = await sync.sync({ image: 'ws', version: 'v1', out })
    expect(s.version).toBe('v1')
    expect(seen).toEqual(['started', `finished v1 ${out}`])
    expect(temp).toBe(join(tmp.path, 'obs', '.ws.img.trimswarm-partial'))
    expect(verifiedWhileRunning).toBe(chunks)
    expect(await b3sumFile(out)).toBe(baseSum)
  })
})
