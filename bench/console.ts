/**
 * `npm run bench -- console`: the admin console at fleet size. Fills a fresh
 * data dir through the real event store API (EventStore.add, batches of
 * 1,000, as POST /v1/events stores them) with --events events from --agents
 * agents on --sites sites (rollout rounds over 5 images: started, progress,
 * progress, completed or failed), lets the console's event index catch up,
 * then times every page and its JSON/CSV/live/chart routes in process
 * (`app.request()` with the session cookie, the full Hono stack) and prints
 * p50/p99 per route. Figures: docs/BENCHMARKS.md `## console`.
 */
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { AgentEvent } from '../protocol/api.ts'
import { createCoordinator } from '../coordinator/coordinator.ts'

/** One line for the list of benchmarks. */
export const summary = 'admin console page and API latency (p50/p99) with 10,000 agents and 1,000,000 events'

/** Help text. */
export const usage = `Usage: npm run bench -- console [--agents N] [--events N] [--sites N] [--requests N] [--keep DIR]

Fills a new store with --events (default 1000000) events of --agents (default
10000) agents on --sites (default 100) sites through EventStore.add, waits for
the console's event index, then requests every console page and data route
--requests times (default 40) and prints p50 / p99 / max latency in ms.
--keep DIR fills DIR instead of a temporary folder and keeps it; run again with
the same --keep DIR to time the routes without filling again.`

/** Its options. */
export const options = {
  agents: { type: 'string' },
  events: { type: 'string' },
  sites: { type: 'string' },
  requests: { type: 'string' },
  keep: { type: 'string' }
} as const

const IMAGES = ['desk', 'lab', 'cad', 'build', 'kiosk']

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(p / 100 * s.length) - 1)]
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const agents = Number(values.agents ?? 10_000)
  const total = Number(values.events ?? 1_000_000)
  const sites = Number(values.sites ?? 100)
  const requests = Number(values.requests ?? 40)
  for (const [k, v] of Object.entries({ agents, events: total, sites, requests })) if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer`)
  const dir = values.keep ?? await mkdtemp(join(tmpdir(), 'trimswarm-bench-console-'))
  const filled = values.keep != null && await access(join(dir, 'bench-filled')).then(() => true, () => false)
  const stack = createCoordinator({ dataDir: dir, serve: false, logLevel: 'silent', config: { images: { buildDeltaPacks: false } } })
  await stack.start()
  try {
    if (!filled) await fill()
    // ---- index catch-up (it followed the fill in the background; finish what is left) ----
    const t1 = performance.now()
    await new Promise(resolve => setTimeout(resolve, 2100)) // EVENT_INDEX_SETTLE_MS
    while (await stack.console.index.refresh(100_000) > 0) { /* drain */ }
    console.log(`event index caught up ${((performance.now() - t1) / 1000).toFixed(1)} s after the fill ended (incl. the 2.1 s settle wait)`)
    await stack.console.series.sample()
    if (values.keep != null) await writeFile(join(dir, 'bench-filled'), `${total} events, ${agents} agents, ${sites} sites\n`)
    await measure()
  } finally {
    await stack.stop()
    if (values.keep == null) await rm(dir, { recursive: true, force: true })
  }
  return 0

  async function fill (): Promise<void> {
    const perRound = agents * 4
    const t0 = performance.now()
    let batch: AgentEvent[] = []
    let last = t0
    for (let i = 0; i < total; i++) {
      const round = Math.floor(i / perRound)
      const a = Math.floor(i / 4) % agents
      const step = i % 4
      const failed = step === 3 && (a * 7 + round) % 20 === 0
      const image = IMAGES[round % IMAGES.length]
      const version = `v${1 + Math.floor(round / IMAGES.length)}`
      const local = 40_000_000 + (a % 13) * 1_000_000
      batch.push({
        id: `b-${i.toString(36).padStart(8, '0')}`,
        type: step === 0 ? 'sync.started' : step < 3 ? 'sync.progress' : failed ? 'sync.failed' : 'sync.completed',
        time: new Date(Date.UTC(2026, 10, 1) + i * 50).toISOString(),
        agent: `vm-${String(a).padStart(5, '0')}`,
        site: `site-${String(a % sites).padStart(3, '0')}`,
        image,
        version,
        ...(step === 3 ? { bytes: { local, peers: failed ? 0 : 15_000_000, origin: failed ? 1_000_000 : 5_000_000 + (a % 5) * 1_000_000 }, seconds: 30 + (a % 60) } : {}),
        ...(failed ? { error: 'origin unreachable: ECONNRESET' } : {}),
        ...(step === 0 ? { peerId: `12D3KooW${String(a).padStart(44, 'x')}` } : {})
      })
      if (batch.length === 1000 || i === total - 1) {
        await stack.events.add(batch, 'bench')
        batch = []
        if (performance.now() - last > 10_000) {
          last = performance.now()
          process.stderr.write(`  ${i + 1} events stored (${Math.round((i + 1) / ((last - t0) / 1000))}/s)\n`)
        }
      }
    }
    const fillS = (performance.now() - t0) / 1000
    console.log(`filled ${total} events of ${agents} agents on ${sites} sites in ${fillS.toFixed(1)} s (${Math.round(total / fillS)} events/s through EventStore.add)`)
  }

  async function measure (): Promise<void> {

    // ---- a logged-in admin ----
    const login = await stack.app.request('http://bench/console/login')
    const csrf = /trimswarm_csrf=([^;]+)/.exec(login.headers.get('set-cookie') ?? '')?.[1] ?? ''
    const res = await stack.app.request('http://bench/console/login', { method: 'POST', body: new URLSearchParams({ token: stack.adminToken, _csrf: csrf }), headers: { Cookie: `trimswarm_csrf=${csrf}`, 'Content-Type': 'application/x-www-form-urlencoded' } })
    const session = /trimswarm_session=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1]
    if (res.status !== 303 || session == null) throw new Error(`login failed: ${res.status}`)
    const cookie = `trimswarm_session=${session}; trimswarm_csrf=${csrf}`

    // a cursor deep in the log, for a far page
    const mid = await stack.app.request('http://bench/console/api/events?limit=1000', { headers: { Cookie: cookie } })
    const cursor = ((await mid.json()) as { next: string }).next
    const routes = [
      '/console/images',
      '/console/rollout?image=desk',
      '/console/bandwidth',
      '/console/bandwidth?site=site-007&window=24h',
      '/console/agents',
      '/console/agents?site=site-042',
      '/console/policy',
      '/console/events',
      '/console/events?type=sync.failed',
      '/console/events?image=lab&site=site-003',
      `/console/events?before=${encodeURIComponent(cursor)}`,
      '/console/api/rollout?image=desk',
      '/console/api/by-site.csv',
      '/console/api/agents.csv?limit=1000',
      '/console/api/events?limit=1000',
      '/console/api/failures?image=desk',
      '/console/live/agents',
      '/console/live/events?site=site-001',
      '/console/chart/bandwidth?window=1h',
      '/console/chart/rollout?image=desk&window=7d'
    ]
    console.log(`\n${'route'.padEnd(52)} ${'status'.padStart(6)} ${'bytes'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)}`)
    for (const route of routes) {
      const times: number[] = []
      let status = 0
      let bytes = 0
      for (let r = 0; r < requests + 2; r++) {
        const s = performance.now()
        const res = await stack.app.request(`http://bench${route}`, { headers: { Cookie: cookie } })
        const body = await res.arrayBuffer()
        if (r >= 2) times.push(performance.now() - s) // two warm-up requests
        status = res.status
        bytes = body.byteLength
      }
      console.log(`${route.slice(0, 52).padEnd(52)} ${String(status).padStart(6)} ${String(bytes).padStart(9)} ${pct(times, 50).toFixed(1).padStart(8)} ${pct(times, 99).toFixed(1).padStart(8)} ${Math.max(...times).toFixed(1).padStart(8)}`)
    }
    console.log(`\n(${requests} requests per route after 2 warm-ups, one at a time, in process; node ${process.version})`)
  }
}
