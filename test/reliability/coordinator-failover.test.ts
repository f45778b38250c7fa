/**
 * Promise (issue 17, agents fail over): two coordinator processes with their own
 * data dirs and the same key files (signingKeyFile, sessionKeyFile, adminTokenFile
 * in one config), the same image published to both. An agent given both URLs
 * syncs; `kill -9` of the coordinator it talks to mid-sync (a --wan-limit makes
 * the sync last seconds) does not end the sync: it continues on the second one,
 * asking it only for the blocks not verified before the kill (counted by a proxy
 * in front of the second), and the output is byte-identical to the image. The
 * sync.completed event arrives once.
 */
import { createServer, request as httpRequest, type Server } from 'node:http'
import { mkdir, writeFile } from 'node:fs/promises'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { freePort } from '../helpers/slapd.ts'
import { cli, startCoordinatorProcess, type CoordinatorProcess } from '../helpers/cli-process.ts'
import { spawnAgent } from '../peer-agent/harness.ts'
import { recordCounts } from './counts.ts'

let tmp: TempDir
let img: TestImage
const started: CoordinatorProcess[] = []
const servers: Server[] = []
let outcome: { blocksTotal: number, missingAtSwitch: number, askedFromSecond: number, askedTwice: number } | undefined

/** A proxy to `target` that records the block indices of every POST .../blocks request. */
async function blockCountingProxy (target: string): Promise<{ url: string, asked: number[] }> {
  const asked: number[] = []
  const server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (d: Buffer) => parts.push(d))
    req.on('end', () => {
      const body = Buffer.concat(parts)
      if (req.method === 'POST' && req.url?.endsWith('/blocks') === true) {
        for (const [start, count] of JSON.parse(body.toString()).ranges as Array<[number, number]>) for (let i = start; i < start + count; i++) asked.push(i)
      }
      const up = httpRequest(target + req.url, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      })
      up.on('error', () => res.destroy())
      up.end(body)
    })
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address() as { port: number }
  return { url: `http://127.0.0.1:${addr.port}`, asked }
}

beforeAll(async () => {
  tmp = await tempDir('trimswarm-failover-')
  // more data than the kernel's socket buffers hold, so the kill cuts a stream still being sent
  img = await makeTestImage(tmp.path, { name: 'ws', sizeMiB: 48, dataKiB: 30_000, seed: 17 })
})

afterAll(async () => {
  for (const c of started) { c.child.kill('SIGKILL'); await c.exited }
  for (const s of servers) { s.closeAllConnections(); s.close() }
  await tmp?.cleanup()
  await recordCounts('coordinator-failover', {
    promise: 'kill -9 of the coordinator an agent syncs from: the sync continues on another coordinator of its list, re-fetching nothing verified, output byte-identical',
    trials: outcome == null ? 0 : 1,
    faultsInjected: outcome == null ? 0 : 1,
    bytesLost: 0,
    ...outcome
  })
})

describe('agent failover between two coordinators sharing key files', () => {
  it('kill -9 of the first mid-sync: the sync finishes on the second, asking it only for blocks not verified before', async () => {
    const config = join(tmp.path, 'coordinator.json')
    await writeFile(config, JSON.stringify({ signingKeyFile: 'keys/signing-key.pem', sessionKeyFile: 'keys/session.key', adminTokenFile: 'keys/admin.token' }))
    await mkdir(join(tmp.path, 'keys'), { mode: 0o700 })
    const first = await startCoordinatorProcess(join(tmp.path, 'a'), await freePort(), ['--config', config])
    started.push(first)
    const second = await startCoordinatorProcess(join(tmp.path, 'b'), await freePort(), ['--config', config])
    started.push(second)
    const tokenFile = join(tmp.path, 'keys', 'admin.token')
    for (const c of [first, second]) {
      const r = await cli(['publish', img.path, '--image', 'ws', '--version', 'v1', '--coordinator', c.url, '--token-file', tokenFile, '--json'])
      expect(r.code, r.stderr).toBe(0)
    }
    // the same key: each coordinator's /v1/key answers the same
    const keys = await Promise.all([first, second].map(async c => await (await fetch(`${c.url}/v1/key`)).text()))
    expect(keys[0]).toBe(keys[1])

    const meter = await blockCountingProxy(second.url)
    const out = join(tmp.path, 'out', 'ws.img')
    const agent = spawnAgent(['sync', 'ws@v1', '--coordinator', first.url, '--coordinator', meter.url, '--token-file', tokenFile,
      '--data', join(tmp.path, 'agent'), '--out', out, '--no-index', '--no-lan', '--wan-limit', '8mbit', '--json', '--verbose', '--log-format', 'text'])
    // the blocks have started to arrive once the partial file exists; then some more
    const partial = join(tmp.path, 'out', '.ws.img.trimswarm-partial')
    const deadline = Date.now() + 30_000
    while (!existsSync(partial) && Date.now() < deadline && agent.child.exitCode == null) await sleep(20)
    await sleep(3000)
    first.child.kill('SIGKILL')
    await first.exited
    const r = await agent.done
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(await b3sumFile(img.path))

    // the stream from the first broke with N blocks missing; the second was asked for exactly those N
    const broke = /block stream from the coordinator broke .*asking again for the (\d+) blocks not received/.exec(r.stderr)
    expect(broke, r.stderr).not.toBeNull()
    const missingAtSwitch = Number(broke![1])
    expect(r.stderr).toMatch(new RegExp(`${first.url}: ECONNREFUSED.*trying ${meter.url}`))
    const blocksTotal = (Object.values(r.summary.blocksBySource) as number[]).reduce((a, b) => a + b, 0)
    expect(missingAtSwitch).toBeGreaterThan(0)
    expect(missingAtSwitch).toBeLessThan(blocksTotal) // the kill was mid-sync: some were verified before it
    const distinct = new Set(meter.asked)
    expect(meter.asked.length).toBe(distinct.size) // none asked twice
    expect(distinct.size).toBe(missingAtSwitch) // nothing verified before the switch asked again
    outcome = { blocksTotal, missingAtSwitch, askedFromSecond: meter.asked.length, askedTwice: meter.asked.length - distinct.size }

    // the completion event reached the second coordinator, once
    const admin = readFileSync(tokenFile, 'utf8').trim()
    const events = await (await fetch(`${second.url}/v1/events?type=sync.completed`, { headers: { authorization: `Bearer ${admin}` } })).json()
    expect(events.events).toHaveLength(1)
  }, 120_000)
})
