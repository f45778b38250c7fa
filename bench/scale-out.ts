/**
 * `npm run bench -- scale-out`: 1 vs 3 `trimswarm coordinator` processes on
 * one scale-out stack (scripts/scale-out-stack.sh: PostgreSQL + Ceph RGW),
 * as an operator runs them. Publishes one image through the first, then per
 * round (1 coordinator, then 3) measures, with the load spread evenly over
 * the coordinators of the round:
 *   - manifest-info requests per second (`GET .../versions/latest/info` with
 *     a machine token: auth, policy, version records; autocannon, one
 *     instance per coordinator),
 *   - cold-client block batches per second (`POST .../blocks` naming every
 *     block of the version, read to the end: what a first install asks the
 *     origin for, zstd level 9 over chunks read from the bucket),
 *   - coordinator CPU seconds per cold client (per batch) and per 1,000
 *     manifest-info requests, from /proc.
 * Figures: docs/BENCHMARKS.md `## scale-out`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { cpuSeconds, freePort } from './lib/proc.ts'

const exec = promisify(execFile)
const CLI = new URL('../bin/trimswarm.js', import.meta.url).pathname
const STACK = new URL('../scripts/scale-out-stack.sh', import.meta.url).pathname

/** The part of autocannon's result this benchmark reads (the package ships no types). */
interface LoadResult { requests: { total: number }, errors: number, timeouts: number, non2xx: number }
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>) => Promise<LoadResult>

/** One line for the list of benchmarks. */
export const summary = 'scale-out: 1 vs 3 coordinators on PostgreSQL + RGW, block batches/s, manifest-info/s, CPU per client'

/** Help text. */
export const usage = `Usage: npm run bench -- scale-out [--stack DIR] [--counts 1,3] [--duration S] [--clients N]
         [--connections N] [--image-mib N] [--json]

Starts scripts/scale-out-stack.sh in a temp dir (or uses the running stack in
--stack DIR), publishes a --image-mib (default 16) MiB image through the
first coordinator, and for each count in --counts (default 1,3) runs that
many \`trimswarm coordinator --config DIR/coordinator.json\` processes, each
with its own --data, then for --duration seconds (default 15) each:
  info     autocannon, --connections (default 64) in all, spread evenly,
           GET /v1/images/IMAGE/versions/latest/info with a machine token
  batches  --clients (default 6) cold clients in all, spread evenly, each
           asking POST .../blocks for every block of the version, again and
           again, reading each answer to its end
Prints per count: requests/s, batches/s, coordinator CPU seconds per batch
and per 1,000 info requests, the load average and the machine's cores (the
coordinators share them with the load generators and the stack).`

/** Its options. */
export const options = {
  stack: { type: 'string' },
  counts: { type: 'string' },
  duration: { type: 'string' },
  clients: { type: 'string' },
  connections: { type: 'string' },
  'image-mib': { type: 'string' },
  json: { type: 'boolean' }
} as const

interface Coordinator { child: ChildProcess, url: string }

async function startCoordinator (config: string, dataDir: string): Promise<Coordinator> {
  const listen = `127.0.0.1:${await freePort()}`
  const child = spawn(process.execPath, [CLI, 'coordinator', '--config', config, '--data', dataDir, '--listen', listen, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('coordinator listening on')) resolve() })
    child.once('exit', (code) => { reject(new Error(`coordinator exited with ${code}`)) })
  })
  return { child, url: `http://${listen}` }
}

async function stopAll (list: Coordinator[]): Promise<void> {
  await Promise.all(list.map(async c => {
    if (c.child.exitCode != null) return
    c.child.kill('SIGTERM')
    await new Promise(resolve => c.child.once('exit', resolve))
  }))
}

/** Asks for every block of the version again and again until `until`; returns how many batches completed and their bytes. */
async function coldClient (url: string, token: string, image: string, blocks: number, until: number): Promise<{ batches: number, bytes: number }> {
  let batches = 0
  let bytes = 0
  while (Date.now() < until) {
    const res = await fetch(`${url}/v1/images/${image}/versions/v1/blocks`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ ranges: [[0, blocks]] }) })
    if (!res.ok) throw new Error(`POST blocks: ${res.status} ${await res.text()}`)
    for await (const chunk of res.body!) bytes += (chunk as Uint8Array).byteLength
    batches++
  }
  return { batches, bytes }
}

/** One round: `n` coordinators, info load then batch load, CPU from /proc. */
async function round (n: number, ctx: { stackDir: string, work: string, token: string, image: string, blocks: number, duration: number, clients: number, connections: number }): Promise<Record<string, number>> {
  const config = join(ctx.stackDir, 'coordinator.json')
  const list: Coordinator[] = []
  try {
    for (let i = 0; i < n; i++) {
      const data = join(ctx.work, `round${n}-c${i}`)
      await mkdir(data, { recursive: true, mode: 0o700 })
      for (const f of ['admin.token', 'signing-key.pem', 'session.key']) await copyFile(join(ctx.work, 'keys', f), join(data, f))
      list.push(await startCoordinator(config, data))
    }
    const cpu = async (): Promise<number> => (await Promise.all(list.map(async c => await cpuSeconds(c.child.pid!)))).reduce((a, b) => a + b, 0)

    const cpu0 = await cpu()
    const per = Math.max(1, Math.round(ctx.connections / n))
    const info = await Promise.all(list.map(async c => await autocannon({ url: `${c.url}/v1/images/${ctx.image}/versions/latest/info`, connections: per, duration: ctx.duration, timeout: 30, headers: { authorization: `Bearer ${ctx.token}` } })))
    const cpuInfo = await cpu() - cpu0
    const requests = info.reduce((a, r) => a + r.requests.total, 0)
    const failed = info.reduce((a, r) => a + r.errors + r.timeouts + r.non2xx, 0)

    const cpu1 = await cpu()
    const until = Date.now() + ctx.duration * 1000
    const started = Date.now()
    const cold = await Promise.all(Array.from({ length: ctx.clients }, async (_, i) => await coldClient(list[i % n].url, ctx.token, ctx.image, ctx.blocks, until)))
    const seconds = (Date.now() - started) / 1000
    const cpuBatches = await cpu() - cpu1
    const batches = cold.reduce((a, r) => a + r.batches, 0)
    return {
      coordinators: n,
      infoRequestsPerSecond: Math.round(requests / ctx.duration),
      infoFailed: failed,
      cpuSecondsPer1000Info: Math.round(cpuInfo / requests * 1000 * 1000) / 1000,
      batchesPerSecond: Math.round(batches / seconds * 100) / 100,
      batchMiB: batches > 0 ? Math.round(cold.reduce((a, r) => a + r.bytes, 0) / batches / 1048576 * 100) / 100 : 0,
      cpuSecondsPerColdClient: batches > 0 ? Math.round(cpuBatches / batches * 100) / 100 : 0,
      loadAverage: Math.round(loadavg()[0] * 10) / 10
    }
  } finally {
    await stopAll(list)
  }
}

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  const counts = (values.counts ?? '1,3').split(',').map(Number)
  const duration = Number(values.duration ?? 15)
  const clients = Number(values.clients ?? 6)
  const connections = Number(values.connections ?? 64)
  const imageMiB = Number(values['image-mib'] ?? 16)
  for (const [k, v] of Object.entries({ duration, clients, connections, 'image-mib': imageMiB })) if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${k} must be a positive whole number`)
  if (counts.some(c => !Number.isSafeInteger(c) || c < 1 || c > 16)) throw new Error('--counts must be whole numbers from 1 to 16, comma-separated')

  const work = await mkdtemp(join(tmpdir(), 'trimswarm-bench-scale-out-'))
  const ownStack = values.stack == null
  const stackDir = values.stack ?? join(work, 'stack')
  try {
    if (ownStack) await exec(STACK, ['up', stackDir], { timeout: 300_000 })
    // the first coordinator creates the keys every coordinator must share (docs/OPERATIONS.md "Running several coordinators")
    const keys = join(work, 'keys')
    await mkdir(keys, { recursive: true, mode: 0o700 })
    await copyFile(join(stackDir, 'admin.token'), join(keys, 'admin.token'))
    const first = await startCoordinator(join(stackDir, 'coordinator.json'), keys)
    const admin = (await readFile(join(keys, 'admin.token'), 'utf8')).trim()
    const image = `bench-${randomBytes(3).toString('hex')}`
    let token: string
    let blocks: number
    try {
      const img = join(work, 'image.img')
      const bytes = randomBytes(imageMiB << 20)
      // compressible like a disk: every other 64 KiB is text-like, the rest random
      for (let off = 0; off < bytes.length; off += 128 << 10) bytes.fill(off % 251, off, Math.min(bytes.length, off + (64 << 10)))
      await writeFile(img, bytes)
      const tokenFile = join(keys, 'admin.token')
      await exec(process.execPath, [CLI, 'publish', img, '--image', image, '--version', 'v1', '--coordinator', first.url, '--token-file', tokenFile, '--json'])
      await exec(process.execPath, [CLI, 'policy', 'set', 'bench', '--images', image, '--coordinator', first.url, '--token-file', tokenFile])
      const created = await fetch(`${first.url}/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ group: 'bench', name: 'scale-out' }) })
      token = (await created.json()).token as string
      blocks = (await (await fetch(`${first.url}/v1/images/${image}/versions/v1/info`, { headers: { authorization: `Bearer ${token}` } })).json()).blocks as number
    } finally {
      await stopAll([first])
    }
    const results: Array<Record<string, number>> = []
    for (const n of counts) results.push(await round(n, { stackDir, work, token, image, blocks, duration, clients, connections }))
    if (values.json === true) {
      process.stdout.write(JSON.stringify({ cores: cpus().length, imageMiB, blocks, duration, clients, connections, results }) + '\n')
    } else {
      const lines = [`scale-out: ${imageMiB} MiB image (${blocks} blocks), ${duration} s per load, ${clients} cold clients, ${connections} info connections, ${cpus().length} cores`,
        '| coordinators | info requests/s | CPU s per 1,000 info | block batches/s | MiB per batch | CPU s per cold client | load average |',
        '| --- | --- | --- | --- | --- | --- | --- |',
        ...results.map(r => `| ${r.coordinators} | ${r.infoRequestsPerSecond}${r.infoFailed > 0 ? ` (${r.infoFailed} failed)` : ''} | ${r.cpuSecondsPer1000Info} | ${r.batchesPerSecond} | ${r.batchMiB} | ${r.cpuSecondsPerColdClient} | ${r.loadAverage} |`)]
      process.stdout.write(lines.join('\n') + '\n')
    }
    return results.some(r => r.infoFailed > 0) ? 1 : 0
  } finally {
    if (ownStack) await exec(STACK, ['down', stackDir], { timeout: 120_000 }).catch(() => {})
    await rm(work, { recursive: true, force: true })
  }
}
