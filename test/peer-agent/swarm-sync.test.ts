/**
 * LAN sharing end to end: a real coordinator behind a counting TCP proxy, agent
 * PROCESSES on 127.0.0.1 started together (multicast off, discovery through the
 * coordinator rendezvous): each byte crosses the proxy about once, the rest
 * comes from peers, and every output equals the published image (b3sum).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage, type UpdatedImage } from '../helpers/images.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { listAsKilled, OPEN_POLICY, peerIdOfDataDir, runAgent, spawnAgent, startTestCoordinator, type AgentRun, type TestCoordinator } from './harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let base: TestImage
let next: UpdatedImage
let baseSum: string
let nextSum: string
let noLanTokenFile: string

beforeAll(async () => {
  tmp = await tempDir('trimswarm-swarm-sync-')
  base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 12, files: 30, seed: 51, dataKiB: 6 * 1024 })
  next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 52 })
  ;[baseSum, nextSum] = await Promise.all([b3sumFile(base.path), b3sumFile(next.path)])
  coord = await startTestCoordinator(tmp.path)
  await coord.publish('ws', 'v1', base.path)
  await coord.publish('ws', 'v2', next.path)
  // a second group whose policy gives the images but not LAN sharing
  const admin = async (method: string, path: string, body: unknown): Promise<any> => {
    const res = await fetch(coord.url + path, { method, headers: { authorization: `Bearer ${coord.coordinator.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text === '' ? undefined : JSON.parse(text)
  }
  await admin('PUT', '/v1/policies/nolan', { ...OPEN_POLICY, lanSharing: false })
  const token = await admin('POST', '/v1/tokens', { group: 'nolan', name: 'no-lan-agent' })
  noLanTokenFile = join(tmp.path, 'nolan.token')
  await writeFile(noLanTokenFile, token.token + '\n', { mode: 0o600 })
}, 60_000)

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
})

function args (url: string, tokenFile: string, name: string): string[] {
  return ['--coordinator', url, '--token-file', tokenFile, '--data', join(tmp.path, `${name}-data`), '--out', join(tmp.path, name, 'ws.img'),
    '--json', '--quiet', '--no-index', '--retries', '2', '--retry-delay', '50']
}
const lanArgs = ['--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--site', 'lab', '--linger', '20']

describe('agent sync with LAN sharing', () => {
  it('refuses a bad --listen address or --linger value with a usage error', async () => {
    const bad = await runAgent(['sync', 'ws@v1', ...args(coord.url, coord.tokenFile, 'bad'), '--listen', 'tcp:4100'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--listen')
    expect(bad.stderr).not.toContain('    at ')
    const linger = await runAgent(['sync', 'ws@v1', ...args(coord.url, coord.tokenFile, 'bad'), '--linger', 'soon'])
    expect(linger.code).toBe(2)
    expect(linger.stderr).toContain('--linger')
  })

  it('an update whose site lists only agents that have exited takes the delta pack itself, not claim rounds', async () => {
    // three agents sync v1 with LAN sharing one after the other and exit
    const site = ['--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--site', 'gone', '--linger', '0']
    const names = ['g1', 'g2', 'g3']
    const ids: string[] = []
    for (const n of names) {
      const r = await runAgent(['sync', 'ws@v1', ...args(coord.url, coord.tokenFile, n), ...site])
      expect(r.code, r.stderr).toBe(0)
      ids.push(await peerIdOfDataDir(join(tmp.path, `${n}-data`)))
    }
    const byId = [...ids].sort()
    expect(new Set(ids).size).toBe(3)
    const [lowest, highest] = [names[ids.indexOf(byId[0])], names[ids.indexOf(byId[2])]]
    // the lowest peer id updates first and exits; it takes itself off the rendezvous as it leaves
    const first = await runAgent(['sync', 'ws@v2', ...args(coord.url, coord.tokenFile, lowest), ...site])
    expect(first.code, first.stderr).toBe(0)
    const token = (await readFile(coord.tokenFile, 'utf8')).trim()
    const listedOnV2 = async (): Promise<string[]> => {
      const res = await fetch(`${coord.url}/v1/peers?site=gone&image=ws&version=v2`, { headers: { authorization: `Bearer ${token}` } })
      return (await res.json()).peers.map((p: { peerId: string }) => p.peerId)
    }
    expect(await listedOnV2()).not.toContain(byId[0])
    // as if it had been killed instead: still listed, at a port nobody listens on
    expect(await listAsKilled(coord, join(tmp.path, `${lowest}-data`), { site: 'gone', image: 'ws', version: 'v2' })).toBe(byId[0])
    expect(await listedOnV2()).toContain(byId[0])
    // the highest then sees it as the site's pack agent, but cannot reach it: it takes the pack itself
    const r = await runAgent(['sync', 'ws@v2', ...args(coord.url, coord.tokenFile, highest), ...site])
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, highest, 'ws.img'))).toBe(nextSum)
    expect(r.summary.usedDeltaPack).toBe(true)
  }, 120_000)

  it('agents that start together pull each byte over the WAN about once, and update together the same way', async () => {
    // one agent alone (no LAN): the reference for the WAN bytes
    const alone = await startByteMeter(coord.url)
    const ref = await runAgent(['sync', 'ws@v1', ...args(alone.url, coord.tokenFile, 'alone'), '--no-lan'])
    expect(ref.code, ref.stderr).toBe(0)
    const aloneBase = alone.down
    const refNext = await runAgent(['sync', 'ws@v2', ...args(alone.url, coord.tokenFile, 'alone'), '--no-lan'])
    expect(refNext.code, refNext.stderr).toBe(0)
    const aloneNext = alone.down - aloneBase
    await alone.close()

    const meter = await startByteMeter(coord.url)
    const names = ['p1', 'p2', 'p3', 'p4']
    const runAll = async (version: string): Promise<AgentRun[]> => {
      const procs = names.map(n => spawnAgent(['sync', `ws@${version}`, ...args(meter.url, coord.tokenFile, n), ...lanArgs]))
      // an agent of a group without lanSharing, at the same time (not metered: it pulls everything itself)
      const outsider = spawnAgent(['sync', `ws@${version}`, ...args(coord.url, noLanTokenFile, 'outsider'), ...lanArgs])
      const runs = await Promise.all([...procs.map(p => p.done), outsider.done])
      return runs
    }

    const first = await runAll('v1')
    for (const r of first) expect(r.code, r.stderr).toBe(0)
    for (const n of [...names, 'outsider']) expect(await b3sumFile(join(tmp.path, n, 'ws.img'))).toBe(baseSum)
    const outsider1 = first.at(-1)!
    expect(outsider1.summary.bytes.peers).toBe(0)
    const peers1 = first.slice(0, -1).reduce((s, r) => s + (r.summary.bytes.peers as number), 0)
    expect(peers1).toBeGreaterThan(0)
    // what the agents served each other (reported after --linger) covers what they received from each other
    const served1 = first.slice(0, -1).reduce((s, r) => s + (r.summary.servedBytes as number), 0)
    expect(served1).toBeGreaterThanOrEqual(peers1)
    expect(outsider1.summary.servedBytes).toBeUndefined()
    expect(ref.summary.servedBytes).toBeUndefined()
    const wan1 = meter.down
    expect(wan1 / aloneBase, `WAN bytes ${wan1} vs one agent alone ${aloneBase}`).toBeLessThanOrEqual(1.15)

    meter.reset()
    const second = await runAll('v2')
    for (const r of second) expect(r.code, r.stderr).toBe(0)
    for (const n of [...names, 'outsider']) expect(await b3sumFile(join(tmp.path, n, 'ws.img'))).toBe(nextSum)
    expect(second.at(-1)!.summary.bytes.peers).toBe(0)
    const wan2 = meter.down
    expect(wan2 / aloneNext, `update WAN bytes ${wan2} vs one agent alone ${aloneNext}`).toBeLessThanOrEqual(1.15)
    await meter.close()
    console.log(`swarm-sync: base alone ${aloneBase} B, 4 together ${wan1} B (${(wan1 / aloneBase).toFixed(3)}x), peers ${peers1} B; update alone ${aloneNext} B, 4 together ${wan2} B (${(wan2 / aloneNext).toFixed(3)}x)`)
  }, 120_000)
})
