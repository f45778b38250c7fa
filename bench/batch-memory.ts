/**
 * `npm run bench -- batch-memory`: the native memory the coordinator's block
 * batch compression leaves in the process, with glibc's default malloc and
 * with the mmap threshold `trimswarm coordinator` runs with
 * (COORDINATOR_MMAP_THRESHOLD_BYTES, bin/reexec.ts). Each variant is a child
 * process compressing rounds of concurrent batches with the coordinator's own
 * encoder (createZstdEncoder, ORIGIN_ZSTD_LEVEL and window, the batch size
 * pledged); it reports RSS before, at peak and after a full GC. The variants
 * alternate, in the same run. Figures: docs/BENCHMARKS.md `## load`.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { parseArgs, promisify } from 'node:util'
import { createZstdEncoder } from '../coordinator/block-batch.ts'
import { COORDINATOR_MMAP_THRESHOLD_BYTES, ORIGIN_MAX_CONCURRENT_BATCHES, ORIGIN_ZSTD_LEVEL, ORIGIN_ZSTD_WINDOW_LOG } from '../coordinator/constants.ts'
import { LAN_ORIGIN_BATCH_BYTES } from '../peer-agent/constants.ts'
import { median } from './lib/stats.ts'

const exec = promisify(execFile)
const MiB = 1024 * 1024
const WORKER_ENV = 'TRIMSWARM_BATCH_MEMORY_WORKER'

/** One line for the list of benchmarks. */
export const summary = 'native memory left by concurrent zstd block batches: glibc default vs the coordinator\'s mmap threshold'

/** Help text. */
export const usage = `Usage: npm run bench -- batch-memory [--concurrency N] [--rounds N] [--batch-mib N] [--runs N]

Two variants, each in its own process, alternating --runs times (default 2):
glibc's default malloc, and GLIBC_TUNABLES=glibc.malloc.mmap_threshold=${COORDINATOR_MMAP_THRESHOLD_BYTES}
(what \`trimswarm coordinator\` re-executes itself with). Each compresses
--rounds (default 40) rounds of --concurrency (default ORIGIN_MAX_CONCURRENT_BATCHES
= ${ORIGIN_MAX_CONCURRENT_BATCHES}) batches at once, each batch a random 1/4 to 1 of
--batch-mib MiB (default LAN_ORIGIN_BATCH_BYTES = ${LAN_ORIGIN_BATCH_BYTES / MiB}) of half-random
4 KiB blocks, with the coordinator's encoder (level ${ORIGIN_ZSTD_LEVEL}, window 2^${ORIGIN_ZSTD_WINDOW_LOG},
batch size pledged). Prints RSS at start, peak and after a full GC, and the
growth (after the GC minus the start) of each variant.`

/** Its options. */
export const options = {
  concurrency: { type: 'string' },
  rounds: { type: 'string' },
  'batch-mib': { type: 'string' },
  runs: { type: 'string' }
} as const

/** What a variant's process reports: RSS (MiB), and the CPU seconds and minor page faults its batches cost. */
interface WorkerResult { start: number, peak: number, afterGc: number, cpu: number, faults: number }

function positive (text: string | undefined, fallback: number, what: string): number {
  if (text == null) return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer`)
  return n
}

const rssMiB = (): number => process.memoryUsage.rss() / MiB

async function compress (data: Buffer, bytes: number): Promise<void> {
  const zstd = createZstdEncoder({ level: ORIGIN_ZSTD_LEVEL, windowLog: ORIGIN_ZSTD_WINDOW_LOG }, bytes)
  const drained = (async () => { for await (const _ of zstd) {} })()
  for (let o = 0; o < bytes; o += MiB) {
    if (!zstd.write(data.subarray(o, Math.min(bytes, o + MiB)))) await new Promise(resolve => zstd.once('drain', resolve))
  }
  zstd.end()
  await drained
}

async function worker (): Promise<void> {
  const { concurrency, rounds, batchBytes } = JSON.parse(process.env[WORKER_ENV]!) as { concurrency: number, rounds: number, batchBytes: number }
  const data = Buffer.alloc(batchBytes)
  for (let o = 0; o < batchBytes; o += 4096) randomBytes(2048).copy(data, o)
  const gc = globalThis.gc!
  gc()
  const start = rssMiB()
  let peak = start
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB()) }, 20)
  const before = process.resourceUsage()
  for (let r = 0; r < rounds; r++) {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      await compress(data, Math.ceil((0.25 + Math.random() * 0.75) * batchBytes / 4096) * 4096)
    }))
  }
  const after = process.resourceUsage()
  clearInterval(timer)
  gc()
  await new Promise(resolve => setTimeout(resolve, 200))
  gc()
  const cpu = (after.userCPUTime + after.systemCPUTime - before.userCPUTime - before.systemCPUTime) / 1e6
  const result: WorkerResult = { start, peak: Math.max(peak, rssMiB()), afterGc: rssMiB(), cpu, faults: after.minorPageFault - before.minorPageFault }
  process.stdout.write(JSON.stringify(result) + '\n')
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  if (process.env[WORKER_ENV] != null) { await worker(); return 0 }
  const { values } = parseArgs({ args: argv, options, strict: true })
  const params = {
    concurrency: positive(values.concurrency, ORIGIN_MAX_CONCURRENT_BATCHES, '--concurrency'),
    rounds: positive(values.rounds, 40, '--rounds'),
    batchBytes: positive(values['batch-mib'], LAN_ORIGIN_BATCH_BYTES / MiB, '--batch-mib') * MiB
  }
  const runs = positive(values.runs, 2, '--runs')
  const { GLIBC_TUNABLES: _, ...env } = process.env
  const variants = [
    { name: 'glibc default', env },
    { name: `mmap_threshold=${COORDINATOR_MMAP_THRESHOLD_BYTES}`, env: { ...env, GLIBC_TUNABLES: `glibc.malloc.mmap_threshold=${COORDINATOR_MMAP_THRESHOLD_BYTES}` } }
  ]
  process.stdout.write(`batch-memory: ${params.rounds} rounds of ${params.concurrency} concurrent batches of up to ${params.batchBytes / MiB} MiB, zstd level ${ORIGIN_ZSTD_LEVEL}, window 2^${ORIGIN_ZSTD_WINDOW_LOG}\n`)
  const growth: number[][] = variants.map(() => [])
  const cpu: number[][] = variants.map(() => [])
  const faults: number[][] = variants.map(() => [])
  for (let r = 0; r < runs; r++) {
    // alternate which variant goes first, so neither always runs on a warmer machine
    const order = r % 2 === 0 ? [0, 1] : [1, 0]
    for (const v of order) {
      const { stdout } = await exec(process.execPath, ['--expose-gc', new URL('./main.ts', import.meta.url).pathname, 'batch-memory'], { env: { ...variants[v].env, [WORKER_ENV]: JSON.stringify(params) } })
      const res = JSON.parse(stdout.trim().split('\n').at(-1)!) as WorkerResult
      growth[v].push(res.afterGc - res.start)
      cpu[v].push(res.cpu)
      faults[v].push(res.faults)
      process.stdout.write(`  run ${r + 1}, ${variants[v].name.padEnd(24)} RSS start ${res.start.toFixed(0)} MiB, peak ${res.peak.toFixed(0)}, after a full GC ${res.afterGc.toFixed(0)}: ` +
        `+${(res.afterGc - res.start).toFixed(0)} MiB; batches' CPU ${res.cpu.toFixed(2)} s, ${res.faults} page faults\n`)
    }
  }
  process.stdout.write(`median growth after a full GC: ${variants.map((v, k) => `${v.name} +${median(growth[k]).toFixed(0)} MiB`).join(', ')}\n`)
  process.stdout.write(`median CPU of the batches: ${variants.map((v, k) => `${v.name} ${median(cpu[k]).toFixed(2)} s (${median(faults[k])} page faults)`).join(', ')}\n`)
  return 0
}
