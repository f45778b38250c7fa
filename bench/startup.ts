/**
 * `npm run bench -- startup`: how long `trimswarm agent sync` takes to start
 * and to return, on an image small enough that start-up and shut-down are most
 * of the run. A coordinator in this process serves a 4 MiB image; each run is a
 * fresh agent (own data dir, own output) with the compile cache on (the
 * default, bin/trimswarm.js) or off (NODE_DISABLE_COMPILE_CACHE=1), alternating,
 * in the same run. Start-up is the time from spawn to the agent's first line
 * (it pins the coordinator key before anything else); total is spawn to exit.
 * Figures: docs/BENCHMARKS.md `## start-up`.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createPublishClient } from '../client/publish-client.ts'
import { startBranchCoordinator } from './lib/corpus-coordinator.ts'
import { median } from './lib/stats.ts'

const CLI = fileURLToPath(new URL('../bin/trimswarm.js', import.meta.url))
const MiB = 1024 * 1024

/** One line for the list of benchmarks. */
export const summary = 'start-up and total time of `agent sync` on a small image, compile cache on vs off'

/** Help text. */
export const usage = `Usage: npm run bench -- startup [--runs N]

Publishes a 4 MiB image (half random, half zeros) to a coordinator in this
process, then runs \`trimswarm agent sync\` --runs times (default 5) in each of
two variants, alternating: the compile cache on (the default) and off
(NODE_DISABLE_COMPILE_CACHE=1). Each run is a new agent process with its own
data dir and output file; every output is checked byte for byte. Prints each
run's start-up (spawn to the first line the agent prints) and total (spawn to
exit), and the medians and their ratio.`

/** Its options. */
export const options = {
  runs: { type: 'string' }
} as const

interface Timing { startMs: number, totalMs: number }

async function syncOnce (args: string[], env: NodeJS.ProcessEnv): Promise<Timing> {
  const t0 = performance.now()
  const child = spawn(process.execPath, [CLI, 'agent', 'sync', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env })
  let startMs: number | undefined
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { startMs ??= performance.now() - t0; stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  const totalMs = performance.now() - t0
  if (code !== 0) throw new Error(`agent sync exited ${code}: ${stderr.slice(-2000)}`)
  return { startMs: startMs ?? totalMs, totalMs }
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const runs = Number(values.runs ?? 5)
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer')
  const work = await mkdtemp(join(tmpdir(), 'trimswarm-bench-startup-'))
  const { coordinator, tokenFile } = await startBranchCoordinator({ work })
  try {
    const image = Buffer.alloc(4 * MiB)
    randomBytes(2 * MiB).copy(image)
    const imagePath = join(work, 'small.img')
    await writeFile(imagePath, image)
    await createPublishClient({ coordinator: coordinator.url, token: coordinator.adminToken }).publish(imagePath, { image: 'small', version: 'v1' })
    await coordinator.images.whenIdle()

    const { NODE_DISABLE_COMPILE_CACHE: _, ...env } = process.env
    const variants = [
      { name: 'compile cache on', env },
      { name: 'compile cache off', env: { ...env, NODE_DISABLE_COMPILE_CACHE: '1' } }
    ]
    process.stdout.write(`startup: agent sync of a 4 MiB image (2 MiB data), ${runs} runs per variant, alternating; Node ${process.version}\n`)
    const sync = async (dir: string, runEnv: NodeJS.ProcessEnv): Promise<Timing> =>
      await syncOnce(['small@v1', '--coordinator', coordinator.url, '--token-file', tokenFile, '--data', join(dir, 'data'), '--out', join(dir, 'out.img'), '--no-index'], runEnv)
    // one run first, not counted: fills the compile cache (as any earlier run of this version would have)
    await sync(join(work, 'warm'), env)
    const timings: Timing[][] = variants.map(() => [])
    for (let r = 0; r < runs; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0]
      for (const v of order) {
        const dir = join(work, `run-${r}-${v}`)
        const t = await sync(dir, variants[v].env)
        if (!(await readFile(join(dir, 'out.img'))).equals(image)) throw new Error(`run ${r + 1} (${variants[v].name}): the output differs from the image`)
        timings[v].push(t)
        process.stdout.write(`  run ${r + 1}, ${variants[v].name.padEnd(18)} start-up ${t.startMs.toFixed(0).padStart(5)} ms, total ${t.totalMs.toFixed(0).padStart(5)} ms\n`)
        await rm(dir, { recursive: true, force: true })
      }
    }
    const med = timings.map(ts => ({ start: median(ts.map(t => t.startMs)), total: median(ts.map(t => t.totalMs)) }))
    for (const [k, v] of variants.entries()) process.stdout.write(`median ${v.name.padEnd(18)} start-up ${med[k].start.toFixed(0).padStart(5)} ms, total ${med[k].total.toFixed(0).padStart(5)} ms\n`)
    process.stdout.write(`cache on / off: start-up ${(med[0].start / med[1].start).toFixed(2)}x, total ${(med[0].total / med[1].total).toFixed(2)}x\n`)
    return 0
  } finally {
    await coordinator.stop()
    await rm(work, { recursive: true, force: true })
  }
}
