/**
 * `npm run bench -- agent-site`: N agents of one site syncing the same image at once on
 * 127.0.0.1 (the LAN swarm, the coordinator's rendezvous), each a process with its own data
 * dir: every agent's CPU (user + sys, /proc) until its image is in place, and when all are.
 * Cold, or with host folders indexed (Trim Transfer: the index built once and copied into each
 * data dir, as `bench branch` does). The quick loop for the agents' CPU in a site (issue 21)
 * without `bench branch`'s namespaces, shaping and baselines: no WAN limit, so it measures CPU,
 * not the link. Figures: docs/BENCHMARKS.md "Session 12".
 */
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { createPublishClient } from '../client/publish-client.ts'
import { fileDigest, runsAndLevel } from './agent-cpu.ts'
import { findCorpus } from './lib/corpus.ts'
import { startBranchCoordinator } from './lib/corpus-coordinator.ts'
import { cpuSeconds, cpuTimes } from './lib/proc.ts'
import { median } from './lib/stats.ts'

const CLI = resolve(import.meta.dirname, '..', 'bin', 'trimswarm.js')
const IMAGE = 'site'
/** How often an agent's output is looked for (its CPU is read when it appears). */
const POLL_MS = 10

/** One line for the list of benchmarks. */
export const summary = 'N agents of one site syncing together on 127.0.0.1: CPU per agent until its image is in place, cold or trim'

/** Help text. */
export const usage = `Usage: npm run bench -- agent-site [--agents N] [--runs N] [--index DIR]... [--image PATH]
                                  [--work DIR] [--level N] [--cli FILE]... [--cpu-prof DIR]

Starts a coordinator in this process (data in --work, kept when given, so a
second run skips publishing and the segment build), publishes --image (default
the corpus's base.img) with segments at zstd level --level (default 3), then
runs --runs (default 3) rounds after one not counted (it fills the compile
cache): in each, --agents (default 4) \`agent sync\` processes at once, each
with a fresh data dir and output, LAN sharing on (they find each other through
the coordinator). With --index (repeatable) the folders are indexed once
(\`agent index\`) and the index copied into every data dir (a trim); without,
a cold install. Each agent's CPU is read from /proc when its output appears,
every output is compared with the image's BLAKE3. --cli runs another
checkout's bin/trimswarm.js (or a built one); given more than once, the CLIs
take turns in every round (before/after under the same load). --cpu-prof DIR
writes a V8 CPU profile of every agent into DIR. Prints a line per round and,
per CLI, the medians of the agents' CPU summed and of all done.`

/** Its options. */
export const options = {
  agents: { type: 'string' },
  runs: { type: 'string' },
  index: { type: 'string', multiple: true },
  image: { type: 'string' },
  work: { type: 'string' },
  level: { type: 'string' },
  cli: { type: 'string', multiple: true },
  'cpu-prof': { type: 'string' }
} as const

/** The numbers of the flags, checked: --agents (1 to 16, default 4), --runs (default 3), --level (1 to 22, default 3). */
export function siteFlags (values: { agents?: string, runs?: string, level?: string }): { agents: number, runs: number, level: number } {
  const agents = Number(values.agents ?? 4)
  if (!Number.isInteger(agents) || agents < 1 || agents > 16) throw new Error('--agents must be an integer from 1 to 16')
  return { agents, ...runsAndLevel(values) }
}

/** One agent of a round. */
interface AgentRun {
  /** Seconds from the round's start until its output appeared. */
  done: number
  /** CPU seconds (user + sys) until then. */
  cpu: number
  /** Minor page faults until then (fresh pages touched). */
  faults: number
  /** Its --json summary's byte counts. */
  bytes: { local: number, peers: number, origin: number }
}

/** One round: every agent at once. */
interface SiteRound { agents: AgentRun[], allDone: number, coordinatorCpu: number }

/** Runs one `agent sync`, reading its CPU when `out` appears; rejects when it fails. */
async function runAgent (cli: string, args: string[], nodeArgs: string[], out: string, started: number): Promise<AgentRun> {
  const child = spawn(process.execPath, [...nodeArgs, cli, 'agent', 'sync', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout = (stdout + d.toString()).slice(-16000) })
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  let seen: Promise<{ done: number, cpu: number, faults: number }> | undefined
  const poll = setInterval(() => {
    if (seen == null && existsSync(out)) {
      const done = (performance.now() - started) / 1000
      seen = cpuTimes(child.pid as number).then(t => ({ done, cpu: t.user + t.system, faults: t.minorFaults }), () => ({ done, cpu: Number.NaN, faults: Number.NaN }))
    }
  }, POLL_MS)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearInterval(poll)
  if (code !== 0) throw new Error(`agent sync exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)
  if (seen == null) throw new Error('agent sync exited 0 but its output never appeared')
  const summaryLine = stdout.trim().split('\n').filter(l => l.startsWith('{')).at(-1) ?? '{}'
  const { bytes } = JSON.parse(summaryLine) as { bytes?: AgentRun['bytes'] }
  return { ...await seen, bytes: bytes ?? { local: 0, peers: 0, origin: 0 } }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`
const thousands = (n: number): string => `${(n / 1000).toFixed(1)}k`

/** A round's line. */
function describeRound (r: SiteRound): string {
  const cpus = r.agents.map(a => a.cpu)
  return `all done ${r.allDone.toFixed(2)} s, agents' CPU ${sum(cpus).toFixed(2)} s (${cpus.map(c => c.toFixed(2)).join(', ')}), ` +
    `page faults ${thousands(sum(r.agents.map(a => a.faults)))}, ` +
    `coordinator ${r.coordinatorCpu.toFixed(2)} s, origin ${mb(sum(r.agents.map(a => a.bytes.origin)))}, ` +
    `peers ${mb(sum(r.agents.map(a => a.bytes.peers)))}, local ${mb(sum(r.agents.map(a => a.bytes.local)))}`
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const { agents, runs, level } = siteFlags(values)
  const image = resolve(values.image ?? join(findCorpus(), 'base.img'))
  const clis = (values.cli ?? [CLI]).map(c => resolve(c))
  const folders = (values.index ?? []).map(d => resolve(d))
  const nodeArgs = values['cpu-prof'] != null ? ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`] : []
  const work = values.work != null ? resolve(values.work) : await mkdtemp(join(tmpdir(), 'trimswarm-bench-agent-site-'))
  mkdirSync(work, { recursive: true })
  const { coordinator, tokenFile } = await startBranchCoordinator({ work, maxPeers: Math.max(8, agents), config: { segments: { zstdLevel: level } } })
  try {
    const exists = (await fetch(`${coordinator.url}/v1/images/${IMAGE}/versions/v1/info`, { headers: { authorization: `Bearer ${coordinator.adminToken}` } })).ok
    if (!exists) await createPublishClient({ coordinator: coordinator.url, token: coordinator.adminToken }).publish(image, { image: IMAGE, version: 'v1' })
    await coordinator.images.whenIdle()
    await coordinator.segments.whenIdle()
    const want = await fileDigest(image)
    const proto = join(work, 'index-proto')
    if (folders.length > 0) {
      rmSync(proto, { recursive: true, force: true })
      await new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, [clis[0], 'agent', 'index', '--data', proto, ...folders.flatMap(f => ['--index', f]), '--json'], { stdio: ['ignore', 'ignore', 'pipe'] })
        let stderr = ''
        child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000) })
        child.on('close', code => { if (code === 0) resolve(); else reject(new Error(`agent index exited ${code}: ${stderr.trim()}`)) })
      })
    }
    const what = folders.length > 0 ? `with ${folders.join(', ')} indexed` : 'cold'
    process.stdout.write(`agent-site: Node ${process.version}, ${agents} agents, ${what}, segments at zstd level ${level}, ${runs} rounds of each of ${clis.length} CLIs, alternating\n`)
    const rounds: SiteRound[][] = clis.map(() => [])
    // round 0 is not counted: it fills the compile cache of each CLI
    for (let round = 0; round <= runs; round++) {
      for (const [v, cli] of clis.entries()) {
        const dir = join(work, 'round')
        rmSync(dir, { recursive: true, force: true })
        mkdirSync(dir)
        for (let i = 0; i < agents; i++) if (folders.length > 0) cpSync(proto, join(dir, `data-${i}`), { recursive: true })
        const load = loadavg()[0].toFixed(1)
        const coordinatorBefore = await cpuSeconds(process.pid)
        const started = performance.now()
        const results = await Promise.all(Array.from({ length: agents }, async (_, i) => {
          const out = join(dir, `out-${i}.img`)
          const args = [`${IMAGE}@v1`, '--coordinator', coordinator.url, '--token-file', tokenFile, '--data', join(dir, `data-${i}`), '--out', out,
            ...(folders.length > 0 ? folders.flatMap(f => ['--index', f]) : ['--no-index']),
            // nothing leaves this machine: no multicast, peers on loopback only
            '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--json', '--quiet']
          return await runAgent(cli, args, nodeArgs, out, started)
        }))
        const r: SiteRound = { agents: results, allDone: Math.max(...results.map(a => a.done)), coordinatorCpu: await cpuSeconds(process.pid) - coordinatorBefore }
        for (let i = 0; i < agents; i++) {
          if (await fileDigest(join(dir, `out-${i}.img`)) !== want) throw new Error(`${cli}: agent ${i + 1}'s output differs from ${image}`)
        }
        process.stdout.write(`${round === 0 ? 'warm-up (not counted)' : `round ${round}`}, ${cli} (load ${load}): ${describeRound(r)}\n`)
        if (round > 0) rounds[v].push(r)
      }
    }
    for (const [v, cli] of clis.entries()) {
      const cpu = rounds[v].map(r => sum(r.agents.map(a => a.cpu)))
      const done = rounds[v].map(r => r.allDone)
      const faults = rounds[v].map(r => sum(r.agents.map(a => a.faults)))
      process.stdout.write(`${cli}: agents' CPU summed, median ${median(cpu).toFixed(2)} s (${cpu.map(c => c.toFixed(2)).join(', ')}); ` +
        `page faults summed, median ${thousands(median(faults))}; ` +
        `all done, median ${median(done).toFixed(2)} s (${done.map(d => d.toFixed(2)).join(', ')})\n`)
    }
    return 0
  } finally {
    await coordinator.stop()
    if (values.work == null) rmSync(work, { recursive: true, force: true })
  }
}
