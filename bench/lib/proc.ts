/** Process and port helpers shared by the load benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'

const CLI = resolve(import.meta.dirname, '..', '..', 'bin', 'trimswarm.js')

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address()
      srv.close(() => { resolve(typeof a === 'object' && a != null ? a.port : 0) })
    })
  })
}

/** Current resident set size of a process, in KiB (VmRSS). */
export async function rssKiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
}

/** A `trimswarm coordinator` process started by a benchmark. */
export interface CoordinatorProcess {
  child: ChildProcess
  url: string
  /** DATA/admin.token */
  tokenFile: string
}

/** Starts `trimswarm coordinator --data DATA` on a free 127.0.0.1 port and resolves once it listens. */
export async function spawnCoordinator (dataDir: string): Promise<CoordinatorProcess> {
  const listen = `127.0.0.1:${await freePort()}`
  const child = spawn(process.execPath, [CLI, 'coordinator', '--data', dataDir, '--listen', listen, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('coordinator listening on')) resolve() })
    child.once('exit', (code) => { reject(new Error(`coordinator exited with ${code}`)) })
  })
  return { child, url: `http://${listen}`, tokenFile: join(dataDir, 'admin.token') }
}

/** A coordinator's memory in MiB: RSS from /proc, V8 heap and external memory from its /metrics (`process_*`, `nodejs_*` gauges). */
export interface MemoryFigures {
  rss: number
  heapTotal: number
  heapUsed: number
  external: number
}

const mib = (bytes: number): number => Math.round(bytes / 1048576)

/** One reading of the coordinator's memory (its /metrics answers even under load, just later). */
export async function coordinatorMemory (pid: number, url: string): Promise<MemoryFigures> {
  const text = await (await fetch(url + '/metrics')).text()
  const gauge = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { rss: Math.round(await rssKiB(pid) / 1024), heapTotal: mib(gauge('nodejs_heap_size_total_bytes')), heapUsed: mib(gauge('nodejs_heap_size_used_bytes')), external: mib(gauge('nodejs_external_memory_bytes')) }
}

/** What MemoryWatch.finish() reports: is memory flat across a load? */
export interface MemoryReport {
  /** Before the load. */
  start: MemoryFigures
  /** Highest RSS sampled during the load. */
  peakRss: number
  /** As the load ended. */
  afterLoad: MemoryFigures
  /** After `settleSeconds` without load (V8 shrinks its heap once the allocation rate drops). */
  settled: MemoryFigures
  settleSeconds: number
  /** RSS samples [seconds since start, MiB], every sampleMs during the load and the settle period. */
  samples: Array<[number, number]>
  /** settled.rss - start.rss */
  growth: number
  /** growth <= maxGrowth */
  flat: boolean
  maxGrowth: number
}

/** Samples a coordinator's RSS from the start of a load until finish(); finish() waits `settleSeconds` and reads it again. */
export interface MemoryWatch {
  /** Marks the end of the load (reads afterLoad), waits settleSeconds (sampling on), reads `settled`. */
  finish: () => Promise<MemoryReport>
}

/**
 * Starts watching: reads `start` now, then RSS every `sampleMs`. `maxGrowthMiB`
 * is how much higher RSS may be after the settle period than before the load
 * and still count as flat (a leak keeps what it took; V8 gives back its heap).
 */
export async function watchMemory (pid: number, url: string, opts: { sampleMs: number, settleSeconds: number, maxGrowthMiB: number }): Promise<MemoryWatch> {
  const start = await coordinatorMemory(pid, url)
  const t0 = performance.now()
  const samples: Array<[number, number]> = [[0, start.rss]]
  let peakRss = start.rss
  let loadRunning = true
  const timer = setInterval(() => {
    rssKiB(pid).then(kib => {
      const v = Math.round(kib / 1024)
      samples.push([Math.round((performance.now() - t0) / 100) / 10, v])
      if (loadRunning) peakRss = Math.max(peakRss, v)
    }, () => {})
  }, opts.sampleMs)
  return {
    async finish () {
      loadRunning = false
      try {
        const afterLoad = await coordinatorMemory(pid, url)
        peakRss = Math.max(peakRss, afterLoad.rss)
        await new Promise(resolve => setTimeout(resolve, opts.settleSeconds * 1000))
        const settled = await coordinatorMemory(pid, url)
        const growth = settled.rss - start.rss
        return { start, peakRss, afterLoad, settled, settleSeconds: opts.settleSeconds, samples, growth, flat: growth <= opts.maxGrowthMiB, maxGrowth: opts.maxGrowthMiB }
      } finally {
        clearInterval(timer)
      }
    }
  }
}

/** The memory lines of a load benchmark's text output. */
export function memoryLines (m: MemoryReport): string[] {
  const f = (x: MemoryFigures): string => `RSS ${x.rss} MiB (heap ${x.heapUsed}/${x.heapTotal}, external ${x.external})`
  return [
    `  memory     coordinator before the load ${f(m.start)}; peak RSS ${m.peakRss} MiB`,
    `             as the load ended ${f(m.afterLoad)}`,
    `             after ${m.settleSeconds} s idle ${f(m.settled)}: ${m.growth >= 0 ? '+' : ''}${m.growth} MiB over the start, ${m.flat ? 'flat' : 'NOT flat'} (limit +${m.maxGrowth} MiB)`
  ]
}
