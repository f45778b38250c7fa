/**
 * Promise: a coordinator that goes away in the middle of a swarm sync (kill -9,
 * or SIGTERM, then restarted on the same port and data dir after a pause) costs
 * the agents nothing but time: every `agent sync` of the site finishes with a
 * b3sum-identical image (from peers while the coordinator is down, and by
 * retrying its requests once it is back) without leaving its peers; one that
 * gave up (allowed only when the outage outlasted RETRY_BUDGET_MS) completes
 * when the same command runs again; no output path ever holds anything but the
 * whole image; and the WAN bytes of the trial (first runs and re-runs) stay
 * within what the site pulls in a clean run (or SWARM_OVERHEAD x one agent
 * alone, if higher) + RESTART_SLACK_BYTES per agent.
 * A real `trimswarm coordinator` process and AGENTS agent processes with LAN
 * sharing over 127.0.0.1, all behind one paced byte meter (the site's WAN link).
 * Seeded trials (TRIMSWARM_TRIALS, default 2 to keep the suite short;
 * TRIMSWARM_SEED): the moment is a seeded share (10-80 %) of one agent's clean
 * WAN bytes, which the site must pull at least once, so no agent can be done
 * yet; the pause a seeded 1-4 s; the last trial sends SIGTERM, the others SIGKILL, and its pause
 * outlasts one request's retries (RETRY_BUDGET_MS + 1-3 s): no agent may give up or leave its peers
 * then either (the block-batch source retries whole rounds on top, while peers serve).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ADMIN_TOKEN_FILE } from '../../coordinator/constants.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { DEFAULT_MAX_BLOCKS } from '../../chunker/constants.ts'
import { RETRY_ATTEMPTS, RETRY_BASE_MS, RETRY_MAX_MS } from '../../peer-agent/constants.ts'
import { b3sumFile, createPrng, makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { freePort } from '../helpers/slapd.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { CLI, OPEN_POLICY, spawnAgent, type AgentRun } from '../peer-agent/harness.ts'
import { cliOk, startCoordinatorProcess, type CoordinatorProcess } from '../helpers/cli-process.ts'
import { recordCounts } from './counts.ts'

const TRIALS = Number(process.env.TRIMSWARM_TRIALS ?? 2)
const SEED = Number(process.env.TRIMSWARM_SEED ?? 8)
/** Agents of the site, started together. */
const AGENTS = 3
/** Agents that share a site pull at most this much more than one agent alone (test/peer-agent/swarm-sync.test.ts). */
const SWARM_OVERHEAD = 1.15
/**
 * What a coordinator outage may cost each agent on top, bytes: the block
 * batch in flight at the kill is asked again for the blocks not received (at
 * most one chunk of DEFAULT_MAX_BLOCKS blocks per agent is lost to whole-chunk
 * verification), plus a re-run's login and signed manifest.
 */
const RESTART_SLACK_BYTES = DEFAULT_MAX_BLOCKS * BLOCK_SIZE + 32 * 1024
/**
 * The shortest time one coordinator request of an agent keeps retrying with the
 * default settings (RETRY_ATTEMPTS tries, delays from RETRY_BASE_MS doubling up
 * to RETRY_MAX_MS, each jittered down to half at worst): an outage shorter than
 * this must not make any agent give up.
 */
const RETRY_BUDGET_MS = Array.from({ length: RETRY_ATTEMPTS - 1 }, (_, k) => Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** k) / 2).reduce((a, b) => a + b, 0)
/** What an agent logs when it stops fetching from its peers (image-sync: a failed source; lan-sharing: no capability). */
const LEFT_PEERS = /warning: peers: .*continuing with the next source|not fetching from peers/
/** The paced link makes a swarm sync last about this long, so the outage lands mid-sync. */
const SYNC_SECONDS = 4

let tmp: TempDir
let img: TestImage
let imgSum: string
let dataDir: string
let port: number
let url: string
let coord: CoordinatorProcess | undefined
let agentTokenFile: string
/** WAN bytes (coordinator -> agents) of one agent syncing alone, and of AGENTS syncing together. */
let aloneBytes = 0
let swarmBytes = 0
const trials: Array<{ trial: number, signal: string, killAt: number, pauseMs: number, bytesAtFault: number, outageMs: number, agentsThatRetried: number, exitedNonZero: number, reruns: number, wanBytes: number, ratio: number, peerBytes: number }> = []

beforeAll(async () => {
  tmp = await tempDir('trimswarm-coord-restart-')
  img = await makeTestImage(tmp.path, { name: 'img', sizeMiB: 8, seed: 61 })
  imgSum = await b3sumFile(img.path)
  dataDir = join(tmp.path, 'coordinator')
  port = await freePort()
  url = `http://127.0.0.1:${port}`
  coord = await startCoordinatorProcess(dataDir, port)
  const adminToken = (await readFile(join(dataDir, ADMIN_TOKEN_FILE), 'utf8')).trim()
  const admin = async (method: string, path: string, body: unknown): Promise<any> => {
    const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text === '' ? undefined : JSON.parse(text)
  }
  await admin('PUT', '/v1/policies/branch', OPEN_POLICY)
  const token = await admin('POST', '/v1/tokens', { group: 'branch', name: 'restart-agent' })
  agentTokenFile = join(tmp.path, 'agent.token')
  await writeFile(agentTokenFile, token.token + '\n', { mode: 0o600 })
  await cliOk(['publish', img.path, '--image', 'ws', '--version', 'v1', '--coordinator', url, '--token-file', join(dataDir, ADMIN_TOKEN_FILE)])
}, 120_000)

afterAll(async () => {
  if (coord != null && coord.child.exitCode == null && coord.child.signalCode == null) {
    coord.child.kill('SIGTERM')
    await coord.exited
  }
  await tmp?.cleanup()
  const worst = trials.reduce((m, t) => Math.max(m, t.ratio), 0)
  await recordCounts('coordinator-restart', {
    promise: 'coordinator kill -9 / SIGTERM + restart during a swarm sync: every agent ends with the b3sum-correct image (re-run if it gave up), never a partial one, bounded extra WAN bytes',
    trials: trials.length,
    faultsInjected: trials.length,
    seed: SEED,
    agents: AGENTS,
    aloneBytes,
    swarmBytes,
    worstBytesRatio: Math.round(worst * 10000) / 10000,
    reruns: trials.reduce((s, t) => s + t.reruns, 0),
    bytesLost: 0,
    perTrial: trials
  })
})

/** The `agent sync` arguments of agent `name` of the trial `dir`. */
function agentArgs (coordinatorUrl: string, dir: string, name: string, lan: boolean): string[] {
  return ['sync', 'ws@v1', '--coordinator', coordinatorUrl, '--token-file', agentTokenFile, '--data', join(dir, `${name}-data`), '--out', join(dir, name, 'ws.img'),
    '--json', '--quiet', '--no-index',
    ...(lan ? ['--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--site', 'lab', '--linger', '20'] : ['--no-lan'])]
}

/** The output is either absent or the whole published image, never a part of it. */
async function expectWholeOrAbsent (out: string): Promise<boolean> {
  const st = await stat(out).catch(() => null)
  if (st == null) return false
  expect(await b3sumFile(out), out).toBe(imgSum)
  return true
}

describe(`coordinator restart during a swarm sync (${TRIALS} trials, ${AGENTS} agents, seed ${SEED})`, () => {
  it('clean reference runs: one agent alone, then the site together', async () => {
    const alone = await startByteMeter(url)
    const dir = join(tmp.path, 'clean')
    const ref = await spawnAgent(agentArgs(alone.url, dir, 'alone', false)).done
    expect(ref.code, ref.stderr).toBe(0)
    expect(await b3sumFile(join(dir, 'alone', 'ws.img'))).toBe(imgSum)
    aloneBytes = alone.down
    await alone.close()

    const meter = await startByteMeter(url)
    const runs = await Promise.all(Array.from({ length: AGENTS }, (_, i) => spawnAgent(agentArgs(meter.url, dir, `a${i}`, true)).done))
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    for (let i = 0; i < AGENTS; i++) expect(await b3sumFile(join(dir, `a${i}`, 'ws.img'))).toBe(imgSum)
    swarmBytes = meter.down
    await meter.close()
    expect(aloneBytes).toBeGreaterThan(500_000)
    expect(runs.reduce((s, r) => s + (r.summary.bytes.peers as number), 0)).toBeGreaterThan(0)
  }, 300_000)

  const prng = createPrng(SEED)
  for (let trial = 1; trial <= TRIALS; trial++) {
    // drawn up front, so a trial's moment does not depend on the others
    const killAt = prng.int(10, 80) / 100
    const signal: NodeJS.Signals = trial === TRIALS ? 'SIGTERM' : 'SIGKILL'
    // the last trial's outage outlasts one request's retries (RETRY_BUDGET_MS): agents still must not
    // give up nor leave their peers (the block-batch source retries its rounds, peers serve meanwhile)
    const longOutage = trial === TRIALS
    const pauseMs = longOutage ? Math.ceil(RETRY_BUDGET_MS) + prng.int(1000, 3000) : prng.int(1000, 4000)
    it(`trial ${trial}: ${signal} at ${Math.round(killAt * 100)} % of the sync, restart after ${(pauseMs / 1000).toFixed(1)} s: every agent ends with the image`, async () => {
      expect(swarmBytes).toBeGreaterThan(0)
      const dir = join(tmp.path, `t${trial}`)
      // the site's WAN link, paced so the swarm sync lasts at least SYNC_SECONDS (the site pulls each byte at least once)
      const meter = await startByteMeter(url, { rate: Math.round(aloneBytes / SYNC_SECONDS) })
      const names = Array.from({ length: AGENTS }, (_, i) => `a${i}`)
      const procs = names.map(n => spawnAgent(agentArgs(meter.url, dir, n, true)))
      let running = AGENTS
      const runs = procs.map(p => p.done.finally(() => { running-- }))
      try {
        const deadline = Date.now() + 60_000
        while (meter.down < aloneBytes * killAt && running === AGENTS && Date.now() < deadline) await sleep(5)
        expect(running, 'every agent still syncing when the coordinator goes away').toBe(AGENTS)
        const bytesAtFault = meter.down
        const faultAt = performance.now()
        coord!.child.kill(signal)
        const e = await coord!.exited
        if (signal === 'SIGKILL') expect(e.signal).toBe('SIGKILL')
        else expect(e.code, coord!.stderr()).toBe(0)
        coord = undefined
        // the outage: nothing listens on the port (agents get connection refused, peers keep serving)
        await sleep(pauseMs)
        coord = await startCoordinatorProcess(dataDir, port)
        const outageMs = Math.round(performance.now() - faultAt)

        const first: AgentRun[] = await Promise.all(runs)
        let exitedNonZero = 0
        let reruns = 0
        for (let i = 0; i < AGENTS; i++) {
          const out = join(dir, names[i], 'ws.img')
          // an outage the retries cover must not make an agent drop its peers and pull the rest alone
          // nor may the long trial's: the block-batch source retries its rounds while peers serve
          if (outageMs < RETRY_BUDGET_MS || longOutage) expect(first[i].stderr, `agent ${names[i]} left the swarm after a ${outageMs} ms outage`).not.toMatch(LEFT_PEERS)
          if (first[i].code === 0) {
            expect(await expectWholeOrAbsent(out), first[i].stderr).toBe(true)
            continue
          }
          // gave up while the coordinator was away: nothing at its output, and the same command completes it
          exitedNonZero++
          expect(longOutage, `agent ${names[i]} gave up during a ${outageMs} ms outage although its peers and the batch retries could carry it: ${first[i].stderr}`).toBe(false)
          // only allowed when the outage outlasted what the agent's retries wait for
          expect(outageMs, `agent ${names[i]} gave up after a ${outageMs} ms outage (retry budget ${RETRY_BUDGET_MS} ms): ${first[i].stderr}`).toBeGreaterThanOrEqual(RETRY_BUDGET_MS)
          expect(first[i].signal, first[i].stderr).toBeNull()
          expect(await expectWholeOrAbsent(out)).toBe(false)
          reruns++
          const before = meter.down
          const again = await spawnAgent(agentArgs(meter.url, dir, names[i], true)).done
          expect(again.code, again.stderr).toBe(0)
          expect(await expectWholeOrAbsent(out)).toBe(true)
          // it resumes: never more than a fresh sync of its own plus the fixed cost of a restart
          expect(meter.down - before).toBeLessThanOrEqual(aloneBytes + RESTART_SLACK_BYTES)
        }
        const wanBytes = meter.down
        const peerBytes = first.reduce((s, r) => s + (r.summary?.bytes?.peers ?? 0), 0)
        // agents that met the outage (a request retried or a block stream broke) rather than passing it by
        const agentsThatRetried = first.filter(r => /retrying in|stream from the coordinator broke/.test(r.stderr)).length
        trials.push({ trial, signal, killAt, pauseMs, bytesAtFault, outageMs, agentsThatRetried, exitedNonZero, reruns, wanBytes, ratio: wanBytes / aloneBytes, peerBytes })
        // what the site pulls together (the clean run's, or the swarm's promise if that was lower), plus each agent's cost of the outage
        const bound = Math.max(swarmBytes, aloneBytes * SWARM_OVERHEAD) + AGENTS * RESTART_SLACK_BYTES
        expect(wanBytes, `WAN bytes ${wanBytes} vs one agent alone ${aloneBytes}, the site together ${swarmBytes}`).toBeLessThanOrEqual(bound)
      } finally {
        for (const p of procs) if (p.child.exitCode == null && p.child.signalCode == null) p.child.kill('SIGKILL')
        await Promise.all(runs)
        await meter.close()
        coord ??= await startCoordinatorProcess(dataDir, port)
      }
    }, 300_000)
  }
})
