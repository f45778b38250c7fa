/**
 * Promise (issue 17, end to end): three `trimswarm coordinator` processes on
 * the stack's PostgreSQL and RGW (test/helpers/scale-out-stack.ts: the run's
 * shared stack, this file's own database and key prefix), each with its own
 * --data scratch dir. An image published through coordinator 1 is synced by
 * real agents through coordinators 2 and 3, each agent given a failover list;
 * `kill -9` of coordinator 2 mid-sync ends no sync: every output is
 * byte-identical to the source image, and every agent's events are in the
 * reports read through 1 and 3 exactly once.
 */
import { writeFile } from 'node:fs/promises'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { freePort } from '../helpers/slapd.ts'
import { cli, startCoordinatorProcess, type CoordinatorProcess } from '../helpers/cli-process.ts'
import { sharedScaleOutStack, type TestScaleOutStack } from '../helpers/scale-out-stack.ts'
import { OPEN_POLICY, spawnAgent, type AgentRun } from '../peer-agent/harness.ts'
import { recordCounts } from './counts.ts'

/** Agents per coordinator that stays up and per coordinator that is killed. */
const AGENTS_PER_COORDINATOR = 2

let tmp: TempDir
let img: TestImage
let stack: TestScaleOutStack
const started: CoordinatorProcess[] = []
let outcome: { agents: number, failedOver: number, eventsCompleted: number } | undefined

beforeAll(async () => {
  tmp = await tempDir('trimswarm-scale-out-')
  stack = await sharedScaleOutStack('scale_out_e2e')
  // enough data that a sync at the agents' 8 mbit lasts seconds: the kill lands mid-sync
  img = await makeTestImage(tmp.path, { name: 'ws', sizeMiB: 32, dataKiB: 16_000, seed: 1917 })
}, 300_000)

afterAll(async () => {
  for (const c of started) if (c.child.exitCode == null && c.child.signalCode == null) { c.child.kill('SIGKILL'); await c.exited }
  await stack?.stop()
  await tmp?.cleanup()
  await recordCounts('coordinator-scale-out', {
    promise: '3 coordinators on PostgreSQL + RGW: publish via 1, agents via 2 and 3, kill -9 of 2 mid-sync: outputs byte-identical, each agent\'s events counted once',
    trials: outcome == null ? 0 : 1,
    faultsInjected: outcome == null ? 0 : 1,
    bytesLost: 0,
    ...outcome
  })
}, 120_000)

describe('three coordinators on the stack\'s coordinator.json', () => {
  it('publish via 1, agents via 2 and 3 with failover lists, kill -9 of 2 mid-sync: outputs identical, every agent\'s events once in the reports of 1 and 3', async () => {
    const adminToken = readFileSync(stack.adminTokenFile, 'utf8').trim()
    // 1 first: it creates the signing and session keys the config names, which 2 and 3 then load
    const one = await startCoordinatorProcess(join(tmp.path, 'scratch-1'), await freePort(), ['--config', stack.configFile])
    started.push(one)
    const [two, three] = await Promise.all([2, 3].map(async i => await startCoordinatorProcess(join(tmp.path, `scratch-${i}`), await freePort(), ['--config', stack.configFile])))
    started.push(two, three)
    const call = async (c: CoordinatorProcess, method: string, path: string, body?: unknown): Promise<any> => {
      const res = await fetch(c.url + path, { method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
      if (!res.ok) throw new Error(`${method} ${c.url}${path}: ${res.status} ${await res.text()}`)
      return await res.json()
    }

    // publish, policy and machine token through 1
    const published = await cli(['publish', img.path, '--image', 'ws', '--version', 'v1', '--coordinator', one.url, '--token-file', stack.adminTokenFile, '--json'])
    expect(published.code, published.stderr).toBe(0)
    await call(one, 'PUT', '/v1/policies/branch', OPEN_POLICY)
    const tokenFile = join(tmp.path, 'agent.token')
    await writeFile(tokenFile, (await call(one, 'POST', '/v1/tokens', { group: 'branch', name: 'scale-out-e2e' })).token + '\n', { mode: 0o600 })
    // 2 and 3 serve the version to the agents' token once their metadata refresh (every 2 s) sees the version, the
    // policy and the token: asked earlier, they answer 401 and the agents stop (a CI run did, before this wait)
    const agentToken = readFileSync(tokenFile, 'utf8').trim()
    for (const c of [two, three]) await expect.poll(async () => (await fetch(`${c.url}/v1/images/ws/versions/v1/info`, { headers: { authorization: `Bearer ${agentToken}` } })).status, { timeout: 10_000, interval: 200 }).toBe(200)

    // agents 0, 1 on 2 (then 3); agents 2, 3 on 3 (then 2)
    const agents = Array.from({ length: 2 * AGENTS_PER_COORDINATOR }, (_, i) => {
      const list = i < AGENTS_PER_COORDINATOR ? [two, three] : [three, two]
      const out = join(tmp.path, `agent-${i}`, 'out', 'ws.img')
      const run = spawnAgent(['sync', 'ws@v1', ...list.flatMap(c => ['--coordinator', c.url]), '--token-file', tokenFile,
        '--data', join(tmp.path, `agent-${i}`, 'data'), '--out', out, '--no-index', '--no-lan', '--wan-limit', '8mbit', '--json', '--verbose', '--log-format', 'text'])
      return { ...run, out, partial: join(tmp.path, `agent-${i}`, 'out', '.ws.img.trimswarm-partial'), onTwo: i < AGENTS_PER_COORDINATOR }
    })

    // kill -9 of 2 once its agents have blocks arriving, and some more time
    const deadline = Date.now() + 60_000
    while (agents.some(a => a.onTwo && !existsSync(a.partial)) && Date.now() < deadline && agents.every(a => a.child.exitCode == null)) await sleep(20)
    await sleep(1500)
    const stillSyncing = agents.filter(a => a.onTwo && a.child.exitCode == null).length
    two.child.kill('SIGKILL')
    await two.exited
    expect(stillSyncing, 'the agents on 2 finished before the kill: nothing was tested').toBe(AGENTS_PER_COORDINATOR)

    const runs: AgentRun[] = await Promise.all(agents.map(async a => await a.done))
    const want = await b3sumFile(img.path)
    for (const [i, r] of runs.entries()) {
      expect(r.code, `agent ${i}: ${r.stderr}`).toBe(0)
      expect(await b3sumFile(agents[i].out), `agent ${i}`).toBe(want)
    }
    // the agents of 2 went on through 3
    const failedOver = runs.filter((r, i) => agents[i].onTwo && r.stderr.includes(`${two.url}: ECONNREFUSED`) && r.stderr.includes(`trying ${three.url}`)).length
    expect(failedOver, runs.map(r => r.stderr).join('\n---\n')).toBe(AGENTS_PER_COORDINATOR)

    // events: one sync.completed per agent, no event twice, and the reports of 1 and 3 count each agent once with its bytes once
    const completed = async (c: CoordinatorProcess): Promise<Array<{ id: string, agent: string, bytes: Record<string, number> }>> =>
      (await call(c, 'GET', '/v1/events?image=ws&type=sync.completed&limit=100')).events.map((e: any) => e.event)
    await expect.poll(async () => (await completed(one)).length, { timeout: 15_000, interval: 250 }).toBe(agents.length)
    for (const c of [one, three]) {
      const events = await completed(c)
      expect(new Set(events.map(e => e.agent)).size).toBe(agents.length)
      expect(new Set(events.map(e => e.id)).size).toBe(agents.length)
      const all = (await call(c, 'GET', '/v1/events?image=ws&limit=1000')).events.map((e: any) => e.event.id as string)
      expect(new Set(all).size).toBe(all.length)
      type Row = { clients: number, inProgress: number, bytes: Record<string, number> }
      const report = async (): Promise<Row[]> => (await call(c, 'GET', '/v1/reports?image=ws')).rows
      const clients = async (): Promise<number> => (await report()).reduce((n, r) => n + r.clients, 0)
      // each coordinator reloads the report aggregates when they were written (checked every 2 s), then must stay at one count per agent
      await expect.poll(clients, { timeout: 10_000, interval: 250 }).toBe(agents.length)
      await sleep(2500)
      const rows = await report()
      const sum = (f: (r: Row) => number): number => rows.reduce((s, r) => s + f(r), 0)
      expect(sum(r => r.clients)).toBe(agents.length)
      expect(sum(r => r.inProgress)).toBe(0)
      const total = (b: Record<string, number>): number => Object.values(b).reduce((s, n) => s + n, 0)
      expect(sum(r => total(r.bytes))).toBe(events.reduce((s, e) => s + total(e.bytes), 0))
    }
    outcome = { agents: agents.length, failedOver, eventsCompleted: agents.length }
  }, 240_000)
})
