/**
 * `npm run bench -- coordinator-load`: manifest requests from many concurrent
 * clients against a real `trimswarm coordinator` process on loopback, with a
 * real HTTP load generator (autocannon) in this process. Publishes a small
 * image with `trimswarm publish`, gives group `desk` the image, creates a
 * machine token, then keeps --connections connections busy for --duration
 * seconds with `GET /v1/images/desk/versions/latest` (auth, policy check,
 * signed envelope) and prints requests/s, p50/p99/max latency, errors and
 * the coordinator's memory before, at its peak, as the load ended and after a
 * settle period. Figures: docs/BENCHMARKS.md `## coordinator load`.
 */
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { cpuSeconds, memoryLines, spawnCoordinator, watchMemory } from './lib/proc.ts'

const run_ = promisify(execFile)

/** The part of autocannon's result this benchmark reads (the package ships no types). */
interface LoadResult {
  requests: { total: number, average: number }
  throughput: { total: number }
  latency: { p50: number, p99: number, max: number }
  errors: number
  timeouts: number
  non2xx: number
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>) => Promise<LoadResult>
const CLI = new URL('../bin/trimswarm.js', import.meta.url).pathname

/** One line for the list of benchmarks. */
export const summary = 'coordinator under load: manifest GETs by 1,000 concurrent clients (autocannon), p50/p99, errors'

/** Help text. */
export const usage = `Usage: npm run bench -- coordinator-load [--connections N] [--duration S] [--path manifest|me|healthz]
         [--settle S] [--max-growth-mib N] [--json]

Starts \`trimswarm coordinator\` on 127.0.0.1 (a fresh data dir, log level
warn), publishes a 4 MiB image as desk/v1, sets a policy for group desk and
creates a machine token, then runs autocannon with --connections (default
1000) concurrent connections for --duration seconds (default 20) against:
  manifest  GET /v1/images/desk/versions/latest (default; the signed envelope)
  me        GET /v1/auth/me (auth and policy only)
  healthz   GET /healthz (no auth: the HTTP stack alone)
Prints requests/s, latency p50/p99/max (ms), errors, timeouts, non-2xx, the
load average, and the coordinator's memory (RSS; V8 heap from its /metrics)
before the load, its peak, as the load ended, after --settle seconds idle
(default 60) and after a full GC (see load-agents). Exits 1 when any request
failed (error, timeout or non-2xx) or memory was not flat: after the full GC,
RSS more than --max-growth-mib (default 64), or the live heap more than a
quarter of that, above the start.`

/** Its options. */
export const options = {
  connections: { type: 'string' },
  duration: { type: 'string' },
  path: { type: 'string' },
  settle: { type: 'string' },
  'max-growth-mib': { type: 'string' },
  json: { type: 'boolean' }
} as const

const PATHS: Record<string, string> = {
  manifest: '/v1/images/desk/versions/latest',
  me: '/v1/auth/me',
  healthz: '/healthz'
}



/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const connections = Number(values.connections ?? 1000)
  const duration = Number(values.duration ?? 20)
  const which = values.path ?? 'manifest'
  if (!Number.isSafeInteger(connections) || connections < 1) throw new Error('--connections must be a positive integer')
  if (!Number.isSafeInteger(duration) || duration < 1) throw new Error('--duration must be a positive integer (seconds)')
  const settle = Number(values.settle ?? 60)
  const maxGrowth = Number(values['max-growth-mib'] ?? 64)
  for (const [k, v] of Object.entries({ settle, 'max-growth-mib': maxGrowth })) if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${k} must be a whole number >= 0`)
  if (PATHS[which] == null) throw new Error(`--path must be one of ${Object.keys(PATHS).join(', ')}`)

  const dir = await mkdtemp(join(tmpdir(), 'trimswarm-bench-load-'))
  const coordinator = await spawnCoordinator(join(dir, 'data'))
  const { child, url, tokenFile } = coordinator
  try {
    const admin = (await readFile(tokenFile, 'utf8')).trim()
    const img = join(dir, 'desk.img')
    const bytes = Buffer.alloc(4 << 20)
    for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i)
    await writeFile(img, bytes)
    await run_(process.execPath, [CLI, 'publish', img, '--image', 'desk', '--version', 'v1', '--coordinator', url, '--token-file', tokenFile, '--json'])
    await run_(process.execPath, [CLI, 'policy', 'set', 'desk', '--images', 'desk', '--coordinator', url, '--token-file', tokenFile])
    const created = await fetch(url + '/v1/tokens', { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ group: 'desk', name: 'bench' }) })
    const token = (await created.json()).token as string

    const loadBefore = loadavg()[0]
    const memory = await watchMemory(coordinator, { sampleMs: 500, settleSeconds: settle, maxGrowthMiB: maxGrowth })
    const cpu0 = await cpuSeconds(child.pid!)
    const r = await autocannon({ url: url + PATHS[which], connections, duration, timeout: 30, headers: { authorization: `Bearer ${token}` } })
    const cpu = await cpuSeconds(child.pid!) - cpu0
    const loadAtEnd = loadavg()[0]
    const mem = await memory.finish()
    const result = {
      path: PATHS[which],
      connections,
      seconds: duration,
      requests: r.requests.total,
      requestsPerSecond: Math.round(r.requests.average),
      bytesPerResponse: r.requests.total > 0 ? Math.round(r.throughput.total / r.requests.total) : 0,
      latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
      errors: r.errors,
      timeouts: r.timeouts,
      non2xx: r.non2xx,
      coordinatorCpuSeconds: Math.round(cpu * 10) / 10,
      cpuMsPerRequest: r.requests.total > 0 ? Math.round(cpu / r.requests.total * 1e5) / 100 : 0,
      loadAverage: { before: loadBefore, atEnd: loadAtEnd },
      coordinatorMemoryMiB: mem
    }
    if (values.json === true) {
      process.stdout.write(JSON.stringify(result) + '\n')
    } else {
      process.stdout.write([
        `${result.path}: ${connections} connections, ${duration} s`,
        `  requests   ${result.requests} (${result.requestsPerSecond}/s, ${result.bytesPerResponse} bytes each)`,
        `  latency    p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, max ${result.latencyMs.max} ms`,
        `  errors     ${result.errors} (timeouts ${result.timeouts}), non-2xx ${result.non2xx}`,
        `  cpu        coordinator ${result.coordinatorCpuSeconds} s, ${result.cpuMsPerRequest} ms per request`,
        `  machine    load average ${loadBefore.toFixed(1)} before, ${loadAtEnd.toFixed(1)} as the load ended`,
        ...memoryLines(mem)
      ].join('\n') + '\n')
    }
    return result.errors + result.timeouts + result.non2xx > 0 || !mem.flat ? 1 : 0
  } finally {
    child.kill('SIGTERM')
    await new Promise(resolve => { if (child.exitCode != null) resolve(null); else child.once('exit', resolve) })
    await rm(dir, { recursive: true, force: true })
  }
}
