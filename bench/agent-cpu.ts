/**
 * `npm run bench -- agent-cpu`: the agent's CPU (user + sys) for a cold
 * install of base.img from the coordinator's segments (issue 19), and for an
 * up-to-date sync (start-up and nothing to fetch). A coordinator in this
 * process holds base.img as `corpus@v1`, its segments built at a low zstd
 * level (`--level`, default 3: minutes less to build, and decoding costs about
 * the same at any level); each run is a new `trimswarm agent sync corpus@v1
 * --no-index --no-lan` process timed by /usr/bin/time, its output compared with
 * the image's BLAKE3. Figures: docs/BENCHMARKS.md `### agent CPU`.
 */
import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { createPublishClient } from '../client/publish-client.ts'
import { findCorpus } from './lib/corpus.ts'
import { startBranchCoordinator } from './lib/corpus-coordinator.ts'
import { cpuSeconds } from './lib/proc.ts'
import { median } from './lib/stats.ts'

const CLI = resolve(import.meta.dirname, '..', 'bin', 'trimswarm.js')

/** One line for the list of benchmarks. */
export const summary = 'agent CPU (user + sys) of a cold install of base.img from segments, and of an up-to-date sync'

/** Help text. */
export const usage = `Usage: npm run bench -- agent-cpu [--corpus DIR] [--work DIR] [--runs N] [--level N] [--cli FILE]... [--cpu-prof DIR]

Starts a coordinator in this process (data in --work, kept when given, so a
second run skips publishing and the segment build), publishes the corpus's
base.img as corpus@v1 with segments at zstd level --level (default 3), then
runs --runs (default 3) cold installs (\`agent sync corpus@v1 --no-index
--no-lan\` into a fresh data dir and output), after one not counted (it fills
the compile cache), each followed by one up-to-date sync of the same output.
Each agent is timed by /usr/bin/time (user, sys, peak RSS); the
coordinator's CPU is read from /proc around each run; the load average is
printed with every run. --cli runs another checkout's
bin/trimswarm.js; given more than once, the CLIs take turns in every round
(before/after comparisons against the same coordinator, under the same load);
--cpu-prof DIR writes a V8 CPU profile of every agent into DIR.`

/** Its options. */
export const options = {
  corpus: { type: 'string' },
  work: { type: 'string' },
  runs: { type: 'string' },
  level: { type: 'string' },
  cli: { type: 'string', multiple: true },
  'cpu-prof': { type: 'string' }
} as const

/** --runs (default 3) and --level (default 3), checked. */
export function runsAndLevel (values: { runs?: string, level?: string }): { runs: number, level: number } {
  const runs = Number(values.runs ?? 3)
  const level = Number(values.level ?? 3)
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer')
  if (!Number.isInteger(level) || level < 1 || level > 22) throw new Error('--level must be an integer from 1 to 22')
  return { runs, level }
}

/** What /usr/bin/time and /proc said of one agent run. */
interface AgentRun { wall: number, user: number, sys: number, rssMiB: number, coordinatorCpu: number }

/** BLAKE3 of a file, streamed. */
export async function fileDigest (path: string): Promise<string> {
  const h = new Blake3Hasher()
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(piece as Buffer)
  return h.digest('hex')
}

/** Runs one `agent sync` under /usr/bin/time (`stdout`: the end of what it printed, e.g. its --json summary). */
export async function timedSync (cli: string, args: string[], nodeArgs: string[]): Promise<Omit<AgentRun, 'coordinatorCpu'> & { stdout: string }> {
  const timeFile = join(tmpdir(), `trimswarm-agent-cpu-${process.pid}-${Date.now()}.time`)
  const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, process.execPath, ...nodeArgs, cli, 'agent', 'sync', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let stdout = ''
  child.stdout.on('data', (d: Buffer) => { stdout = (stdout + d.toString()).slice(-16000) })
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  const [wall, user, sys, rss] = (await readFile(timeFile, 'utf8')).trim().split('\n').at(-1)!.split(' ').map(Number)
  await rm(timeFile, { force: true })
  if (code !== 0) throw new Error(`agent sync exited ${code}: ${stderr}`)
  return { wall, user, sys, rssMiB: Math.round(rss / 1024), stdout }
}

const fmt = (r: AgentRun): string =>
  `cpu ${(r.user + r.sys).toFixed(2)} s (user ${r.user.toFixed(2)}, sys ${r.sys.toFixed(2)}), wall ${r.wall.toFixed(2)} s, ` +
  `peak RSS ${r.rssMiB} MiB, coordinator cpu ${r.coordinatorCpu.toFixed(2)} s`

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const { runs, level } = runsAndLevel(values)
  const corpus = findCorpus(values.corpus)
  const clis = (values.cli ?? [CLI]).map(c => resolve(c))
  const nodeArgs = values['cpu-prof'] != null ? ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`] : []
  const work = values.work != null ? resolve(values.work) : await mkdtemp(join(tmpdir(), 'trimswarm-bench-agent-cpu-'))
  await mkdir(work, { recursive: true })
  const image = join(corpus, 'base.img')
  const { coordinator, tokenFile } = await startBranchCoordinator({ work, config: { segments: { zstdLevel: level } } })
  try {
    const exists = (await fetch(`${coordinator.url}/v1/images/corpus/versions/v1/info`, { headers: { authorization: `Bearer ${coordinator.adminToken}` } })).ok
    if (!exists) await createPublishClient({ coordinator: coordinator.url, token: coordinator.adminToken }).publish(image, { image: 'corpus', version: 'v1' })
    await coordinator.images.whenIdle()
    await coordinator.segments.whenIdle()
    const want = await fileDigest(image)
    process.stdout.write(`agent-cpu: Node ${process.version}, segments at zstd level ${level}, ${runs} runs of each of ${clis.length} CLIs, alternating\n`)
    const cold: AgentRun[][] = clis.map(() => [])
    const upToDate: AgentRun[][] = clis.map(() => [])
    // round 0 is not counted: it fills the compile cache (bin/trimswarm.js) of each CLI
    for (let round = 0; round <= runs; round++) {
      for (const [v, cli] of clis.entries()) {
        const dir = join(work, `run-${v}`)
        await rm(dir, { recursive: true, force: true })
        const args = ['corpus@v1', '--coordinator', coordinator.url, '--token-file', tokenFile, '--data', join(dir, 'data'), '--out', join(dir, 'out.img')]
        args.push('--no-index', '--no-lan')
        const measured = async (): Promise<AgentRun> => {
          const before = await cpuSeconds(process.pid)
          const r = await timedSync(cli, args, nodeArgs)
          return { ...r, coordinatorCpu: await cpuSeconds(process.pid) - before }
        }
        const load = loadavg()[0].toFixed(1)
        const c = await measured()
        if (await fileDigest(join(dir, 'out.img')) !== want) throw new Error(`${cli}: the output differs from ${image}`)
        const u = await measured()
        const label = `${round === 0 ? 'warm-up (not counted)' : `run ${round}`}, ${cli}`
        process.stdout.write(`${label} (load ${load}): cold install ${fmt(c)}\n`)
        process.stdout.write(`${label} (load ${loadavg()[0].toFixed(1)}): up to date ${fmt(u)}\n`)
        await rm(dir, { recursive: true, force: true })
        if (round === 0) continue
        cold[v].push(c)
        upToDate[v].push(u)
      }
    }
    const med = (rs: AgentRun[]): string => median(rs.map(r => r.user + r.sys)).toFixed(2)
    const all = (rs: AgentRun[]): string => rs.map(r => (r.user + r.sys).toFixed(2)).join(', ')
    for (const [v, cli] of clis.entries()) {
      const line = `cold install median ${med(cold[v])} s (${all(cold[v])}), up to date median ${med(upToDate[v])} s (${all(upToDate[v])})`
      process.stdout.write(`${cli}: agent cpu, ${line}\n`)
    }
    return 0
  } finally {
    await coordinator.stop()
    if (values.work == null) await rm(work, { recursive: true, force: true })
  }
}

