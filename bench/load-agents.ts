/**
 * `npm run bench -- load-agents`: N agent processes (`trimswarm agent sync`)
 * syncing one image together against one `trimswarm coordinator` process on
 * loopback, while autocannon keeps --connections concurrent manifest requests
 * busy. Checks every agent ends with a b3sum-correct image, no request
 * failed and the coordinator's memory is flat: after the load, a settle
 * period and a full GC its RSS and live heap are back near the start.
 * Figures: docs/BENCHMARKS.md `## load`.
 */
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { cpuSeconds, memoryLines, spawnCoordinator, watchMemory } from './lib/proc.ts'
import { pollUntil } from './lib/poll.ts'

const exec = promisify(execFile)

interface LoadResult {
  requests: { total: number, average: number }
  latency: { p50: number, p99: number, max: number }
  errors: number
  timeouts: number
  non2xx: number
}
/** autocannon with a callback returns the running instance, which `stop()` ends early (the package ships no types). */
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>, done: (err: Error | null, r: LoadResult) => void) => { stop: () => void }
const CLI = new URL('../bin/trimswarm.js', import.meta.url).pathname

/** One line for the list of benchmarks. */
export const summary = '20 agent processes syncing together + 1,000 concurrent manifest requests against one coordinator: errors, memory over time'

/** Help text. */
export const usage = `Usage: npm run bench -- load-agents [--agents N] [--connections N] [--mib N] [--min-seconds S]
         [--settle S] [--max-growth-mib N] [--sample-ms N] [--linger S] [--no-lan] [--nice] [--rate N] [--json]

Starts \`trimswarm coordinator\` on 127.0.0.1, publishes a synthetic image of
--mib MiB (default 64) as desk/v1, then at once starts --agents (default 20)
\`trimswarm agent sync desk@v1 --no-index\` processes (each its own data dir)
and autocannon with --connections (default 1000) connections on
GET /v1/images/desk/versions/latest until the last agent finishes, and for
at least --min-seconds (default 0; a long run tells a plateau from a leak).
Agents share over the LAN (libp2p on 127.0.0.1) unless --no-lan, and linger
--linger seconds (default 10) for peers still fetching from them. --nice runs
the agents at the lowest CPU priority (as the agent daemon's "nice"), so on one
machine they do not take the CPU of the coordinator under test; --rate N caps
the manifest requests of all connections at N per second (default: as fast as
answered), so the agents still get CPU.
--connections 0 runs the agents alone (no manifest load), so the coordinator's
CPU per agent is what a syncing client costs it. The agents start once the
coordinator has built the image's compressed segments (as a published version
is served in steady state; waited for at most 30 min).
Prints: agents ok, wall time, request count/rate/latency/errors, the load
average, and the coordinator's memory (RSS every --sample-ms, default 500;
V8 heap from its /metrics) before the load, its peak, as the load ended,
after --settle seconds (default 60) idle and then after a full GC (a heap
snapshot, SIGUSR2, deleted at once; the start is read the same way). Memory
is flat when, after the full GC, RSS is at most --max-growth-mib (default 64)
and the live heap at most a quarter of that above the start.
Exits 1 if an agent failed, an image was wrong, a request failed (error,
timeout or non-2xx) or memory was not flat.`

/** Its options. */
export const options = {
  agents: { type: 'string' },
  connections: { type: 'string' },
  mib: { type: 'string' },
  'min-seconds': { type: 'string' },
  settle: { type: 'string' },
  'max-growth-mib': { type: 'string' },
  'sample-ms': { type: 'string' },
  linger: { type: 'string' },
  'no-lan': { type: 'boolean' },
  nice: { type: 'boolean' },
  rate: { type: 'string' },
  json: { type: 'boolean' }
} as const



/** What a run without manifest load (--connections 0) reports for it. */
const NO_LOAD: LoadResult = { requests: { total: 0, average: 0 }, latency: { p50: 0, p99: 0, max: 0 }, errors: 0, timeouts: 0, non2xx: 0 }

/** Most seconds to wait for the coordinator to build the published version's segments (level 19 on a busy machine). */
const SEGMENT_WAIT_SECONDS = 1800

/** Waits until desk/v1's segment table is served (agents then take segments, as every client after the build does); returns the seconds waited. */
async function waitForSegments (url: string, token: string): Promise<number> {
  const { value, seconds } = await pollUntil(async () => {
    const res = await fetch(url + '/v1/images/desk/versions/v1/segments', { headers: { authorization: `Bearer ${token}` } })
    await res.body?.cancel()
    if (res.ok) return true
    if (res.status !== 404) throw new Error(`segment table: HTTP ${res.status}`)
    return undefined
  }, { everyMs: 1000, timeoutMs: SEGMENT_WAIT_SECONDS * 1000 })
  if (value == null) throw new Error(`segments not built after ${SEGMENT_WAIT_SECONDS / 60} min`)
  return seconds
}

/** An image with distinct, compressible-ish data and zero holes, like a disk. */
function syntheticImage (mib: number): Buffer {
  const b = Buffer.alloc(mib << 20)
  let x = 0x9e3779b9
  for (let blk = 0; blk < b.length / 4096; blk++) {
    if (blk % 7 === 3) continue // holes
    for (let i = blk * 4096; i < (blk + 1) * 4096; i += 4) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5
      b.writeUInt32LE((x & 0x0f0f0f0f) >>> 0, i)
    }
  }
  return b
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const agents = Number(values.agents ?? 20)
  const connections = Number(values.connections ?? 1000)
  const rate = Number(values.rate ?? 0)
  if (!Number.isInteger(rate) || rate < 0) throw new Error('--rate must be a whole number of requests per second (0 = no cap)')
  const mib = Number(values.mib ?? 64)
  const sampleMs = Number(values['sample-ms'] ?? 500)
  const minSeconds = Number(values['min-seconds'] ?? 0)
  const settle = Number(values.settle ?? 60)
  const maxGrowth = Number(values['max-growth-mib'] ?? 64)
  for (const [k, v] of Object.entries({ agents, mib, 'sample-ms': sampleMs })) if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer`)
  for (const [k, v] of Object.entries({ connections, 'min-seconds': minSeconds, settle, 'max-growth-mib': maxGrowth })) if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${k} must be a whole number >= 0`)

  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-bench-load-agents-'))
  const coordinator = await spawnCoordinator(join(dir, 'data'))
  const { child, url, tokenFile: adminFile } = coordinator
  try {
    const admin = (await readFile(adminFile, 'utf8')).trim()
    const img = join(dir, 'desk.img')
    await writeFile(img, syntheticImage(mib))
    const want = (await exec('b3sum', ['--no-names', img])).stdout.trim()
    await exec(process.execPath, [CLI, 'publish', img, '--image', 'desk', '--version', 'v1', '--coordinator', url, '--token-file', adminFile, '--json'])
    await exec(process.execPath, [CLI, 'policy', 'set', 'desk', '--images', 'desk', '--coordinator', url, '--token-file', adminFile])
    const created = await fetch(url + '/v1/tokens', { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ group: 'desk', name: 'bench' }) })
    const token = (await created.json()).token as string
    const tokenFile = join(dir, 'agent.token')
    await writeFile(tokenFile, token + '\n', { mode: 0o600 })
    const segmentSeconds = await waitForSegments(url, token)

    const loadBefore = loadavg()[0]
    const memory = await watchMemory(coordinator, { sampleMs, settleSeconds: settle, maxGrowthMiB: maxGrowth })
    const cpu0 = await cpuSeconds(child.pid!)
    const started = performance.now()
    const agentRuns = Array.from({ length: agents }, async (_, i) => {
      const out = join(dir, `agent-${i}`, 'desk.img')
      const t0 = performance.now()
      try {
        await exec(process.execPath, [CLI, 'agent', 'sync', 'desk@v1', '--coordinator', url, '--token-file', tokenFile, '--data', join(dir, `agent-${i}`, 'data'), '--out', out, '--json', '--no-index', '--linger', values.linger ?? '10', ...(values['no-lan'] === true ? ['--no-lan'] : []), ...(values.nice === true ? ['--nice'] : [])], { maxBuffer: 64 << 20 })
        const got = (await exec('b3sum', ['--no-names', out])).stdout.trim()
        return { ok: got === want, seconds: (performance.now() - t0) / 1000, error: got === want ? undefined : 'wrong image' }
      } catch (err) {
        return { ok: false, seconds: (performance.now() - t0) / 1000, error: ((err as { stderr?: string }).stderr ?? String(err)).slice(0, 300) }
      }
    })
    let instance: { stop: () => void } | undefined
    const load = connections === 0 ? Promise.resolve(NO_LOAD) : new Promise<LoadResult>((resolve, reject) => {
      instance = autocannon({ url: url + '/v1/images/desk/versions/latest', connections, duration: 3600, timeout: 30, ...(rate > 0 ? { overallRate: rate } : {}), headers: { authorization: `Bearer ${token}` } }, (err, res) => { if (err != null) reject(err); else resolve(res) })
    })
    const results = await Promise.all(agentRuns)
    const wall = (performance.now() - started) / 1000
    const rest = minSeconds * 1000 - (performance.now() - started)
    if (rest > 0) await new Promise(resolve => setTimeout(resolve, rest))
    const loadSeconds = (performance.now() - started) / 1000
    const loadDuring = loadavg()[0]
    instance?.stop()
    const cpu = await cpuSeconds(child.pid!) - cpu0
    const r = await load
    const mem = await memory.finish()
    const failed = results.filter(a => !a.ok)
    const requestFailures = r.errors + r.timeouts + r.non2xx
    const result = {
      agents,
      agentsOk: agents - failed.length,
      imageMiB: mib,
      wallSeconds: Math.round(wall * 10) / 10,
      agentSeconds: { min: Math.round(Math.min(...results.map(a => a.seconds)) * 10) / 10, max: Math.round(Math.max(...results.map(a => a.seconds)) * 10) / 10 },
      loadSeconds: Math.round(loadSeconds),
      segmentBuildSeconds: Math.round(segmentSeconds),
      coordinatorCpuSeconds: Math.round(cpu * 10) / 10,
      // with manifest load, an upper bound per syncing agent (the load running beside them is counted too)
      coordinatorCpuPerAgentSeconds: Math.round(cpu / agents * 100) / 100,
      cpuMsPerManifest: r.requests.total > 0 ? Math.round(cpu / r.requests.total * 1e5) / 100 : 0,
      loadAverage: { before: loadBefore, atEnd: loadDuring },
      manifestRequests: { connections, total: r.requests.total, perSecond: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx },
      coordinatorMemoryMiB: mem,
      failures: failed.map(f => f.error)
    }
    if (values.json === true) process.stdout.write(JSON.stringify(result) + '\n')
    else {
      process.stdout.write([
        `${agents} agents syncing a ${mib} MiB image + ${connections} connections on the manifest route`,
        `  agents     ${result.agentsOk}/${agents} ok (b3sum), each ${result.agentSeconds.min}-${result.agentSeconds.max} s, all done in ${result.wallSeconds} s`,
        `  manifests  ${r.requests.total} in ${result.loadSeconds} s (${result.manifestRequests.perSecond}/s), p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, max ${r.latency.max} ms`,
        `  errors     ${r.errors} (timeouts ${r.timeouts}), non-2xx ${r.non2xx}`,
        connections === 0
          ? `  cpu        coordinator ${result.coordinatorCpuSeconds} s, ${result.coordinatorCpuPerAgentSeconds} s per syncing agent (no manifest load)`
          : `  cpu        coordinator ${result.coordinatorCpuSeconds} s (agents' requests included), ${result.cpuMsPerManifest} ms per manifest request, ` +
            `at most ${result.coordinatorCpuPerAgentSeconds} s per syncing agent`,
        `  segments   built ${result.segmentBuildSeconds} s after the publish, before the agents started`,
        `  machine    load average ${loadBefore.toFixed(1)} before, ${loadDuring.toFixed(1)} as the load ended`,
        ...memoryLines(mem),
        ...failed.slice(0, 3).map(f => `  failure    ${f.error}`)
      ].join('\n') + '\n')
    }
    return failed.length + requestFailures > 0 || !mem.flat ? 1 : 0
  } finally {
    child.kill('SIGTERM')
    await new Promise(resolve => { if (child.exitCode != null) resolve(null); else child.once('exit', resolve) })
    await rm(dir, { recursive: true, force: true })
  }
}
